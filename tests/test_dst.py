"""Sparse from the start: the schedule, ERK, drop and grow by hand; static, SET and RigL in a study."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from processes import interrupted_then_resumed
from test_early import masks_of, tiny_study

from experiments import lenet300
from lth_jax import commands, report
from lth_jax.core import dst, pools
from lth_jax.core import train as train_lib
from lth_jax.study import levels, results

LENET = [(784, 300), (300, 100), (100, 10)]


def test_the_cosine_schedule_by_hand():
  for step, expected in ((0, 0.3), (25, 0.15 * (1 + math.cos(math.pi / 4))), (50, 0.15),
                         (99, 0.15 * (1 + math.cos(math.pi * 0.99))), (100, 0.0), (150, 0.0)):  # fmt: skip
    got = float(dst.drop_fraction(step, initial=0.3, end_step=100))
    assert got == pytest.approx(expected, abs=1e-6), step


def test_erk_by_hand_with_a_layer_capped_at_one():
  # LeNet-300-100 at 10%: raw densities (784+300)/235200, 400/30000, 110/1000. With every layer
  # sparse, eps = 26620 / (1084 + 400 + 110) = 16.70 and the output layer would get 1.84: it is
  # made dense, and eps = (26620 - 1000) / (1084 + 400) for the others.
  eps = (26620 - 1000) / (1084 + 400)
  densities = dst.layer_densities(LENET, 26620, 'erk')
  np.testing.assert_allclose(densities, [eps * 1084 / 235200, eps * 400 / 30000, 1.0], rtol=1e-5)
  counts = dst.layer_counts(LENET, 26620, 'erk')
  assert counts.tolist() == [18714, 6906, 1000] and int(counts.sum()) == 26620
  # No layer capped: densities 20/100 · eps and 1002/2000 · eps, eps = 150 / 1022; floors 2 and
  # 147, the weight left goes to the larger remainder (2.935 against 147.06).
  assert dst.layer_counts([(10, 10), (1000, 2)], 150, 'erk').tolist() == [3, 147]
  assert dst.layer_counts(LENET, 26620, 'uniform').tolist() == [23520, 3000, 100]


@settings(max_examples=30, deadline=None)
@given(total=st.integers(1, 266_200))
def test_counts_are_exact_and_within_each_layer(total):
  for distribution in ('erk', 'uniform'):
    counts = np.asarray(dst.layer_counts(LENET, total, distribution))
    assert counts.sum() == total and np.all(counts >= 0)
    assert np.all(counts <= [np.prod(s) for s in LENET])


def test_drop_and_grow_by_hand():
  mask = jnp.array([True, True, False, True, False, True])
  weights = jnp.array([0.5, -0.1, 0.0, 2.0, 0.0, 0.3])
  grads = jnp.array([9.0, 0.2, 5.0, 0.0, 1.0, 0.0])  # Position 0 stays: its score plays no part.
  new_mask, new_weights = dst.update_layer(mask, weights, grads, 0.5)
  # Four kept, half change: -0.1 and 0.3 (the smallest magnitudes) go; positions 2 and 4 (the
  # largest scores among the rest) come, at zero.
  assert new_mask.tolist() == [True, False, True, True, True, False]
  assert new_weights.tolist() == [0.5, 0.0, 0.0, 2.0, 0.0, 0.0]
  # A weight just dropped competes to come back (as in RigL's code), and keeps its value.
  grads = grads.at[1].set(7.0)
  new_mask, new_weights = dst.update_layer(mask, weights, grads, 0.5)
  assert new_mask.tolist() == [True, True, True, True, False, False]
  assert np.asarray(new_weights).tolist() == pytest.approx([0.5, -0.1, 0.0, 2.0, 0.0, 0.0])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), fraction=st.floats(0.0, 0.99))
def test_update_keeps_counts_drops_the_smallest_grows_the_largest(seed, fraction):
  rng = np.random.default_rng(seed)
  mask = rng.random((12, 7)) < rng.uniform(0.1, 0.9)
  weights = np.where(mask, rng.normal(size=mask.shape), 0.0).astype(np.float32)
  scores = rng.random(mask.shape).astype(np.float32)
  new_mask, new_weights = map(np.asarray, dst.update_layer(
    jnp.asarray(mask), jnp.asarray(weights), jnp.asarray(scores), fraction))  # fmt: skip
  assert new_mask.sum() == mask.sum()  # The layer's count, exactly.
  dropped, grown = mask & ~new_mask, new_mask & ~mask
  change = int(np.round(np.float32(mask.sum()) * np.float32(fraction)))
  assert dropped.sum() <= change and grown.sum() == dropped.sum()
  # The kept - change largest magnitudes stay; what goes is among the `change` smallest.
  kept = np.flatnonzero(mask.reshape(-1))
  by_size = kept[np.argsort(-np.abs(weights.reshape(-1)[kept]), kind='stable')]
  assert new_mask.reshape(-1)[by_size[: len(kept) - change]].all()
  assert set(np.flatnonzero(dropped.reshape(-1))) <= set(by_size[len(kept) - change :])
  if grown.any():  # Every grown position scores at least as high as any position left out.
    assert not dropped.any() or scores[grown].min() >= scores[dropped].max()
    left_out = ~new_mask & ~mask
    assert not left_out.any() or scores[grown].min() >= scores[left_out].max()
  assert np.all(new_weights[grown] == 0) and np.all(new_weights[~new_mask] == 0)
  assert np.array_equal(new_weights[mask & new_mask], weights[mask & new_mask])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(0, 60), levels=st.integers(1, 50))
def test_selection_without_a_sort_is_keep_top(seed, k, levels):
  rng = np.random.default_rng(seed)
  values = (rng.integers(0, levels, 60) / levels).astype(np.float32)  # Many ties.
  valid = rng.random(60) < 0.8
  k = min(k, int(valid.sum()))
  expected = pools.keep_top(jnp.where(valid, values, -jnp.inf), k)
  got = dst.top_nonnegative(jnp.asarray(values), jnp.asarray(valid), k)
  assert np.array_equal(np.asarray(got), np.asarray(expected) & valid)


def test_the_dense_gradient_reaches_pruned_weights():
  study = tiny_study(levels=0, arms=('ticket',))
  state = study.initial_state(0)
  keys = iter(jax.random.split(jax.random.key(1), 10))
  masks = jax.tree.map(
    lambda m: jax.random.uniform(next(keys), m.shape) < 0.5 if m.ndim == 2 else m, state.masks
  )
  state = state._replace(masks=masks, params=jax.tree.map(lambda p, m: p * m, state.params, masks))
  x, y = study.train.x[:20], study.train.y[:20]
  grads = train_lib.dense_gradients(study.task, state, x, y, jax.random.key(0))
  masked = jax.grad(lambda p: train_lib.cross_entropy(
    study.task.model.apply({'params': jax.tree.map(lambda a, m: a * m, p, masks)},
                           study.task.normalize(x)), y))(state.params)  # fmt: skip
  for g, h, m in zip(jax.tree.leaves(grads), jax.tree.leaves(masked), jax.tree.leaves(masks),
                     strict=True):  # fmt: skip
    g, h, m = map(np.asarray, (g, h, m))
    np.testing.assert_allclose(g[m], h[m], rtol=1e-5, atol=1e-7)  # Kept: the usual gradient.
    if m.ndim == 2:
      assert np.abs(g[~m]).sum() > 0 and np.all(h[~m] == 0)  # Pruned: only the dense one.


# ---------------------------------------------------------------------------- in a study

ARMS = ('ticket', 'random_prune', 'static', 'set', 'rigl')


@pytest.fixture(scope='module')
def ran():
  study = tiny_study(levels=1, arms=ARMS)
  study.dst = type(study.dst)(update_every=10, drop_fraction=0.3, end_step=25)
  return study, levels.train_levels(study)


def test_counts_stay_the_tickets_layer_by_layer(ran):
  study, store = ran
  layers = {}
  for r in store.layers:
    layers.setdefault((r['level'], r['arm']), {})[r['layer']] = r['kept']
  for arm in ARMS[1:]:  # distribution 'ticket': the ticket's per-layer counts.
    assert layers[(1, arm)] == layers[(1, 'ticket')], arm
  for arm in ('set', 'rigl'):  # The trained weights live on a mask of those counts.
    nonzero = sum(int(x.sum()) for x in jax.tree.leaves(masks_of(store, 1, arm)) if x.ndim == 2)
    assert 0.9 * sum(layers[(1, 'ticket')].values()) < nonzero
    assert nonzero <= sum(layers[(1, 'ticket')].values())  # Zero outside the final mask.


def test_masks_move_at_each_update_and_are_recorded(ran):
  study, store = ran
  rows = store.results.rows(results.DST)
  for arm in ('set', 'rigl'):
    mine = [r for r in rows if r['arm'] == arm]
    assert [r['step'] for r in mine] == [10, 20]  # Updates before end_step=25 only.
    for r in mine:
      expected = float(dst.drop_fraction(r['step'], initial=0.3, end_step=25))
      assert r['drop_fraction'] == pytest.approx(expected)
      assert 0 < r['changed'] <= r['drop_fraction'] + 0.01  # Changed ≤ the dropped share.
      assert 0 < r['overlap_with_ticket'] < 1
  assert not [r for r in rows if r['arm'] in ('ticket', 'static', 'random_prune')]


def test_vmapped_equals_sequential(ran):
  study, store = ran
  vmapped = tiny_study(levels=1, arms=ARMS, parallel='true')
  vmapped.dst = study.dst
  other = levels.train_levels(vmapped)
  steps = lambda s: [(r['arm'], r['step']) for r in s.results.rows(results.DST)]  # noqa: E731
  assert steps(other) == steps(store)
  mine = {(r['level'], r['arm']): r for r in store.summary}
  for r in other.summary:
    assert r['test_accuracy_at_early_stop'] == pytest.approx(
      mine[(r['level'], r['arm'])]['test_accuracy_at_early_stop'], abs=0.03)  # fmt: skip


# ---------------------------------------------------------------------------- on disk


@pytest.fixture(scope='module')
def on_disk(fashion_mnist_dir, tmp_path_factory):
  config = dst_smoke(fashion_mnist_dir)
  workdir = tmp_path_factory.mktemp('dst')
  commands.run(config, workdir, log=lambda line: None, progress=False)
  (run_dir,) = [p for p in workdir.iterdir() if (p / 'config.json').exists()]
  return config, run_dir


def dst_smoke(data_dir):
  config = lenet300.get_config('smoke')
  config.data.data_dir, config.parallel = data_dir, 'false'
  config.arms, config.num_levels = 'ticket,rigl', 1
  config.dst.update_every, config.dst.distribution = 20, 'erk'
  return config


def test_a_run_resumed_at_an_update_step_is_bit_identical(on_disk, tmp_path, monkeypatch):
  config, reference = on_disk
  # Level 1's rigl run (after level 0 and level 1's ticket), stopped after its update and its
  # checkpoint at step 40.
  run_dir = interrupted_then_resumed(config, tmp_path, monkeypatch, call=3, step=45)
  for table in (results.SUMMARY, results.DST, results.LAYERS):
    assert (run_dir / table).read_bytes() == (reference / table).read_bytes(), table
  rows = results.read_rows(run_dir / results.DST)
  assert [r['step'] for r in rows] == ['20', '40']  # Every 20 before 0.75 x 60 = 45.


def test_the_report_shows_the_moving_masks(on_disk):
  _, run_dir = on_disk
  report.write_report(run_dir)
  text = (run_dir / 'report' / 'report.md').read_text()
  assert 'Masks that move: SET and RigL' in text
  assert (run_dir / 'report' / 'moving_masks.png').stat().st_size > 1000
  rows = results.read_rows(run_dir / results.DST)
  changed = sum(float(r['changed']) for r in rows)
  line = next(t for t in text.splitlines() if t.startswith('| rigl | 1 |'))
  assert line.split('|')[4].strip() == '2' and line.split('|')[5].strip() == f'{100 * changed:.2f}'

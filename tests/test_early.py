"""The arms that prune early: counts equal the ticket's, each against its definition."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lth_jax import arms, make_study
from lth_jax.arms import at_init
from lth_jax.core import masks as masks_lib
from lth_jax.core import pools
from lth_jax.core.plan import make_plan
from lth_jax.core.train import DataArrays
from lth_jax.study import levels, programs
from lth_jax.study import progress as progress_lib
from lth_jax.study.definition import control_key

NEW_ARMS = ('snip', 'grasp', 'synflow', 'magnitude_init', 'signed_constant', 'supermask')


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(24, name='dense_0')(x))
    x = nn.relu(nn.Dense(16, name='dense_1')(x))
    return nn.Dense(4, name='output')(x)


def tiny_data(n=400, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 4, n).astype(np.int32)
  centers = rng.normal(size=(4, 12)).astype(np.float32)
  x = centers[y] + 0.8 * rng.normal(size=(n, 12)).astype(np.float32)
  return x, y


def tiny_study(*, levels=2, arms=('ticket', 'random_prune', *NEW_ARMS), parallel='false', **kw):
  x, y = tiny_data()
  settings = {'samples_per_class': 3, 'supermask_steps': 100, 'supermask_lr': 0.05}
  return make_study(
    MLP(), train=(x[:300], y[:300]), test=(x[300:], y[300:]), validation=60,
    optimizer=optax.adam(3e-3), num_steps=30, eval_every=10, batch_size=20,
    num_levels=levels, arms=arms, seeds=1, parallel=parallel, at_init=settings, **kw,
  )  # fmt: skip


@pytest.fixture(scope='module')
def ran():
  study = tiny_study()
  return study, levels.train_levels(study)


def masks_of(store, level, arm, seed=0):
  name = f'seed_{seed}/level_{level}/{arm}'
  return jax.tree.map(lambda p: np.asarray(p) != 0, store.load(name)['params'])


def test_every_arm_keeps_the_tickets_number_of_weights(ran):
  study, store = ran
  layers = {}
  for r in store.layers:
    layers.setdefault((r['level'], r['arm']), {})[r['layer']] = r['kept']
  for level in (1, 2):
    ticket = layers[(level, 'ticket')]
    for arm in ('random_prune', *NEW_ARMS):
      got = layers[(level, arm)]
      assert sum(got.values()) == sum(ticket.values()), (level, arm)
      assert got['output'] == ticket['output'], (level, arm)  # The plan prunes it apart.
      if arm in ('random_prune', 'signed_constant', 'supermask'):
        assert got == ticket, (level, arm)  # The ticket's per-layer counts.


def test_scored_arms_rank_globally_over_hidden_layers_and_alone_in_the_output(ran):
  study, store = ran
  state_k = store.load('seed_0/rewind')  # θ0 here (rewind_step 0): the whole state.
  ticket = store.load('seed_0/level_1/masks')
  got = jax.device_get(
    study.start('magnitude_init', state_k, ticket, control_key(0, 1, 'magnitude_init')).masks
  )
  theta = jax.device_get(state_k.params)
  hidden = np.concatenate([np.abs(theta[n]['kernel']).ravel() for n in ('dense_0', 'dense_1')])
  count = sum(int(np.sum(ticket[n]['kernel'])) for n in ('dense_0', 'dense_1'))
  threshold = np.sort(hidden)[::-1][count - 1]  # By hand: the count-th largest |θ0|.
  for n in ('dense_0', 'dense_1'):
    np.testing.assert_array_equal(got[n]['kernel'], np.abs(theta[n]['kernel']) >= threshold)
  out = np.abs(theta['output']['kernel'])
  k = int(np.sum(ticket['output']['kernel']))
  np.testing.assert_array_equal(got['output']['kernel'], out >= np.sort(out.ravel())[::-1][k - 1])
  assert bool(np.all(got['dense_0']['bias']))


def test_signed_constant_is_sign_times_the_layers_init_std(ran):
  study, store = ran
  state_k = store.load('seed_0/rewind')
  ticket = store.load('seed_0/level_1/masks')
  got = study.start('signed_constant', state_k, ticket, control_key(0, 1, 'signed_constant'))
  for name in ('dense_0', 'dense_1', 'output'):
    theta0 = np.asarray(state_k.params[name]['kernel'])
    m = np.asarray(ticket[name]['kernel'])
    expected = np.where(m, np.sign(theta0) * theta0.std(), 0.0)
    np.testing.assert_allclose(np.asarray(got.params[name]['kernel']), expected, rtol=1e-6)
    np.testing.assert_array_equal(got.params[name]['bias'], state_k.params[name]['bias'])


def test_supermask_trains_no_weight_and_records_its_masked_init_accuracy(ran):
  study, store = ran
  theta0 = store.load('seed_0/init')['params']
  rows = [r for r in store.summary if r['arm'] == 'supermask']
  assert [r['level'] for r in rows] == [1, 2]
  for row in rows:
    trained = store.load(f'seed_0/level_{row["level"]}/supermask')['params']
    for p, p0 in zip(jax.tree.leaves(trained), jax.tree.leaves(theta0), strict=True):
      kept = np.asarray(p) != 0
      np.testing.assert_array_equal(np.asarray(p)[kept], np.asarray(p0)[kept])  # Frozen θ0.
    assert row['early_stop_step'] == '' and row['final_step'] == 0  # Nothing trained ...
    assert row['mask_steps'] == study.at_init.supermask_steps  # ... but its mask.
    state = jax.device_get(study.initial_state(0))  # Pruned weights are exact zeros:
    dense = masks_lib.ones_like(trained)  # the dense forward of them is the masked one.
    acc = study.trainer(vmapped=False).evaluate(state._replace(params=trained, masks=dense))
    assert row['test_accuracy_at_early_stop'] == pytest.approx(float(acc['test_accuracy']))


def test_supermask_beats_chance(ran):
  _, store = ran
  rows = [r for r in store.summary if r['arm'] == 'supermask']
  assert min(r['test_accuracy_at_early_stop'] for r in rows) > 0.5  # Chance: 0.25.


def test_early_arms_compile_once_per_study(ran):
  study, store = ran
  study.num_levels = 3
  levels.train_levels(study, store)  # A third level: new masks, the same programs.
  assert {r['arm'] for r in store.summary if r['level'] == 3} >= set(NEW_ARMS)
  for arm in NEW_ARMS:
    assert programs.arm_start(arms.get(arm), study.context)._cache_size() == 1, arm


def test_balanced_batch_takes_that_many_of_each_class():
  y = jnp.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
  data = DataArrays(jnp.arange(10)[:, None], y)
  xb, yb = at_init.balanced_batch(jax.random.key(0), data, per_class=2, num_classes=3)
  assert sorted(np.asarray(yb).tolist()) == [0, 0, 1, 1, 2, 2]
  assert len(set(np.asarray(xb).ravel().tolist())) == 6


def test_collapsed_layers_are_named():
  params = MLP().init(jax.random.key(0), jnp.zeros((1, 5)))['params']
  plan = make_plan(params)
  masks = masks_lib.ones_like(params)
  assert plan.collapsed_layers(masks) == ''
  for layer in ('dense_0', 'output'):
    masks[layer]['kernel'] = jnp.zeros_like(masks[layer]['kernel'])
  masks['dense_1']['kernel'] = masks['dense_1']['kernel'].at[0, 0].set(False)
  assert plan.collapsed_layers(masks) == 'dense_0;output'


def test_layer_collapse_is_reported_in_the_summary_and_the_log():
  # Global pruning of 97% of survivors per level: two levels leave ~0.1% of the
  # weights, all in the layer with the largest magnitudes.
  study = tiny_study(
    levels=2, arms=('ticket',),
    pruning={'strategy': 'global', 'rate': 0.97, 'prune_output': True},
  )  # fmt: skip
  lines = []
  store = levels.MemoryStore()
  levels.train_levels(study, store, progress_lib.LogProgress(1, 0, log=lines.append))
  rows = {r['level']: r for r in store.summary}
  kept = {r['layer']: r['kept'] for r in store.layers if r['level'] == 2}
  expected = ';'.join(n for n in ('dense_0', 'dense_1', 'output') if kept[n] == 0)
  assert expected  # The net did collapse ...
  assert rows[2]['collapsed_layers'] == expected  # ... and the row says where,
  assert rows[0]['collapsed_layers'] == ''
  assert any(line.startswith('layer collapse: seed 0 level 2 ticket') for line in lines)


def test_each_new_arm_vmapped_equals_sequential(ran):
  _, sequential = ran
  vmapped = levels.train_levels(tiny_study(levels=1, parallel='true'))
  seq = {(r['level'], r['arm']): r for r in sequential.summary if r['level'] <= 1}
  vm = {(r['level'], r['arm']): r for r in vmapped.summary}
  assert seq.keys() == vm.keys()
  for key, row in vm.items():
    assert row['weights_remaining'] == seq[key]['weights_remaining']
    assert row['test_accuracy_at_early_stop'] == pytest.approx(
      seq[key]['test_accuracy_at_early_stop'], abs=0.02
    ), key
  for arm in NEW_ARMS:  # The same start: identical masks, arm by arm.
    for a, b in zip(
      jax.tree.leaves(masks_of(vmapped, 1, arm)), jax.tree.leaves(masks_of(sequential, 1, arm))
    ):
      np.testing.assert_array_equal(a, b)


def test_the_same_key_gives_the_same_start(ran):
  study, store = ran
  state_k = store.load('seed_0/rewind')
  ticket = store.load('seed_0/level_1/masks')
  for arm in ('snip', 'grasp', 'supermask'):
    a = study.start(arm, state_k, ticket, control_key(0, 1, arm))
    b = study.start(arm, state_k, ticket, control_key(0, 1, arm))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      np.testing.assert_array_equal(x, y)


def test_imp_prunes_by_the_criterion_with_theta0_from_the_store():
  study = tiny_study(levels=1, arms=('ticket',), pruning={'criterion': 'movement'})
  store = levels.train_levels(study)
  init, final = store.load('seed_0/init')['params'], store.load('seed_0/level_0/ticket')['params']
  masks = store.load('seed_0/level_1/masks')
  for layer, rate in (('dense_0', 0.2), ('dense_1', 0.2), ('output', 0.1)):
    movement = np.abs(np.asarray(final[layer]['kernel']) - np.asarray(init[layer]['kernel']))
    keep = movement.size - round(rate * movement.size)
    threshold = np.sort(movement.ravel())[::-1][keep - 1]  # By hand: no ties in floats here.
    np.testing.assert_array_equal(masks[layer]['kernel'], movement >= threshold)


def test_the_bisected_top_k_keeps_the_exact_count_of_distinct_scores():
  values = jax.random.normal(jax.random.key(0), (300, 40))
  masks = jax.random.uniform(jax.random.key(1), (300, 40)) < 0.7
  for count in (0, 1, 977, int(masks.sum())):
    got = pools.select_by_threshold({'w': values}, {'w': masks}, pools={'w': 0}, counts={0: count})
    exact = pools.select({'w': values}, {'w': masks}, pools={'w': 0}, counts={0: count})
    np.testing.assert_array_equal(got['w'], exact['w'])

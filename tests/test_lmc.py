"""The pair trained from θk: vmapped == sequential, same noise → zero instability, exact endpoints."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import lenet300
from lth_jax.analyses import lmc
from lth_jax.core import connectivity
from lth_jax.core import masks as masks_lib
from lth_jax.core import train as train_lib
from lth_jax.study import from_config, levels


@pytest.fixture(scope='module')
def imp_study(fashion_mnist_dir, fashion_mnist):
  config = lenet300.get_config('smoke')
  config.data.data_dir = fashion_mnist_dir
  config.arms = 'ticket'
  config.num_levels = 1
  config.num_steps = 40
  config.rewind_step = 20
  config.parallel = 'false'
  study = from_config.from_config(config, dataset=fashion_mnist)
  return study, levels.train_levels(study)


def test_pair_starts_from_the_rewound_ticket(imp_study):
  study, store = imp_study
  start = lmc.pair_start(study, store, 0, 1)
  assert int(start.step) == 20
  masks = store.load('seed_0/level_1/masks')
  for p, m in zip(jax.tree.leaves(start.params), jax.tree.leaves(masks), strict=True):
    assert not np.any(np.asarray(p)[~np.asarray(m)])
  assert study.plan.fraction_remaining(start.masks) < 1.0


def test_vmapped_pair_equals_two_sequential_trainings(imp_study):
  study, store = imp_study
  start = lmc.pair_start(study, store, 0, 1)
  keys = lmc.pair_data_keys(0)
  pair = lmc.train_pair(lmc.pair_trainer(study), start, keys, until=study.num_steps)
  steps, _ = train_lib.compiled(study.task, vmapped=False)
  for key, trained in zip(keys, pair, strict=True):
    alone, _ = steps(jax.device_get(start), study.train, key, study.num_steps - 20)
    assert int(trained.step) == int(alone.step) == study.num_steps
    # Batched and unbatched products round differently: equal to float tolerance.
    for x, y in zip(jax.tree.leaves(trained.params), jax.tree.leaves(alone.params), strict=True):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
  a, b = pair
  assert not np.array_equal(a.params['output']['kernel'], b.params['output']['kernel'])


def test_the_pair_follows_parallel(imp_study):
  """One after the other or in threads: each copy is the plain training, bit for bit."""
  study, store = imp_study
  start = lmc.pair_start(study, store, 0, 1)
  keys = lmc.pair_data_keys(0)
  steps, _ = train_lib.compiled(study.task, vmapped=False)
  alone = [steps(jax.device_get(start), study.train, k, study.num_steps - 20)[0] for k in keys]
  execution = study.execution
  try:
    for threads in (1, 2):
      study.execution = dataclasses.replace(execution, vmapped=False, threads=threads)
      copies = lmc.train_copies(study, start, keys, until=study.num_steps)
      for trained, expected in zip(copies, alone, strict=True):
        for x, y in zip(jax.tree.leaves(trained), jax.tree.leaves(expected), strict=True):
          np.testing.assert_array_equal(x, y)
  finally:
    study.execution = execution


def test_same_noise_gives_identical_copies_and_zero_instability(imp_study):
  study, store = imp_study
  start = lmc.pair_start(study, store, 0, 1)
  key = lmc.pair_data_keys(0)[0]
  a, b = lmc.train_pair(lmc.pair_trainer(study), start, (key, key), until=study.num_steps)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)
  _, _, errors = lmc.path(study, a, b, num_alphas=7, bn_recompute=True, seed=0)
  assert np.all(errors == errors[0])
  assert float(connectivity.instability(errors)) == 0.0


def test_path_endpoints_are_the_trained_networks_errors(imp_study):
  study, store = imp_study
  row, curve = lmc.measure(study, store, 0, 1, num_alphas=5, bn_recompute=True)
  start = lmc.pair_start(study, store, 0, 1)
  a, b = lmc.train_copies(study, start, lmc.pair_data_keys(0), until=40)  # As measure trains.
  evaluate = jax.jit(train_lib.evaluate, static_argnums=0)
  test = study.eval_splits['test']
  assert row['error_a'] == float(1.0 - evaluate(study.task, a, test)[1])
  assert row['error_b'] == float(1.0 - evaluate(study.task, b, test)[1])
  assert [r['alpha'] for r in curve] == [0.0, 0.25, 0.5, 0.75, 1.0]
  assert row['max_path_error'] == max(r['test_error'] for r in curve)
  expected = row['max_path_error'] - (row['error_a'] + row['error_b']) / 2
  assert row['instability'] == pytest.approx(expected, abs=1e-7)
  assert row['weights_remaining'] == study.plan.fraction_remaining(start.masks)
  # Every interpolated network keeps the pruned weights at exactly zero.
  for alpha in connectivity.alphas(5):
    mixed = connectivity.interpolate(a.params, b.params, start.masks, alpha)
    pruned = masks_lib.apply(mixed, jax.tree.map(np.logical_not, start.masks))
    assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(pruned))


def test_pairs_are_recorded_once_and_resumed(imp_study, tmp_path):
  study, store = imp_study
  lmc.run_pairs(study, store, tmp_path, levels=(0, 1), num_alphas=3, bn_recompute=True, log=print)
  rows = lmc.finished(tmp_path)
  assert rows == {(0, 0), (0, 1)}
  text = (tmp_path / lmc.INSTABILITY).read_text()
  # A kill between a pair's interpolation rows and its instability row: those rows go, the pair reruns.
  lines = text.splitlines(keepends=True)
  (tmp_path / lmc.INSTABILITY).write_text(''.join(lines[:-1]))
  lmc.run_pairs(study, store, tmp_path, levels=(0, 1), num_alphas=3, bn_recompute=True, log=print)
  assert (tmp_path / lmc.INSTABILITY).read_text() == text
  interpolation = (tmp_path / lmc.INTERPOLATION).read_text().splitlines()
  assert interpolation[0] == 'seed,level,rewind_step,alpha,test_loss,test_error'
  assert len(interpolation) == 1 + 2 * 3


def test_the_group_loop_gives_the_numbers_of_vmap(imp_study):
  """One data-order decision per group (``group_train_steps``) against ``vmap`` of the one-run
  loop (which redraws the order at every step): the same numbers, across an epoch boundary."""
  study, store = imp_study
  start = jax.device_get(lmc.pair_start(study, store, 0, 1))
  keys = jnp.stack(lmc.pair_data_keys(0))
  stacked = lambda: jax.tree.map(lambda x: np.stack([x, x]), start)  # noqa: E731
  steps = 60  # Several epochs of the smoke split (1,000 examples: 16 batches of 60 each).
  group, _ = train_lib.group_train_steps(study.task, stacked(), study.train, keys, steps)
  each, _ = jax.vmap(train_lib.train_steps, in_axes=(None, 0, None, 0, None))(
    study.task, stacked(), study.train, keys, steps
  )
  for x, y in zip(jax.tree.leaves(group), jax.tree.leaves(each), strict=True):
    np.testing.assert_array_equal(x, y)

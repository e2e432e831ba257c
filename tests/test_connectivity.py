"""Interpolation, instability and the evaluated path against hand computations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fake_data import fake_data

from lth_jax.core import connectivity, pruning
from lth_jax.core import masks as masks_lib
from lth_jax.core import train as train_lib


def test_alpha_grid_is_even_with_both_endpoints():
  grid = np.asarray(connectivity.alphas())
  assert len(grid) == 31 and grid[0] == 0.0 and grid[-1] == 1.0
  np.testing.assert_allclose(np.diff(grid), 1 / 30, rtol=1e-5)
  assert np.asarray(connectivity.alphas(3)).tolist() == [0.0, 0.5, 1.0]
  with pytest.raises(ValueError, match='at least its 2 endpoints'):
    connectivity.alphas(1)


def test_interpolate_by_hand_and_masked():
  a = {'w': jnp.array([1.0, 2.0, -4.0]), 'b': jnp.array([0.5])}
  b = {'w': jnp.array([3.0, -2.0, 8.0]), 'b': jnp.array([1.5])}
  masks = {'w': jnp.array([True, False, True]), 'b': jnp.array([True])}
  mid = connectivity.interpolate(a, b, masks, 0.25)
  # 0.75·a + 0.25·b: [1.5, 1.0 → pruned, -1.0]; bias 0.75.
  np.testing.assert_allclose(mid['w'], [1.5, 0.0, -1.0])
  np.testing.assert_allclose(mid['b'], [0.75])
  assert float(mid['w'][1]) == 0.0
  np.testing.assert_allclose(connectivity.interpolate(a, b, masks, 0.75)['w'], [2.5, 0.0, 5.0])
  # Exact endpoints, and exactly the same network when both ends are the same.
  for alpha, end in ((0.0, a), (1.0, b)):
    got = connectivity.interpolate(a, b, masks, alpha)
    np.testing.assert_array_equal(got['w'], np.where(masks['w'], end['w'], 0.0))
  c = {'w': jnp.array([0.1, 0.7, 1 / 3]), 'b': jnp.array([0.3])}
  for alpha in np.asarray(connectivity.alphas()):
    got = connectivity.interpolate(c, c, masks, alpha)['w']
    np.testing.assert_array_equal(got, np.where(masks['w'], c['w'], 0.0))


def test_instability_by_hand():
  # max 0.3 − mean(0.1, 0.2) = 0.15; a path below its endpoints' mean gives a negative barrier.
  assert float(connectivity.instability(jnp.array([0.1, 0.3, 0.2]))) == pytest.approx(0.15)
  assert float(connectivity.instability(jnp.array([0.2, 0.2]))) == 0.0
  batch = connectivity.instability(jnp.array([[0.1, 0.5, 0.3], [0.4, 0.1, 0.2]]))
  np.testing.assert_allclose(batch, [0.3, 0.1], rtol=1e-6)


class SmallMLP(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = nn.relu(nn.Dense(32, name='hidden')(x.reshape((x.shape[0], -1))))
    return nn.Dense(10, name='output')(x)


def _trained_pair(key):
  task = train_lib.Task(SmallMLP(), optax.adam(1e-2), batch_size=30, mean=(0.5,), std=(0.25,))
  params, model_state = train_lib.init_variables(task.model, key, (28, 28, 1))
  rates = pruning.layer_rates(params, dense=0.6, output=0.3)
  masks = pruning.prune_layerwise(params, masks_lib.ones_like(params), rates=rates)
  start = train_lib.create_state(task, params, model_state, masks)
  steps, _ = train_lib.compiled(task, vmapped=False)
  data = fake_data(300)
  state_a, _ = steps(jax.device_get(start), data, jax.random.key(1), 10)
  state_b, _ = steps(jax.device_get(start), data, jax.random.key(2), 10)
  return task, state_a, state_b


def test_path_is_the_evaluation_of_each_interpolated_network(key):
  task, state_a, state_b = _trained_pair(key)
  test = fake_data(200, seed=3)
  split = train_lib.make_eval_split(np.asarray(test.x), np.asarray(test.y), 100)
  grid = connectivity.alphas(5)
  losses, errors = jax.jit(connectivity.path_metrics, static_argnums=0)(
    task, state_a, state_b, split, grid
  )
  evaluate = jax.jit(train_lib.evaluate, static_argnums=0)
  interpolate = jax.jit(connectivity.interpolate)
  for i, alpha in enumerate(np.asarray(grid)):
    state = state_a._replace(
      params=interpolate(state_a.params, state_b.params, state_a.masks, alpha)
    )
    loss, accuracy = evaluate(task, state, split)
    assert float(errors[i]) == pytest.approx(1 - float(accuracy), abs=1e-6)
    assert float(losses[i]) == pytest.approx(float(loss), rel=1e-5)
  # The endpoints are the two trained networks' errors, exactly.
  assert float(errors[0]) == float(1.0 - evaluate(task, state_a, split)[1])
  assert float(errors[-1]) == float(1.0 - evaluate(task, state_b, split)[1])


class TinyBN(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = nn.Dense(3, name='hidden')(x.reshape((x.shape[0], -1)))
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name='bn')(x)
    return nn.Dense(10, name='output')(x)


def test_batch_norm_statistics_recomputed_as_a_running_average_by_hand(key):
  task = train_lib.Task(TinyBN(), optax.sgd(0.1), batch_size=10, mean=(0.5,), std=(0.25,))
  params, model_state = train_lib.init_variables(task.model, key, (4, 4, 1))
  masks = masks_lib.ones_like(params)
  masks['hidden']['kernel'] = masks['hidden']['kernel'].at[0].set(False)
  state = train_lib.create_state(task, params, model_state, masks)
  rng = np.random.default_rng(0)
  data = train_lib.DataArrays(
    jnp.asarray(rng.integers(0, 256, (40, 4, 4, 1), dtype=np.uint8)), jnp.zeros(40, jnp.int32)
  )
  out = connectivity.recompute_batch_stats(task, state, data, jax.random.key(5), num_batches=4)
  # By hand: the masked hidden layer's outputs on the 4 batches of one epoch order,
  # then mean ← 0.9·mean + 0.1·batch mean (var likewise, the biased batch variance).
  order = np.asarray(train_lib.epoch_order(jax.random.key(5), 0, 40))
  kernel = np.where(masks['hidden']['kernel'], params['hidden']['kernel'], 0.0)
  mean = np.asarray(model_state['batch_stats']['bn']['mean'])
  var = np.asarray(model_state['batch_stats']['bn']['var'])
  for idx in order.reshape(4, 10):
    x = (np.asarray(data.x)[idx].reshape(10, -1) / 255.0 - 0.5) / 0.25
    h = x @ kernel + np.asarray(params['hidden']['bias'])
    mean = 0.9 * mean + 0.1 * h.mean(0)
    var = 0.9 * var + 0.1 * h.var(0)
  np.testing.assert_allclose(out.model_state['batch_stats']['bn']['mean'], mean, rtol=1e-4)
  np.testing.assert_allclose(out.model_state['batch_stats']['bn']['var'], var, rtol=1e-4)
  # A network without model state is left alone.
  plain = train_lib.Task(SmallMLP(), optax.sgd(0.1), batch_size=10)
  p, s = train_lib.init_variables(plain.model, key, (4, 4, 1))
  mlp = train_lib.create_state(plain, p, s)
  assert connectivity.recompute_batch_stats(plain, mlp, data, key) is mlp


def test_path_of_a_batch_norm_network_recomputes_statistics_at_every_alpha(key):
  task = train_lib.Task(TinyBN(), optax.adam(1e-2), batch_size=10, mean=(0.5,), std=(0.25,))
  params, model_state = train_lib.init_variables(task.model, key, (4, 4, 1))
  start = train_lib.create_state(task, params, model_state)
  rng = np.random.default_rng(1)
  data = train_lib.DataArrays(
    jnp.asarray(rng.integers(0, 256, (60, 4, 4, 1), dtype=np.uint8)),
    jnp.asarray(rng.integers(0, 10, 60), jnp.int32),
  )
  steps, _ = train_lib.compiled(task, vmapped=False)
  a, _ = steps(jax.device_get(start), data, jax.random.key(1), 12)
  b, _ = steps(jax.device_get(start), data, jax.random.key(2), 12)
  split = train_lib.make_eval_split(np.asarray(data.x), np.asarray(data.y), 30)
  grid = connectivity.alphas(3)
  bn_key = jax.random.key(7)
  losses, _ = connectivity.path_metrics(task, a, b, split, grid, bn_data=data, bn_key=bn_key)
  plain, _ = connectivity.path_metrics(task, a, b, split, grid)
  for i, alpha in enumerate(np.asarray(grid)):
    mixed = connectivity.interpolate_state(a, b, alpha)
    recomputed = connectivity.recompute_batch_stats(task, mixed, data, bn_key)
    assert float(losses[i]) == pytest.approx(
      float(train_lib.evaluate(task, recomputed, split)[0]), rel=1e-5
    )
    assert float(plain[i]) == pytest.approx(
      float(train_lib.evaluate(task, mixed, split)[0]), rel=1e-5
    )
  assert not np.allclose(losses, plain)  # The statistics did change.

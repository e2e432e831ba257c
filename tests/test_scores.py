"""Scores at initialization against hand computations of their definitions."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from lth_jax.arms import scores
from lth_jax.core import pools as pools_lib


class Tiny(nn.Module):
  bias: bool = True

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(5, use_bias=self.bias, name='dense_0')(x))
    x = nn.tanh(nn.Dense(4, use_bias=self.bias, name='dense_1')(x))
    return nn.Dense(3, use_bias=self.bias, name='output')(x)


def setup(bias=True):
  model = Tiny(bias)
  params = model.init(jax.random.key(0), jnp.zeros((1, 6)))['params']
  x = jax.random.normal(jax.random.key(1), (8, 6))
  y = jnp.arange(8) % 3
  masks = jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)
  return model, params, masks, (x, y)


def apply_fn(model):
  return lambda p, x: model.apply({'params': p}, x)


def test_snip_is_abs_gradient_times_weight():
  model, params, masks, (x, y) = setup()

  def loss(p):  # Written out here, apart from the library.
    logits = model.apply({'params': p}, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

  grads = jax.jit(jax.grad(loss))(params)
  got = jax.jit(functools.partial(scores.snip, apply_fn=apply_fn(model)))(params, masks, (x, y))
  for g, w, s in zip(jax.tree.leaves(grads), jax.tree.leaves(params), jax.tree.leaves(got)):
    np.testing.assert_allclose(s, np.abs(np.asarray(g) * np.asarray(w)), rtol=1e-5, atol=1e-8)


def test_snip_of_a_pruned_weight_is_zero():
  model, params, masks, batch = setup()
  masks['dense_0']['kernel'] = masks['dense_0']['kernel'].at[0, 0].set(False)
  got = jax.jit(functools.partial(scores.snip, apply_fn=apply_fn(model)))(params, masks, batch)
  assert got['dense_0']['kernel'][0, 0] == 0.0


def test_grasp_is_minus_weight_times_the_explicit_hessian_gradient_over_the_weights():
  model, params, masks, (x, y) = setup()
  temperature = 3.0
  kernels = {name: layer['kernel'] for name, layer in params.items()}  # The prunable weights.
  flat, unravel = ravel_pytree(kernels)

  def loss(v):  # The biases held fixed: g and H over the weights alone.
    w = unravel(v)
    p = {name: {**layer, 'kernel': w[name]} for name, layer in params.items()}
    logits = model.apply({'params': p}, x) / temperature
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  g = jax.jit(jax.grad(loss))(flat)
  hessian = jax.jit(jax.hessian(loss))(flat)  # The whole matrix: only a tiny net allows it.
  expected = unravel(-flat * (hessian @ g))
  weights = jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == 'kernel', params)
  grasp = functools.partial(
    scores.grasp, apply_fn=apply_fn(model), weights=weights, temperature=temperature
  )
  got = jax.jit(grasp)(params, masks, (x, y))
  for name in params:
    np.testing.assert_allclose(got[name]['kernel'], expected[name], rtol=1e-4, atol=1e-9)
    assert not np.any(np.asarray(got[name]['bias']))  # Not weights: not scored.
  assert max(np.abs(np.asarray(e)).max() for e in jax.tree.leaves(expected)) > 1e-6
  # Over all parameters (biases in g and H) the scores differ: the fix is not a no-op.
  full_flat, full_unravel = ravel_pytree(params)

  def full_loss(v):
    logits = model.apply({'params': full_unravel(v)}, x) / temperature
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  full_g = jax.grad(full_loss)(full_flat)
  everything = full_unravel(-full_flat * (jax.hessian(full_loss)(full_flat) @ full_g))
  assert not np.allclose(everything['dense_0']['kernel'], expected['dense_0'], rtol=1e-3)


def test_synflow_conserves_the_total_score_of_every_layer():
  relu = ReluTiny()
  params = jax.tree.map(jnp.abs, relu.init(jax.random.key(3), jnp.zeros((1, 6)))['params'])
  masks = jax.tree.map(lambda a: jnp.ones(a.shape, bool), params)
  fn = lambda q, x: relu.apply({'params': q}, x)
  got = scores.synflow(params, masks, apply_fn=fn, input_shape=(6,))
  totals = [float(jnp.sum(got[layer]['kernel'])) for layer in ('dense_0', 'dense_1', 'output')]
  r = float(jnp.sum(fn(params, jnp.ones((1, 6)))))  # R, computed apart.
  assert r > 0
  np.testing.assert_allclose(totals, [r, r, r], rtol=1e-5)


class ReluTiny(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(5, use_bias=False, name='dense_0')(x))
    x = nn.relu(nn.Dense(4, use_bias=False, name='dense_1')(x))
    return nn.Dense(3, use_bias=False, name='output')(x)


def test_synflow_is_data_free_and_uses_absolute_values():
  model, params, masks, _ = setup()
  negated = jax.tree.map(lambda p: -p, params)
  fn = apply_fn(model)
  a = scores.synflow(params, masks, apply_fn=fn, input_shape=(6,))
  b = scores.synflow(negated, masks, apply_fn=fn, input_shape=(6,))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_select_keeps_exact_counts_per_pool_and_never_revives():
  scores_tree = {'a': jnp.array([5.0, 4.0, 3.0]), 'b': jnp.array([10.0, 1.0]), 'c': jnp.ones(2)}
  masks = {
    'a': jnp.array([True, False, True]),
    'b': jnp.array([True, True]),
    'c': jnp.ones(2, bool),
  }
  pools = {'a': 0, 'b': 0, 'c': pools_lib.FIXED}
  got = pools_lib.select(scores_tree, masks, pools=pools, counts={0: 2})
  # Survivors 5, 3, 10, 1: the top two are 10 (b[0]) and 5 (a[0]); a[1] (4) was pruned.
  assert got['a'].tolist() == [True, False, False]
  assert got['b'].tolist() == [True, False]
  assert got['c'].tolist() == [True, True]


def test_exponential_schedule_ends_at_the_target():
  alive, target = jnp.asarray(1000), jnp.asarray(10)
  counts = [int(scores.exponential_counts(alive, target, r, 4)) for r in range(1, 5)]
  assert counts == [316, 100, 32, 10]  # 1000 · 0.01^(r/4), rounded.


def test_synflow_masks_reach_exact_counts_with_nested_rounds():
  model, params, masks, _ = setup()
  pools = jax.tree.map(lambda _: pools_lib.FIXED, params)
  for layer in ('dense_0', 'dense_1'):
    pools[layer]['kernel'] = 0
  pools['output']['kernel'] = 1
  got = scores.synflow_masks(
    params, masks, apply_fn=apply_fn(model), input_shape=(6,), pools=pools,
    counts={0: 9, 1: 4}, rounds=10,
  )  # fmt: skip
  assert int(got['dense_0']['kernel'].sum() + got['dense_1']['kernel'].sum()) == 9
  assert int(got['output']['kernel'].sum()) == 4
  assert bool(got['dense_0']['bias'].all())
  # One round to the same count ranks once: the iterative masks may differ, never the counts.
  once = scores.synflow_masks(
    params, masks, apply_fn=apply_fn(model), input_shape=(6,), pools=pools,
    counts={0: 9, 1: 4}, rounds=1,
  )  # fmt: skip
  assert int(once['output']['kernel'].sum()) == 4


class BatchNormTiny(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = nn.Dense(5, name='dense_0')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name='bn')(x)
    return nn.Dense(3, name='output')(nn.relu(x))


def test_snip_and_grasp_score_batch_norm_in_train_mode_by_default():
  from lth_jax import arms
  from lth_jax.arms import at_init
  from lth_jax.core import train as train_lib
  from lth_jax.core.plan import make_plan

  model = BatchNormTiny()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 6)))
  params, state = variables['params'], {'batch_stats': variables['batch_stats']}
  x = jax.random.normal(jax.random.key(1), (8, 6)) * 3 + 1  # Far from the initial 0/1 stats.
  task = train_lib.Task(model, optax.sgd(0.1), 4)
  context = arms.Context(task, make_plan(params), (6,), 3, settings=at_init.Settings())
  assert at_init.Settings().bn_mode == 'train'
  by_batch = model.apply({'params': params, **state}, x, train=True, mutable=['batch_stats'])[0]
  running = model.apply({'params': params, **state}, x, train=False)
  np.testing.assert_allclose(context.apply_fn(state, batch_statistics=True)(params, x), by_batch)
  np.testing.assert_allclose(context.apply_fn(state)(params, x), running)
  assert not np.allclose(by_batch, running, atol=1e-3)  # The two modes do differ here.

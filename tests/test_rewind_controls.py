"""Rewinding restores θ0/θk exactly; every control changes only what it claims to."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fake_data import fake_data, make_task

from lth_jax import arms
from lth_jax.arms import controls
from lth_jax.core import pruning, rewind
from lth_jax.core import train as train_lib
from lth_jax.core.plan import make_plan


@pytest.fixture(scope='module')
def setup():
  task = make_task(optax.adam(1e-3))
  key = jax.random.key(0)
  params, model_state = train_lib.init_variables(task.model, key, (28, 28, 1))
  state0 = jax.device_get(train_lib.create_state(task, params, model_state))
  steps, _ = train_lib.compiled(task, vmapped=False)
  data = fake_data()
  state_k, _ = steps(jax.device_put(state0), data, jax.random.key(1), 7)
  state_k = jax.device_get(state_k)  # Keep a copy: the next call donates its input.
  state_t, _ = steps(jax.device_put(state_k), data, jax.random.key(1), 13)
  rates = pruning.layer_rates(params, dense=0.5, output=0.2)
  masks = pruning.prune_layerwise(state_t.params, state_k.masks, rates=rates)
  context = arms.Context(task, make_plan(params), (28, 28, 1), num_classes=10)
  return task, state0, state_k, masks, context


def init_fn(key):
  return train_lib.init_variables(make_task().model, key, (28, 28, 1))[0]


def kept_and_pruned(params, masks):
  for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks), strict=True):
    yield np.asarray(p), np.asarray(m)


def test_rewind_to_theta_k_is_exact(setup):
  _, _, state_k, masks, _ = setup
  ticket = rewind.rewind(state_k, masks)
  for (p, m), (pk, _) in zip(
    kept_and_pruned(ticket.params, masks), kept_and_pruned(state_k.params, masks), strict=True
  ):
    np.testing.assert_array_equal(p[m], pk[m])  # Bit for bit.
    assert not np.any(p[~m])
  assert int(ticket.step) == 7  # The schedule resumes at k ...
  chex.assert_trees_all_equal(ticket.opt_state, state_k.opt_state)  # ... with the optimizer at k.
  chex.assert_trees_all_equal(ticket.masks, masks)


def test_rewind_to_theta_0_is_exact(setup):
  _, state0, _, masks, _ = setup
  ticket = rewind.rewind(state0, masks)
  for (p, m), (p0, _) in zip(
    kept_and_pruned(ticket.params, masks), kept_and_pruned(state0.params, masks), strict=True
  ):
    np.testing.assert_array_equal(p[m], p0[m])
  assert int(ticket.step) == 0


def test_reinit_keeps_masks_and_draws_fresh_weights(setup):
  _, _, state_k, masks, context = setup
  out = controls.reinit(context, state_k, masks, jax.random.key(9))
  chex.assert_trees_all_equal(out.masks, masks)
  w, m = np.asarray(out.params['dense_0']['kernel']), np.asarray(masks['dense_0']['kernel'])
  fresh = np.asarray(init_fn(jax.random.key(9))['dense_0']['kernel'])
  np.testing.assert_array_equal(w[m], fresh[m])
  assert not np.any(w[~m])
  assert not np.allclose(w[m], np.asarray(state_k.params['dense_0']['kernel'])[m])


def test_random_prune_keeps_per_layer_counts_on_theta_k(setup):
  _, _, state_k, masks, context = setup
  out = controls.random_prune(context, state_k, masks, jax.random.key(3))
  assert context.plan.counts(out.masks) == context.plan.counts(masks)
  for (p, m), (pk, _) in zip(
    kept_and_pruned(out.params, out.masks), kept_and_pruned(state_k.params, out.masks), strict=True
  ):
    np.testing.assert_array_equal(p[m], pk[m])
    assert not np.any(p[~m])


def test_shuffle_permutes_kept_values_within_each_layer(setup):
  _, _, state_k, masks, context = setup
  out = controls.shuffle(context, state_k, masks, jax.random.key(4))
  chex.assert_trees_all_equal(out.masks, masks)
  for (p, m), (pk, _) in zip(
    kept_and_pruned(out.params, masks), kept_and_pruned(state_k.params, masks), strict=True
  ):
    np.testing.assert_array_equal(np.sort(p[m]), np.sort(pk[m]))  # Same values ...
    assert not np.any(p[~m])
    if m.sum() > 10:
      assert not np.array_equal(p[m], pk[m])  # ... at other positions.


def test_sign_reinit_keeps_signs_of_theta_k(setup):
  _, _, state_k, masks, context = setup
  out = controls.sign_reinit(context, state_k, masks, jax.random.key(5))
  w, wk = (
    np.asarray(out.params['dense_0']['kernel']),
    np.asarray(state_k.params['dense_0']['kernel']),
  )
  m = np.asarray(masks['dense_0']['kernel'])
  np.testing.assert_array_equal(np.sign(w[m]), np.sign(wk[m]))
  fresh = np.abs(np.asarray(init_fn(jax.random.key(5))['dense_0']['kernel']))
  np.testing.assert_array_equal(np.abs(w[m]), fresh[m])


def test_controls_are_jittable_and_vmappable(setup):
  _, _, state_k, masks, context = setup
  keys = jax.random.split(jax.random.key(0), 3)
  for name in ('ticket', 'reinit', 'random_prune', 'shuffle', 'sign_reinit'):
    control = functools.partial(arms.get(name).start, context)
    batched = jax.jit(jax.vmap(control, in_axes=(None, None, 0)))(state_k, masks, keys)
    one = jax.jit(control)(state_k, masks, keys[1])
    chex.assert_trees_all_equal(
      jax.tree.map(lambda x: x[1], batched.params), one.params, custom_message=name
    )
    assert jnp.shape(batched.step) == (3,)

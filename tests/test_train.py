"""Training: masks hold through optimizer steps, the data order is a pure function of the step."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fake_data import fake_data, layer_counts, make_task

from lth_jax.core import masks as masks_lib
from lth_jax.core import pruning
from lth_jax.core import train as train_lib


def pruned_state(task, key, rate=0.7):
  params, model_state = train_lib.init_variables(task.model, key, (28, 28, 1))
  masks = pruning.prune_layerwise(
    params, masks_lib.ones_like(params), rates=pruning.layer_rates(params, dense=rate, output=rate)
  )
  return train_lib.create_state(task, params, model_state, masks)


def zero_where_pruned(state):
  return all(
    not np.any(np.asarray(p)[~np.asarray(m)])
    for p, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(state.masks), strict=True)
  )


@pytest.mark.parametrize(
  'optimizer',
  [optax.adam(1e-2), optax.chain(optax.add_decayed_weights(1e-2), optax.sgd(0.1, momentum=0.9))],
  ids=['adam', 'sgd-momentum-weight-decay'],
)
def test_pruned_weights_stay_exactly_zero(key, optimizer):
  task = make_task(optimizer)
  state = pruned_state(task, key)
  assert zero_where_pruned(state)
  steps, _ = train_lib.compiled(task, vmapped=False)
  before = layer_counts(state.masks)
  state, loss = steps(state, fake_data(), jax.random.key(1), 200)
  assert np.isfinite(loss)
  assert int(state.step) == 200
  assert zero_where_pruned(state)
  assert layer_counts(state.masks) == before
  # Surviving weights did train.
  params0 = pruned_state(task, key).params
  moved = np.asarray(state.params['dense_0']['kernel']) != np.asarray(params0['dense_0']['kernel'])
  assert moved[np.asarray(state.masks['dense_0']['kernel'])].mean() > 0.9


def test_batches_are_a_pure_function_of_the_step():
  key = jax.random.key(4)
  whole = train_lib.batch_indices(key, 0, 25, num_examples=100, batch_size=8)
  part = train_lib.batch_indices(key, 7, 18, num_examples=100, batch_size=8)
  np.testing.assert_array_equal(whole[7:], part)
  # Each epoch (12 full batches of 8) visits distinct examples.
  first_epoch = np.asarray(whole[:12]).reshape(-1)
  assert len(set(first_epoch.tolist())) == 96
  assert not np.array_equal(whole[:12], whole[12:24])  # A fresh order each epoch.


def test_chunked_training_equals_one_call(key):
  task = make_task()
  steps, _ = train_lib.compiled(task, vmapped=False)
  data = fake_data()
  a, _ = steps(pruned_state(task, key), data, jax.random.key(2), 30)
  b, _ = steps(pruned_state(task, key), data, jax.random.key(2), 12)
  b, _ = steps(b, data, jax.random.key(2), 18)
  chex.assert_trees_all_equal(a.params, b.params)
  chex.assert_trees_all_equal(a.opt_state, b.opt_state)


def test_jit_equals_eager_and_same_seed_same_result(key):
  task = make_task()
  data = fake_data(240)
  jitted = jax.jit(train_lib.train_steps, static_argnums=(0, 4))
  a, la = jitted(task, pruned_state(task, key), data, jax.random.key(5), 2)
  b, lb = jitted(task, pruned_state(task, key), data, jax.random.key(5), 2)
  chex.assert_trees_all_equal(a.params, b.params)
  with jax.disable_jit():
    c, lc = train_lib.train_steps(task, pruned_state(task, key), data, jax.random.key(5), 2)
  chex.assert_trees_all_close(
    a.params, c.params, atol=2e-4
  )  # Adam amplifies ulp-level differences of near-zero gradients.
  assert float(la) == pytest.approx(float(lc), rel=1e-5)
  d, _ = jitted(task, pruned_state(task, key), data, jax.random.key(6), 2)
  assert not np.array_equal(
    np.asarray(a.params['output']['kernel']), np.asarray(d.params['output']['kernel'])
  )


def test_evaluate_matches_a_direct_computation(key):
  task = make_task()
  state = pruned_state(task, key)
  data = fake_data(250)
  split = train_lib.make_eval_split(np.asarray(data.x), np.asarray(data.y), 100)  # Padded to 300.
  loss, acc = jax.jit(train_lib.evaluate, static_argnums=0)(task, state, split)
  variables = {'params': masks_lib.apply(state.params, state.masks)}
  logits = task.model.apply(variables, task.normalize(data.x))
  want_loss = optax.softmax_cross_entropy_with_integer_labels(logits, data.y).mean()
  want_acc = (jnp.argmax(logits, -1) == data.y).mean()
  assert float(loss) == pytest.approx(float(want_loss), rel=1e-5)
  assert float(acc) == pytest.approx(float(want_acc), abs=1e-6)


def test_loss_falls_on_real_data(fashion_mnist, key):
  task = make_task(
    mean=tuple(map(float, fashion_mnist.mean)), std=tuple(map(float, fashion_mnist.std))
  )
  data = train_lib.DataArrays(
    jnp.asarray(fashion_mnist.train_x[:6000]), jnp.asarray(fashion_mnist.train_y[:6000])
  )
  split = train_lib.make_eval_split(fashion_mnist.val_x[:1000], fashion_mnist.val_y[:1000], 500)
  steps, _ = train_lib.compiled(task, vmapped=False)
  evaluate = jax.jit(train_lib.evaluate, static_argnums=0)
  state = pruned_state(task, key, rate=0.5)
  loss0, acc0 = evaluate(task, state, split)
  state, _ = steps(state, data, jax.random.key(0), 300)
  loss1, acc1 = evaluate(task, state, split)
  assert float(loss1) < 0.5 * float(loss0)
  assert float(acc1) > 0.75 > float(acc0)
  assert zero_where_pruned(state)

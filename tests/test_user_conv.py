"""A user's plain ``nn.Conv`` gets im2col's weight gradient through the library's apply path.

``train.apply_model`` (every training, evaluation and score of a study) runs a model under
``im2col.plain_convs``: the same logits, gradients within float tolerance, the fast path
taken for the convs it supports and every other conv left on lax. ``LTH_CONV_IMPL`` is the
switch ('im2col' here, so the tests mean the same on any backend; 'lax' is the plain model).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lth_jax.core import im2col, models
from lth_jax.core import train as train_lib


class UserCNN(nn.Module):
  """Plain convs: SAME and VALID padding, strides 1 and 2, batch norm, a head not named output."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Conv(4, (3, 3), padding='SAME', name='same_1')(x))
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(nn.Conv(6, (3, 3), strides=2, padding='VALID', name='valid_2')(x))
    x = nn.relu(nn.Conv(5, (2, 2), strides=(2, 1), padding='SAME', use_bias=False)(x))
    return nn.Dense(3, name='head')(x.reshape(len(x), -1))


class Unsupported(nn.Module):
  """Convs ``plain_convs`` leaves alone, after one it supports; each kernel of its own shape."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(6, (3, 3), name='supported')(x)
    x = nn.Conv(5, (3, 3), kernel_dilation=2, name='dilated')(x)
    x = nn.Conv(4, (3, 3), input_dilation=2, padding=((1, 1), (1, 1)), name='input_dilated')(x)
    x = nn.Conv(6, (2, 2), feature_group_count=2, name='grouped')(x)
    x = nn.Conv(7, (3, 3), conv_general_dilated=jax.lax.conv_general_dilated, name='own_fn')(x)
    x = nn.Conv(3, (3, 3), precision=jax.lax.Precision.HIGHEST, name='precision')(x)
    x = nn.ConvLocal(2, (3, 3), padding='VALID', name='local')(x)
    x = nn.Conv(2, (2, 2, 1), name='conv_3d')(x[..., None, :])[..., 0, :]
    x = nn.Conv(3, (3,), name='conv_1d')(x.reshape(len(x), -1, 2))
    x = nn.Conv(4, 2, name='conv_1d_int')(x)
    return nn.Dense(2)(x.reshape(len(x), -1))


X = jax.random.normal(jax.random.key(1), (2, 9, 9, 2))
Y = jnp.array([0, 2])


def random_variables(model):
  """Variables of ``model``'s shapes, drawn with numpy: nothing compiled for Flax's init."""
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(model.init, jax.random.key(0), X)
  fill = lambda path, s: (
    rng.uniform(0.5, 1.5, s.shape) if path[0].key == 'batch_stats' else rng.normal(0, 0.3, s.shape)
  ).astype(s.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def task_of(model):
  return train_lib.Task(model, optax.sgd(0.1), batch_size=2)


def kernel_shapes(params):
  return {tuple(leaf.shape) for leaf in jax.tree.leaves(params) if leaf.ndim >= 3}


def _eqns(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else (value,):
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          yield from _eqns(inner)


def convs(fn, *args):
  """The output shapes of the convolutions in ``fn``'s program (a weight gradient by lax is a
  conv of its kernel's shape, im2col's a matmul), and whether it has a custom_vjp (a forward
  pass does; a gradient's program has it resolved into its two halves)."""
  jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
  eqns = list(_eqns(jaxpr))
  shapes = [tuple(e.outvars[0].aval.shape) for e in eqns if 'conv' in e.primitive.name]
  return shapes, any('custom_vjp' in e.primitive.name for e in eqns)


def loss_and_logits(task, variables, apply):
  def loss(params):
    logits, _ = apply({**variables, 'params': params}, X, train=True, mutable=['batch_stats'])
    return train_lib.cross_entropy(logits, Y), logits

  return jax.jit(jax.value_and_grad(loss, has_aux=True))


def test_same_logits_and_gradients_as_the_plain_model(monkeypatch):
  monkeypatch.setenv(im2col.ENV_VAR, 'im2col')
  model = UserCNN()
  task = task_of(model)
  variables = random_variables(model)
  plain = loss_and_logits(task, variables, model.apply)(variables['params'])
  fast_apply = lambda v, x, **kw: train_lib.apply_model(task, v, x, **kw)
  fast = loss_and_logits(task, variables, fast_apply)(variables['params'])
  (plain_loss, plain_logits), plain_grads = plain
  (fast_loss, fast_logits), fast_grads = fast
  np.testing.assert_array_equal(fast_logits, plain_logits)  # The same forward pass.
  np.testing.assert_allclose(fast_loss, plain_loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(fast_grads), jax.tree.leaves(plain_grads), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_training_step_takes_the_fast_path(monkeypatch):
  model = UserCNN()
  task = task_of(model)
  model_state = random_variables(model)
  params = model_state.pop('params')
  state = train_lib.create_state(task, params, model_state)
  x_raw = jnp.asarray(np.random.default_rng(0).integers(0, 256, X.shape), jnp.uint8)
  kernels = kernel_shapes(params)
  results = {}
  for impl in im2col.IMPLS:
    monkeypatch.setenv(im2col.ENV_VAR, impl)  # Read when traced: a new function each time.
    step = lambda s: train_lib.train_step(task, s, x_raw, Y, jax.random.key(2))
    shapes = convs(step, state)[0]
    weight_gradients = [s for s in shapes if s in kernels]
    if impl == 'lax':  # XLA's weight gradient: one conv per kernel.
      assert len(weight_gradients) == len(kernels)
    else:  # im2col's: a matmul, no conv of a kernel's shape.
      assert not weight_gradients, weight_gradients
    forward = lambda s: train_lib.apply_model(task, {'params': s.params, **s.model_state}, X)
    assert convs(forward, state)[1] == (impl == 'im2col')
    results[impl] = jax.jit(step)(state)
  (lax_state, lax_loss), (fast_state, fast_loss) = results['lax'], results['im2col']
  np.testing.assert_allclose(fast_loss, lax_loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(fast_state), jax.tree.leaves(lax_state), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_unsupported_convs_stay_on_lax(monkeypatch):
  monkeypatch.setenv(im2col.ENV_VAR, 'im2col')
  model = Unsupported()
  task = task_of(model)
  variables = random_variables(model)
  kernels = {name: tuple(layer['kernel'].shape) for name, layer in variables['params'].items()}
  assert len(set(kernels.values())) == len(kernels)

  def loss(params, apply):
    return jnp.sum(jnp.sin(apply({'params': params}, X)))

  fast_apply = lambda v, x: train_lib.apply_model(task, v, x)
  shapes = convs(jax.grad(lambda p: loss(p, fast_apply)), variables['params'])[0]
  assert kernels.pop('supported') not in shapes  # im2col's weight gradient: a matmul.
  kernels.pop('Dense_0')
  kernels.pop('local')  # Its weight gradient is no conv in either case.
  assert all(shape in shapes for shape in kernels.values()), (kernels, shapes)  # lax's.
  jitted = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  ref = jitted(variables['params'], model.apply)
  got = jitted(variables['params'], fast_apply)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_models_own_convs_and_lax_are_left_alone(monkeypatch):
  monkeypatch.setenv(im2col.ENV_VAR, 'im2col')
  model = models.get_model('conv2', num_classes=3, conv_impl='lax')  # Chosen: stays lax.
  task = task_of(model)
  variables = jax.eval_shape(model.init, jax.random.key(0), X)
  shapes = convs(
    jax.grad(lambda p: jnp.sum(train_lib.apply_model(task, {'params': p}, X))),
    variables['params'],
  )[0]
  assert kernel_shapes(variables['params']) <= set(shapes)


def test_the_switch(monkeypatch):
  monkeypatch.delenv(im2col.ENV_VAR, raising=False)
  backend = 'im2col' if jax.default_backend() == 'cpu' else 'lax'
  assert im2col.default_impl() == backend
  monkeypatch.setenv(im2col.ENV_VAR, 'lax')
  assert im2col.default_impl() == 'lax'
  model = UserCNN()
  variables = jax.eval_shape(model.init, jax.random.key(0), X)
  apply = lambda v: train_lib.apply_model(task_of(model), v, X)
  assert not convs(apply, variables)[1]
  monkeypatch.setenv(im2col.ENV_VAR, 'winograd')
  with pytest.raises(ValueError, match='LTH_CONV_IMPL'):
    im2col.default_impl()


def test_a_conv_given_to_the_model_is_not_changed(monkeypatch):
  monkeypatch.setenv(im2col.ENV_VAR, 'im2col')

  class Holder(nn.Module):
    conv: nn.Module

    def __call__(self, x):
      return self.conv(x)

  conv = nn.Conv(3, (3, 3))
  model = Holder(conv)
  variables = jax.eval_shape(model.init, jax.random.key(0), X)
  fn = lambda p: train_lib.apply_model(task_of(model), {'params': p}, X)
  assert convs(fn, variables['params'])[1]
  assert conv.conv_general_dilated is None and model.conv.conv_general_dilated is None

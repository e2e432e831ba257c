"""Training and evaluation of one masked network, as pure jittable functions.

One network is a ``TrainState`` pytree. Many networks (seeds, arms) are the same
functions under ``jax.vmap`` (see ``lth_jax.training.parallel``); nothing here knows how
many runs there are.

Pruned weights stay exactly zero: the forward pass sees ``params ⊙ masks``,
gradients are masked, and the parameters are masked again after the optimizer
update (so weight decay or momentum cannot leak into a pruned entry).

The data order is a pure function of ``(data_key, step)`` (``next_batch``, the
one place that says it): every epoch is a fresh random order
(``epoch_order(data_key, epoch)``) of the training set and step ``s`` takes
batch ``s mod steps_per_epoch`` of epoch ``s // steps_per_epoch`` (the last
partial batch of an epoch is dropped). A run resumed at any step therefore sees
exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lth_jax.core import augment, im2col, models
from lth_jax.core import masks as masks_lib

PyTree = Any


class TrainState(NamedTuple):
  """Everything that changes while one network trains."""

  step: jax.Array  # int32 scalar: iterations done.
  params: PyTree
  masks: PyTree  # bool, same structure as params.
  opt_state: PyTree
  model_state: PyTree  # e.g. {'batch_stats': ...}; {} for models without any.


class DataArrays(NamedTuple):
  """A split resident on the device: uint8 images and int32 labels."""

  x: jax.Array
  y: jax.Array


class EvalSplit(NamedTuple):
  """A split padded and reshaped to [batches, batch_size, ...] for ``lax.map``."""

  x: jax.Array
  y: jax.Array
  weight: jax.Array  # 1.0 for real examples, 0.0 for padding.


@dataclasses.dataclass(frozen=True)
class Task:
  """The static parts of training: model, optimizer, batch, input normalization.

  Inputs are normalized on the device as ``(x / divide_by - mean) / std``, per
  channel (the last axis): uint8 images are divided by 255 (``divide_by``) and,
  standardized or not, ``mean``/``std`` are (0,)/(1,) when they are used as given.
  """

  model: nn.Module
  optimizer: optax.GradientTransformation
  batch_size: int
  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)
  augment: bool = False
  divide_by: float = 255.0

  def normalize(self, x):
    x = x.astype(jnp.float32) / self.divide_by
    channel = (1,) * (x.ndim - 1) + (-1,)
    mean = jnp.asarray(self.mean, jnp.float32).reshape(channel)
    return (x - mean) / jnp.asarray(self.std, jnp.float32).reshape(channel)


@functools.cache
def takes_train(module_type: type) -> bool:
  """Whether a module's ``__call__`` takes a ``train`` keyword (the zoo's do; a user's may not)."""
  parameters = inspect.signature(module_type.__call__).parameters.values()
  return any(p.name == 'train' or p.kind is p.VAR_KEYWORD for p in parameters)


def call_kwargs(model: nn.Module, train: bool) -> dict:
  """``{'train': train}`` for modules that take it, else {}."""
  return {'train': train} if takes_train(type(model)) else {}


def init_variables(model: nn.Module, key, input_shape) -> tuple[PyTree, PyTree]:
  """θ0 of ``model`` for inputs of ``input_shape`` (e.g. H, W, C): (params, model_state)."""
  params_key, dropout_key = jax.random.split(key)
  variables = model.init(
    {'params': params_key, 'dropout': dropout_key},
    jnp.zeros((1, *input_shape)),
    **call_kwargs(model, False),
  )
  variables = dict(variables)
  params = variables.pop('params')
  return params, variables


INIT_SALT = 0x1417  # Folded into the init key for redrawn weights, apart from the model's own.


def init_params(model: nn.Module, key, input_shape, *, scheme: str = 'default', weights=None):
  """θ0 for ``key``: the model's own init, with the ``weights`` (bools like params) redrawn
  from ``scheme`` (``models.INITS``) unless it is 'default'."""
  params = init_variables(model, key, input_shape)[0]
  if scheme == models.DEFAULT_INIT:
    return params
  return models.reinitialize(params, jax.random.fold_in(key, INIT_SALT), scheme, weights)


def initial_state(task: Task, key, input_shape, *, scheme: str = 'default', weights=None):
  """θ0 of ``key`` with dense masks and a fresh optimizer, at step 0."""
  params, model_state = init_variables(task.model, key, input_shape)
  if scheme != models.DEFAULT_INIT:
    params = models.reinitialize(params, jax.random.fold_in(key, INIT_SALT), scheme, weights)
  return create_state(task, params, model_state)


def create_state(task: Task, params, model_state, masks=None) -> TrainState:
  """A state at step 0 with a fresh optimizer; masks default to dense."""
  masks = masks_lib.ones_like(params) if masks is None else masks
  params = masks_lib.apply(params, masks)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    masks=masks,
    opt_state=task.optimizer.init(params),
    model_state=model_state,
  )


def epoch_order(data_key, epoch, num_examples: int):
  """The order of the training examples in ``epoch``."""
  return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples).astype(jnp.int32)


class EpochOrder(NamedTuple):
  """The order of the epoch the training is in (``epoch`` -1: none yet), carried from step
  to step so that an epoch's order is computed once, when training enters it."""

  epoch: jax.Array  # int32 scalar (shared by the runs of a vmapped group)
  order: jax.Array  # int32 [num_examples] (or [runs, num_examples])


def no_order(num_examples: int, num_runs: int | None = None) -> EpochOrder:
  shape = (num_examples,) if num_runs is None else (num_runs, num_examples)
  return EpochOrder(jnp.int32(-1), jnp.zeros(shape, jnp.int32))


def next_batch(orders: EpochOrder, refresh, step, *, num_examples: int, batch_size: int):
  """(orders, indices of the batch of ``step``): the data order, in one place.

  Step ``s`` takes batch ``s mod steps_per_epoch`` of epoch ``s // steps_per_epoch``
  (the last partial batch of an epoch is dropped); ``refresh(epoch)`` gives an
  epoch's order (``epoch_order`` of the run's data key, or of each run's).
  """
  steps_per_epoch = num_examples // batch_size
  epoch = (step // steps_per_epoch).astype(jnp.int32)
  orders = jax.lax.cond(
    epoch != orders.epoch, lambda: EpochOrder(epoch, refresh(epoch)), lambda: orders
  )
  start = (step % steps_per_epoch) * batch_size
  return orders, jax.lax.dynamic_slice_in_dim(orders.order, start, batch_size, axis=-1)


def batch_indices(data_key, first_step, num_steps: int, *, num_examples: int, batch_size: int):
  """Indices [num_steps, batch_size] of the batches of steps ``first_step + i`` (``next_batch``'s)."""

  def body(orders, step):
    refresh = lambda e: epoch_order(data_key, e, num_examples)
    return next_batch(orders, refresh, step, num_examples=num_examples, batch_size=batch_size)

  steps = jnp.asarray(first_step, jnp.int32) + jnp.arange(num_steps, dtype=jnp.int32)
  return jax.lax.scan(body, no_order(num_examples), steps)[1]


def apply_model(task: Task, variables, x, **kwargs):
  """``task.model.apply(variables, x, **kwargs)`` with the model's plain ``nn.Conv`` on the
  backend's fast convolution (``im2col.plain_convs``: im2col on CPU unless LTH_CONV_IMPL=lax)."""
  with im2col.plain_convs():
    return task.model.apply(variables, x, **kwargs)


def _forward(task: Task, params, masks, model_state, x, *, train: bool, dropout_key=None):
  variables = {'params': masks_lib.apply(params, masks), **model_state}
  rngs = {'dropout': dropout_key} if dropout_key is not None else None
  kwargs = call_kwargs(task.model, train)
  if train and model_state:
    logits, new_state = apply_model(
      task, variables, x, rngs=rngs, mutable=list(model_state), **kwargs
    )
    return logits, dict(new_state)
  return apply_model(task, variables, x, rngs=rngs, **kwargs), model_state


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(task: Task, state: TrainState, x_raw, y, step_key) -> tuple[TrainState, jax.Array]:
  """One masked optimizer step on a batch; returns (state, loss)."""
  augment_key, dropout_key = jax.random.split(step_key)
  x = task.normalize(x_raw)
  if task.augment:
    x = augment.random_crop_flip(augment_key, x)

  def loss_fn(params):
    logits, new_model_state = _forward(
      task, params, state.masks, state.model_state, x, train=True, dropout_key=dropout_key
    )
    return cross_entropy(logits, y), new_model_state

  (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = masks_lib.apply(grads, state.masks)
  updates, opt_state = task.optimizer.update(grads, state.opt_state, state.params)
  params = masks_lib.apply(optax.apply_updates(state.params, updates), state.masks)
  return state._replace(
    step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state
  ), loss


def dense_gradients(task: Task, state: TrainState, x_raw, y, dropout_key):
  """The gradient of a batch's loss with respect to every weight, pruned ones included (the
  forward pass sees ``params ⊙ masks``, whose pruned entries are zero, through no mask):
  RigL's growth criterion. Batch norm in train mode; the running statistics are left alone."""
  x = task.normalize(x_raw)
  dense = masks_lib.ones_like(state.params)

  def loss_fn(weights):
    logits, _ = _forward(
      task, weights, dense, state.model_state, x, train=True, dropout_key=dropout_key
    )
    return cross_entropy(logits, y)

  return jax.grad(loss_fn)(masks_lib.apply(state.params, state.masks))


def train_steps(task: Task, state: TrainState, train: DataArrays, data_key, num_steps: int):
  """``num_steps`` steps under ``lax.scan``; returns (state, mean training loss)."""
  n = train.x.shape[0]

  def body(carry, _):
    state, orders = carry
    orders, idx = next_batch(
      orders, lambda e: epoch_order(data_key, e, n), state.step, num_examples=n,
      batch_size=task.batch_size,
    )  # fmt: skip
    step_key = jax.random.fold_in(data_key, state.step)
    state, loss = train_step(task, state, train.x[idx], train.y[idx], step_key)
    return (state, orders), loss

  (state, _), losses = jax.lax.scan(body, (state, no_order(n)), None, length=num_steps)
  return state, jnp.mean(losses)


def vmap_runs(fn: Callable, in_axes=0) -> Callable:
  """``jax.vmap(fn, in_axes)`` over a group of runs (``in_axes``: 0 or None per argument).

  A group of one calls ``fn`` itself on the squeezed arguments and adds the run axis to its
  results: vmap's shapes, one run's program. (Vmapped over one run, XLA:CPU computed the weight
  gradients transposed and the optimizer read them strided, every step:
  ``benchmarks/bench_parallel.py`` measures the one-network cost.)"""
  batched = jax.vmap(fn, in_axes=in_axes)

  def call(*args):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    mapped = [a for a, axis in zip(args, axes, strict=True) if axis is not None]
    if {leaf.shape[0] for leaf in jax.tree.leaves(mapped)} != {1}:
      return batched(*args)
    squeeze = lambda tree: jax.tree.map(lambda x: x[0], tree)
    one = fn(*(a if axis is None else squeeze(a) for a, axis in zip(args, axes, strict=True)))
    return jax.tree.map(lambda x: x[None], one)

  return call


def group_train_steps(task: Task, states: TrainState, train: DataArrays, data_keys, num_steps: int):
  """``train_steps`` of a group of runs stacked on axis 0, all at the same step (the LMC
  pair, a level's runs). The data order's epoch is decided once for the group, so a new
  epoch's order is drawn once per epoch, not (as ``vmap`` of ``train_steps`` would, its
  condition being batched) at every step; the numbers are those of ``vmap(train_steps)``."""
  n = train.x.shape[0]
  refresh = vmap_runs(lambda key, epoch: epoch_order(key, epoch, n), in_axes=(0, None))
  step_fn = vmap_runs(functools.partial(train_step, task))
  first = states.step[0]

  def body(carry, i):
    states, orders = carry
    orders, idx = next_batch(
      orders, lambda e: refresh(data_keys, e), first + i, num_examples=n,
      batch_size=task.batch_size,
    )  # fmt: skip
    keys = vmap_runs(jax.random.fold_in)(data_keys, states.step)
    states, loss = step_fn(states, train.x[idx], train.y[idx], keys)
    return (states, orders), loss

  runs = data_keys.shape[0]
  (states, _), losses = jax.lax.scan(
    body, (states, no_order(n, runs)), jnp.arange(num_steps, dtype=jnp.int32)
  )
  return states, jnp.mean(losses, axis=0)


def make_eval_split(x: np.ndarray, y: np.ndarray, batch_size: int) -> EvalSplit:
  """Pads a host split to whole batches, reshaped for ``lax.map`` (host side)."""
  n = len(x)
  batch_size = min(batch_size, n)
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n
  xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
  yp = np.concatenate([y, np.zeros((pad,), y.dtype)])
  w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  shape = (num_batches, batch_size)
  return EvalSplit(
    jnp.asarray(xp.reshape(shape + x.shape[1:])),
    jnp.asarray(yp.reshape(shape)),
    jnp.asarray(w.reshape(shape)),
  )


def evaluate(task: Task, state: TrainState, split: EvalSplit) -> tuple[jax.Array, jax.Array]:
  """(mean loss, accuracy) of the masked network on a split, in eval mode."""

  def one_batch(batch):
    x, y, w = batch
    logits, _ = _forward(
      task, state.params, state.masks, state.model_state, task.normalize(x), train=False
    )
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
    return jnp.sum(losses * w), jnp.sum(correct * w)

  losses, correct = jax.lax.map(one_batch, tuple(split))
  total = jnp.sum(split.weight)
  return jnp.sum(losses) / total, jnp.sum(correct) / total


EVAL_METRICS = (
  'train_loss',
  'train_accuracy',
  'val_loss',
  'val_accuracy',
  'test_loss',
  'test_accuracy',
)


def evaluate_all(
  task: Task, state: TrainState, splits: dict[str, EvalSplit]
) -> dict[str, jax.Array]:
  """Loss and accuracy on each of the 'train' (subset), 'val' and 'test' splits."""
  metrics = {}
  for name, split in splits.items():
    metrics[f'{name}_loss'], metrics[f'{name}_accuracy'] = evaluate(task, state, split)
  return metrics


@functools.cache
def compiled(task: Task, *, vmapped: bool) -> tuple[Callable, Callable]:
  """(train_steps, evaluate_all) jitted for ``task``, optionally vmapped over runs.

  Cached per task, so every level (new masks, rewound params) reuses the same
  compiled programs. The train function donates its input state (its buffers
  are reused for the output): keep a copy (``jax.device_get(state)``) of a state
  you still need, such as θk. Vmapped versions take a leading run axis on the state and
  the data keys; the data itself is shared.
  """
  steps = functools.partial(train_steps, task)
  evals = functools.partial(evaluate_all, task)
  if vmapped:
    steps = functools.partial(group_train_steps, task)
    evals = vmap_runs(evals, in_axes=(0, None))
  return (
    jax.jit(steps, static_argnums=3, donate_argnums=0),
    jax.jit(evals),
  )

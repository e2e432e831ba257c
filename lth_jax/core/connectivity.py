"""Linear mode connectivity: interpolating two trained networks and the error barrier between them.

Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the Lottery
Ticket Hypothesis" (ICML 2020). Two copies of a network, trained from the same
state with different SGD noise to θA and θB, are evaluated along the segment
θ(α) = (1 − α)·θA + α·θB (masked: a pruned weight stays exactly zero). The
*instability* is the height of the error barrier on that segment::

    instability = max_α error(α) − (error(0) + error(1)) / 2

Pure functions, usable from a notebook; the whole path is one ``jax.vmap``
over α of ``lth_jax.core.train.evaluate``, the Trainer's own evaluation.

>>> alphas(5).tolist()
[0.0, 0.25, 0.5, 0.75, 1.0]
>>> round(float(instability(jnp.array([0.1, 0.3, 0.2]))), 6)  # float32
0.15
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lth_jax.core import masks as masks_lib
from lth_jax.core import train as train_lib
from lth_jax.core.train import DataArrays, EvalSplit, Task, TrainState

PyTree = Any

NUM_ALPHAS = 31  # The paper's grid: α = 0, 1/30, ..., 1.
BN_BATCHES = 50  # Training batches that re-estimate an interpolated network's BN statistics.


def alphas(num: int = NUM_ALPHAS) -> jax.Array:
  """An even grid of ``num`` interpolation coefficients on [0, 1], both endpoints included."""
  if num < 2:
    raise ValueError(f'num_alphas={num} is too small: the path needs at least its 2 endpoints.')
  return jnp.linspace(0.0, 1.0, num, dtype=jnp.float32)


def _lerp(a, b, alpha):
  # From the nearer endpoint: exact at α = 0 and α = 1, and exactly ``a`` everywhere when a == b
  # (the plain (1 − α)·a + α·b rounds away from both).
  alpha = jnp.asarray(alpha, a.dtype)
  return jnp.where(alpha <= 0.5, a + alpha * (b - a), b + (1 - alpha) * (a - b))


def interpolate(params_a: PyTree, params_b: PyTree, masks: PyTree, alpha) -> PyTree:
  """θ(α) = (1 − α)·θA + α·θB with the pruned weights (``masks`` False) exactly zero."""
  mixed = jax.tree.map(lambda a, b: _lerp(a, b, alpha), params_a, params_b)
  return masks_lib.apply(mixed, masks)


def interpolate_state(state_a: TrainState, state_b: TrainState, alpha) -> TrainState:
  """``state_a`` with interpolated params (masked by ``state_a.masks``) and model state.

  Batch-norm statistics are interpolated like the weights; see ``recompute_batch_stats``
  for re-estimating them instead.
  """
  return state_a._replace(
    params=interpolate(state_a.params, state_b.params, state_a.masks, alpha),
    model_state=jax.tree.map(
      lambda a, b: _lerp(a, b, alpha), state_a.model_state, state_b.model_state
    ),
  )


def instability(errors) -> jax.Array:
  """max over α of error(α) − mean(error(0), error(1)); ``errors`` along the last axis, α = 0 … 1."""
  errors = jnp.asarray(errors)
  return jnp.max(errors, axis=-1) - (errors[..., 0] + errors[..., -1]) / 2


def recompute_batch_stats(
  task: Task, state: TrainState, train: DataArrays, key, *, num_batches: int = BN_BATCHES
) -> TrainState:
  """``state`` with its batch-norm statistics re-estimated on ``num_batches`` training batches.

  The network (masked params, in train mode, no augmentation or dropout) sees
  the batches of one random epoch order of ``key`` and its running statistics
  are updated as in training (the model's BN momentum), starting from the
  statistics it has: with momentum 0.9 and 50 batches the start weighs 0.9^50
  ≈ 0.5%. Models without model state are returned unchanged.
  """
  if not state.model_state:
    return state
  order = train_lib.epoch_order(key, 0, train.x.shape[0])
  size = min(task.batch_size, train.x.shape[0] // num_batches or 1)
  batches = order[: num_batches * size].reshape(-1, size)
  variables_of = {'params': masks_lib.apply(state.params, state.masks)}

  def body(model_state, idx):
    _, updated = task.model.apply(
      {**variables_of, **model_state},
      task.normalize(train.x[idx]),
      mutable=list(model_state),
      **train_lib.call_kwargs(task.model, True),
    )
    return dict(updated), None

  model_state, _ = jax.lax.scan(body, dict(state.model_state), batches)
  return state._replace(model_state=model_state)


def path_metrics(
  task: Task,
  state_a: TrainState,
  state_b: TrainState,
  split: EvalSplit,
  grid,
  *,
  bn_data: DataArrays | None = None,
  bn_key=None,
) -> tuple[jax.Array, jax.Array]:
  """(loss, error) of θ(α) on ``split`` for every α of ``grid``: one vmap over α.

  ``bn_data``: training data on which each interpolated network's batch-norm
  statistics are recomputed before it is evaluated (``recompute_batch_stats``,
  with ``bn_key``); None evaluates with the interpolated statistics.
  """

  def at(alpha):
    state = interpolate_state(state_a, state_b, alpha)
    if bn_data is not None:
      state = recompute_batch_stats(task, state, bn_data, bn_key)
    return train_lib.evaluate(task, state, split)

  losses, accuracies = jax.vmap(at)(jnp.asarray(grid))
  return losses, 1.0 - accuracies

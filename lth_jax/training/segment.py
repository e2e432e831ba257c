"""Training and evaluation in one compiled call: a segment of evaluation periods.

A run is a sequence of evaluation periods: ``eval_every`` optimizer steps, then
an evaluation. ``segment`` runs many periods in ONE jitted program (a
``while_loop`` over periods, each a ``lax.scan`` over steps) and returns the
evaluations as arrays, so the host only touches a run between segments — at
checkpoints, hooks and progress updates — instead of every period.

What is evaluated is what is read: the validation split at every evaluation
(the early-stopping criterion); the test split and the training subset at the
final step and every ``curve_every`` steps (for the training curves), NaN
elsewhere. The early-stop numbers need them at the minimum of the validation
loss, which is known only at the end: each new minimum keeps a snapshot of the
network (``Best``, one more copy of the params), and ``fit`` evaluates it once.

The data order is ``core.train.next_batch``'s, its epoch order carried from step
to step (``EpochOrder``). The step counter that drives it is one number for a
whole group of runs (every run of a group is at the same step), so under
``vmap`` the epoch test stays a real branch rather than a select that would sort
every step. Batches, keys and the per-step computation are those of
``train.train_steps``: a run gives the same numbers however its periods are
split into segments.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lth_jax.core import train as train_lib
from lth_jax.core.train import EVAL_METRICS, DataArrays, EpochOrder, TrainState

_NAN = float('nan')
FULL_SPLITS = ('train', 'test')  # Evaluated only where read; 'val' always.


class Best(NamedTuple):
  """The lowest finite validation loss so far and the network that reached it."""

  val_loss: jax.Array  # float32 scalar (or [runs]); +inf before any finite one
  params: object
  model_state: object


def best_of(states: TrainState, val_loss) -> Best:
  """A snapshot of ``states`` (copied: the states are donated to the next call)."""
  copy = lambda tree: jax.tree.map(jnp.copy, tree)
  return Best(jnp.asarray(val_loss, jnp.float32), copy(states.params), copy(states.model_state))


def _keep(improved, new, old):
  """``new`` where ``improved`` (per run: broadcast over each leaf's leading axis)."""
  pick = lambda n, o: jnp.where(
    improved.reshape(improved.shape + (1,) * (n.ndim - improved.ndim)), n, o
  )
  return jax.tree.map(pick, new, old)


def train_chunk(
  task,
  states,
  orders: EpochOrder,
  train: DataArrays,
  data_keys,
  first_step,
  num_steps: int,
  *,
  vmapped: bool,
):
  """``num_steps`` steps from ``first_step`` (one number for the whole group)."""
  n = train.x.shape[0]
  step_fn = lambda s, x, y, k: train_lib.train_step(task, s, x, y, k)
  refresh = lambda key, epoch: train_lib.epoch_order(key, epoch, n)
  fold = jax.random.fold_in
  if vmapped:
    vmap = train_lib.vmap_runs
    step_fn, refresh, fold = vmap(step_fn), vmap(refresh, in_axes=(0, None)), vmap(fold)

  def body(carry, i):
    states, orders = carry
    orders, idx = train_lib.next_batch(
      orders, lambda epoch: refresh(data_keys, epoch), first_step + i, num_examples=n,
      batch_size=task.batch_size,
    )  # fmt: skip
    states, loss = step_fn(states, train.x[idx], train.y[idx], fold(data_keys, states.step))
    return (states, orders), loss

  (states, orders), losses = jax.lax.scan(body, (states, orders), jnp.arange(num_steps))
  return states, orders, jnp.mean(losses, axis=0)


def evaluate(
  task, states, splits, best: Best, step, *, until: int, curve_every: int, vmapped: bool
):
  """Metrics at ``step`` ([runs, M] or [M], EVAL_METRICS order) and the updated ``Best``.

  The test split and training subset are evaluated at ``until`` and every
  ``curve_every`` steps (NaN elsewhere).
  """
  metrics = {}
  metrics['val_loss'], metrics['val_accuracy'] = _evaluate(task, states, splits['val'], vmapped)
  improved = jnp.isfinite(metrics['val_loss']) & (metrics['val_loss'] < best.val_loss)
  read = step == until
  if curve_every:
    read |= step % curve_every == 0
  for name, (loss, accuracy) in _read(
    task, states, splits, read, metrics['val_loss'], vmapped
  ).items():
    metrics[f'{name}_loss'], metrics[f'{name}_accuracy'] = loss, accuracy
  best = Best(
    jnp.where(improved, metrics['val_loss'], best.val_loss),
    _keep(improved, states.params, best.params),
    _keep(improved, states.model_state, best.model_state),
  )
  return _row(metrics), best


def evaluate_full(task, params, model_state, masks, splits, *, vmapped: bool):
  """Every split's metrics of a snapshot ([runs, M] or [M])."""
  states = TrainState(
    step=None, params=params, masks=masks, opt_state=None, model_state=model_state
  )
  metrics = {}
  for name in splits:
    metrics[f'{name}_loss'], metrics[f'{name}_accuracy'] = _evaluate(
      task, states, splits[name], vmapped
    )
  return _row(metrics)


def _evaluate(task, states, split, vmapped: bool):
  fn = lambda s: train_lib.evaluate(task, s, split)
  return train_lib.vmap_runs(fn)(states) if vmapped else fn(states)


def _read(task, states, splits, read, like, vmapped):
  present = [name for name in FULL_SPLITS if name in splits]

  def full():
    return {name: _evaluate(task, states, splits[name], vmapped) for name in present}

  def skipped():
    nan = jnp.full_like(like, _NAN)
    return {name: (nan, nan) for name in present}

  return jax.lax.cond(read, full, skipped)


def _row(metrics):
  nan = jnp.full_like(metrics.get('val_loss', next(iter(metrics.values()))), _NAN)
  return jnp.stack([metrics.get(m, nan) for m in EVAL_METRICS], axis=-1)


def segment(
  task,
  states: TrainState,
  orders: EpochOrder,
  best: Best,
  train: DataArrays,
  splits,
  data_keys,
  first_step,
  num_periods,
  *,
  eval_every: int,
  until: int,
  curve_every: int,
  capacity: int,
  vmapped: bool,
):
  """Up to ``num_periods`` periods of (``eval_every`` steps, evaluation) from ``first_step``.

  Stops early when every run's validation loss is non-finite (diverged).

  Returns:
    (states, orders, best, rows [capacity, (runs,) M] of which the first
    ``done`` are this segment's evaluations, done).
  """
  num_runs = best.val_loss.shape if vmapped else ()
  rows = jnp.full((capacity, *num_runs, len(EVAL_METRICS)), _NAN, jnp.float32)

  def alive(carry):
    p, _, _, _, rows = carry
    last = rows[jnp.maximum(p - 1, 0), ..., EVAL_METRICS.index('val_loss')]
    return (p < num_periods) & ((p == 0) | jnp.any(jnp.isfinite(last)))

  def period(carry):
    p, states, orders, best, rows = carry
    start = first_step + p * eval_every
    states, orders, _ = train_chunk(
      task, states, orders, train, data_keys, start, eval_every, vmapped=vmapped
    )
    row, best = evaluate(
      task,
      states,
      splits,
      best,
      start + eval_every,
      until=until,
      curve_every=curve_every,
      vmapped=vmapped,
    )
    return p + 1, states, orders, best, rows.at[p].set(row)

  done, states, orders, best, rows = jax.lax.while_loop(
    alive, period, (jnp.int32(0), states, orders, best, rows)
  )
  return states, orders, best, rows, done

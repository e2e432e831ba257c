"""The training loop: a state (one network, or a stacked group) trained to a final step.

``fit`` is the one loop that ``lth run``, notebooks and benchmarks share. It
trains with the compiled programs of a ``Trainer``, evaluates every
``eval_every`` iterations into a ``Curve``, and hands control to ``Hook``s at
the steps they ask for: recording, checkpointing, keeping θk, showing progress.
It knows nothing of studies, levels or stores.

Whole evaluation periods run in segments, many periods per compiled call
(``lth_jax.training.segment``); segments are sized to last about ``segment_seconds`` so
that the host returns often enough for progress bars and wall-clock
checkpoints, and no more. Steps that do not fall on the period grid (a start
or end between evaluations, a hook's step) are trained in separate pieces.
Every step is computed the same way however a run is cut into segments, so a
resumed run ends exactly where an uninterrupted one does.

>>> # state, curve = fit(trainer, state, data_key, until=5000, eval_every=100,
>>> #                    hooks=[Hook(lambda step, state, curve: print(step), every=1000)])
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax.core import train as train_lib
from lth_jax.training import segment as segment_lib
from lth_jax.training.curve import Curve, evaluation_steps, new_curve
from lth_jax.training.parallel import to_host

PyTree = Any


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
  """The compiled training and evaluation programs of a task, over data on the device.

  With ``vmapped=True`` states and data keys carry a leading run axis (see
  ``lth_jax.training.parallel``); the data is shared by every run. ``curve_every``: the
  test split and training subset are evaluated every ``curve_every`` steps
  (besides each new validation minimum and the final step; 0: only there).
  """

  task: train_lib.Task
  train: train_lib.DataArrays
  splits: dict[str, train_lib.EvalSplit]
  vmapped: bool = False
  curve_every: int = 0

  def train_steps(self, state, data_key, num_steps: int):
    """``num_steps`` iterations (no evaluation); donates ``state``."""
    steps, _ = train_lib.compiled(self.task, vmapped=self.vmapped)
    return steps(state, self.train, data_key, num_steps)[0]

  def evaluate(self, state) -> dict[str, jax.Array]:
    """Every split's loss and accuracy."""
    _, evals = train_lib.compiled(self.task, vmapped=self.vmapped)
    return evals(state, self.splits)

  def num_examples(self) -> int:
    return int(self.train.x.shape[0])


@functools.cache
def programs(task, vmapped: bool, curve_every: int, *, eval_every: int, until: int, capacity: int):
  """(piece, evaluate, segment, evaluate_best) jitted for a task and a run's schedule.

  Cached by what they compute, not by the data they run on: the data go in as
  arguments, never as constants folded into the programs, so every ``Trainer``
  of the same task, mode and schedule shares them.
  """

  @functools.partial(jax.jit, static_argnums=5, donate_argnums=0)
  def piece(states, orders, train, data_keys, first_step, num_steps):
    states, orders, _ = segment_lib.train_chunk(
      task, states, orders, train, data_keys, first_step, num_steps, vmapped=vmapped
    )
    return states, orders

  @jax.jit
  def evaluate(states, splits, best, step):
    return segment_lib.evaluate(
      task, states, splits, best, step, until=until, curve_every=curve_every, vmapped=vmapped
    )

  @jax.jit
  def evaluate_best(best, masks, splits):
    return segment_lib.evaluate_full(
      task, best.params, best.model_state, masks, splits, vmapped=vmapped
    )

  @functools.partial(jax.jit, donate_argnums=0)
  def segment(states, orders, best, train, splits, data_keys, first_step, num_periods):
    return segment_lib.segment(
      task, states, orders, best, train, splits, data_keys, first_step, num_periods,
      eval_every=eval_every, until=until, curve_every=curve_every, capacity=capacity,
      vmapped=vmapped,
    )  # fmt: skip

  return piece, evaluate, segment, evaluate_best


def programs_of(trainer: Trainer, *, eval_every: int, until: int, capacity: int):
  """The programs of ``trainer``'s task and schedule, called on its data."""
  piece, evaluate, segment, evaluate_best = programs(
    trainer.task, trainer.vmapped, trainer.curve_every, eval_every=eval_every, until=until,
    capacity=capacity,
  )  # fmt: skip
  data, splits = trainer.train, trainer.splits
  return (
    lambda states, orders, keys, first, n: piece(states, orders, data, keys, first, n),
    lambda states, best, step: evaluate(states, splits, best, step),
    lambda states, orders, best, keys, first, n: segment(
      states, orders, best, data, splits, keys, first, n
    ),
    lambda best, masks: evaluate_best(best, masks, splits),
  )


Action = Callable[[int, PyTree, Curve], None]


@dataclasses.dataclass(frozen=True)
class Hook:
  """Work done outside the compiled code, between segments of training.

  ``fn(step, state, curve)`` runs (and may return a new state, which training continues
  from and later hooks see: a mask that moves; None leaves the state as it is):
    * at each step of ``at`` (training stops there, evaluation step or not);
    * once training has passed a multiple of ``every`` steps (at the end of the
      segment that passes it; segments end on multiples of ``every``);
    * once ``seconds`` of wall time have passed since it last ran;
    * whenever training returns to the host, with ``always`` (progress displays);
  periodic calls (``every``, ``seconds``, ``always``) skip the final step unless ``at_end``.
  The state may be donated to the next segment: copy what you keep
  (``jax.device_get``).
  """

  fn: Action
  at: Collection[int] = ()
  every: int = 0
  seconds: float = 0.0
  always: bool = False
  at_end: bool = False


def fit(
  trainer: Trainer,
  state: PyTree,
  data_key,
  *,
  until: int,
  eval_every: int,
  curve: Curve | None = None,
  hooks: Sequence[Hook] = (),
  stop_when_diverged: bool = True,
  segment_seconds: float = 2.0,
) -> tuple[PyTree, Curve]:
  """Trains ``state`` to step ``until``, evaluating every ``eval_every`` steps.

  Args:
    trainer: the compiled programs and the data.
    state: a ``TrainState`` (stacked on a leading run axis if ``trainer.vmapped``).
    data_key: the data-order key (stacked likewise).
    until: the final step.
    eval_every: evaluation period; the final step is always evaluated.
    curve: the evaluations of an interrupted fit whose ``state`` is being resumed;
      None starts a new curve with an evaluation of ``state``.
    hooks: see ``Hook``.
    stop_when_diverged: stop early once every run's validation loss is non-finite.
    segment_seconds: about how long one compiled call may train before the host
      looks at the run (progress, wall-clock hooks).

  Returns:
    (final state, curve).
  """
  first = _step_of(state)
  num_runs = int(np.shape(state.step)[0]) if trainer.vmapped else None
  capacity = len(evaluation_steps(0, until, eval_every=eval_every)) + 1
  piece, evaluate, segment, evaluate_best = programs_of(
    trainer, eval_every=eval_every, until=until, capacity=capacity
  )
  orders = train_lib.no_order(trainer.num_examples(), num_runs)
  if curve is None:
    curve = new_curve(first, until, eval_every=eval_every, num_runs=num_runs or 1)
    inf = jnp.full_like(state.step, jnp.inf, jnp.float32)  # Placed like the state.
    row, curve.best = evaluate(state, segment_lib.best_of(state, inf), jnp.int32(first))
    curve.add_rows([first], to_host(row))
  loop = _Loop(hooks, until, eval_every)
  step = curve.last_step
  seconds_per_period = None
  while step < until and not (stop_when_diverged and curve.all_diverged()):
    end = loop.next_stop(step)
    if step % eval_every == 0 and end - step >= eval_every:  # Whole periods: one compiled call.
      periods = (end - step) // eval_every
      if seconds_per_period:
        periods = max(1, min(periods, int(segment_seconds / seconds_per_period)))
      began = time.monotonic()
      state, orders, curve.best, rows, done = segment(
        state, orders, curve.best, data_key, jnp.int32(step), jnp.int32(periods)
      )
      rows, done = to_host((rows, done))
      done = int(done)
      curve.add_rows([step + eval_every * (i + 1) for i in range(done)], rows[:done])
      seconds_per_period = (time.monotonic() - began) / max(done, 1)
      step += done * eval_every
    else:  # A piece off the period grid: up to the next evaluation or hook step.
      state, orders = piece(state, orders, data_key, jnp.int32(step), end - step)
      step = end
      if step == until or step % eval_every == 0:
        row, curve.best = evaluate(state, curve.best, jnp.int32(step))
        curve.add_rows([step], to_host(row))
    diverged = stop_when_diverged and curve.all_diverged()
    state = loop.after(step, state, curve, final=step == until or diverged)
  # The best network under the masks it had: every weight it kept (a moving mask may have
  # changed since; for a fixed one this is its mask, the pruned weights being exactly zero).
  held = jax.tree.map(lambda m, p: m | (p != 0), state.masks, curve.best.params)
  curve.fill_best(to_host(evaluate_best(curve.best, held)))
  return state, curve


def _step_of(state) -> int:
  return int(np.asarray(to_host(state.step)).reshape(-1)[0])


class _Loop:
  """Where ``fit`` must stop for hooks, and calling them."""

  def __init__(self, hooks: Sequence[Hook], until: int, eval_every: int):
    self.hooks, self.until, self.eval_every = hooks, until, eval_every
    self.last_run = {id(h): time.monotonic() for h in hooks}

  def next_stop(self, step: int) -> int:
    """The next step where training must stop: a hook's step, the next evaluation grid point
    when off the grid, or the last whole period before ``until``."""
    stops = [self.until]
    for hook in self.hooks:
      stops += [s for s in hook.at if s > step]
      if hook.every:
        stops.append((step // hook.every + 1) * hook.every)
    end = min(stops)
    grid = (step // self.eval_every + 1) * self.eval_every
    if step % self.eval_every or end < grid:
      return min(end, grid)
    return (
      end
      if end == self.until or end % self.eval_every == 0
      else end // self.eval_every * self.eval_every
    )

  def after(self, step: int, state, curve: Curve, *, final: bool):
    """Calls the hooks due at ``step`` in order; returns the state (a hook may replace it)."""
    now = time.monotonic()
    for hook in self.hooks:
      due = step in hook.at
      periodic = (
        hook.always
        or (hook.every and step % hook.every == 0)
        or (hook.seconds and now - self.last_run[id(hook)] >= hook.seconds)
      )
      if due or (periodic and (hook.at_end or not final)):
        replaced = hook.fn(step, state, curve)
        state = state if replaced is None else replaced
        self.last_run[id(hook)] = time.monotonic()
    return state

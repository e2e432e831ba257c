"""The training loop: a state (one network, or a stacked group) trained to a final step.

``fit`` is the one loop that ``lth run``, notebooks and benchmarks share. It
trains with the compiled functions of a ``Trainer``, evaluates every
``eval_every`` iterations into a ``Curve``, and hands control to ``Hook``s at
the steps they ask for: recording, checkpointing, keeping θk, showing progress.
It knows nothing of studies, levels or stores.

>>> # state, curve = fit(trainer, state, data_key, until=5000, eval_every=100,
>>> #                    hooks=[Hook(lambda step, state, curve: print(step), every=1000)])
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import jax
import numpy as np

from lth_jax import train as train_lib
from lth_jax.train import EVAL_METRICS

PyTree = Any
VAL_LOSS = EVAL_METRICS.index('val_loss')


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
  """The compiled training and evaluation functions of a task, over data on the device.

  With ``vmapped=True`` states and data keys carry a leading run axis (see
  ``lth_jax.parallel``); the data is shared by every run.
  """

  task: train_lib.Task
  train: train_lib.DataArrays
  splits: dict[str, train_lib.EvalSplit]
  vmapped: bool = False

  def train_steps(self, state, data_key, num_steps: int):
    """``num_steps`` iterations; donates ``state``."""
    steps, _ = train_lib.compiled(self.task, vmapped=self.vmapped)
    return steps(state, self.train, data_key, num_steps)[0]

  def evaluate(self, state) -> dict[str, jax.Array]:
    _, evals = train_lib.compiled(self.task, vmapped=self.vmapped)
    return evals(state, self.splits)


class Curve:
  """Evaluations so far, on the host, in fixed-size arrays (so a checkpoint restores into them).

  Attributes:
    steps: int64 [capacity]; the first ``count`` are the evaluated steps.
    metrics: float32 [capacity, runs, len(EVAL_METRICS)].
  """

  def __init__(self, num_runs: int, capacity: int):
    self.count = 0
    self.steps = np.full((capacity,), -1, np.int64)
    self.metrics = np.full((capacity, num_runs, len(EVAL_METRICS)), np.nan, np.float32)

  @property
  def num_runs(self) -> int:
    return self.metrics.shape[1]

  def add(self, step: int, metrics: dict) -> None:
    host = jax.device_get(metrics)
    nan = np.full((self.num_runs,), np.nan, np.float32)
    table = [
      np.asarray(host[m], np.float32).reshape(-1) if m in host else nan for m in EVAL_METRICS
    ]
    self.steps[self.count], self.metrics[self.count] = step, np.stack(table, axis=-1)
    self.count += 1

  @property
  def last_step(self) -> int:
    return int(self.steps[self.count - 1])

  def latest(self) -> dict[str, float]:
    """Means over the finite runs of the latest evaluation's metrics ({} when none is finite)."""
    table = self.metrics[self.count - 1]
    finite = self._finite()[-1]
    if not finite.any():
      return {}
    return {
      m: float(np.mean(table[finite, i]))
      for i, m in enumerate(EVAL_METRICS)
      if np.all(np.isfinite(table[finite, i]))
    }

  def _finite(self) -> np.ndarray:  # [evaluations, runs]
    """A run is finite at an evaluation while its validation loss is (every evaluation has it)."""
    return np.isfinite(self.metrics[: self.count, :, VAL_LOSS])

  def all_diverged(self) -> bool:
    return bool(np.all(~self._finite()[-1]))

  def of_run(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(steps, metrics [evaluations, M], step of divergence or -1) of run ``i``."""
    bad = np.nonzero(~self._finite()[:, i])[0]
    diverged_step = int(self.steps[bad[0]]) if len(bad) else -1
    return self.steps[: self.count].copy(), self.metrics[: self.count, i].copy(), diverged_step

  def to_tree(self) -> dict:
    return {'count': np.int64(self.count), 'steps': self.steps, 'metrics': self.metrics}

  def load_tree(self, tree: dict) -> Curve:
    self.count = int(tree['count'])
    self.steps = np.asarray(tree['steps'], np.int64)
    self.metrics = np.asarray(tree['metrics'], np.float32)
    return self


def evaluation_steps(first: int, last: int, *, eval_every: int) -> list[int]:
  """Steps after ``first`` where ``fit`` evaluates: multiples of ``eval_every``, and ``last``."""
  return sorted(set(range((first // eval_every + 1) * eval_every, last, eval_every)) | {last})


def new_curve(first: int, until: int, *, eval_every: int, num_runs: int = 1) -> Curve:
  """An empty curve with room for every evaluation from ``first`` to ``until``."""
  return Curve(num_runs, 1 + len(evaluation_steps(first, until, eval_every=eval_every)))


Action = Callable[[int, PyTree, Curve], None]


@dataclasses.dataclass(frozen=True)
class Hook:
  """Work done outside the compiled code, between chunks of training.

  ``fn(step, state, curve)`` runs:
    * at each step of ``at`` (training stops there, evaluation step or not);
    * after an evaluation whose step is a multiple of ``every``;
    * after an evaluation once ``seconds`` of wall time have passed since it last ran;
  periodic calls (``every``, ``seconds``) skip the final step unless ``at_end``.
  The state may be donated to the next chunk: copy what you keep (``jax.device_get``).
  """

  fn: Action
  at: Collection[int] = ()
  every: int = 0
  seconds: float = 0.0
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
) -> tuple[PyTree, Curve]:
  """Trains ``state`` to step ``until``, evaluating every ``eval_every`` steps.

  Args:
    trainer: the compiled functions and the data.
    state: a ``TrainState`` (stacked on a leading run axis if ``trainer.vmapped``).
    data_key: the data-order key (stacked likewise).
    until: the final step.
    eval_every: evaluation period; the final step is always evaluated.
    curve: the evaluations of an interrupted fit whose ``state`` is being resumed;
      None starts a new curve with an evaluation of ``state``.
    hooks: see ``Hook``.
    stop_when_diverged: stop early once every run's metrics are non-finite.

  Returns:
    (final state, curve).
  """
  first = _step_of(state)
  if curve is None:
    curve = new_curve(first, until, eval_every=eval_every, num_runs=_num_runs(state, trainer))
    curve.add(first, trainer.evaluate(state))
  step = curve.last_step
  last_run = {id(h): time.monotonic() for h in hooks}
  stops = {s for h in hooks for s in h.at if step < s < until}
  for end in sorted(set(evaluation_steps(step, until, eval_every=eval_every)) | stops):
    state = trainer.train_steps(state, data_key, end - step)
    step = end
    for hook in hooks:
      if step in hook.at:
        hook.fn(step, state, curve)
    if step % eval_every and step != until:
      continue
    curve.add(step, trainer.evaluate(state))
    diverged = stop_when_diverged and curve.all_diverged()
    final = step == until or diverged
    now = time.monotonic()
    for hook in hooks:
      due = (hook.every and step % hook.every == 0) or (
        hook.seconds and now - last_run[id(hook)] >= hook.seconds
      )
      if due and (hook.at_end or not final):
        hook.fn(step, state, curve)
        last_run[id(hook)] = time.monotonic()
    if diverged:
      break
  return state, curve


def _step_of(state) -> int:
  return int(np.asarray(state.step).reshape(-1)[0])


def _num_runs(state, trainer: Trainer) -> int:
  return int(np.shape(state.step)[0]) if trainer.vmapped else 1

"""A run's evaluations on the host: ``Curve``.

Rows are evaluations (their steps), columns ``train.EVAL_METRICS``; a metric
that was not evaluated at a step is NaN (the test split and training subset
are evaluated only where read, see ``lth_jax.training.segment``). Fixed-size arrays, so
a checkpointed curve restores into a known structure.
"""

from __future__ import annotations

import numpy as np

from lth_jax.core.train import EVAL_METRICS

VAL_LOSS = EVAL_METRICS.index('val_loss')


class Curve:
  """Evaluations so far.

  Attributes:
    steps: int64 [capacity]; the first ``count`` are the evaluated steps.
    metrics: float32 [capacity, runs, len(EVAL_METRICS)].
  """

  def __init__(self, num_runs: int, capacity: int):
    self.best = None  # segment.Best: the network at each run's lowest validation loss so far.
    # Rows of the group's other tables, by table (the early-bird search's, the moving masks').
    self.extra: dict[str, list[dict]] = {}
    self.count = 0
    self.steps = np.full((capacity,), -1, np.int64)
    self.metrics = np.full((capacity, num_runs, len(EVAL_METRICS)), np.nan, np.float32)

  @property
  def num_runs(self) -> int:
    return self.metrics.shape[1]

  def add_rows(self, steps, rows) -> None:
    """Appends evaluations: ``rows`` is [len(steps), (runs,) M] in EVAL_METRICS order."""
    rows = np.asarray(rows, np.float32).reshape(len(steps), self.num_runs, len(EVAL_METRICS))
    end = self.count + len(steps)
    self.steps[self.count : end], self.metrics[self.count : end] = steps, rows
    self.count = end

  def add(self, step: int, metrics: dict) -> None:
    """Appends one evaluation given as {metric: value or [runs]} (missing metrics: NaN)."""
    nan = np.full((self.num_runs,), np.nan, np.float32)
    table = [
      np.asarray(metrics[m], np.float32).reshape(-1) if m in metrics else nan for m in EVAL_METRICS
    ]
    self.add_rows([step], np.stack(table, axis=-1)[None])

  @property
  def last_step(self) -> int:
    return int(self.steps[self.count - 1])

  def latest(self) -> dict[str, float]:
    """Means over the finite runs of the latest evaluated value of each metric ({} when none)."""
    finite = self._finite()
    if not finite[-1].any():
      return {}
    out = {}
    for i, m in enumerate(EVAL_METRICS):
      values = self.metrics[: self.count, :, i][:, finite[-1]]
      evaluated = np.nonzero(np.all(np.isfinite(values), axis=1))[0]
      if len(evaluated):
        out[m] = float(np.mean(values[evaluated[-1]]))
    return out

  def _finite(self) -> np.ndarray:  # [evaluations, runs]
    """A run is finite at an evaluation while its validation loss is (every evaluation has it)."""
    return np.isfinite(self.metrics[: self.count, :, VAL_LOSS])

  def all_diverged(self) -> bool:
    return self.count > 0 and bool(np.all(~self._finite()[-1]))

  def best_rows(self) -> np.ndarray:
    """[runs] the index of each run's first lowest finite validation loss (-1 where none)."""
    val = self.metrics[: self.count, :, VAL_LOSS]
    finite = np.isfinite(val)
    first_min = np.argmin(np.where(finite, val, np.inf), axis=0)
    return np.where(finite.any(axis=0), first_min, -1)

  def fill_best(self, full) -> None:
    """Fills in what the best rows lack (test, training subset) from ``full``
    ([runs, M] or [M]): the best snapshot's metrics on every split."""
    full = np.asarray(full, np.float32).reshape(self.num_runs, len(EVAL_METRICS))
    for run, row in enumerate(self.best_rows()):
      if row >= 0:
        missing = np.isnan(self.metrics[row, run])
        self.metrics[row, run, missing] = full[run, missing]

  def of_run(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(steps, metrics [evaluations, M], step of divergence or -1) of run ``i``."""
    bad = np.nonzero(~self._finite()[:, i])[0]
    diverged_step = int(self.steps[bad[0]]) if len(bad) else -1
    return self.steps[: self.count].copy(), self.metrics[: self.count, i].copy(), diverged_step

  def to_tree(self) -> dict:
    """The curve and its best snapshot, for a checkpoint."""
    return {
      'count': np.int64(self.count),
      'steps': self.steps,
      'metrics': self.metrics,
      'best': self.best,
    }

  def load_tree(self, tree: dict) -> Curve:
    self.count = int(tree['count'])
    self.steps = np.asarray(tree['steps'], np.int64)
    self.metrics = np.asarray(tree['metrics'], np.float32)
    self.best = tree.get('best')
    return self


def evaluation_steps(first: int, last: int, *, eval_every: int) -> list[int]:
  """Steps after ``first`` where a run is evaluated: multiples of ``eval_every``, and ``last``."""
  return sorted(set(range((first // eval_every + 1) * eval_every, last, eval_every)) | {last})


def new_curve(first: int, until: int, *, eval_every: int, num_runs: int = 1) -> Curve:
  """An empty curve with room for every evaluation from ``first`` to ``until``."""
  return Curve(num_runs, 1 + len(evaluation_steps(first, until, eval_every=eval_every)))


def early_stop(steps: np.ndarray, metrics: np.ndarray) -> dict[str, float]:
  """Summary numbers at the evaluation of minimum validation loss.

  ``metrics`` is [evaluations, len(EVAL_METRICS)] (NaN where a metric was not
  evaluated); evaluations whose validation loss is not finite (after a
  divergence) are ignored. The test split is evaluated at every new minimum of
  the validation loss and at the final step, so both are read where they were
  evaluated; ``final_*`` is the last evaluation with test metrics (the final
  step unless the run diverged).
  """
  col = {name: i for i, name in enumerate(EVAL_METRICS)}
  finite = np.isfinite(metrics[:, col['val_loss']])
  val_loss = np.where(finite, metrics[:, col['val_loss']], np.inf)
  best = int(np.argmin(val_loss))  # First minimum: the earliest such iteration.
  tested = finite & np.isfinite(metrics[:, col['test_accuracy']])
  last = int(np.max(np.nonzero(tested)[0])) if tested.any() else best
  row = metrics[best]
  return {
    'early_stop_step': int(steps[best]),
    'val_loss_at_early_stop': float(row[col['val_loss']]),
    'val_accuracy_at_early_stop': float(row[col['val_accuracy']]),
    'test_accuracy_at_early_stop': float(row[col['test_accuracy']]),
    'train_accuracy_at_early_stop': float(row[col['train_accuracy']]),
    'final_test_accuracy': float(metrics[last, col['test_accuracy']]),
    'final_step': int(steps[last]),
  }

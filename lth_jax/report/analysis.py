"""A run directory's tables as columns, and the statistics the report shows.

Tables are read with ``lth_jax.study.results.read_rows`` and turned into columns
({name: numpy array}) so that curves of hundreds of thousands of rows group fast.
Means and standard deviations are ``results.mean_std``'s (sample std, ddof=1);
diverged runs are counted and left out of every mean.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lth_jax.study import results

Columns = dict[str, np.ndarray]


def _column(values: list[str | None]) -> np.ndarray:
  """A float array when every value is numeric (or empty), else an array of strings."""
  text = ['' if v is None else v.strip() for v in values]
  booleans = {'true': '1', 'false': '0'}
  try:
    return np.array([float(booleans.get(v.lower(), v)) if v else math.nan for v in text])
  except ValueError:
    return np.array(text, dtype=str)


def read_csv(path: str | os.PathLike, keys: Sequence[str] = ()) -> Columns:
  """Reads a CSV file into {column: array}; {} when the file is missing or empty.

  Rows repeating the same ``keys`` (a level re-run after a resume) keep the last one.
  """
  rows = results.read_rows(path)
  if not rows:
    return {}
  names = list(rows[0])
  if keys and all(k in names for k in keys):
    rows = list({tuple(r[k] for k in keys): r for r in rows}.values())
  return {name: _column([r.get(name) for r in rows]) for name in names}


def size(cols: Columns) -> int:
  return len(next(iter(cols.values()))) if cols else 0


def where(cols: Columns, **conditions) -> np.ndarray:
  """Boolean row selector: every named column equals the given value."""
  keep = np.ones(size(cols), dtype=bool)
  for name, value in conditions.items():
    keep &= cols[name] == value
  return keep


def diverged(summary: Columns) -> np.ndarray:
  """Boolean row selector of the diverged runs of a summary table."""
  values = summary.get('diverged', np.zeros(size(summary)))
  return np.array([results.is_diverged({'diverged': v}) for v in values], dtype=bool)


@dataclass(frozen=True)
class ArmStats:
  """Seed statistics of one (level, arm); means/stds exclude diverged seeds."""

  level: int
  arm: str
  remaining: float
  test_acc: tuple[float, float]
  early_stop: tuple[float, float]
  train_acc: tuple[float, float]
  final_test_acc: tuple[float, float]
  n: int
  n_diverged: int
  seeds: tuple[int, ...] = field(default=())


def _arm_stats(summary: Columns, level: int, arm: str) -> ArmStats:
  rows = where(summary, level=level, arm=arm)
  ok = rows & ~diverged(summary)

  def ms(name):
    return results.mean_std(summary[name][ok]) if name in summary else (math.nan, math.nan)

  return ArmStats(
    level=level,
    arm=str(arm),
    remaining=float(np.mean(summary['weights_remaining'][rows])),
    test_acc=ms('test_accuracy_at_early_stop'),
    early_stop=ms('early_stop_step'),
    train_acc=ms('train_accuracy_at_early_stop'),
    final_test_acc=ms('final_test_accuracy'),
    n=int(ok.sum()),
    n_diverged=int((rows & ~ok).sum()),
    seeds=tuple(int(s) for s in summary['seed'][ok]),
  )


def aggregate(summary: Columns) -> list[ArmStats]:
  """One ``ArmStats`` per (level, arm) in ``summary.csv``, sorted by level then arm."""
  if not summary:
    return []
  levels = sorted({int(v) for v in summary['level']})
  return [
    _arm_stats(summary, level, arm)
    for level in levels
    for arm in results.sort_arms(summary['arm'][summary['level'] == level])
  ]


def by_arm(stats: Sequence[ArmStats]) -> dict[str, list[ArmStats]]:
  arms = results.sort_arms(s.arm for s in stats)
  return {arm: [s for s in stats if s.arm == arm] for arm in arms}


# The weights remaining of the LTH paper's training-curve figure (its Figure 3).
PAPER_CURVE_REMAINING = (0.513, 0.211, 0.070)


def select_curve_levels(
  remaining: dict[int, float], max_levels: int = 4, targets: Sequence[float] | None = None
) -> list[int]:
  """Up to ``max_levels`` levels: the first, those nearest ``targets`` when present, spread.

  Args:
    remaining: {level: fraction of weights remaining}.
    max_levels: how many levels to return at most.
    targets: weights remaining worth showing (default: the LTH paper's 51.3/21.1/7.0%).
  """
  if targets is None:
    targets = PAPER_CURVE_REMAINING
  levels = sorted(remaining)
  if len(levels) <= max_levels:
    return levels
  chosen = [levels[0]]
  distance = lambda lv, target: abs(math.log(max(remaining[lv], 1e-12) / target))
  for target in targets:
    best = min(levels, key=lambda lv: distance(lv, target))
    if distance(best, target) < 0.15 and best not in chosen:
      chosen.append(best)
  # Fill with the deepest level, then levels spread evenly over the range.
  spread = np.linspace(0, len(levels) - 1, max_levels).round().astype(int)
  for lv in [levels[-1]] + [levels[i] for i in spread]:
    if len(chosen) < max_levels and lv not in chosen:
      chosen.append(lv)
  return sorted(chosen)


def _finished_seeds(summary: Columns) -> dict[tuple[int, str], list[float]]:
  """{(level, arm): seeds with a non-diverged summary row}."""
  finished = {(int(lv), str(a)): [] for lv, a in zip(summary['level'], summary['arm'])}
  for s, lv, a, d in zip(summary['seed'], summary['level'], summary['arm'], diverged(summary)):
    if not d:
      finished[(int(lv), str(a))].append(s)
  return finished


def mean_curves(curves: Columns, summary: Columns, levels, arms, metric='test_accuracy'):
  """{(level, arm): (steps, mean over seeds, seeds per step)} of finished, non-diverged runs.

  Runs without a summary row (still training) and diverged runs are left out.
  """
  finished = _finished_seeds(summary)
  out = {}
  for level, arm in itertools.product(levels, arms):
    rows = where(curves, level=level, arm=arm)
    rows &= np.isin(curves['seed'], finished.get((level, arm), []))
    if not rows.any():
      continue
    y = curves[metric][rows]
    valid = np.isfinite(y)
    # Vectorized group-by step: curves.csv holds hundreds of thousands of rows.
    steps, inverse = np.unique(curves['step'][rows], return_inverse=True)
    counts = np.bincount(inverse, weights=valid, minlength=len(steps))
    sums = np.bincount(inverse, weights=np.where(valid, y, 0.0), minlength=len(steps))
    means = np.divide(sums, counts, out=np.full(len(steps), math.nan), where=counts > 0)
    out[(level, arm)] = (steps, means, counts.astype(int))
  return out


def curve_order(means):
  """Items of ``means`` by level, the ticket before the controls (legend and table order)."""
  return sorted(means.items(), key=lambda kv: (kv[0][0], kv[0][1] != 'ticket', kv[0][1]))


def layer_table(layers: Columns) -> tuple[list[str], dict[int, dict[str, float]]]:
  """Layer names (natural order) and {level: {layer: seed-mean fraction kept}} of the ticket."""
  rows = where(layers, arm='ticket')
  names = sorted({str(n) for n in layers['layer'][rows]}, key=results.natural_key)
  table = {}
  for level in sorted({int(v) for v in layers['level'][rows]}):
    at = rows & (layers['level'] == level)
    table[level] = {
      n: results.mean_std(layers['fraction'][at & (layers['layer'] == n)])[0] for n in names
    }
  return names, table


@dataclass
class Run:
  """Everything the sections read, loaded once by ``load_run``."""

  run_dir: Path
  out_dir: Path
  config: dict
  summary: Columns
  curves: Columns
  layers: Columns
  stats: list[ArmStats]
  curve_levels: Sequence[int] | None = None  # Levels of the training-curve figure.

  @property
  def seeds(self) -> list[int]:
    return sorted({int(s) for s in self.summary.get('seed', [])})

  @property
  def levels(self) -> list[int]:
    return sorted({s.level for s in self.stats})

  @property
  def remaining(self) -> dict[int, float]:
    """{level: weights remaining}, from the ticket arm when it has the level."""
    out = {s.level: s.remaining for s in self.stats}
    out.update({s.level: s.remaining for s in self.stats if s.arm == 'ticket'})
    return out

  @property
  def dense(self) -> ArmStats | None:
    return next((s for s in self.stats if s.level == 0 and s.arm == 'ticket'), None)

  def table(self, name: str, keys: Sequence[str] = ()) -> Columns:
    """Any other CSV table of the run directory (e.g. one an analysis wrote), as columns."""
    return read_csv(self.run_dir / name, keys)


def config_value(config: dict, dotted: str, default='?'):
  """``config['a']['b']`` for 'a.b', or ``default`` when a part is missing."""
  node = config
  for part in dotted.split('.'):
    if not isinstance(node, dict) or part not in node:
      return default
    node = node[part]
  return node


def load_run(run_dir: str | os.PathLike, *, out_dir: str | os.PathLike | None = None) -> Run:
  """Reads the CSV files and config of ``run_dir`` (missing files become empty)."""
  run_dir = Path(run_dir)
  try:
    config = json.loads((run_dir / 'config.json').read_text())
  except (OSError, ValueError):  # Missing or damaged: the report is drawn from the tables.
    config = {}
  summary = read_csv(run_dir / results.SUMMARY, ('seed', 'level', 'arm'))
  return Run(
    run_dir=run_dir,
    out_dir=Path(out_dir) if out_dir is not None else run_dir / 'report',
    config=config,
    summary=summary,
    curves=read_csv(run_dir / results.CURVES, ('seed', 'level', 'arm', 'step')),
    layers=read_csv(run_dir / results.LAYERS, ('seed', 'level', 'arm', 'layer')),
    stats=aggregate(summary),
  )

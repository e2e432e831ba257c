"""A study's results as tables: their columns, one reader, and the statistics over seeds.

Every table is a CSV file in the run directory (and a list of dicts in memory):

    summary.csv   one row per (seed, level, arm): the early-stop numbers
    curves.csv    one row per evaluation of a finished run
    layers.csv    weights kept per layer of a finished run
    timings.csv   wall seconds per finished run (apart, so summary.csv is reproducible)

Means over seeds come with the SAMPLE standard deviation (ddof=1; 0 for one
seed), everywhere: terminal tables, reports and comparisons. Diverged runs are
counted but left out of every mean.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import lth_jax.arms as arms_lib
from lth_jax.core.train import EVAL_METRICS

SUMMARY_COLUMNS = (
  'seed', 'level', 'arm', 'weights_remaining', 'early_stop_step', 'val_loss_at_early_stop',
  'val_accuracy_at_early_stop', 'test_accuracy_at_early_stop', 'train_accuracy_at_early_stop',
  'final_test_accuracy', 'final_step', 'diverged', 'diverged_step', 'collapsed_layers',
)  # fmt: skip
CURVE_COLUMNS = ('seed', 'level', 'arm', 'step', *EVAL_METRICS)
LAYER_COLUMNS = ('seed', 'level', 'arm', 'layer', 'kept', 'total', 'fraction')
TIMING_COLUMNS = ('seed', 'level', 'arm', 'wall_seconds')

SUMMARY, CURVES, LAYERS, TIMINGS = 'summary.csv', 'curves.csv', 'layers.csv', 'timings.csv'
TABLES = {
  SUMMARY: SUMMARY_COLUMNS,
  CURVES: CURVE_COLUMNS,
  LAYERS: LAYER_COLUMNS,
  TIMINGS: TIMING_COLUMNS,
}


def run_key(row: Mapping) -> tuple[int, int, str]:
  """(seed, level, arm) of a row, from a CSV row (strings) or a row in memory."""
  return int(row['seed']), int(row['level']), str(row['arm'])


def is_diverged(row: Mapping) -> bool:
  """Whether a summary row's run diverged (CSV '1'/'0', or an int/bool in memory)."""
  value = row.get('diverged', 0)
  return str(value).strip().lower() in ('1', 'true', '1.0')


def sort_arms(arms: Iterable[str]) -> list[str]:
  """Arms in the order every table and figure shows them (the registry's); unknown arms
  (in files written with arms registered elsewhere) follow alphabetically."""
  return sorted(set(arms), key=lambda a: (arm_rank(a), a))


def natural_key(name: str) -> list:
  """Sort key that puts 'conv_2' before 'conv_10' (layer names in tables and figures)."""
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def arm_rank(arm: str) -> int:
  known = arms_lib.names()
  return known.index(arm) if arm in known else len(known)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1) of the finite values.

  0 for the std of one value; (nan, nan) for none.

  >>> mean_std([1.0, 2.0, 3.0])
  (2.0, 1.0)
  """
  xs = [float(v) for v in values if math.isfinite(float(v))]
  if not xs:
    return math.nan, math.nan
  mean = math.fsum(xs) / len(xs)
  if len(xs) == 1:
    return mean, 0.0
  return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def read_rows(path: str | Path) -> list[dict[str, str]]:
  """Rows of a CSV table; [] when missing. A partly written last line (a crash) is ignored."""
  path = Path(path)
  if not path.exists():
    return []
  text = path.read_text()
  if text and not text.endswith('\n'):
    text = text[: text.rfind('\n') + 1]
  return list(csv.DictReader(io.StringIO(text)))

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
from typing import NamedTuple

import lth_jax.arms as arms_lib
from lth_jax.core import plan
from lth_jax.core.train import EVAL_METRICS

SUMMARY_COLUMNS = (
  'seed', 'level', 'arm', 'weights_remaining', 'early_stop_step', 'val_loss_at_early_stop',
  'val_accuracy_at_early_stop', 'test_accuracy_at_early_stop', 'train_accuracy_at_early_stop',
  'final_test_accuracy', 'final_step', 'diverged', 'diverged_step', 'collapsed_layers',
  'mask_steps',
)  # fmt: skip
CURVE_COLUMNS = ('seed', 'level', 'arm', 'step', *EVAL_METRICS)
LAYER_COLUMNS = ('seed', 'level', 'arm', 'layer', 'kept', 'total', 'fraction')
TIMING_COLUMNS = ('seed', 'level', 'arm', 'wall_seconds')
# The early-bird search of a ticket run (``lth_jax.study.early_bird``), one row per evaluation.
EARLY_BIRD_COLUMNS = (
  'seed', 'level', 'arm', 'step', 'distance', 'window_distance', 'early_bird', 'found',
)  # fmt: skip

DST_COLUMNS = (
  'seed', 'level', 'arm', 'step', 'drop_fraction', 'changed', 'overlap_with_ticket',
)  # fmt: skip

SUMMARY, CURVES, LAYERS, TIMINGS = 'summary.csv', 'curves.csv', 'layers.csv', 'timings.csv'
EARLY_BIRD = 'early_bird.csv'
DST = 'dst.csv'
TABLES = {
  SUMMARY: SUMMARY_COLUMNS,
  CURVES: CURVE_COLUMNS,
  LAYERS: LAYER_COLUMNS,
  TIMINGS: TIMING_COLUMNS,
  EARLY_BIRD: EARLY_BIRD_COLUMNS,
  DST: DST_COLUMNS,
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


natural_key = plan.natural_key  # 'conv_2' before 'conv_10' (layer names in tables and figures).


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


# ----------------------------------------------------------------------------- reading, checked

# A study directory is shared and copied around: every field of a table is checked before a
# row counts (``read_table``). Columns not named here hold text.
_INT = re.compile(r'\d{1,15}')
_NAME = re.compile(r'[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*')


def _int(hi: int):
  return lambda text: bool(_INT.fullmatch(text)) and int(text) <= hi


def _number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def _name(text: str) -> bool:
  return len(text) <= 128 and bool(_NAME.fullmatch(text))


def _text(text: str) -> bool:
  return len(text) <= 4096 and text.isprintable()


_STEP = (_int(10**12), 'an iteration (an integer >= 0)')
_FLOATS = (
  *EVAL_METRICS, 'weights_remaining', 'val_loss_at_early_stop', 'val_accuracy_at_early_stop',
  'test_accuracy_at_early_stop', 'train_accuracy_at_early_stop', 'final_test_accuracy',
  'fraction', 'wall_seconds', 'error_a', 'error_b', 'max_path_error', 'instability', 'alpha',
  'test_error', 'drop_fraction', 'changed', 'overlap_with_ticket',
)  # fmt: skip
COLUMN_CHECKS = {
  'seed': (_int(2**32 - 1), 'a seed (an integer in [0, 2**32))'),
  'level': (_int(100_000), 'a level (an integer >= 0)'),
  'arm': (_name, 'an arm name (letters, digits, _ and /)'),
  'layer': (_name, 'a layer name (letters, digits, _ and /)'),
  'step': _STEP,
  'early_stop_step': (lambda t: t == '' or _STEP[0](t), 'an iteration, or empty (no weight trained)'),
  'mask_steps': (lambda t: t == '' or _STEP[0](t), 'a number of iterations, or empty'),
  'final_step': _STEP,
  'rewind_step': _STEP,
  'diverged': (lambda t: t in ('0', '1'), '0 or 1'),
  'diverged_step': (lambda t: t == '' or _STEP[0](t), 'an iteration, or empty'),
  'collapsed_layers': (lambda t: t == '' or all(map(_name, t.split(';'))), "layer names joined by ';', or empty"),
  'kept': (_int(2**62), 'a count'),
  'distance': (lambda t: t == '' or _number(t), 'a number, or empty'),
  'window_distance': (lambda t: t == '' or _number(t), 'a number, or empty'),
  'early_bird': (lambda t: t in ('0', '1'), '0 or 1'),
  'found': (lambda t: t in ('0', '1'), '0 or 1'),
  'total': (_int(2**62), 'a count'),
  **{name: (_number, 'a number') for name in _FLOATS},
}  # fmt: skip
_TEXT = (_text, 'printable text')


class Problem(NamedTuple):
  """A line of a table that is not a row: which file, line and field, and why."""

  path: Path
  line: int
  field: str
  value: str
  expected: str

  def __str__(self) -> str:
    where = f'{self.path.name} line {self.line}' if self.line else self.path.name
    return f'{where}: {self.field}={self.value[:40]!r} is not {self.expected}'


def _problem(row: dict, columns, path: Path, line: int) -> Problem | None:
  if None in row:  # More fields than the header names.
    return Problem(path, line, '(fields)', ','.join(row[None])[:40], 'in the header')
  for name in columns:
    value = row.get(name)
    if value is None:
      return Problem(path, line, name, '', 'there (a field is missing)')
    check, expected = COLUMN_CHECKS.get(name, _TEXT)
    if not check(value):
      return Problem(path, line, name, value, expected)
  return None


def read_table(path: str | Path) -> tuple[list[dict[str, str]], list[Problem]]:
  """(rows, problems) of a CSV table, every field checked (``COLUMN_CHECKS``); ([], []) when
  missing. A partly written last line (a crash) is ignored; a file that is not a CSV text is
  one problem (line 0)."""
  path = Path(path)
  if not path.exists():
    return [], []
  try:
    text = path.read_bytes().decode('utf-8')
  except (OSError, UnicodeDecodeError) as e:
    return [], [Problem(path, 0, '(file)', type(e).__name__, 'a CSV text file')]
  if text and not text.endswith('\n'):
    text = text[: text.rfind('\n') + 1]
  rows, problems = [], []
  try:
    reader = csv.DictReader(io.StringIO(text))
    columns = [c for c in reader.fieldnames or [] if c]
    for row in reader:
      problem = _problem(row, columns, path, reader.line_num)
      if problem:
        problems.append(problem)
      else:
        rows.append(row)
  except csv.Error as e:
    return [], [Problem(path, 0, '(file)', str(e), 'a CSV table')]
  return rows, problems


def read_rows(path: str | Path) -> list[dict[str, str]]:
  """The rows of a CSV table that are rows (``read_table``: every field checked); [] when
  missing."""
  return read_table(path)[0]

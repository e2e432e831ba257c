"""Several run directories in one report: ``lth compare RUN_DIR RUN_DIR ... --output DIR``.

Overlays the runs' test accuracy and early-stop iteration at early stop against
weights remaining, one line per (run, arm) with error bars over seeds (sample
std, ``results.mean_std``), and writes the table behind each figure as CSV too.
This is how one sets one-shot against iterative pruning, layer-wise against
global, θ0 against θk: one run directory each, then one comparison.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lth_jax.errors import ConfigError, RunError
from lth_jax.report import figures
from lth_jax.report.analysis import ArmStats, Run, by_arm, config_value, load_run
from lth_jax.report.document import Doc, num, pct_label
from lth_jax.report.write import render
from lth_jax.study import results
from lth_jax.study.workdir import STUDY_JSON

ARM_STYLES = ('-', '--', ':', '-.')


@dataclass(frozen=True)
class Metric:
  """One figure of the comparison and the table behind it."""

  name: str  # Stem of the figure's PNG and the table's CSV.
  column: str  # The summary.csv column averaged over seeds.
  field: str  # The ArmStats field holding its (mean, std).
  scale: float
  ylabel: str
  title: str


METRICS = (
  Metric('accuracy_vs_remaining', 'test_accuracy_at_early_stop', 'test_acc', 100,
         'Test accuracy at early stop (%)', 'Test accuracy at the early-stopping iteration'),
  Metric('early_stop_vs_remaining', 'early_stop_step', 'early_stop', 1,
         'Early-stop iteration (minimum validation loss)', 'Early-stopping iteration'),
)  # fmt: skip
CSV_COLUMNS = (
  'run', 'arm', 'level', 'weights_remaining', 'metric', 'mean', 'std', 'n_seeds', 'n_diverged',
  'run_dir',
)  # fmt: skip


def check_inputs(run_dirs: Sequence, labels: Sequence[str] | None) -> list[str]:
  """The labels of ``run_dirs`` (default: their directory names), or a clear error."""
  if len(run_dirs) < 2:
    raise ConfigError(
      f'lth compare needs at least 2 run directories, got {len(run_dirs)}; '
      'pass two or more RUN_DIRs (each holds a summary.csv).'
    )
  for run_dir in map(Path, run_dirs):
    summary = run_dir / results.SUMMARY
    if not summary.is_file() or not results.read_rows(summary):
      problem = 'an empty' if summary.is_file() else 'no'
      raise RunError(
        f'{run_dir} has {problem} {results.SUMMARY}: pass run directories of `lth run` '
        '(<workdir>/<name>-<hash>/) with at least one finished run.'
      )
  if labels is None:
    names = [Path(d).resolve().name for d in run_dirs]
    return names if len(set(names)) == len(names) else [str(d) for d in run_dirs]
  if len(labels) != len(run_dirs):
    raise ConfigError(
      f'--labels has {len(labels)} labels for {len(run_dirs)} run directories; '
      'give one label per RUN_DIR, comma-separated.'
    )
  if len(set(labels)) != len(labels):
    raise ConfigError(f'--labels repeats a label ({", ".join(labels)}); give each run its own.')
  return list(labels)


def _lines(runs: dict[str, Run]) -> dict[str, tuple[list[ArmStats], dict]]:
  """{legend label: (stats, plot style)}: colour by run, line style by arm."""
  arms = results.sort_arms(s.arm for run in runs.values() for s in run.stats)
  lines = {}
  for i, (label, run) in enumerate(runs.items()):
    for arm, group in by_arm(run.stats).items():
      style = {'color': f'C{i % 10}', 'ls': ARM_STYLES[arms.index(arm) % len(ARM_STYLES)]}
      lines[f'{label}: {figures.arm_label(arm)}'] = (group, style)
  return lines


def figure_compare(runs: dict[str, Run], metric: Metric, path: Path) -> str:
  fig, axes = figures.new_figure(size=(9, 5.2))
  ax = axes[0, 0]
  getter = lambda s: getattr(s, metric.field)
  figures.errorbar_lines(ax, _lines(runs), getter, metric.scale)
  ax.ticklabel_format(axis='y', useOffset=False)
  figures.remaining_axis(ax, [s.remaining for run in runs.values() for s in run.stats])
  ax.set_ylabel(metric.ylabel)
  ax.set_title(metric.title)
  fig.legend(loc='outside right upper', fontsize=8)
  return figures.save(fig, path)


def table_rows(runs: dict[str, Run], metric: Metric) -> list[dict]:
  """One row per (run, arm, level): the metric's mean and sample std over non-diverged seeds."""
  rows = []
  for label, run in runs.items():
    for arm, group in by_arm(run.stats).items():
      for s in group:
        mean, std = getattr(s, metric.field)
        rows.append(dict(run=label, arm=arm, level=s.level, weights_remaining=s.remaining,
                         metric=metric.column, mean=mean, std=std, n_seeds=s.n,
                         n_diverged=s.n_diverged, run_dir=str(run.run_dir)))  # fmt: skip
  return rows


def _write_csv(rows: list[dict], path: Path) -> str:
  with path.open('w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction='ignore')
    writer.writeheader()
    writer.writerows({**r, 'mean': repr(r['mean']), 'std': repr(r['std'])} for r in rows)
  return path.name


def _shown(row: dict, metric: Metric) -> list:
  digits = 2 if metric.scale != 1 else 0
  mean, std = row['mean'], row['std']
  return [
    row['run'], figures.arm_label(row['arm']), row['level'], pct_label(row['weights_remaining']),
    num(mean, digits, metric.scale), num(std, digits, metric.scale) if math.isfinite(mean) else '—',
    row['n_seeds'], row['n_diverged'],
  ]  # fmt: skip


def section_metric(runs: dict[str, Run], metric: Metric, out_dir: Path, doc: Doc, number: int):
  doc.heading(metric.title)
  figure = figure_compare(runs, metric, out_dir / f'{metric.name}.png')
  doc.image(figure, f'Figure {number}. {metric.ylabel} against weights remaining; one line per '
            'run and arm (colour: run, line style: arm); mean ± sample std over seeds.')  # fmt: skip
  rows = table_rows(runs, metric)
  csv_name = _write_csv(rows, out_dir / f'{metric.name}.csv')
  unit = ' (%)' if metric.scale == 100 else ''
  doc.table(
    ['Run', 'Arm', 'Level', 'Remaining (%)', f'Mean{unit}', f'Std{unit}', 'n seeds', 'n diverged'],
    [_shown(r, metric) for r in rows],
    f'Table {number}. The numbers behind Figure {number} (also in {csv_name}); '
    'diverged seeds are counted but left out of the means.',
  )


def _flat(tree, prefix: str = '') -> dict[str, object]:
  """{'a.b': 1, 'plan[0].rate': 0.2} of nested dicts and lists of dicts."""
  if isinstance(tree, dict):
    items = [(f'{prefix}.{k}' if prefix else str(k), v) for k, v in tree.items()]
  elif isinstance(tree, list) and any(isinstance(v, dict) for v in tree):
    items = [(f'{prefix}[{i}]', v) for i, v in enumerate(tree)]
  else:
    return {prefix: tree}
  return {k: v for key, value in items for k, v in _flat(value, key).items()}


def _settings(run: Run) -> dict:
  """The run's config.json (``lth run``), else its study.json (``lth_jax.run_imp``)."""
  study = run.run_dir / STUDY_JSON
  if run.config or not study.is_file():
    return run.config
  return json.loads(study.read_text())


def section_runs(runs: dict[str, Run], doc: Doc):
  """What was compared: one row per run, and the config keys on which the runs differ."""
  doc.heading('Lottery ticket comparison: ' + ', '.join(runs), 1)
  rows = [
    [label, config_value(run.config, 'name'), config_value(run.config, 'model.name'),
     config_value(run.config, 'data.name'), ', '.join(map(str, run.seeds)),
     ', '.join(results.sort_arms(s.arm for s in run.stats)), str(run.run_dir)]
    for label, run in runs.items()
  ]  # fmt: skip
  doc.table(['Run', 'Config', 'Model', 'Data set', 'Seeds', 'Arms', 'Directory'], rows, 'Runs')
  flat = {label: _flat(_settings(run)) for label, run in runs.items()}
  keys = sorted({k for f in flat.values() for k in f})
  differ = [k for k in keys if len({repr(f.get(k)) for f in flat.values()}) > 1]
  if differ:
    doc.table(['Config key', *runs], [[k, *(f.get(k, '—') for f in flat.values())]
              for k in differ], 'Settings on which the runs differ')  # fmt: skip
  doc.para('Means and ± values are the mean and sample standard deviation over seeds.')


def write_comparison(
  run_dirs: Sequence[str | os.PathLike],
  *,
  output: str | os.PathLike,
  labels: Sequence[str] | None = None,
) -> Path:
  """Writes ``output/index.html`` and ``report.md`` overlaying ``run_dirs``; returns index.html.

  Args:
    run_dirs: two or more run directories (each with a summary.csv).
    output: the directory to write into (created; its earlier figures are replaced).
    labels: one legend label per run directory (default: the directories' names).
  """
  names = check_inputs(run_dirs, labels)
  out_dir = Path(output)
  out_dir.mkdir(parents=True, exist_ok=True)
  runs = {name: load_run(d, out_dir=out_dir) for name, d in zip(names, run_dirs)}
  doc = Doc()
  section_runs(runs, doc)
  for number, metric in enumerate(METRICS, 1):
    section_metric(runs, metric, out_dir, doc, number)
  return render(doc, out_dir, 'LTH comparison: ' + ', '.join(runs))

"""Sections of the report on accuracy: run facts, accuracy and early stopping, curves, the gap.

A section is a function ``(run, doc)``: it reads the loaded ``Run`` and appends
headings, prose, tables and figures (written into ``run.out_dir``) to ``doc``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lth_jax.report import figures
from lth_jax.report.analysis import (
  ArmStats,
  Run,
  config_value,
  curve_order,
  mean_curves,
  select_curve_levels,
)
from lth_jax.report.document import Doc, num, pct_label, pm
from lth_jax.report.references import paper_reference
from lth_jax.study import results


def levels_done(levels: Sequence[int], configured) -> str:
  """'8 of 8 (levels 0–8; level 0 is the dense network)': pruned levels, as configured."""
  if not levels:
    return f'none of {configured}'
  pruned = sum(1 for lv in levels if lv > 0)
  return f'{pruned} of {configured} (levels {levels[0]}–{levels[-1]}; level 0 is the dense network)'


def section_header(run: Run, doc: Doc):
  """Run facts, and the paper's numbers when the run is a recipe the paper reports."""
  c = run.config
  doc.heading(f'Lottery ticket report: {config_value(c, "name")}', 1)
  rows = [
    ['Model', config_value(c, 'model.name')],
    ['Data set', config_value(c, 'data.name')],
    ['Seeds', ', '.join(map(str, run.seeds)) or 'none'],
    ['Pruning levels done', levels_done(run.levels, config_value(c, 'num_levels'))],
    ['Arms', ', '.join(results.sort_arms(s.arm for s in run.stats)) or 'none'],
    ['Rewind step', config_value(c, 'rewind_step')],
    ['Diverged trainings', sum(s.n_diverged for s in run.stats)],
  ]
  if run.dense is not None:
    rows.append(['Dense test accuracy at early stop (%)', pm(run.dense.test_acc, run.dense.n, 100)])
  doc.table(['', 'Value'], rows, 'Run')
  doc.para(
    'Means and ± values are the mean and sample standard deviation over seeds; diverged '
    'trainings are counted but excluded from every mean, error bar and curve.'
  )
  paper = paper_reference(run.run_dir)
  if paper is not None:
    doc.heading(f'Paper reference ({paper["title"]})', 3)
    doc.items(paper['findings'])
    data = str(config_value(c, 'data.name', '')).lower()
    for part, note in paper.get('notes', {}).items():
      if part in data:
        doc.note(note)


def stats_rows(stats: Sequence[ArmStats]) -> list[list[str]]:
  rows = []
  for s in stats:
    gap = (s.train_acc[0] - s.test_acc[0], math.nan)
    rows.append(
      [
        s.level,
        figures.arm_label(s.arm),
        pct_label(s.remaining),
        pm(s.test_acc, s.n, 100),
        pm(s.early_stop, s.n, 1, 0),
        pm(s.train_acc, s.n, 100),
        pm(gap, 1, 100),
        pm(s.final_test_acc, s.n, 100),
        s.n,
        s.n_diverged,
      ]
    )
  return rows


def _versus(ticket: ArmStats, other: ArmStats | None) -> list[str]:
  if other is None:
    return ['—', '—']
  ratio = other.early_stop[0] / ticket.early_stop[0] if ticket.early_stop[0] else math.nan
  return [num(ticket.test_acc[0] - other.test_acc[0], 2, 100), num(ratio, 2)]


def comparison_rows(run: Run) -> tuple[list[str], list[list[str]]]:
  """Ticket minus dense and minus each control (pp), and control / ticket early-stop step."""
  controls = [a for a in results.sort_arms(s.arm for s in run.stats) if a != 'ticket']
  headers = ['Level', 'Remaining (%)', 'Ticket − dense (pp)']
  for arm in controls:
    headers += [f'Ticket − {arm} (pp)', f'{arm} / ticket early-stop step']
  by_key = {(s.level, s.arm): s for s in run.stats}
  dense = run.dense.test_acc[0] if run.dense else math.nan
  rows = []
  for level in run.levels:
    t = by_key.get((level, 'ticket'))
    if t is None or level == 0:
      continue
    row = [level, pct_label(t.remaining), num(t.test_acc[0] - dense, 2, 100)]
    for arm in controls:
      row += _versus(t, by_key.get((level, arm)))
    rows.append(row)
  return headers, rows


STATS_HEADERS = [
  'Level',
  'Arm',
  'Remaining (%)',
  'Test acc @ ES (%)',
  'Early-stop step',
  'Train acc @ ES (%)',
  'Train − test (pp)',
  'Final test acc (%)',
  'n seeds',
  'n diverged',
]


# Figures 1 and 2: (ArmStats field, scale, unit, y label, title, caption).
VS_REMAINING = (
  ('test_acc', 100, '%', 'Test accuracy at early stop (%)',
   'Test accuracy at the early-stopping iteration',
   'Figure 1. Test accuracy at the iteration of minimum validation loss; mean ± std over seeds.'),
  ('early_stop', 1, '', 'Early-stop iteration (minimum validation loss)',
   'Early-stopping iteration',
   'Figure 2. Iteration of minimum validation loss (lower = learns faster); mean ± std '
   'over seeds.'),
)  # fmt: skip


def section_accuracy(run: Run, doc: Doc):
  """Figures 1–2 and the main per-(level, arm) table."""
  doc.heading('Accuracy and early stopping vs weights remaining')
  if not run.stats:
    doc.note('summary.csv is missing or empty: no finished level yet.')
    return
  for i, (name, scale, unit, ylabel, title, caption) in enumerate(VS_REMAINING):
    path = run.out_dir / figures.FIGURE_NAMES[i]
    getter = lambda s, name=name: getattr(s, name)
    figure = figures.figure_vs_remaining(
      run.stats, path, getter=getter, scale=scale, ylabel=ylabel, title=title, unit=unit
    )
    doc.image(figure, caption)
  doc.table(
    STATS_HEADERS,
    stats_rows(run.stats),
    'Table 1. Per level and arm (numbers behind Figures 1, 2 and 4). n seeds counts '
    'non-diverged trainings.',
  )
  headers, rows = comparison_rows(run)
  if rows:
    doc.table(
      headers,
      rows,
      'Table 2. Ticket relative to the dense network and to each control '
      '(differences of means; step ratio > 1 means the ticket stops earlier).',
    )


def _curve_table(means, remaining) -> tuple[list[str], list[list[str]]]:
  """Mean test accuracy at about six evaluation steps per selected (level, arm)."""
  all_steps = np.unique(np.concatenate([steps for steps, _, _ in means.values()]))
  picks = all_steps[np.linspace(0, len(all_steps) - 1, min(6, len(all_steps))).round().astype(int)]
  headers = ['Level', 'Remaining (%)', 'Arm'] + [f'step {int(s)}' for s in picks]
  rows = []
  for (level, arm), (steps, ys, _) in curve_order(means):
    lookup = dict(zip(steps.tolist(), ys.tolist()))
    rows.append(
      [level, pct_label(remaining[level]), arm]
      + [num(lookup.get(float(s), math.nan), 2, 100) for s in picks]
    )
  return headers, rows


def _write_curves_csv(means, remaining, path: Path) -> str:
  with path.open('w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['level', 'weights_remaining', 'arm', 'step', 'mean_test_accuracy', 'n_seeds'])
    for (level, arm), (steps, ys, ns) in curve_order(means):
      for step, y, n in zip(steps, ys, ns):
        writer.writerow([level, remaining[level], arm, int(step), f'{y:.6g}', int(n)])
  return path.name


def _curve_levels(run: Run) -> list[int]:
  remaining = run.remaining
  if run.curve_levels:
    return [lv for lv in run.curve_levels if lv in remaining]
  paper = paper_reference(run.run_dir) or {}
  return select_curve_levels(remaining, targets=paper.get('curve_remaining'))


def section_curves(run: Run, doc: Doc):
  """Figure 3: test accuracy during training at a few levels (ticket vs reinit)."""
  doc.heading('Test accuracy during training')
  if not run.curves or not run.stats:
    doc.note('curves.csv or summary.csv is missing or empty: no training curves to show.')
    return
  levels = _curve_levels(run)
  means = mean_curves(run.curves, run.summary, levels, ['ticket', 'reinit'])
  if not means:
    doc.note(f'No finished, non-diverged ticket or reinit curves at levels {levels}.')
    return
  remaining = run.remaining
  doc.image(
    figures.figure_curves(means, remaining, run.out_dir / figures.FIGURE_NAMES[2]),
    'Figure 3. Mean test accuracy over seeds during training; colour = level, ticket '
    'solid, reinit dashed. The y axis clips the start of training to show the plateau.',
  )
  headers, rows = _curve_table(means, remaining)
  csv_name = _write_curves_csv(means, remaining, run.out_dir / 'test_accuracy_curves.csv')
  doc.table(
    headers,
    rows,
    f'Table 3. Mean test accuracy (%) at selected steps; every point of Figure 3 is in {csv_name}.',
  )


def section_gap(run: Run, doc: Doc):
  """Figure 4: train vs test accuracy at early stop (numbers in Table 1)."""
  doc.heading('Train vs test accuracy (generalization gap)')
  if not any(s.arm in ('ticket', 'reinit') for s in run.stats):
    doc.note('No ticket or reinit rows in summary.csv.')
    return
  doc.image(
    figures.figure_gap(run.stats, run.out_dir / figures.FIGURE_NAMES[3]),
    'Figure 4. Train (dashed, open markers) and test (solid) accuracy at the early-stop '
    'iteration, and their difference; means over seeds. Numbers in Table 1.',
  )

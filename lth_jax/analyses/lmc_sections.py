"""Report sections of linear mode connectivity, from a study's (or a sweep's) tables.

    path.png          test error along the path θ(α), one line per rewind step k, a panel per level
    instability.png   instability against k, one line per level (dense and each sparsity)
    accuracy.png      test accuracy of IMP's tickets against weights remaining, one line per k

Every point is a mean over seeds with the sample standard deviation as error bar
(``results.mean_std``). The tables are read from the report's run directory: a
sweep's gathered tables and its ``rewind_<k>/summary.csv``, or a single study's.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from lth_jax.analyses import lmc
from lth_jax.report import figures
from lth_jax.report.analysis import Run
from lth_jax.report.document import Doc, pct_label
from lth_jax.study import results

FIGURES = ('path.png', 'instability.png', 'accuracy.png')


def _mean_std(groups: dict) -> tuple[list, list, list]:
  xs = sorted(groups)
  stats = [results.mean_std(groups[x]) for x in xs]
  return xs, [m for m, _ in stats], [s for _, s in stats]


def _remaining(instability_rows) -> dict[int, float]:
  return {int(r['level']): float(r['weights_remaining']) for r in instability_rows}


def summaries(run_dir: Path) -> dict[int, list[dict]]:
  """k -> the summary rows of IMP with rewinding to k (a sweep's ``rewind_<k>/``, or the
  study's own summary.csv at its rewind step)."""
  found = {}
  for d in sorted(run_dir.glob('rewind_*')):
    suffix = d.name.removeprefix('rewind_')
    if suffix.isdigit():
      found[int(suffix)] = results.read_rows(d / results.SUMMARY)
  if not found and (run_dir / results.SUMMARY).exists():
    rows = results.read_rows(run_dir / lmc.INSTABILITY)
    k = int(rows[0]['rewind_step']) if rows else 0
    found[k] = results.read_rows(run_dir / results.SUMMARY)
  return dict(sorted(found.items()))


def path_figure(interpolation_rows, instability_rows, path: Path) -> str:
  by_level: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
  for r in interpolation_rows:
    by_level[int(r['level'])][int(r['rewind_step'])][float(r['alpha'])].append(
      100 * float(r['test_error'])
    )
  remaining = _remaining(instability_rows)
  levels = sorted(by_level) or [0]
  fig, axes = figures.new_figure(ncols=len(levels), size=(4.5 * len(levels), 3.6))
  for ax, level in zip(axes[0], levels, strict=True):
    for k, points in sorted(by_level[level].items()):
      alphas, means, stds = _mean_std(points)
      ax.errorbar(alphas, means, yerr=stds, marker='.', capsize=2, label=f'k = {k}')
    ax.set_title(f'level {level} ({pct_label(remaining.get(level, 1.0))}% of weights)')
    ax.set(xlabel='interpolation α', ylabel='test error (%)')
    ax.legend(fontsize=8)
  return figures.save(fig, path)


def instability_figure(instability_rows, path: Path) -> str:
  by_level: dict = defaultdict(lambda: defaultdict(list))
  for r in instability_rows:
    by_level[int(r['level'])][int(r['rewind_step'])].append(100 * float(r['instability']))
  remaining = _remaining(instability_rows)
  fig, axes = figures.new_figure(size=(5.5, 3.8))
  ax = axes[0][0]
  for level, points in sorted(by_level.items()):
    ks, means, stds = _mean_std(points)
    label = 'dense' if level == 0 else f'level {level} ({pct_label(remaining[level])}%)'
    ax.errorbar(ks, means, yerr=stds, marker='o', capsize=3, label=label)
  ax.set_xscale('symlog', linthresh=100)
  ax.axhline(0.0, color='gray', lw=0.8)
  ax.set(xlabel='rewind iteration k', ylabel='instability (% test error)')
  ax.legend(fontsize=8)
  return figures.save(fig, path)


def accuracy_figure(by_k: dict[int, list[dict]], path: Path) -> str:
  fig, axes = figures.new_figure(size=(5.5, 3.8))
  ax = axes[0][0]
  for k, rows in by_k.items():
    points: dict[float, list] = defaultdict(list)
    for r in rows:
      if r['arm'] == 'ticket' and not results.is_diverged(r):
        points[round(100 * float(r['weights_remaining']), 2)].append(
          100 * float(r['test_accuracy_at_early_stop'])
        )
    if points:
      shares, means, stds = _mean_std(points)
      ax.errorbar(shares, means, yerr=stds, marker='o', capsize=3, label=f'rewind to k = {k}')
  ax.set_xscale('log')
  ax.invert_xaxis()
  ax.set(xlabel='weights remaining (%)', ylabel='test accuracy at early stop (%)')
  ax.legend(fontsize=8)
  return figures.save(fig, path)


def section_connectivity(run: Run, doc: Doc) -> None:
  """The path, the instability against k and the tickets' accuracy per k, with the table."""
  doc.heading('Linear mode connectivity')
  instability = results.read_rows(run.run_dir / lmc.INSTABILITY)
  if not instability:
    doc.note(f'{lmc.INSTABILITY} is missing or empty: no pair measured yet.')
    return
  interpolation = results.read_rows(run.run_dir / lmc.INTERPOLATION)
  out = run.out_dir
  doc.image(
    path_figure(interpolation, instability, out / FIGURES[0]),
    'Figure. Test error along the straight path between the two copies trained from the '
    "level's ticket at k; mean ± std over seeds.",
  )
  doc.image(
    instability_figure(instability, out / FIGURES[1]),
    'Figure. Instability (the highest error on the path above the mean of its ends) against '
    'the rewind step k.',
  )
  doc.image(
    accuracy_figure(summaries(run.run_dir), out / FIGURES[2]),
    "Figure. Test accuracy of IMP's tickets at early stop against weights remaining, per k.",
  )
  groups: dict = defaultdict(list)
  for r in instability:
    groups[int(r['rewind_step']), int(r['level'])].append(r)
  rows = []
  for (k, level), group in sorted(groups.items()):
    i_mean, i_std = results.mean_std(float(r['instability']) for r in group)
    e_mean, _ = results.mean_std(float(r[c]) for r in group for c in ('error_a', 'error_b'))
    rows.append([
      k, level, pct_label(float(group[0]['weights_remaining'])), len(group),
      f'{100 * e_mean:.2f}', f'{100 * i_mean:.2f}' + (f' ± {100 * i_std:.2f}' if len(group) > 1 else ''),
    ])  # fmt: skip
  doc.table(
    ['k', 'Level', 'Remaining (%)', 'Seeds', 'Mean end error (%)', 'Instability (pp)'],
    rows,
    f'Table. Instability per rewind step and level (every point in {lmc.INSTABILITY}).',
  )


SECTIONS = (('linear mode connectivity', section_connectivity),)

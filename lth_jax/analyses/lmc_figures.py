"""Figures of a linear mode connectivity study (``lth_jax.analyses.lmc_study``), from its CSV files.

Written to ``<lmc dir>/report/``:

    path.png          test error along the path θ(α), one line per rewind step k, a panel per level
    instability.png   instability against k, one line per level (dense and each sparsity)
    accuracy.png      test accuracy of IMP's tickets against weights remaining, one line per k

Every point is a mean over seeds with the sample standard deviation as error bar
(``results.mean_std``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from lth_jax.analyses import lmc
from lth_jax.study import results

REPORT = 'report'
FIGURES = ('path.png', 'instability.png', 'accuracy.png')


def write_figures(lmc_dir: str | Path) -> Path:
  """Writes every figure of ``lmc_dir`` into its report directory; returns that directory."""
  import matplotlib

  matplotlib.use('Agg')
  lmc_dir = Path(lmc_dir)
  out = lmc_dir / REPORT
  out.mkdir(exist_ok=True)
  instability = results.read_rows(lmc_dir / lmc.INSTABILITY)
  path_figure(results.read_rows(lmc_dir / lmc.INTERPOLATION), instability, out / FIGURES[0])
  instability_figure(instability, out / FIGURES[1])
  accuracy_figure(_summaries(lmc_dir), out / FIGURES[2])
  return out


def _summaries(lmc_dir: Path) -> dict[int, list[dict]]:
  """k -> the summary rows of IMP with rewinding to k (its ``rewind_<k>/summary.csv``)."""
  found = {}
  for d in sorted(lmc_dir.glob('rewind_*')):
    suffix = d.name.removeprefix('rewind_')
    if suffix.isdigit():
      found[int(suffix)] = results.read_rows(d / results.SUMMARY)
  return dict(sorted(found.items()))


def _mean_std(groups: dict) -> tuple[list, list, list]:
  xs = sorted(groups)
  stats = [results.mean_std(groups[x]) for x in xs]
  return xs, [m for m, _ in stats], [s for _, s in stats]


def _remaining(instability_rows) -> dict[int, float]:
  return {int(r['level']): float(r['weights_remaining']) for r in instability_rows}


def path_figure(interpolation_rows, instability_rows, path: Path) -> None:
  import matplotlib.pyplot as plt

  by_level: dict[int, dict[int, dict[float, list]]] = defaultdict(
    lambda: defaultdict(lambda: defaultdict(list))
  )
  for r in interpolation_rows:
    by_level[int(r['level'])][int(r['rewind_step'])][float(r['alpha'])].append(
      100 * float(r['test_error'])
    )
  remaining = _remaining(instability_rows)
  levels = sorted(by_level) or [0]
  fig, axes = plt.subplots(1, len(levels), figsize=(4.5 * len(levels), 3.6), squeeze=False)
  for ax, level in zip(axes[0], levels, strict=True):
    for k, points in sorted(by_level[level].items()):
      alphas, means, stds = _mean_std(points)
      ax.errorbar(alphas, means, yerr=stds, marker='.', capsize=2, label=f'k = {k}')
    share = remaining.get(level, 1.0)
    ax.set_title(f'level {level} ({100 * share:.1f}% of weights)')
    ax.set(xlabel='interpolation α', ylabel='test error (%)')
    ax.legend(fontsize=8)
  _save(fig, path)


def instability_figure(instability_rows, path: Path) -> None:
  import matplotlib.pyplot as plt

  by_level: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
  for r in instability_rows:
    by_level[int(r['level'])][int(r['rewind_step'])].append(100 * float(r['instability']))
  remaining = _remaining(instability_rows)
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for level, points in sorted(by_level.items()):
    ks, means, stds = _mean_std(points)
    label = 'dense' if level == 0 else f'level {level} ({100 * remaining[level]:.1f}%)'
    ax.errorbar(ks, means, yerr=stds, marker='o', capsize=3, label=label)
  ax.set_xscale('symlog', linthresh=100)
  ax.axhline(0.0, color='gray', lw=0.8)
  ax.set(xlabel='rewind iteration k', ylabel='instability (% test error)')
  ax.legend(fontsize=8)
  _save(fig, path)


def accuracy_figure(summaries: dict[int, list[dict]], path: Path) -> None:
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for k, rows in summaries.items():
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
  _save(fig, path)


def _save(fig, path: Path) -> None:
  import matplotlib.pyplot as plt

  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)

"""The report's figures, drawn on ``matplotlib.figure.Figure`` (Agg) without pyplot.

Every ``figure_*`` function writes one PNG and returns its file name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

import lth_jax.arms as arms_lib
from lth_jax.report.analysis import ArmStats, by_arm, curve_order
from lth_jax.report.document import pct_label
from lth_jax.report.masks import Overlap, random_jaccard
from lth_jax.study import results

DPI = 120
FIGURE_NAMES = (
  'accuracy_vs_remaining.png',
  'early_stop_vs_remaining.png',
  'test_accuracy_curves.png',
  'train_test_gap.png',
  'layer_remaining.png',
  'init_weight_histograms.png',
  'mask_overlap.png',
)


def arm_label(arm: str) -> str:
  """The arm's label in figures and tables (its registry label)."""
  return arms_lib.label(arm)


def arm_color(arm: str, all_arms: Sequence[str]) -> str:
  return f'C{results.sort_arms(all_arms).index(arm) % 10}'


def new_figure(*, ncols: int = 1, nrows: int = 1, size=(7.5, 4.8)):
  fig = Figure(figsize=size, layout='constrained')
  return fig, fig.subplots(nrows, ncols, squeeze=False)


def save(fig: Figure, path: Path) -> str:
  fig.savefig(path, dpi=DPI)
  return path.name


def remaining_ticks(fractions: Iterable[float], most: int = 12) -> list[float]:
  """The labelled fractions of a weights-remaining axis, densest first: at least 1/``most`` of
  the axis's log span apart, so at most ``most`` + 1 (runs of nearly equal sparsity share a
  label), the sparsest and the densest always kept."""
  ticks = sorted({round(float(f), 6) for f in fractions if f > 0})
  if len(ticks) < 2:
    return ticks
  gap = math.log(ticks[-1] / ticks[0]) / most
  kept = [ticks[0]]
  for t in ticks[1:]:
    if math.log(t / kept[-1]) >= gap * 0.999:
      kept.append(t)
  kept[-1] = ticks[-1]  # The densest replaces a label too close to it, never the sparsest.
  return kept[::-1]


def remaining_axis(ax, fractions: Iterable[float]):
  """Log x axis of weights remaining, reversed so sparsity grows to the right."""
  ticks = remaining_ticks(fractions)
  ax.set_xscale('log')
  ax.set_xticks(ticks, [pct_label(t) for t in ticks], rotation=45 if len(ticks) > 8 else 0)
  ax.xaxis.set_minor_locator(NullLocator())
  ax.set_xlim(max(ticks) * 1.15, min(ticks) / 1.15)
  ax.set_xlabel('Weights remaining (%, log scale)')
  ax.grid(True, alpha=0.3)


def _dense_line(ax, dense: ArmStats | None, getter: Callable, scale: float, unit: str):
  """Horizontal dashed reference: the dense network (level 0), ± std as a band."""
  if dense is None:
    return
  mean, std = getter(dense)
  if not math.isfinite(mean):
    return
  ax.axhline(
    scale * mean, color='k', ls='--', lw=1.2, label=f'dense (level 0): {scale * mean:.4g}{unit}'
  )
  if dense.n > 1 and std > 0:
    ax.axhspan(scale * (mean - std), scale * (mean + std), color='k', alpha=0.08, lw=0)


def errorbar_lines(ax, lines: dict[str, tuple[list[ArmStats], dict]], getter, scale):
  """One error-bar line per {label: (stats, style)}, dodged slightly so error bars stay apart.

  ``style``: keyword arguments of ``ax.errorbar`` (e.g. color, ls).
  """
  for i, (label, (group, style)) in enumerate(lines.items()):
    group = [s for s in group if math.isfinite(getter(s)[0])]
    if not group:
      continue
    dodge = math.exp(0.015 * (i - (len(lines) - 1) / 2))
    x = np.array([s.remaining for s in group]) * dodge
    y = np.array([getter(s)[0] for s in group]) * scale
    err = np.nan_to_num(np.array([getter(s)[1] for s in group]) * scale)
    ax.errorbar(x, y, yerr=err, marker='o', ms=4, capsize=3, lw=1.5, label=label, **style)


def figure_vs_remaining(stats, path: Path, *, getter, scale, ylabel, title, unit) -> str:
  """Figures 1 and 2: a per-seed statistic against weights remaining, per arm."""
  fig, axes = new_figure()
  ax = axes[0, 0]
  all_arms = [s.arm for s in stats]
  lines = {arm_label(a): (g, {'color': arm_color(a, all_arms)}) for a, g in by_arm(stats).items()}
  errorbar_lines(ax, lines, getter, scale)
  dense = next((s for s in stats if s.level == 0 and s.arm == 'ticket'), None)
  _dense_line(ax, dense, getter, scale, unit)
  ax.ticklabel_format(axis='y', useOffset=False)
  remaining_axis(ax, [s.remaining for s in stats])
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend(fontsize=8)
  return save(fig, path)


def _curve_ylim(values: np.ndarray) -> tuple[float, float]:
  """Y range of accuracy curves: the plateau in detail, the early rise clipped.

  The first evaluations (near chance) would squash the plateau differences into a
  line; showing about 8× the plateau's spread (top minus median) below the top
  keeps the end of the rise visible, as in the paper's Figure 3.
  """
  if values.size == 0:
    return 0.0, 100.0
  high, median = float(values.max()), float(np.median(values))
  low = max(float(values.min()), high - 8 * max(high - median, 0.25))
  pad = 0.05 * (high - low)
  return low - pad, high + pad


def figure_curves(means, remaining, path: Path) -> str:
  """Figure 3: mean test accuracy during training; colour = level, ticket solid, reinit dashed."""
  fig, axes = new_figure(size=(10, 5))
  ax = axes[0, 0]
  levels = sorted({lv for lv, _ in means})
  styles = {'ticket': '-', 'reinit': '--'}
  plotted = []
  for (level, arm), (steps, ys, _) in curve_order(means):
    ax.plot(
      steps,
      100 * ys,
      color=f'C{levels.index(level) % 10}',
      ls=styles.get(arm, ':'),
      lw=1.5,
      label=f'{pct_label(remaining[level])}% — {arm_label(arm)}',
    )
    plotted.append(100 * ys[np.isfinite(ys)])
  ax.set_ylim(*_curve_ylim(np.concatenate(plotted)))
  ax.ticklabel_format(axis='y', useOffset=False)
  ax.set(xlabel='Training iteration', ylabel='Test accuracy (%)')
  ax.set_title('Test accuracy during training (mean over seeds)')
  ax.grid(True, alpha=0.3)
  # Curves span the whole width, so the legend goes beside the axes rather than over them.
  fig.legend(loc='outside right upper', fontsize=8)
  return save(fig, path)


def figure_gap(stats, path: Path) -> str:
  """Figure 4: train and test accuracy at early stop (left) and their gap (right)."""
  fig, axes = new_figure(ncols=2, size=(11, 4.6))
  all_arms = [s.arm for s in stats]
  groups = {a: g for a, g in by_arm(stats).items() if a in ('ticket', 'reinit')}
  for arm, group in groups.items():
    color, label = arm_color(arm, all_arms), arm_label(arm)
    group = [s for s in group if math.isfinite(s.test_acc[0]) and math.isfinite(s.train_acc[0])]
    x = np.array([s.remaining for s in group])
    train = 100 * np.array([s.train_acc[0] for s in group])
    test = 100 * np.array([s.test_acc[0] for s in group])
    axes[0, 0].plot(x, train, ls='--', marker='o', mfc='none', color=color, label=f'{label}: train')
    axes[0, 0].plot(x, test, ls='-', marker='o', color=color, label=f'{label}: test')
    axes[0, 1].plot(x, train - test, marker='o', color=color, label=label)
  for ax, ylabel, title in (
    (axes[0, 0], 'Accuracy at early stop (%)', 'Train vs test accuracy at early stop'),
    (axes[0, 1], 'Train − test accuracy (percentage points)', 'Generalization gap'),
  ):
    remaining_axis(ax, [s.remaining for s in stats])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
  return save(fig, path)


def figure_layers(names, table, overall: dict[int, float], path: Path) -> str:
  """Figure 5: per-layer fraction of weights remaining per level (log y)."""
  fig, axes = new_figure()
  ax = axes[0, 0]
  levels = sorted(table)
  for i, name in enumerate(names):
    fractions = [100 * table[lv][name] for lv in levels]
    ax.plot(levels, fractions, marker='o', ms=4, color=f'C{i % 10}', label=name)
  shared = [lv for lv in levels if lv in overall]
  ax.plot(shared, [100 * overall[lv] for lv in shared], 'k--', lw=1.2, label='all prunable')
  _percent_log_y(ax)
  ax.set_xlabel('Pruning level (round)')
  ax.set_ylabel('Weights remaining (%, log scale)')
  ax.set_title('Weights remaining per layer (winning ticket)')
  ax.set_xticks(levels if len(levels) <= 20 else levels[:: math.ceil(len(levels) / 20)])
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=8)
  return save(fig, path)


def _percent_log_y(ax):
  """Log y axis of percentages labelled 100, 50, 20, 10, 5, ... instead of powers of ten."""
  ax.set_yscale('log')
  ticks = [m * 10.0**e for e in range(2, -5, -1) for m in (5, 2, 1) if m * 10.0**e <= 100]
  ax.yaxis.set_major_locator(FixedLocator(ticks))
  ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:g}'))
  ax.yaxis.set_minor_locator(NullLocator())


def _init_histogram(ax, name, w, level_masks, remaining):
  edge = float(np.max(np.abs(w))) or 1.0
  bins = np.linspace(-edge, edge, 61)
  ax.hist(w, bins=bins, density=True, color='0.75', label='dense init (level 0)')
  for j, (level, m) in enumerate(sorted(level_masks.items())):
    if level == 0 or name not in m or not m[name].any():
      continue
    label = f'level {level} ({pct_label(remaining.get(level, math.nan))}% overall)'
    ax.hist(
      w[m[name]], bins=bins, density=True, histtype='step', lw=1.5, color=f'C{j % 10}', label=label
    )
  ax.set_title(name)
  ax.set_xlabel('Initial weight value θ0')
  ax.set_ylabel('Density')


def figure_init_histograms(weights, level_masks, remaining, path: Path) -> str:
  """Figure 6: normalized histograms of surviving θ0 per layer, dense init shaded."""
  names = list(weights)
  ncols = min(3, len(names))
  nrows = math.ceil(len(names) / ncols)
  fig, axes = new_figure(ncols=ncols, nrows=nrows, size=(4.2 * ncols, 3.4 * nrows + 0.4))
  for ax, name in zip(axes.flat, names):
    _init_histogram(ax, name, weights[name], level_masks, remaining)
  for ax in axes.flat[len(names) :]:
    ax.set_visible(False)
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='outside lower center', ncols=len(labels), fontsize=8)
  fig.suptitle('Initial weights of the surviving connections (normalized histograms)')
  return save(fig, path)


def figure_overlap(overlaps: Sequence[Overlap], path: Path) -> str:
  """Figure 7: mean pairwise Jaccard of ticket masks vs weights remaining, against random."""
  fig, axes = new_figure()
  ax = axes[0, 0]
  x = np.array([o.density for o in overlaps])
  ax.errorbar(
    x,
    [o.jaccard[0] for o in overlaps],
    yerr=[o.jaccard[1] for o in overlaps],
    color='C0',
    marker='o',
    lw=2,
    capsize=3,
    label='ticket masks, all prunable weights',
  )
  for i, name in enumerate(overlaps[0].layer_jaccard):
    y = [o.layer_jaccard.get(name, math.nan) for o in overlaps]
    ax.plot(
      x,
      y,
      lw=1,
      alpha=0.7,
      marker='.',
      color=f'C{(i + 1) % 10}',
      label=f'ticket masks, layer {name}',
    )
  ax.plot(x, [random_jaccard(d) for d in x], 'k--', label='random masks, same density: d/(2−d)')
  same_layers = [o.random_same_layer_densities for o in overlaps]
  ax.plot(x, same_layers, 'k:', label='random masks, same per-layer densities')
  remaining_axis(ax, x)
  ax.set_ylim(0, 1.05)
  ax.set_ylabel('Mean pairwise Jaccard index between seeds')
  ax.set_title(f'Mask overlap between seeds ({overlaps[0].n_seeds} seeds)')
  ax.legend(fontsize=7)
  return save(fig, path)

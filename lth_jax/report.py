"""Report of one run directory: figures (PNG), tables and a summary as HTML and Markdown.

``write_report(run_dir)`` reads what the experiment loop wrote into a run
directory (``config.json``, ``summary.csv``, ``curves.csv``, ``layers.csv`` and
``checkpoints/``) and writes ``run_dir/report/index.html`` and
``run_dir/report/report.md``, with the PNG figures beside them. It works on
partial runs (missing levels, arms, files or checkpoints): a figure whose inputs
are missing is replaced by a note, never an exception.

Diverged trainings (``diverged == 1``) are never averaged: they are counted in
the tables and left out of every mean, standard deviation and curve. Error bars
are the sample standard deviation (ddof=1) over seeds.

Figures are drawn on ``matplotlib.figure.Figure`` objects (Agg canvas) without
pyplot, so writing a report never touches the global backend or opens windows.
"""

from __future__ import annotations

import csv
import html
import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from lth_jax import checkpoint
from lth_jax import masks as masks_lib

Columns = dict[str, np.ndarray]

# Known arms first, in this order and colour; other arms follow alphabetically.
ARM_ORDER = ('ticket', 'reinit', 'random_prune', 'shuffle', 'sign_reinit', 'snip', 'grasp',
             'synflow', 'magnitude_init', 'signed_constant', 'supermask')  # fmt: skip
ARM_LABELS = {
  'ticket': 'winning ticket (IMP)',
  'reinit': 'random reinit',
  'random_prune': 'random pruning',
  'shuffle': 'shuffled init',
  'sign_reinit': 'sign-preserving reinit',
  'snip': 'SNIP at init',
  'grasp': 'GraSP at init',
  'synflow': 'SynFlow at init',
  'magnitude_init': 'magnitude at init',
  'signed_constant': 'signed constant (ticket mask)',
  'supermask': 'supermask (no weight trained)',
}
# Weights remaining (LeNet-300-100) at which the paper reports results.
PAPER_TARGETS = (0.513, 0.211, 0.070)
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


# ----------------------------------------------------------------------------- reading


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
  path = Path(path)
  if not path.is_file():
    return {}
  with path.open(newline='') as f:
    reader = csv.DictReader(f)
    rows = list(reader)
    names = list(reader.fieldnames or [])
  if keys and all(k in names for k in keys):
    rows = list({tuple(r[k] for k in keys): r for r in rows}.values())
  if not rows:
    return {}
  return {name: _column([r.get(name) for r in rows]) for name in names}


def _size(cols: Columns) -> int:
  return len(next(iter(cols.values()))) if cols else 0


def _where(cols: Columns, **conditions) -> np.ndarray:
  """Boolean row selector: every named column equals the given value."""
  keep = np.ones(_size(cols), dtype=bool)
  for name, value in conditions.items():
    keep &= cols[name] == value
  return keep


def _sort_arms(arms: Iterable[str]) -> list[str]:
  arms = set(arms)
  return [a for a in ARM_ORDER if a in arms] + sorted(arms - set(ARM_ORDER))


def _arm_color(arm: str, all_arms: Sequence[str]) -> str:
  return f'C{_sort_arms(all_arms).index(arm) % 10}'


def _mean_std(x: np.ndarray) -> tuple[float, float]:
  """Mean and sample std of the finite values (std 0 for one value, NaN for none)."""
  x = np.asarray(x, dtype=float)
  x = x[np.isfinite(x)]
  if x.size == 0:
    return math.nan, math.nan
  return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


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


def aggregate(summary: Columns) -> list[ArmStats]:
  """One ``ArmStats`` per (level, arm) in ``summary.csv``, sorted by level then arm."""
  if not summary:
    return []
  stats = []
  for level in sorted({int(v) for v in summary['level']}):
    at_level = summary['level'] == level
    for arm in _sort_arms(summary['arm'][at_level]):
      rows = at_level & (summary['arm'] == arm)
      ok = rows & (summary['diverged'] != 1)

      def ms(name, ok=ok):
        return _mean_std(summary[name][ok]) if name in summary else (math.nan, math.nan)

      stats.append(
        ArmStats(
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
      )
  return stats


# ----------------------------------------------------------------------------- masks


def jaccard(a, b) -> float:
  """|a ∩ b| / |a ∪ b| of two boolean arrays (1.0 when both are empty)."""
  a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
  union = np.count_nonzero(a | b)
  return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def mean_pairwise_jaccard(masks: Sequence[np.ndarray]) -> tuple[float, float, int]:
  """Mean and std of the Jaccard index over all pairs of ``masks``, and the pair count."""
  values = [jaccard(a, b) for a, b in itertools.combinations(masks, 2)]
  if not values:
    return math.nan, math.nan, 0
  return float(np.mean(values)), float(np.std(values)), len(values)


def random_jaccard(density: float) -> float:
  """Expected Jaccard index of two independent random masks of density d: d / (2 - d)."""
  return density / (2.0 - density)


def prunable_leaves(tree) -> dict[str, np.ndarray]:
  """{layer: flattened kernel} of the prunable leaves of a params or masks pytree."""
  leaves = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if masks_lib.leaf_kind(path, leaf) is not None:
      leaves[masks_lib.layer_name(path)] = np.ravel(np.asarray(leaf))
  return leaves


def _load(path: Path):
  """The checkpoint at ``path``, or None when it is missing or unreadable."""
  if not checkpoint.exists(path):
    return None
  try:
    return checkpoint.load(path)
  except checkpoint.CheckpointError as e:
    logging.warning('report: skipping %s', e)
    return None


def _mask_path(run_dir: Path, seed: int, level: int) -> Path:
  return run_dir / 'checkpoints' / f'seed_{seed}' / f'level_{level}' / 'masks'


# ----------------------------------------------------------------------------- document


@dataclass
class Doc:
  """Report content as blocks, rendered to both HTML and Markdown."""

  blocks: list[tuple] = field(default_factory=list)

  def heading(self, text: str, level: int = 2):
    self.blocks.append(('h', level, text))

  def para(self, text: str):
    self.blocks.append(('p', text))

  def note(self, text: str):
    self.blocks.append(('note', text))

  def items(self, items: Sequence[str]):
    self.blocks.append(('ul', list(items)))

  def table(self, headers: Sequence[str], rows: Sequence[Sequence], caption: str = ''):
    self.blocks.append(('table', list(headers), [[str(c) for c in r] for r in rows], caption))

  def image(self, filename: str, caption: str):
    self.blocks.append(('img', filename, caption))


_CSS = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee} caption{caption-side:top;text-align:left;font-style:italic;padding:4px 0}
img{max-width:100%;border:1px solid #ddd} figure{margin:1em 0}
.note{background:#fff6d5;border-left:4px solid #e0b000;padding:.4em .8em}
"""


def _html(doc: Doc, title: str) -> str:
  e = html.escape
  out = [
    f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title>',
    f'<style>{_CSS}</style></head><body>',
  ]
  for block in doc.blocks:
    kind = block[0]
    if kind == 'h':
      out.append(f'<h{block[1]}>{e(block[2])}</h{block[1]}>')
    elif kind == 'p':
      out.append(f'<p>{e(block[1])}</p>')
    elif kind == 'note':
      out.append(f'<p class="note">{e(block[1])}</p>')
    elif kind == 'ul':
      out.append('<ul>' + ''.join(f'<li>{e(i)}</li>' for i in block[1]) + '</ul>')
    elif kind == 'table':
      _, headers, rows, caption = block
      out.append(
        f'<table><caption>{e(caption)}</caption><tr>'
        + ''.join(f'<th>{e(h)}</th>' for h in headers)
        + '</tr>'
      )
      out.extend('<tr>' + ''.join(f'<td>{e(c)}</td>' for c in r) + '</tr>' for r in rows)
      out.append('</table>')
    elif kind == 'img':
      out.append(
        f'<figure><img src="{e(block[1])}" alt="{e(block[2])}">'
        f'<figcaption>{e(block[2])}</figcaption></figure>'
      )
  out.append('</body></html>\n')
  return '\n'.join(out)


def _markdown(doc: Doc) -> str:
  def cell(text):
    return str(text).replace('|', '\\|')

  out = []
  for block in doc.blocks:
    kind = block[0]
    if kind == 'h':
      out.append('#' * block[1] + ' ' + block[2])
    elif kind == 'p':
      out.append(block[1])
    elif kind == 'note':
      out.append('> **Note:** ' + block[1])
    elif kind == 'ul':
      out.append('\n'.join(f'- {i}' for i in block[1]))
    elif kind == 'table':
      _, headers, rows, caption = block
      lines = [f'*{caption}*', ''] if caption else []
      lines.append('| ' + ' | '.join(cell(h) for h in headers) + ' |')
      lines.append('|' + '---|' * len(headers))
      lines.extend('| ' + ' | '.join(cell(c) for c in r) + ' |' for r in rows)
      out.append('\n'.join(lines))
    elif kind == 'img':
      out.append(f'![{block[2]}]({block[1]})\n\n*{block[2]}*')
  return '\n\n'.join(out) + '\n'


# ----------------------------------------------------------------------------- formatting


def pct_label(fraction: float) -> str:
  """'100', '51.3', '7.0', '0.42': a weights-remaining fraction as a percentage label."""
  pct = 100.0 * fraction
  if pct >= 99.95:
    return '100'
  return f'{pct:.2f}' if pct < 1 else f'{pct:.1f}'


def _pm(value: tuple[float, float], n: int, scale: float = 1.0, digits: int = 2) -> str:
  mean, std = value
  if not math.isfinite(mean):
    return '—'
  if n < 2:
    return f'{scale * mean:.{digits}f}'
  return f'{scale * mean:.{digits}f} ± {scale * std:.{digits}f}'


def _num(x: float, digits: int = 2, scale: float = 1.0) -> str:
  return f'{scale * x:.{digits}f}' if math.isfinite(x) else '—'


# ----------------------------------------------------------------------------- figures


def _new_figure(*, ncols: int = 1, nrows: int = 1, size=(7.5, 4.8)):
  fig = Figure(figsize=size, layout='constrained')
  return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig: Figure, path: Path) -> str:
  fig.savefig(path, dpi=DPI)
  return path.name


def _remaining_axis(ax, fractions: Iterable[float]):
  """Log x axis of weights remaining, reversed so sparsity grows to the right."""
  ticks = sorted({round(float(f), 6) for f in fractions if f > 0}, reverse=True)
  ax.set_xscale('log')
  if len(ticks) > 12:  # Thin labels so they never overlap; keep the sparsest.
    step = math.ceil(len(ticks) / 12)
    ticks = ticks[::-1][::step][::-1]
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


def _by_arm(stats: Sequence[ArmStats]) -> dict[str, list[ArmStats]]:
  arms = _sort_arms(s.arm for s in stats)
  return {arm: [s for s in stats if s.arm == arm] for arm in arms}


def _plot_vs_remaining(ax, stats, getter, scale, all_arms):
  """One error-bar line per arm; arms are dodged slightly so error bars stay apart."""
  groups = _by_arm(stats)
  for i, (arm, group) in enumerate(groups.items()):
    group = [s for s in group if math.isfinite(getter(s)[0])]
    if not group:
      continue
    dodge = math.exp(0.015 * (i - (len(groups) - 1) / 2))
    x = np.array([s.remaining for s in group]) * dodge
    y = np.array([getter(s)[0] for s in group]) * scale
    err = np.nan_to_num(np.array([getter(s)[1] for s in group]) * scale)
    ax.errorbar(
      x,
      y,
      yerr=err,
      marker='o',
      ms=4,
      capsize=3,
      lw=1.5,
      color=_arm_color(arm, all_arms),
      label=ARM_LABELS.get(arm, arm),
    )


def figure_vs_remaining(stats, path: Path, *, getter, scale, ylabel, title, unit) -> str:
  """Figures 1 and 2: a per-seed statistic against weights remaining, per arm."""
  fig, axes = _new_figure()
  ax = axes[0, 0]
  dense = next((s for s in stats if s.level == 0 and s.arm == 'ticket'), None)
  all_arms = [s.arm for s in stats]
  _plot_vs_remaining(ax, stats, getter, scale, all_arms)
  _dense_line(ax, dense, getter, scale, unit)
  ax.ticklabel_format(axis='y', useOffset=False)
  _remaining_axis(ax, [s.remaining for s in stats])
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend(fontsize=8)
  return _save(fig, path)


def select_curve_levels(remaining: dict[int, float], max_levels: int = 4) -> list[int]:
  """Up to ``max_levels`` levels: the first, the paper's 51.3/21.1/7.0% when present, spread.

  Args:
    remaining: {level: fraction of weights remaining}.
    max_levels: how many levels to return at most.
  """
  levels = sorted(remaining)
  if len(levels) <= max_levels:
    return levels
  chosen = [levels[0]]
  for target in PAPER_TARGETS:
    best = min(levels, key=lambda lv: abs(math.log(max(remaining[lv], 1e-12) / target)))
    if abs(math.log(max(remaining[best], 1e-12) / target)) < 0.15 and best not in chosen:
      chosen.append(best)
  # Fill with the deepest level, then levels spread evenly over the range.
  spread = np.linspace(0, len(levels) - 1, max_levels).round().astype(int)
  for lv in [levels[-1]] + [levels[i] for i in spread]:
    if len(chosen) < max_levels and lv not in chosen:
      chosen.append(lv)
  return sorted(chosen)


def mean_curves(curves: Columns, summary: Columns, levels, arms, metric='test_accuracy'):
  """{(level, arm): (steps, mean over seeds, seeds per step)} of finished, non-diverged runs.

  Runs without a summary row (still training) and diverged runs are left out.
  """
  finished = {(int(lv), str(a)): [] for lv, a in zip(summary['level'], summary['arm'])}
  for s, lv, a, d in zip(summary['seed'], summary['level'], summary['arm'], summary['diverged']):
    if d != 1:
      finished[(int(lv), str(a))].append(s)
  out = {}
  for level, arm in itertools.product(levels, arms):
    rows = _where(curves, level=level, arm=arm)
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


def _curve_order(means):
  """Items of ``means`` by level, the ticket before the controls (legend and table order)."""
  return sorted(means.items(), key=lambda kv: (kv[0][0], kv[0][1] != 'ticket', kv[0][1]))


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
  fig, axes = _new_figure(size=(10, 5))
  ax = axes[0, 0]
  levels = sorted({lv for lv, _ in means})
  styles = {'ticket': '-', 'reinit': '--'}
  plotted = []
  for (level, arm), (steps, ys, _) in _curve_order(means):
    color = f'C{levels.index(level) % 10}'
    ax.plot(
      steps,
      100 * ys,
      color=color,
      ls=styles.get(arm, ':'),
      lw=1.5,
      label=f'{pct_label(remaining[level])}% — {ARM_LABELS.get(arm, arm)}',
    )
    plotted.append(100 * ys[np.isfinite(ys)])
  ax.set_ylim(*_curve_ylim(np.concatenate(plotted)))
  ax.ticklabel_format(axis='y', useOffset=False)
  ax.set_xlabel('Training iteration')
  ax.set_ylabel('Test accuracy (%)')
  ax.set_title('Test accuracy during training (mean over seeds)')
  ax.grid(True, alpha=0.3)
  # Curves span the whole width, so the legend goes beside the axes rather than over them.
  fig.legend(loc='outside right upper', fontsize=8)
  return _save(fig, path)


def figure_gap(stats, path: Path) -> str:
  """Figure 4: train and test accuracy at early stop (left) and their gap (right)."""
  fig, axes = _new_figure(ncols=2, size=(11, 4.6))
  all_arms = [s.arm for s in stats]
  groups = {a: g for a, g in _by_arm(stats).items() if a in ('ticket', 'reinit')}
  for arm, group in groups.items():
    color, label = _arm_color(arm, all_arms), ARM_LABELS.get(arm, arm)
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
    _remaining_axis(ax, [s.remaining for s in stats])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
  return _save(fig, path)


def layer_table(layers: Columns) -> tuple[list[str], dict[int, dict[str, float]]]:
  """Layer names (file order) and {level: {layer: seed-mean fraction kept}} of the ticket."""
  rows = _where(layers, arm='ticket')
  names = list(dict.fromkeys(str(n) for n in layers['layer'][rows]))
  table = {}
  for level in sorted({int(v) for v in layers['level'][rows]}):
    at = rows & (layers['level'] == level)
    table[level] = {n: _mean_std(layers['fraction'][at & (layers['layer'] == n)])[0] for n in names}
  return names, table


def figure_layers(names, table, overall: dict[int, float], path: Path) -> str:
  """Figure 5: per-layer fraction of weights remaining per level (log y)."""
  fig, axes = _new_figure()
  ax = axes[0, 0]
  levels = sorted(table)
  for i, name in enumerate(names):
    ax.plot(
      levels,
      [100 * table[lv][name] for lv in levels],
      marker='o',
      ms=4,
      color=f'C{i % 10}',
      label=name,
    )
  shared = [lv for lv in levels if lv in overall]
  ax.plot(shared, [100 * overall[lv] for lv in shared], 'k--', lw=1.2, label='all prunable')
  _percent_log_y(ax)
  ax.set_xlabel('Pruning level (round)')
  ax.set_ylabel('Weights remaining (%, log scale)')
  ax.set_title('Weights remaining per layer (winning ticket)')
  ax.set_xticks(levels if len(levels) <= 20 else levels[:: math.ceil(len(levels) / 20)])
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=8)
  return _save(fig, path)


def _percent_log_y(ax):
  """Log y axis of percentages labelled 100, 50, 20, 10, 5, ... instead of powers of ten."""
  ax.set_yscale('log')
  ticks = [m * 10.0**e for e in range(2, -5, -1) for m in (5, 2, 1) if m * 10.0**e <= 100]
  ax.yaxis.set_major_locator(FixedLocator(ticks))
  ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:g}'))
  ax.yaxis.set_minor_locator(NullLocator())


# ----------------------------------------------------------------------------- init histograms


def _histogram_levels(levels: Sequence[int]) -> list[int]:
  """Level 0 plus the middle and the deepest pruned level that exist."""
  pruned = [lv for lv in levels if lv > 0]
  if not pruned:
    return [0]
  picks = {pruned[-1], pruned[(len(pruned) - 1) // 2]}
  return [0] + sorted(picks)


def init_weight_data(run_dir: Path, seeds: Sequence[int], levels: Sequence[int]):
  """(seed, {layer: θ0}, {level: {layer: mask}}) for the first seed with θ0, or None."""
  for seed in seeds:
    init = _load(run_dir / 'checkpoints' / f'seed_{seed}' / 'init')
    if init is None or 'params' not in init:
      continue
    weights = prunable_leaves(init['params'])
    found = {}
    for level in _histogram_levels(levels):
      loaded = _load(_mask_path(run_dir, seed, level))
      if loaded is not None:
        found[level] = prunable_leaves(loaded)
      elif level == 0:  # The dense network keeps every weight.
        found[0] = {k: np.ones(v.shape, bool) for k, v in weights.items()}
    return seed, weights, found
  return None


def figure_init_histograms(weights, level_masks, remaining, path: Path) -> str:
  """Figure 6: normalized histograms of surviving θ0 per layer, dense init shaded."""
  names = list(weights)
  ncols = min(3, len(names))
  nrows = math.ceil(len(names) / ncols)
  fig, axes = _new_figure(ncols=ncols, nrows=nrows, size=(4.2 * ncols, 3.4 * nrows + 0.4))
  for i, name in enumerate(names):
    ax = axes.flat[i]
    w = weights[name]
    edge = float(np.max(np.abs(w))) or 1.0
    bins = np.linspace(-edge, edge, 61)
    ax.hist(w, bins=bins, density=True, color='0.75', label='dense init (level 0)')
    for j, (level, m) in enumerate(sorted(level_masks.items())):
      if level == 0 or name not in m or not m[name].any():
        continue
      label = f'level {level} ({pct_label(remaining.get(level, math.nan))}% overall)'
      ax.hist(
        w[m[name]],
        bins=bins,
        density=True,
        histtype='step',
        lw=1.5,
        color=f'C{j % 10}',
        label=label,
      )
    ax.set_title(name)
    ax.set_xlabel('Initial weight value θ0')
    ax.set_ylabel('Density')
  for ax in axes.flat[len(names) :]:
    ax.set_visible(False)
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='outside lower center', ncols=len(labels), fontsize=8)
  fig.suptitle('Initial weights of the surviving connections (normalized histograms)')
  return _save(fig, path)


def init_weight_rows(weights, level_masks, remaining) -> list[list[str]]:
  """Per (layer, level): kept count, std of kept θ0, share of kept |θ0| below σ_dense / 2."""
  rows = []
  for name, w in weights.items():
    sigma = float(np.std(w))
    for level, m in sorted(level_masks.items()):
      if name not in m:
        continue
      kept = w[m[name]]
      near_zero = np.mean(np.abs(kept) < sigma / 2) if kept.size else math.nan
      rows.append(
        [
          name,
          level,
          pct_label(remaining.get(level, math.nan)),
          kept.size,
          _num(float(np.std(kept)) if kept.size else math.nan, 4),
          _num(near_zero, 1, 100),
        ]
      )
  return rows


# ----------------------------------------------------------------------------- mask overlap


@dataclass(frozen=True)
class Overlap:
  """Mask overlap between seeds at one level."""

  level: int
  n_seeds: int
  density: float
  jaccard: tuple[float, float]
  layer_jaccard: dict[str, float]
  layer_density: dict[str, float]
  sizes: dict[str, int]

  @property
  def random_same_layer_densities(self) -> float:
    """Expected Jaccard of random masks with the same per-layer densities."""
    inter = sum(self.sizes[k] * d * d for k, d in self.layer_density.items())
    union = sum(self.sizes[k] * (2 * d - d * d) for k, d in self.layer_density.items())
    return inter / union if union else math.nan


def mask_overlap(run_dir: Path, seeds: Sequence[int], levels: Sequence[int]) -> list[Overlap]:
  """Pairwise Jaccard of the ticket masks across seeds, for every level with ≥ 2 masks."""
  result = []
  for level in levels:
    loaded = [_load(_mask_path(run_dir, s, level)) for s in seeds]
    per_seed = [prunable_leaves(m) for m in loaded if m is not None]
    if len(per_seed) < 2:
      continue
    names = list(per_seed[0])
    flat = [np.concatenate([m[n] for n in names]) for m in per_seed]
    mean, std, _ = mean_pairwise_jaccard(flat)
    result.append(
      Overlap(
        level=level,
        n_seeds=len(per_seed),
        density=float(np.mean([f.mean() for f in flat])),
        jaccard=(mean, std),
        layer_jaccard={n: mean_pairwise_jaccard([m[n] for m in per_seed])[0] for n in names},
        layer_density={n: float(np.mean([m[n].mean() for m in per_seed])) for n in names},
        sizes={n: per_seed[0][n].size for n in names},
      )
    )
  return result


def figure_overlap(overlaps: Sequence[Overlap], path: Path) -> str:
  """Figure 7: mean pairwise Jaccard of ticket masks vs weights remaining, against random."""
  fig, axes = _new_figure()
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
    ax.plot(
      x,
      [o.layer_jaccard.get(name, math.nan) for o in overlaps],
      lw=1,
      alpha=0.7,
      marker='.',
      color=f'C{(i + 1) % 10}',
      label=f'ticket masks, layer {name}',
    )
  ax.plot(x, [random_jaccard(d) for d in x], 'k--', label='random masks, same density: d/(2−d)')
  ax.plot(
    x,
    [o.random_same_layer_densities for o in overlaps],
    'k:',
    label='random masks, same per-layer densities',
  )
  _remaining_axis(ax, x)
  ax.set_ylim(0, 1.05)
  ax.set_ylabel('Mean pairwise Jaccard index between seeds')
  ax.set_title(f'Mask overlap between seeds ({overlaps[0].n_seeds} seeds)')
  ax.legend(fontsize=7)
  return _save(fig, path)


# ----------------------------------------------------------------------------- sections


@dataclass
class Run:
  """Everything the sections read, loaded once."""

  run_dir: Path
  out_dir: Path
  config: dict
  summary: Columns
  curves: Columns
  layers: Columns
  stats: list[ArmStats]

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


def _cfg(config: dict, dotted: str, default='?'):
  node = config
  for part in dotted.split('.'):
    if not isinstance(node, dict) or part not in node:
      return default
    node = node[part]
  return node


def _is_lenet_mnist(config: dict) -> bool:
  model = str(_cfg(config, 'model.name', '')).lower()
  return 'lenet' in model and 'mnist' in str(_cfg(config, 'data.name', '')).lower()


def section_header(run: Run, doc: Doc):
  """Run facts, and the paper's numbers when the run is LeNet-300-100 on (Fashion-)MNIST."""
  c = run.config
  doc.heading(f'Lottery ticket report: {_cfg(c, "name")}', 1)
  levels = run.levels
  done = f'{len(levels)} ({levels[0]}–{levels[-1]})' if levels else 'none'
  rows = [
    ['Model', _cfg(c, 'model.name')],
    ['Data set', _cfg(c, 'data.name')],
    ['Seeds', ', '.join(map(str, run.seeds)) or 'none'],
    ['Levels done', f'{done} of {_cfg(c, "num_levels")} configured'],
    ['Arms', ', '.join(_sort_arms(s.arm for s in run.stats)) or 'none'],
    ['Rewind step', _cfg(c, 'rewind_step')],
    ['Diverged trainings', sum(s.n_diverged for s in run.stats)],
  ]
  if run.dense is not None:
    rows.append(
      ['Dense test accuracy at early stop (%)', _pm(run.dense.test_acc, run.dense.n, 100)]
    )
  doc.table(['', 'Value'], rows, 'Run')
  doc.para(
    'Means and ± values are the mean and sample standard deviation over seeds; diverged '
    'trainings are counted but excluded from every mean, error bar and curve.'
  )
  if _is_lenet_mnist(c):
    doc.heading('Paper reference (Frankle & Carbin 2019, LeNet-300-100 on MNIST)', 3)
    doc.items(
      [
        'Dense test accuracy ≈ 98.0 ± 0.2%.',
        'Weights remaining after k rounds: 51.3% (k=3), 21.1% (7), 13.5% (9), 7.0% (12), '
        '3.6% (15).',
        'Tickets learn faster down to 21.1% remaining: about 2.5× earlier minimum validation loss '
        'than a random reinit there, and about 0.5 pp more accurate.',
        'More than 0.3 pp above dense at 13.5%; back to dense accuracy at 3.6%; random reinit '
        'loses accuracy from 21.1% on.',
        'At 10.7% remaining: IMP ≈ 98.3 ± 0.1% vs random mask ≈ 97.5 ± 0.3% (Stabilizing the LTH).',
      ]
    )
    if 'fashion' in str(_cfg(c, 'data.name', '')).lower():
      doc.note(
        'This run uses Fashion-MNIST; the numbers above are for MNIST. Dense MLPs of this '
        'size reach about 89–90% on Fashion-MNIST.'
      )


def _stats_rows(stats: Sequence[ArmStats]) -> list[list[str]]:
  rows = []
  for s in stats:
    gap = (s.train_acc[0] - s.test_acc[0], math.nan)
    rows.append(
      [
        s.level,
        ARM_LABELS.get(s.arm, s.arm),
        pct_label(s.remaining),
        _pm(s.test_acc, s.n, 100),
        _pm(s.early_stop, s.n, 1, 0),
        _pm(s.train_acc, s.n, 100),
        _pm(gap, 1, 100),
        _pm(s.final_test_acc, s.n, 100),
        s.n,
        s.n_diverged,
      ]
    )
  return rows


def _comparison_rows(run: Run) -> tuple[list[str], list[list[str]]]:
  """Ticket minus dense and minus each control (pp), and control / ticket early-stop step."""
  controls = [a for a in _sort_arms(s.arm for s in run.stats) if a != 'ticket']
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
    row = [level, pct_label(t.remaining), _num(t.test_acc[0] - dense, 2, 100)]
    for arm in controls:
      o = by_key.get((level, arm))
      if o is None:
        row += ['—', '—']
        continue
      row += [
        _num(t.test_acc[0] - o.test_acc[0], 2, 100),
        _num(o.early_stop[0] / t.early_stop[0] if t.early_stop[0] else math.nan, 2),
      ]
    rows.append(row)
  return headers, rows


def section_accuracy(run: Run, doc: Doc):
  """Figures 1–2 and the main per-(level, arm) table."""
  doc.heading('Accuracy and early stopping vs weights remaining')
  if not run.stats:
    doc.note('summary.csv is missing or empty: no finished level yet.')
    return
  doc.image(
    figure_vs_remaining(
      run.stats,
      run.out_dir / FIGURE_NAMES[0],
      getter=lambda s: s.test_acc,
      scale=100,
      ylabel='Test accuracy at early stop (%)',
      unit='%',
      title='Test accuracy at the early-stopping iteration',
    ),
    'Figure 1. Test accuracy at the iteration of minimum validation loss; mean ± std over seeds.',
  )
  doc.image(
    figure_vs_remaining(
      run.stats,
      run.out_dir / FIGURE_NAMES[1],
      getter=lambda s: s.early_stop,
      scale=1,
      ylabel='Early-stop iteration (minimum validation loss)',
      unit='',
      title='Early-stopping iteration',
    ),
    'Figure 2. Iteration of minimum validation loss (lower = learns faster); mean ± std '
    'over seeds.',
  )
  doc.table(
    [
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
    ],
    _stats_rows(run.stats),
    'Table 1. Per level and arm (numbers behind Figures 1, 2 and 4). n seeds counts '
    'non-diverged trainings.',
  )
  headers, rows = _comparison_rows(run)
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
  for (level, arm), (steps, ys, _) in _curve_order(means):
    lookup = dict(zip(steps.tolist(), ys.tolist()))
    rows.append(
      [level, pct_label(remaining[level]), arm]
      + [_num(lookup.get(float(s), math.nan), 2, 100) for s in picks]
    )
  return headers, rows


def _write_curves_csv(means, remaining, path: Path) -> str:
  with path.open('w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['level', 'weights_remaining', 'arm', 'step', 'mean_test_accuracy', 'n_seeds'])
    for (level, arm), (steps, ys, ns) in _curve_order(means):
      for step, y, n in zip(steps, ys, ns):
        writer.writerow([level, remaining[level], arm, int(step), f'{y:.6g}', int(n)])
  return path.name


def section_curves(run: Run, doc: Doc, curve_levels: Sequence[int] | None):
  """Figure 3: test accuracy during training at a few levels (ticket vs reinit)."""
  doc.heading('Test accuracy during training')
  if not run.curves or not run.stats:
    doc.note('curves.csv or summary.csv is missing or empty: no training curves to show.')
    return
  remaining = run.remaining
  levels = [lv for lv in (curve_levels or select_curve_levels(remaining)) if lv in remaining]
  means = mean_curves(run.curves, run.summary, levels, ['ticket', 'reinit'])
  if not means:
    doc.note(f'No finished, non-diverged ticket or reinit curves at levels {levels}.')
    return
  doc.image(
    figure_curves(means, remaining, run.out_dir / FIGURE_NAMES[2]),
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
    figure_gap(run.stats, run.out_dir / FIGURE_NAMES[3]),
    'Figure 4. Train (dashed, open markers) and test (solid) accuracy at the early-stop '
    'iteration, and their difference; means over seeds. Numbers in Table 1.',
  )


def section_layers(run: Run, doc: Doc):
  """Figure 5 and the per-layer table."""
  doc.heading('Weights remaining per layer')
  if not run.layers or not _where(run.layers, arm='ticket').any():
    doc.note('layers.csv is missing or has no ticket rows.')
    return
  names, table = layer_table(run.layers)
  overall = {s.level: s.remaining for s in run.stats if s.arm == 'ticket'}
  doc.image(
    figure_layers(names, table, overall, run.out_dir / FIGURE_NAMES[4]),
    "Figure 5. Fraction of each layer's weights kept by the ticket (mean over seeds).",
  )
  rows = [
    [lv, pct_label(overall[lv]) if lv in overall else '—']
    + [_num(table[lv][n], 2, 100) for n in names]
    for lv in sorted(table)
  ]
  doc.table(
    ['Level', 'All prunable (%)'] + [f'{n} (%)' for n in names],
    rows,
    'Table 4. Weights remaining per layer, ticket arm, mean over seeds.',
  )


def section_init(run: Run, doc: Doc):
  """Figure 6: distribution of the ticket's initial weights."""
  doc.heading('Initial weights of the winning ticket')
  data = init_weight_data(run.run_dir, run.seeds, run.levels)
  if data is None:
    doc.note('No θ0 checkpoint (checkpoints/seed_*/init) found: figure skipped.')
    return
  seed, weights, level_masks = data
  missing = sorted(set(_histogram_levels(run.levels)) - set(level_masks))
  if missing:
    doc.note(f'Mask checkpoints missing for seed {seed} at levels {missing}: not shown.')
  if int(_cfg(run.config, 'rewind_step', 0) or 0) > 0:
    doc.note(
      'This run rewinds to a later step; the tickets train from θk, while these '
      'histograms show θ0 under the ticket masks.'
    )
  doc.image(
    figure_init_histograms(weights, level_masks, run.remaining, run.out_dir / FIGURE_NAMES[5]),
    f'Figure 6. Seed {seed}: histograms of θ0 ⊙ mask (surviving weights only, each '
    'normalized to unit area) against the dense initialization.',
  )
  doc.table(
    [
      'Layer',
      'Level',
      'Remaining overall (%)',
      'Weights kept',
      'Std of kept θ0',
      'Kept with |θ0| < σ_dense/2 (%)',
    ],
    init_weight_rows(weights, level_masks, run.remaining),
    'Table 5. Surviving initial weights; a Gaussian init has about 38.3% of its weights '
    'within σ/2 of zero, fewer means survivors avoid zero.',
  )


def section_overlap(run: Run, doc: Doc):
  """Figure 7: how similar the tickets of different seeds are."""
  doc.heading('Mask overlap between seeds')
  if len(run.seeds) < 2:
    doc.note('Only one seed: mask overlap between seeds needs at least two.')
    return
  overlaps = mask_overlap(run.run_dir, run.seeds, run.levels)
  if not overlaps:
    doc.note('Fewer than two seeds have mask checkpoints at any level: figure skipped.')
    return
  doc.image(
    figure_overlap(overlaps, run.out_dir / FIGURE_NAMES[6]),
    'Figure 7. Mean pairwise Jaccard index |A∩B|/|A∪B| of the ticket masks of '
    'different seeds (± std over pairs), against independent random masks.',
  )
  names = list(overlaps[0].layer_jaccard)
  rows = [
    [
      o.level,
      pct_label(o.density),
      o.n_seeds,
      _pm(o.jaccard, 2, 1, 4),
      _num(random_jaccard(o.density), 4),
      _num(o.random_same_layer_densities, 4),
    ]
    + [_num(o.layer_jaccard.get(n, math.nan), 4) for n in names]
    for o in overlaps
  ]
  doc.table(
    ['Level', 'Remaining (%)', 'Seeds', 'Jaccard (all)', 'Random d/(2−d)', 'Random, per-layer d']
    + [f'Jaccard {n}' for n in names],
    rows,
    'Table 6. Mask overlap between seeds per level.',
  )


# ----------------------------------------------------------------------------- entry point


def _guarded(doc: Doc, name: str, fn: Callable, *args):
  """Runs one section; a failure becomes a note so the rest of the report is still written."""
  try:
    fn(*args)
  except Exception as e:  # A broken section must not cost the other figures.
    logging.exception('report: section %s failed', name)
    doc.note(f'Section "{name}" could not be drawn: {type(e).__name__}: {e}')


def load_run(run_dir: str | os.PathLike) -> Run:
  """Reads the CSV files and config of ``run_dir`` (missing files become empty)."""
  run_dir = Path(run_dir)
  config_path = run_dir / 'config.json'
  config = json.loads(config_path.read_text()) if config_path.is_file() else {}
  summary = read_csv(run_dir / 'summary.csv', ('seed', 'level', 'arm'))
  if summary and 'diverged' not in summary:
    summary['diverged'] = np.zeros(_size(summary))
  return Run(
    run_dir=run_dir,
    out_dir=run_dir / 'report',
    config=config,
    summary=summary,
    curves=read_csv(run_dir / 'curves.csv', ('seed', 'level', 'arm', 'step')),
    layers=read_csv(run_dir / 'layers.csv', ('seed', 'level', 'arm', 'layer')),
    stats=aggregate(summary),
  )


def write_report(run_dir: str | os.PathLike, *, curve_levels: Sequence[int] | None = None) -> Path:
  """Writes ``run_dir/report/index.html`` and ``report.md`` (figures beside them).

  Args:
    run_dir: a finished or partially finished run directory.
    curve_levels: levels shown in the training-curve figure (default: up to four,
      including the paper's 51.3/21.1/7.0% remaining when present).

  Returns:
    The path of ``index.html``.
  """
  run = load_run(run_dir)
  run.out_dir.mkdir(parents=True, exist_ok=True)
  for name in FIGURE_NAMES:  # A figure skipped now must not survive from an earlier report.
    (run.out_dir / name).unlink(missing_ok=True)
  doc = Doc()
  section_header(run, doc)
  _guarded(doc, 'accuracy', section_accuracy, run, doc)
  _guarded(doc, 'training curves', section_curves, run, doc, curve_levels)
  _guarded(doc, 'generalization gap', section_gap, run, doc)
  _guarded(doc, 'layers', section_layers, run, doc)
  _guarded(doc, 'initial weights', section_init, run, doc)
  _guarded(doc, 'mask overlap', section_overlap, run, doc)
  title = f'LTH report: {_cfg(run.config, "name")}'
  (run.out_dir / 'report.md').write_text(_markdown(doc))
  index = run.out_dir / 'index.html'
  index.write_text(_html(doc, title))
  return index

"""Sections of the report on the weights: per-layer sparsity, initial weights, mask overlap."""

from __future__ import annotations

import math

import numpy as np

from lth_jax.report import figures
from lth_jax.report.analysis import Run, config_value, layer_table, where
from lth_jax.report.document import Doc, num, pct_label, pm
from lth_jax.report.masks import histogram_levels, init_weight_data, mask_overlap, random_jaccard


def section_layers(run: Run, doc: Doc):
  """Figure 5 and the per-layer table."""
  doc.heading('Weights remaining per layer')
  if not run.layers or not where(run.layers, arm='ticket').any():
    doc.note('layers.csv is missing or has no ticket rows.')
    return
  names, table = layer_table(run.layers)
  overall = {s.level: s.remaining for s in run.stats if s.arm == 'ticket'}
  doc.image(
    figures.figure_layers(names, table, overall, run.out_dir / figures.FIGURE_NAMES[4]),
    "Figure 5. Fraction of each layer's weights kept by the ticket (mean over seeds).",
  )
  rows = [
    [lv, pct_label(overall[lv]) if lv in overall else '—']
    + [num(table[lv][n], 2, 100) for n in names]
    for lv in sorted(table)
  ]
  doc.table(
    ['Level', 'All prunable (%)'] + [f'{n} (%)' for n in names],
    rows,
    'Table 4. Weights remaining per layer, ticket arm, mean over seeds.',
  )


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
      std = float(np.std(kept)) if kept.size else math.nan
      remains = pct_label(remaining.get(level, math.nan))
      rows.append([name, level, remains, kept.size, num(std, 4), num(near_zero, 1, 100)])
  return rows


INIT_HEADERS = [
  'Layer',
  'Level',
  'Remaining overall (%)',
  'Weights kept',
  'Std of kept θ0',
  'Kept with |θ0| < σ_dense/2 (%)',
]


def section_init(run: Run, doc: Doc):
  """Figure 6: distribution of the ticket's initial weights."""
  doc.heading('Initial weights of the winning ticket')
  data = init_weight_data(run.run_dir, run.seeds, run.levels)
  if data is None:
    doc.note('No θ0 checkpoint (checkpoints/seed_*/init) found: figure skipped.')
    return
  seed, weights, level_masks = data
  missing = sorted(set(histogram_levels(run.levels)) - set(level_masks))
  if missing:
    doc.note(f'Mask checkpoints missing for seed {seed} at levels {missing}: not shown.')
  if int(config_value(run.config, 'rewind_step', 0) or 0) > 0:
    doc.note(
      'This run rewinds to a later step; the tickets train from θk, while these '
      'histograms show θ0 under the ticket masks.'
    )
  path = run.out_dir / figures.FIGURE_NAMES[5]
  doc.image(
    figures.figure_init_histograms(weights, level_masks, run.remaining, path),
    f'Figure 6. Seed {seed}: histograms of θ0 ⊙ mask (surviving weights only, each '
    'normalized to unit area) against the dense initialization.',
  )
  doc.table(
    INIT_HEADERS,
    init_weight_rows(weights, level_masks, run.remaining),
    'Table 5. Surviving initial weights; a Gaussian init has about 38.3% of its weights '
    'within σ/2 of zero, fewer means survivors avoid zero.',
  )


def _overlap_rows(overlaps, names) -> list[list[str]]:
  return [
    [
      o.level,
      pct_label(o.density),
      o.n_seeds,
      pm(o.jaccard, 2, 1, 4),
      num(random_jaccard(o.density), 4),
      num(o.random_same_layer_densities, 4),
    ]
    + [num(o.layer_jaccard.get(n, math.nan), 4) for n in names]
    for o in overlaps
  ]


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
    figures.figure_overlap(overlaps, run.out_dir / figures.FIGURE_NAMES[6]),
    'Figure 7. Mean pairwise Jaccard index |A∩B|/|A∪B| of the ticket masks of '
    'different seeds (± std over pairs), against independent random masks.',
  )
  names = list(overlaps[0].layer_jaccard)
  doc.table(
    ['Level', 'Remaining (%)', 'Seeds', 'Jaccard (all)', 'Random d/(2−d)', 'Random, per-layer d']
    + [f'Jaccard {n}' for n in names],
    _overlap_rows(overlaps, names),
    'Table 6. Mask overlap between seeds per level.',
  )

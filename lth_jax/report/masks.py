"""Mask analytics from a run's checkpoints: overlap between seeds, the ticket's initial weights.

Checkpoint names come from ``lth_jax.study.artifacts``; a missing or unreadable
checkpoint is skipped (the sections say so), never an exception.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from lth_jax.core import masks as masks_lib
from lth_jax.study import artifacts, checkpoint, results


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
  """{layer: flattened kernel} of the prunable leaves of a params or masks pytree.

  Layers in natural order (conv_2 before conv_10).
  """
  leaves = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if masks_lib.leaf_kind(path, leaf) is not None:
      leaves[masks_lib.layer_name(path)] = np.ravel(np.asarray(leaf))
  return {name: leaves[name] for name in sorted(leaves, key=results.natural_key)}


def _load(run_dir: Path, name: str):
  """The checkpoint ``name`` of the run, or None when it is missing or unreadable."""
  path = run_dir / artifacts.CHECKPOINTS / name
  if not checkpoint.exists(path):
    return None
  try:
    return checkpoint.load(path)
  except checkpoint.CheckpointError as e:
    logging.warning('report: skipping %s', e)
    return None


def histogram_levels(levels: Sequence[int]) -> list[int]:
  """Level 0 plus the middle and the deepest pruned level that exist."""
  pruned = [lv for lv in levels if lv > 0]
  if not pruned:
    return [0]
  picks = {pruned[-1], pruned[(len(pruned) - 1) // 2]}
  return [0] + sorted(picks)


def init_weight_data(run_dir: Path, seeds: Sequence[int], levels: Sequence[int]):
  """(seed, {layer: θ0}, {level: {layer: mask}}) for the first seed with θ0, or None."""
  for seed in seeds:
    init = _load(run_dir, artifacts.init(seed))
    if init is None or 'params' not in init:
      continue
    weights = prunable_leaves(init['params'])
    found = {}
    for level in histogram_levels(levels):
      loaded = _load(run_dir, artifacts.masks(seed, level))
      if loaded is not None:
        found[level] = prunable_leaves(loaded)
      elif level == 0:  # The dense network keeps every weight.
        found[0] = {k: np.ones(v.shape, bool) for k, v in weights.items()}
    return seed, weights, found
  return None


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


def _overlap(level: int, per_seed: list[dict[str, np.ndarray]]) -> Overlap:
  names = list(per_seed[0])
  flat = [np.concatenate([m[n] for n in names]) for m in per_seed]
  mean, std, _ = mean_pairwise_jaccard(flat)
  return Overlap(
    level=level,
    n_seeds=len(per_seed),
    density=float(np.mean([f.mean() for f in flat])),
    jaccard=(mean, std),
    layer_jaccard={n: mean_pairwise_jaccard([m[n] for m in per_seed])[0] for n in names},
    layer_density={n: float(np.mean([m[n].mean() for m in per_seed])) for n in names},
    sizes={n: per_seed[0][n].size for n in names},
  )


def mask_overlap(run_dir: Path, seeds: Sequence[int], levels: Sequence[int]) -> list[Overlap]:
  """Pairwise Jaccard of the ticket masks across seeds, for every level with ≥ 2 masks."""
  result = []
  for level in levels:
    loaded = [_load(run_dir, artifacts.masks(s, level)) for s in seeds]
    per_seed = [prunable_leaves(m) for m in loaded if m is not None]
    if len(per_seed) >= 2:
      result.append(_overlap(level, per_seed))
  return result

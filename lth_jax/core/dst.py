"""Sparse from the start: masks that move during training (SET, RigL) and layer densities (ERK).

Pure functions over pytrees (masks beside params, as everywhere):

- ``drop_fraction(step, initial, end_step)``: RigL's cosine schedule,
  ``initial / 2 · (1 + cos(π · step / end_step))``, 0 from ``end_step`` on.
- ``update(masks, params, grow_scores, fraction, counted)``: per counted layer,
  drop ``round(fraction · kept)`` of the kept weights with the smallest magnitude
  and grow as many where ``grow_scores`` are largest among the positions not kept
  after the drop (a weight just dropped may come back, keeping its value, as in
  RigL's code); grown weights start at exactly zero. Each layer keeps its count.
  SET grows at random (uniform scores), RigL where the dense gradient's magnitude
  is largest.
- ``layer_counts(shapes, total, distribution)``: how many weights each layer keeps
  for a total, exact to the weight: 'uniform' densities, or Erdős–Rényi-kernel
  ('erk') densities ∝ (sum of a kernel's dimensions) / (their product), with the
  capacity check of RigL's ``get_sparsities_erdos_renyi`` (while the densest layer
  would pass 1 it is made dense and the others share the rest), then rounded by
  largest remainders. Jittable in the total.
- ``random_masks(key, like, counts)``: random masks with those counts per layer.

Ties: among equal magnitudes the lower index is kept; among equal grow scores
the lower index grows first (``core.pools.keep_top``), so counts are exact
under ``jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax.core.pools import keep_top

DISTRIBUTIONS = ('ticket', 'erk', 'uniform')


def drop_fraction(step, *, initial: float, end_step: int):
  """RigL's cosine-decayed drop fraction at ``step`` (0 from ``end_step`` on)."""
  t = jnp.minimum(jnp.asarray(step, jnp.float32), end_step) / end_step
  return jnp.where(step < end_step, 0.5 * initial * (1.0 + jnp.cos(jnp.pi * t)), 0.0)


def top_nonnegative(values, valid, k):
  """Boolean mask of the ``k`` largest of nonnegative ``values`` where ``valid`` (ties: the
  lower index first), as ``core.pools.keep_top`` chooses, without a sort.

  The float32 bit patterns of nonnegative floats order as the floats do: 32 halvings of
  the int32 range find the k-th largest pattern, and the ties at it are taken in index
  order (a sort of a 235,200-weight layer costs some 60 ms on a CPU core; this, a few).
  """
  flat = values.reshape(-1).astype(jnp.float32)
  bits = jnp.where(valid.reshape(-1), jax.lax.bitcast_convert_type(flat, jnp.int32), -1)
  k = jnp.asarray(k, jnp.int32)

  def halve(_, bounds):  # count(bits >= lo) >= k > count(bits >= hi)
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    enough = jnp.sum(bits >= mid, dtype=jnp.int32) >= k
    return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

  top = jnp.iinfo(jnp.int32).max
  cut, _ = jax.lax.fori_loop(0, 32, halve, (jnp.int32(0), jnp.int32(top)))
  above = bits > cut
  ties = bits == cut
  need = k - jnp.sum(above, dtype=jnp.int32)
  chosen = above | (ties & (jnp.cumsum(ties, dtype=jnp.int32) <= need))
  return (chosen & (k > 0)).reshape(values.shape)


def update_layer(mask, weights, grow_scores, fraction):
  """(new mask, new weights) of one layer: drop the smallest kept magnitudes, grow the
  highest scores (nonnegative) among the positions left, new weights zero."""
  flat_m, flat_w = mask.reshape(-1), weights.reshape(-1)
  kept = jnp.sum(flat_m, dtype=jnp.int32)
  change = jnp.round(kept * fraction).astype(jnp.int32)
  # Kept after the drop: the kept - change largest magnitudes among the kept.
  after_drop = top_nonnegative(jnp.abs(flat_w), flat_m, kept - change)
  grow = top_nonnegative(grow_scores.reshape(-1), ~after_drop, change)
  new_mask = after_drop | grow
  new_weights = jnp.where(grow & ~flat_m, 0.0, flat_w) * new_mask
  return new_mask.reshape(mask.shape), new_weights.astype(weights.dtype).reshape(weights.shape)


def update(masks, params, grow_scores, fraction, counted):
  """``update_layer`` on every counted leaf (``counted``: a tree of bools like ``masks``);
  the other leaves are returned as they are. Returns (masks, params)."""
  leaves_m, treedef = jax.tree.flatten(masks)
  leaves_p = treedef.flatten_up_to(params)
  leaves_s = treedef.flatten_up_to(grow_scores)
  leaves_c = treedef.flatten_up_to(counted)
  out_m, out_p = [], []
  for m, p, s, c in zip(leaves_m, leaves_p, leaves_s, leaves_c, strict=True):
    if c:
      m, p = update_layer(m, p, s, fraction)
    out_m.append(m)
    out_p.append(p)
  return treedef.unflatten(out_m), treedef.unflatten(out_p)


def changed_fraction(old, new, counted):
  """The share of the kept weights of ``old`` that ``new`` no longer keeps (counted leaves)."""
  pairs = [(o, n) for o, n, c in zip(jax.tree.leaves(old), jax.tree.leaves(new),
                                     jax.tree.leaves(counted), strict=True) if c]  # fmt: skip
  moved = sum(jnp.sum(o & ~n, dtype=jnp.int32) for o, n in pairs)
  kept = sum(jnp.sum(o, dtype=jnp.int32) for o, _ in pairs)
  return moved / jnp.maximum(kept, 1)


def layer_densities(shapes, total, distribution: str):
  """Densities of layers ``shapes`` (a list) keeping ``total`` weights in all: 'uniform' (the
  same in each) or 'erk' (Erdős–Rényi-kernel with RigL's capacity check). Jittable in
  ``total``; a float32 array, one density per layer."""
  sizes = np.array([np.prod(s) for s in shapes], np.float32)
  if distribution == 'uniform':
    return jnp.full(len(shapes), total / sizes.sum(), jnp.float32)
  if distribution != 'erk':
    raise ValueError(f'unknown layer distribution {distribution!r}: use uniform or erk.')
  raw = np.array([sum(s) / np.prod(s) for s in shapes], np.float32)

  def eps_of(dense):
    rhs = total - jnp.sum(jnp.where(dense, sizes, 0.0))
    return rhs / jnp.maximum(jnp.sum(jnp.where(dense, 0.0, raw * sizes)), 1e-30)

  dense = jnp.zeros(len(shapes), bool)
  for _ in range(len(shapes) - 1):  # At most one more layer made dense per round.
    eps = eps_of(dense)
    top = jnp.max(jnp.where(dense, -jnp.inf, raw))
    over = eps * top > 1
    dense = dense | (over & ~dense & (raw == top))
  return jnp.where(dense, 1.0, jnp.minimum(1.0, eps_of(dense) * raw))


def layer_counts(shapes, total, distribution: str):
  """Kept weights per layer (int32 array) for ``layer_densities``, exact to the weight: the
  floors of density · size, and one more for the largest remainders (ties: the lower
  layer) until the counts sum to ``total``."""
  sizes = np.array([np.prod(s) for s in shapes], np.float32)
  wanted = layer_densities(shapes, total, distribution) * sizes
  counts = jnp.minimum(jnp.floor(wanted), sizes)
  left = jnp.asarray(total, jnp.float32) - jnp.sum(counts)
  remainder = jnp.where(counts < sizes, wanted - counts, -jnp.inf)
  return (counts + keep_top(remainder, left.astype(jnp.int32))).astype(jnp.int32)


WHOLE = -1  # In ``random_masks``' counts: the leaf kept whole (biases, unpruned layers).


def random_masks(key, like, counts):
  """Random masks shaped like ``like`` keeping ``counts`` (a tree of ints like it; ``WHOLE``:
  every weight) weights per leaf."""
  leaves, treedef = jax.tree.flatten(like)
  leaves_c = treedef.flatten_up_to(counts)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten([
    jnp.ones(x.shape, bool) if isinstance(c, int) and c == WHOLE else keep_top(jax.random.uniform(k, x.shape), c)
    for k, x, c in zip(keys, leaves, leaves_c, strict=True)
  ])  # fmt: skip

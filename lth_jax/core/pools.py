"""Ranking pooled leaves: the one rank–cut–scatter that pruning, scores, criteria and supermasks use.

A *pool* is a set of leaves ranked together: one leaf (layer-wise pruning), the
pruned layers pooled (global pruning), or every counted layer apart. Pools are
given as a pytree of Python ints like the masks (``Plan.pools_*`` makes them);
leaves in pool ``FIXED`` are left as they are. Within a pool the surviving
weights (mask True) are ranked by a score; pruned weights and NaN scores rank
below every survivor, and ties are broken by position (the lower index of the
leaves concatenated in flatten order ranks higher), so counts are exact under
``jit``.

>>> import jax.numpy as jnp
>>> scores = {'a': jnp.array([3.0, -1.0]), 'b': jnp.array([2.0, 0.5])}
>>> masks = {'a': jnp.array([True, True]), 'b': jnp.array([True, True])}
>>> select(scores, masks, pools={'a': 0, 'b': 0}, counts={0: 2})['b']
Array([ True, False], dtype=bool)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

FIXED = -1  # The pool of leaves that are not ranked (biases, unpruned layers).


def keep_top(scores: jax.Array, num_keep) -> jax.Array:
  """Boolean array keeping exactly ``num_keep`` of the highest ``scores`` (ties: lower index)."""
  flat = scores.reshape(-1)
  order = jnp.argsort(-flat, stable=True)
  ranks = jnp.zeros(flat.shape, jnp.int32).at[order].set(jnp.arange(flat.size, dtype=jnp.int32))
  return (ranks < num_keep).reshape(scores.shape)


def _by_pool(tree, masks, pools, fn: Callable[[int, jax.Array, jax.Array], jax.Array], fill):
  """Applies ``fn(pool, pooled scores, pooled masks) -> pooled values`` to each pool and
  scatters the results back into leaves (``fill(mask)`` for leaves of ``FIXED``)."""
  leaves, treedef = jax.tree.flatten(tree)
  leaves_m = treedef.flatten_up_to(masks)
  leaves_p = treedef.flatten_up_to(pools)
  out = [fill(m) for m in leaves_m]
  for pool in sorted({p for p in leaves_p if p != FIXED}):
    chosen = [i for i, p in enumerate(leaves_p) if p == pool]
    pooled = fn(
      pool,
      jnp.concatenate([leaves[i].reshape(-1) for i in chosen]),
      jnp.concatenate([leaves_m[i].reshape(-1) for i in chosen]),
    )
    offset = 0
    for i in chosen:
      size = leaves_m[i].size
      out[i] = pooled[offset : offset + size].reshape(leaves_m[i].shape)
      offset += size
  return treedef.unflatten(out)


def survivors(scores, mask):
  """``scores`` of the surviving weights, -inf for pruned ones and NaN scores."""
  return jnp.where(mask & ~jnp.isnan(scores), scores, -jnp.inf)


def select(scores, masks, *, pools, counts):
  """Masks keeping exactly ``counts[pool]`` highest-scored survivors of each pool.

  Args:
    scores: a pytree like ``masks`` (higher is kept).
    masks: current masks: pruned weights are never kept again.
    pools: Python ints like ``masks`` (``FIXED`` leaves keep their masks).
    counts: {pool: weights to keep} (ints or int arrays, at most the survivors).
  """

  def cut(pool, values, alive):
    return keep_top(survivors(values, alive), counts[pool]) & alive

  return _by_pool(scores, masks, pools, cut, fill=lambda m: m)


def alive_counts(masks, pools) -> dict:
  """{pool: surviving weights in it} (int arrays under jit)."""
  counts: dict = {}
  for m, p in zip(jax.tree.leaves(masks), jax.tree.leaves(pools), strict=True):
    if p != FIXED:
      counts[p] = counts.get(p, 0) + jnp.sum(m, dtype=jnp.int32)
  return counts


def ranks(values, masks, *, pools):
  """Each survivor's rank (0 = smallest) among the survivors of its pool; pruned: -1.

  FIXED leaves get 0.
  """

  def rank(pool, pooled, alive):
    order = jnp.argsort(jnp.where(alive, pooled, -jnp.inf), stable=True)
    r = jnp.zeros(pooled.shape, jnp.int32).at[order].set(jnp.arange(pooled.size))
    num_pruned = pooled.size - jnp.sum(alive, dtype=jnp.int32)
    return jnp.where(alive, (r - num_pruned).astype(jnp.float32), -1)

  return _by_pool(values, masks, pools, rank, fill=lambda m: jnp.zeros(m.shape, jnp.float32))


def select_by_threshold(scores, masks, *, pools, counts, iterations: int = 40):
  """About ``counts[pool]`` highest survivors per pool, by bisection on a threshold.

  Sorting every pool costs more than a training step on a CPU; ``iterations``
  halvings of [min, max] find the cut with a few counting passes. Exact for
  distinct scores (to float resolution); ``select`` makes a count exact.
  """

  def cut(pool, pooled, alive):
    values = jnp.where(alive, pooled, -jnp.inf)
    finite = jnp.where(jnp.isfinite(values), values, jnp.inf)
    count = counts[pool]

    def halve(_, bounds):
      lo, hi = bounds
      mid = (lo + hi) / 2
      enough = jnp.sum(values >= mid) >= count
      return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iterations, halve, (jnp.min(finite), jnp.max(values)))
    return (pooled >= lo) & alive & (count > 0)

  return _by_pool(scores, masks, pools, cut, fill=lambda m: m)

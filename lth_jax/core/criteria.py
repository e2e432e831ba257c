"""What IMP ranks the surviving weights by: the mask criteria of Zhou et al. (2019).

"Deconstructing Lottery Tickets: Zeros, Signs, and the Supermask" (Zhou, Lan,
Liu, Yosinski, NeurIPS 2019), Section 2 and Figure 2, with θ0 the initial and θT
the trained weights; the highest scores are kept:

* ``large_final``: |θT| (Frankle & Carbin; the default, computed exactly as before).
* ``magnitude_increase``: |θT| − |θ0|.
* ``movement``: |θT − θ0|.
* ``large_init_large_final``: weights large at init AND at the end: the upper-right
  quadrant of (|θ0|, |θT|), cut at the same percentile of both. The authors'
  code (``bsearch_quadrant_threshold`` in get_weight_init.py) searches that
  common percentile; equivalently the score is min(rank |θ0|, rank |θT|), the
  ranks taken over the surviving weights of what is ranked together (a layer,
  or the pooled layers of global pruning), which keeps an exact count.

Each applies layer-wise or globally as the study's plan says (``lth_jax.core.plan``).

>>> import jax.numpy as jnp
>>> final, init = {'w': jnp.array([1.0, -2.0, 0.5])}, {'w': jnp.array([0.5, -2.5, 0.1])}
>>> masks = {'w': jnp.array([True, True, True])}
>>> scores('magnitude_increase', final, init, masks, pools={'w': 0})['w']
Array([ 0.5, -0.5,  0.4], dtype=float32)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lth_jax.core.plan import Plan

CRITERIA = ('large_final', 'magnitude_increase', 'movement', 'large_init_large_final')
DEFAULT = 'large_final'
FIXED = -1  # Leaves that are not ranked.


def pools_for(plan: Plan):
  """Python ints like params: which leaves are ranked together (``FIXED``: not ranked)."""
  if plan.strategy == 'global':
    return plan._tree(0 if leaf.rate > 0 else FIXED for leaf in plan.leaves)
  return plan._tree(i if leaf.rate > 0 else FIXED for i, leaf in enumerate(plan.leaves))


def _ranks(values, masks, pools):
  """Each survivor's rank (0 = smallest) among the survivors of its pool; pruned: -1."""
  leaves_v, treedef = jax.tree.flatten(values)
  leaves_m = treedef.flatten_up_to(masks)
  leaves_p = treedef.flatten_up_to(pools)
  out = [jnp.zeros(v.shape, jnp.float32) for v in leaves_v]
  for pool in sorted({p for p in leaves_p if p != FIXED}):
    chosen = [i for i, p in enumerate(leaves_p) if p == pool]
    pooled = jnp.concatenate(
      [jnp.where(leaves_m[i], leaves_v[i], -jnp.inf).reshape(-1) for i in chosen]
    )
    order = jnp.argsort(pooled, stable=True)
    ranks = jnp.zeros(pooled.shape, jnp.int32).at[order].set(jnp.arange(pooled.size))
    num_pruned = pooled.size - sum(jnp.sum(leaves_m[i], dtype=jnp.int32) for i in chosen)
    ranks = (ranks - num_pruned).astype(jnp.float32)  # The pruned ones rank first: below 0.
    offset = 0
    for i in chosen:
      size = leaves_v[i].size
      out[i] = jnp.where(leaves_m[i], ranks[offset : offset + size].reshape(leaves_v[i].shape), -1)
      offset += size
  return treedef.unflatten(out)


def scores(criterion: str, final, init, masks, *, pools):
  """The criterion's scores of ``final`` (θT) given ``init`` (θ0); None for ``large_final``.

  None leaves today's magnitude pruning untouched (bit for bit).
  """
  if criterion == 'large_final':
    return None
  if criterion == 'magnitude_increase':
    return jax.tree.map(lambda t, i: jnp.abs(t) - jnp.abs(i), final, init)
  if criterion == 'movement':
    return jax.tree.map(lambda t, i: jnp.abs(t - i), final, init)
  if criterion == 'large_init_large_final':
    rank_init = _ranks(jax.tree.map(jnp.abs, init), masks, pools)
    rank_final = _ranks(jax.tree.map(jnp.abs, final), masks, pools)
    return jax.tree.map(jnp.minimum, rank_init, rank_final)
  raise ValueError(f'criterion {criterion!r} is not one of {CRITERIA}.')

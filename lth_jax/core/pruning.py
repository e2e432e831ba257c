"""Magnitude pruning and random pruning, as pure functions of (params, masks).

Rates are fractions *of the surviving weights*: pruning a layer with 120 of 200
weights left at rate 0.2 removes round(0.2 * 120) = 24 more. Counts are exact
under ``jit`` (no thresholds, so no surprises from ties): the survivors are
ranked by ``core.pools`` (a stable sort, ties broken by position: the lower flat
index survives), and already-pruned weights rank last so they never come back.

>>> import jax.numpy as jnp
>>> params = {'dense': {'kernel': jnp.array([[0.1, -3.0], [2.0, 0.5]])}}
>>> masks = {'dense': {'kernel': jnp.ones((2, 2), bool)}}
>>> prune_layerwise(params, masks, rates={'dense': {'kernel': 0.5}})['dense']['kernel']
Array([[False,  True],
       [ True, False]], dtype=bool)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lth_jax.core import masks as masks_lib
from lth_jax.core import pools


def num_to_keep(num_alive, rate):
  """Survivors after pruning ``rate`` of ``num_alive`` (round half to even)."""
  return num_alive - jnp.round(rate * num_alive).astype(jnp.int32)


def _magnitudes(params, scores):
  return jax.tree.map(jnp.abs, params) if scores is None else scores


def prune_layerwise(params, masks, *, rates, scores=None):
  """Prunes each leaf's smallest-magnitude survivors at its own rate.

  Args:
    params: trained weights (θj) whose magnitudes rank the survivors.
    masks: current masks (bool, same structure as ``params``).
    rates: same structure, the fraction of each leaf's survivors to remove
      (0.0 for leaves that are never pruned). See ``layer_rates``.
    scores: what ranks the survivors instead of |params| (same structure,
      higher is kept; e.g. ``lth_jax.core.criteria``). None: magnitude pruning.

  Returns:
    New masks, nested in ``masks`` (a pruned weight never revives).
  """
  leaves_m, treedef = jax.tree.flatten(masks)
  each = treedef.unflatten(list(range(len(leaves_m))))  # Every leaf its own pool.
  counts = {
    i: num_to_keep(jnp.sum(m, dtype=jnp.int32), rate)
    for i, (m, rate) in enumerate(zip(leaves_m, treedef.flatten_up_to(rates), strict=True))
  }
  return pools.select(_magnitudes(params, scores), masks, pools=each, counts=counts)


def prune_global(params, masks, *, rate, include, scores=None):
  """Prunes ``rate`` of the survivors of all ``include``d leaves by one ranking.

  Args:
    params: trained weights whose magnitudes rank the survivors.
    masks: current masks.
    rate: the fraction of the pooled survivors to remove.
    include: same structure, Python bools: which leaves take part (e.g.
      ``masks_lib.prunable(params, include_output=False)``). Others keep their
      masks unchanged.
    scores: as in ``prune_layerwise`` (None: magnitudes).
  """
  pooled = jax.tree.map(lambda inc: 0 if inc else pools.FIXED, include)
  alive = pools.alive_counts(masks, pooled)
  if not alive:
    return masks
  counts = {0: num_to_keep(alive[0], rate)}
  return pools.select(_magnitudes(params, scores), masks, pools=pooled, counts=counts)


def random_masks(key, masks):
  """Random masks with exactly the per-leaf survivor counts of ``masks``.

  The random-pruning control: same layer-wise sparsity, structure chosen at
  random (all-True leaves stay all-True).
  """
  leaves, treedef = jax.tree.flatten(masks)
  keys = jax.random.split(key, len(leaves))
  out = [
    pools.keep_top(jax.random.uniform(k, m.shape), jnp.sum(m, dtype=jnp.int32))
    for k, m in zip(keys, leaves, strict=True)
  ]
  return treedef.unflatten(out)


def layer_rates(params, *, conv: float = 0.0, dense: float = 0.0, output: float = 0.0):
  """Per-leaf pruning rates by layer kind (biases and norms: 0)."""
  by_kind = {'conv': conv, 'dense': dense, 'output': output, '': 0.0}
  return jax.tree.map(lambda kind: by_kind[kind], masks_lib.kinds(params))


def compound_rate(rate: float, rounds: int) -> float:
  """The one-shot rate that leaves what ``rounds`` rounds at ``rate`` leave."""
  return 1.0 - (1.0 - rate) ** rounds


def expected_fraction(counts_by_kind: dict[str, int], rates: dict[str, float], rounds: int):
  """The paper's closed form, e.g. (265,200·0.8^k + 1,000·0.9^k) / 266,200."""
  total = sum(counts_by_kind.values())
  return sum(n * (1.0 - rates.get(k, 0.0)) ** rounds for k, n in counts_by_kind.items()) / total

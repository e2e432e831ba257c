"""Magnitude pruning and random pruning, as pure functions of (params, masks).

Rates are fractions *of the surviving weights*: pruning a layer with 120 of 200
weights left at rate 0.2 removes round(0.2 * 120) = 24 more. Counts are exact
under ``jit`` (no thresholds, so no surprises from ties): scores are ranked
with a stable sort, ties are broken by position (the lower flat index survives),
and already-pruned weights score -inf so they can never come back.

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


def keep_top(scores: jax.Array, num_keep) -> jax.Array:
  """Boolean array keeping exactly ``num_keep`` of the highest ``scores``."""
  flat = scores.reshape(-1)
  order = jnp.argsort(-flat, stable=True)  # Descending; ties keep the lower index.
  ranks = jnp.zeros(flat.shape, jnp.int32).at[order].set(jnp.arange(flat.size, dtype=jnp.int32))
  return (ranks < num_keep).reshape(scores.shape)


def _scores(param, mask):
  return jnp.where(mask, jnp.abs(param), -jnp.inf)


def num_to_keep(num_alive, rate):
  """Survivors after pruning ``rate`` of ``num_alive`` (round half to even)."""
  return num_alive - jnp.round(rate * num_alive).astype(jnp.int32)


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

  def prune_leaf(p, m, rate, s=None):
    num_alive = jnp.sum(m, dtype=jnp.int32)
    ranked = _scores(p, m) if s is None else jnp.where(m, s, -jnp.inf)
    return keep_top(ranked, num_to_keep(num_alive, rate)) & m

  if scores is None:
    return jax.tree.map(prune_leaf, params, masks, rates)
  return jax.tree.map(prune_leaf, params, masks, rates, scores)


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
  leaves_p, treedef = jax.tree.flatten(params)
  leaves_m = treedef.flatten_up_to(masks)
  leaves_in = treedef.flatten_up_to(include)
  chosen = [i for i, inc in enumerate(leaves_in) if inc]
  if not chosen:
    return masks
  leaves_s = leaves_p if scores is None else treedef.flatten_up_to(scores)

  def ranked(i):
    if scores is None:
      return _scores(leaves_p[i], leaves_m[i])
    return jnp.where(leaves_m[i], leaves_s[i], -jnp.inf)

  pooled = jnp.concatenate([ranked(i).reshape(-1) for i in chosen])
  num_alive = sum(jnp.sum(leaves_m[i], dtype=jnp.int32) for i in chosen)
  keep = keep_top(pooled, num_to_keep(num_alive, rate))
  out, offset = list(leaves_m), 0
  for i in chosen:
    size = leaves_m[i].size
    out[i] = keep[offset : offset + size].reshape(leaves_m[i].shape) & leaves_m[i]
    offset += size
  return treedef.unflatten(out)


def random_masks(key, masks):
  """Random masks with exactly the per-leaf survivor counts of ``masks``.

  The random-pruning control: same layer-wise sparsity, structure chosen at
  random (all-True leaves stay all-True).
  """
  leaves, treedef = jax.tree.flatten(masks)
  keys = jax.random.split(key, len(leaves))
  out = [
    keep_top(jax.random.uniform(k, m.shape), jnp.sum(m, dtype=jnp.int32))
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

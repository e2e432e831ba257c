"""Structured masks: whole units and channels (with refilling), and N:M sparsity.

A *unit* is one output of a layer: a dense layer's neuron or a conv layer's
output channel, i.e. one index of its kernel's last axis. Structured pruning
follows *links*, (producer, consumer) pairs of layers where the consumer's
inputs are the producer's units (a chain ``dense_0 -> dense_1 -> output`` is the
links (dense_0, dense_1), (dense_1, output)): removing a unit of a producer
removes its incoming weights (the kernel's column) and its outgoing weights (the
consumer's inputs from it), so the masked network is exactly a smaller dense
one (``lth_jax.core.compaction``). Layers that produce no link keep their units
(an output layer's are the classes; a ResNet block's last conv's channels are
tied to the residual sum). Between a conv layer and a dense one a flatten
of NHWC maps channel ``c`` to the dense inputs ``c, c + C, c + 2C, ...``
(channels fastest, as ``reshape`` lays them out).

* ``prune_units``: per producer, ``rate`` of the surviving units go:
  those with the smallest norm of their surviving incoming weights
  (``sqrt(sum |w|^2)``; with a criterion, the smallest sum of its scores), at
  least one unit kept.
* ``refill``: Chen et al. (ICML 2022), "Coarsening the granularity": after an
  unstructured pruning step, keep in each layer the units holding the most
  surviving weights, as many as hold the layer's surviving weight count
  (rounded, at least one), and make them dense again (weights of kept units
  pruned by the step come back; as channels, the masks still shrink).
* ``random_units``: the structured random control: per layer the ticket's
  number of units, chosen at random.
* ``n_m``: at most N of every M consecutive input weights kept: the groups run
  along a kernel's flattened input axes (``kh*kw*cin`` for HWIO conv kernels, channels
  fastest, as sparse tensor cores group a GEMM's reduction axis); a last group
  shorter than M keeps at most N.

Every function is pure and jittable (links, rates and N:M are static).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lth_jax.core import pools
from lth_jax.errors import ConfigError

GRANULARITIES = ('weight', 'unit', 'channel', 'refill')
STRUCTURED = ('unit', 'channel', 'refill')


def parse_n_m(text: str) -> tuple[int, int] | None:
  """'2:4' -> (2, 4); '' -> None (no N:M constraint)."""
  if not text:
    return None
  try:
    n, m = (int(part) for part in str(text).split(':'))
  except ValueError:
    n = m = 0
  if not 0 < n < m:
    raise ConfigError(
      f'pruning.n_m={text!r} is not N:M with 0 < N < M (e.g. 2:4); empty for no N:M constraint.'
    )
  return n, m


def unit_alive(mask):
  """[units]: which units of a kernel mask keep an incoming weight."""
  return jnp.any(mask.reshape(-1, mask.shape[-1]), axis=0)


def unit_norms(values, mask):
  """[units]: the L2 norm of each unit's surviving incoming ``values``."""
  flat = jnp.where(mask, values, 0).reshape(-1, mask.shape[-1]).astype(jnp.float32)
  return jnp.sqrt(jnp.sum(flat * flat, axis=0))


def unit_sums(scores, mask):
  """[units]: the sum of each unit's surviving incoming ``scores`` (signed scores stay signed)."""
  flat = jnp.where(mask, scores, 0).reshape(-1, mask.shape[-1]).astype(jnp.float32)
  return jnp.sum(flat, axis=0)


def restrict(mask, *, units=None, inputs=None):
  """``mask`` without the units not in ``units`` and the inputs not in ``inputs``.

  ``inputs`` are the previous layer's units: a conv kernel's input channels, or a
  dense kernel's inputs (after a flatten: input ``r`` is unit ``r % len(inputs)``).
  """
  if units is not None:
    mask = mask & units.reshape((1,) * (mask.ndim - 1) + (-1,))
  if inputs is not None:
    if mask.ndim == 2:
      mask = mask & jnp.tile(inputs, mask.shape[0] // inputs.shape[0])[:, None]
    else:
      mask = mask & inputs.reshape((1,) * (mask.ndim - 2) + (-1, 1))
  return mask


def chain(*layers: str) -> tuple[tuple[str, str], ...]:
  """The links of layers that feed each other in turn: chain('a', 'b', 'c') -> (a, b), (b, c)."""
  return tuple(zip(layers, layers[1:]))


def check_links(granularity, links, n_m, strategy, leaves) -> None:
  """A plan's granularity and links, checked against its leaves' (``plan.Leaf``) shapes."""
  if granularity not in GRANULARITIES:
    raise ConfigError(f'pruning.granularity={granularity!r} is not one of {GRANULARITIES}.')
  if granularity == 'weight':
    return
  if n_m is not None:
    raise ConfigError(
      f'pruning.n_m constrains single weights; it does not combine with granularity={granularity!r}.'
    )
  if strategy != 'layerwise':
    raise ConfigError(
      f'granularity={granularity!r} ranks units within each layer: use pruning.strategy=layerwise.'
    )
  if not links:
    raise ConfigError(
      f"granularity={granularity!r} needs to know which layer takes which layer's units as "
      "inputs: links=structured.chain('dense_0', 'dense_1', 'output') (pruning={'links': ...} "
      "in make_study); a removed unit's outgoing weights are the next layer's inputs from it."
    )
  counted = {leaf.layer: leaf for leaf in leaves if leaf.kind}
  unknown = sorted({layer for link in links for layer in link} - set(counted))
  if unknown:
    raise ConfigError(
      f'links name layers that are not prunable layers of the model: {unknown}; '
      f'prunable layers: {", ".join(counted)}.'
    )
  producers, consumers = [a for a, _ in links], [b for _, b in links]
  if len(set(producers)) != len(producers) or len(set(consumers)) != len(consumers):
    raise ConfigError(
      f'links: a layer feeds one next layer and takes the units of one layer; got {links}.'
    )
  fed_at = {b: i for i, (_, b) in enumerate(links)}
  late = [a for i, (a, _) in enumerate(links) if fed_at.get(a, -1) > i]
  if late:
    raise ConfigError(
      f'links: list them in the order the layers feed each other; {late} produce units '
      'before the link that feeds them.'
    )
  for a, b in links:
    units, (inputs, dense) = counted[a].shape[-1], _inputs(counted[b].shape)
    fits = inputs == units or (dense and len(counted[a].shape) == 4 and inputs % units == 0)
    if not fits:
      raise ConfigError(
        f'links: layer {b!r} (kernel {counted[b].shape}) does not take the {units} units of '
        f'{a!r} as its inputs; list (producer, consumer) pairs of layers that feed each other.'
      )


def _inputs(shape) -> tuple[int, bool]:
  """A kernel's number of inputs (conv: input channels) and whether it is dense."""
  return (shape[0], True) if len(shape) == 2 else (shape[-2], False)


def _keep(scores, alive, num_keep):
  return pools.keep_top(pools.survivors(scores, alive), num_keep) & alive


def prune_units(kernels, masks, *, links, rates, scores=None):
  """Masks with ``rates[p]`` of the surviving units of each link's producer ``p`` removed.

  Args:
    kernels: the counted kernels (θj), a list.
    masks: their masks.
    links: (producer, consumer) indices into the lists, in the order the layers
      feed each other; a consumer's inputs are its producer's units.
    rates: per kernel, the fraction of its surviving units to remove (used for
      producers only).
    scores: None: units ranked by the L2 norm of their surviving incoming weights;
      else a criterion's scores per kernel (higher kept; possibly signed): units
      ranked by the sum of their surviving incoming weights' scores.

  Returns:
    The new masks, nested in ``masks``; every producer keeps at least one unit.
  """
  out = list(masks)
  for p, c in links:
    if scores is None:
      ranking = unit_norms(jnp.abs(kernels[p]), out[p])
    else:
      ranking = unit_sums(scores[p], out[p])
    alive = unit_alive(out[p])
    num_alive = jnp.sum(alive, dtype=jnp.int32)
    # A layer keeps at least one unit (a layer without any would cut the network).
    num_keep = jnp.minimum(
      num_alive, jnp.maximum(num_alive - jnp.round(rates[p] * num_alive).astype(jnp.int32), 1)
    )
    keep = _keep(ranking, alive, num_keep)
    out[p] = restrict(out[p], units=keep)
    out[c] = restrict(out[c], inputs=keep)
  return out


def refill(pruned, before, *, links):
  """Chen et al.'s refilling of unstructured masks ``pruned`` (from ``before``), per producer.

  Each producer keeps the units with the most surviving weights in ``pruned``
  (ties: the lower index), as many as hold its surviving count when dense:
  ``round(count / inputs)`` with ``inputs`` the incoming weights of a unit of
  ``before`` (after the previous layer's refill), at least one, at most the units
  alive in ``before``; kept units get every incoming weight of ``before`` back.
  Layers that produce no units keep their ``before`` masks, inputs restricted.

  Differences from Chen et al.'s code (VITA-Group/Structure-LTH, ``pruning_utils``):
  there the count is about ``int(count / fan_in) + 1`` channels over the full
  fan-in, one channel tied at the threshold is picked at random and the others
  tied keep their sparse weights, the next layer's inputs from dropped channels
  are not removed, and the unstructured step is a global L1 ranking of the conv
  layers. Here every unit is whole or gone (the network is really smaller), its
  outgoing weights go with it, ties go to the lower index, and the unstructured
  step is the plan's layer-wise one.
  """
  out = list(before)
  for p, c in links:
    column = jnp.sum(out[p].reshape(-1, out[p].shape[-1]), axis=0, dtype=jnp.int32)
    alive = column > 0
    kept = jnp.sum(pruned[p] & out[p], axis=tuple(range(out[p].ndim - 1)), dtype=jnp.int32)
    want = jnp.round(jnp.sum(kept) / jnp.maximum(jnp.max(column), 1)).astype(jnp.int32)
    num_keep = jnp.clip(want, 1, jnp.sum(alive, dtype=jnp.int32))
    keep = _keep(kept.astype(jnp.float32), alive, num_keep)
    out[p] = restrict(out[p], units=keep)
    out[c] = restrict(out[c], inputs=keep)
  return out


def random_units(key, masks, dense, *, links):
  """Random units with the per-producer unit counts of ``masks``, on the ``dense`` masks."""
  out = list(dense)
  keys = jax.random.split(key, len(out))
  for p, c in links:
    num_keep = jnp.sum(unit_alive(masks[p]), dtype=jnp.int32)
    keep = pools.keep_top(jax.random.uniform(keys[p], (out[p].shape[-1],)), num_keep)
    out[p] = restrict(out[p], units=keep)
    out[c] = restrict(out[c], inputs=keep)
  return out


def _groups(x, m: int, fill):
  """[K, units] -> [groups, m, units], the last group padded with ``fill``."""
  flat = x.reshape(-1, x.shape[-1])
  pad = -flat.shape[0] % m
  flat = jnp.concatenate([flat, jnp.full((pad, flat.shape[1]), fill, flat.dtype)])
  return flat.reshape(-1, m, flat.shape[1])


def n_m(scores, mask, n: int, m: int):
  """``mask`` keeping at most the ``n`` highest-scored survivors of every ``m`` inputs."""
  k = mask.size // mask.shape[-1]
  values = _groups(pools.survivors(scores.astype(jnp.float32), mask), m, -jnp.inf)
  order = jnp.argsort(-values, axis=1, stable=True)
  rank = jnp.argsort(order, axis=1, stable=True)
  keep = (rank < n).reshape(-1, mask.shape[-1])[:k].reshape(mask.shape)
  return keep & mask


def group_counts(mask, m: int):
  """[groups, units]: how many weights each group of ``m`` inputs keeps (for checks)."""
  return jnp.sum(_groups(mask, m, False), axis=1)

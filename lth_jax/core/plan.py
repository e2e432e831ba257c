"""The pruning plan: which weights a study prunes, as what kind, at what rate.

Nothing about a model is guessed silently: the plan lists every params leaf
with its kind and rate, is printed at the start of every run (``table``) and
written to the run directory (``plan.json``). It is also the one counter of
weights (``counts``, ``fraction_remaining``): every table, figure and summary
row counts what the plan counts.

* Kinds. By default the prunable weights are the leaves named ``kernel`` with
  at least two dimensions (Flax's ``Dense`` and ``Conv``): ``conv`` when they
  have more than two dimensions, ``dense`` otherwise. Everything else (biases,
  batch-norm scales, embeddings) has kind '' and is never pruned nor counted.
  ``prunable=`` (a predicate or a list of layer names) and ``kinds=`` (layer name
  -> kind) override this.
* The output layer has kind ``output``: its own rate (``rate_output``) and, in
  global pruning, kept out of the pooled ranking unless ``prune_output``. It is
  the layer named by ``output_layer``; the default 'auto' takes the layer named
  ``output`` (the zoo's convention) and, when there is none and it would make a
  difference, stops with an error that says how to name it.
* Rates are fractions of the SURVIVING weights removed per round.

>>> import jax.numpy as jnp
>>> params = {'hidden': {'kernel': jnp.ones((4, 3)), 'bias': jnp.ones(3)},
...           'head': {'kernel': jnp.ones((3, 2))}}
>>> print(make_plan(params, output_layer='head', rate_dense=0.2, rate_output=0.1).table())
layer   leaf           shape  kind    rate  weights
head    head/kernel    3x2    output   10%        6
hidden  hidden/kernel  4x3    dense    20%       12
hidden  hidden/bias    3      —          —        —
prunable weights: 18 (layer-wise)
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax.core import masks as masks_lib
from lth_jax.core import pools, pruning, structured
from lth_jax.errors import ConfigError

KINDS = ('conv', 'dense', 'output')
STRATEGIES = ('layerwise', 'global')
AUTO = 'auto'


@dataclasses.dataclass(frozen=True)
class Leaf:
  """One params leaf in the plan."""

  leaf: str  # 'dense_0/kernel'
  layer: str  # 'dense_0': the module owning the leaf
  shape: tuple[int, ...]
  kind: str  # 'conv', 'dense', 'output', or '' (never pruned, not counted)
  rate: float  # fraction of survivors pruned per round (0 for kind '' and excluded leaves)

  @property
  def size(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64))


@dataclasses.dataclass(frozen=True)
class Plan:
  """Per-leaf kinds and rates (in the params' flatten order) and the strategy."""

  strategy: str
  leaves: tuple[Leaf, ...]
  treedef: Any = dataclasses.field(compare=False, repr=False)
  # What a round removes (``core.structured``): 'weight', whole units ('unit' / 'channel':
  # one rule, a dense layer's units are a conv layer's channels) or 'refill'; the
  # (producer, consumer) layers whose units are removed with their outgoing weights; at most
  # N of every M inputs kept (None: no such constraint).
  granularity: str = 'weight'
  links: tuple[tuple[str, str], ...] = ()
  n_m: tuple[int, int] | None = None

  def tree(self, values):
    """A pytree like params from one value per leaf (in ``leaves`` order)."""
    return jax.tree.unflatten(self.treedef, list(values))

  def prunable(self):
    """Python bools like params: which leaves are weights that count (kind != '')."""
    return self.tree(leaf.kind != '' for leaf in self.leaves)

  def rates(self):
    """Python floats like params: each leaf's rate per round."""
    return self.tree(leaf.rate for leaf in self.leaves)

  # Which leaves rank together (``core.pools``): Python ints like params, FIXED for the rest.

  def ranking_pools(self):
    """IMP's rankings: the pruned leaves pooled (global) or each apart (layer-wise)."""
    if self.strategy == 'global':
      return self.tree(0 if leaf.rate > 0 else pools.FIXED for leaf in self.leaves)
    return self.tree(i if leaf.rate > 0 else pools.FIXED for i, leaf in enumerate(self.leaves))

  def scoring_pools(self):
    """What a criterion ranks within: IMP's rankings, and with N:M every other counted leaf
    apart too (its N of every M are chosen by the criterion as well)."""
    if self.n_m is None:
      return self.ranking_pools()
    flat = jax.tree.leaves(self.ranking_pools())
    extra = len(self.leaves)  # Pool numbers no ranking uses.
    return self.tree(
      extra + i if p == pools.FIXED and leaf.kind else p
      for i, (p, leaf) in enumerate(zip(flat, self.leaves, strict=True))
    )

  def at_init_pools(self):
    """The masks chosen at init: the pruned leaves pooled into one global ranking; the
    output layer ranked alone when the plan prunes it apart (layer-wise) or keeps it
    whole (global without prune_output)."""

    def pool(leaf):
      if not leaf.kind:
        return pools.FIXED
      if leaf.kind == 'output' and (self.strategy == 'layerwise' or leaf.rate == 0):
        return 1
      return 0 if leaf.rate > 0 else pools.FIXED

    return self.tree(pool(leaf) for leaf in self.leaves)

  def layer_pools(self):
    """Every counted leaf its own pool: per-layer counts (supermasks, random pruning)."""
    return self.tree(i if leaf.kind else pools.FIXED for i, leaf in enumerate(self.leaves))

  def prune(self, params, masks, *, rounds: int = 1, scores=None):
    """``rounds`` rounds of the plan at once (jittable; ``rounds`` static).

    Layer-wise: each leaf at its compound rate 1 - (1 - rate)^rounds. Global:
    the leaves with a positive rate pooled into one ranking at the compound of
    their (shared) rate. Structured granularities remove whole units of the chain
    (``core.structured``); N:M then keeps at most N of every M inputs.
    """
    if self.granularity in ('unit', 'channel'):
      return self._prune_units(params, masks, rounds, scores)
    pruned = self._prune_weights(params, masks, rounds, scores)
    if self.granularity == 'refill':
      flat, treedef = jax.tree.flatten(masks)
      out = structured.refill(treedef.flatten_up_to(pruned), flat, links=self.link_leaves())
      return treedef.unflatten(out)
    if self.n_m is None:
      return pruned
    ranking = jax.tree.map(jnp.abs, params) if scores is None else scores
    flat, treedef = jax.tree.flatten(pruned)
    flat_s = treedef.flatten_up_to(ranking)
    return treedef.unflatten(
      [structured.n_m(s, m, *self.n_m) if leaf.kind else m
       for leaf, s, m in zip(self.leaves, flat_s, flat, strict=True)]
    )  # fmt: skip

  def random_masks(self, key, masks):
    """The random-pruning control of ``masks``: the same per-layer counts at random; the
    same number of units per layer for structured plans; N:M kept for N:M plans."""
    if self.granularity == 'weight' and self.n_m is None:
      return pruning.random_masks(key, masks)
    flat, treedef = jax.tree.flatten(masks)
    if self.granularity != 'weight':
      dense = [jnp.ones(m.shape, bool) for m in flat]
      return treedef.unflatten(structured.random_units(key, flat, dense, links=self.link_leaves()))
    keys = jax.random.split(key, len(flat))
    out = []
    for leaf, k, m in zip(self.leaves, keys, flat, strict=True):
      if leaf.kind:
        noise = jax.random.uniform(k, m.shape)
        allowed = structured.n_m(noise, jnp.ones(m.shape, bool), *self.n_m)
        m = pools.keep_top(jnp.where(allowed, noise, -1.0), jnp.sum(m, dtype=jnp.int32))
      out.append(m)
    return treedef.unflatten(out)

  def link_leaves(self) -> list[tuple[int, int]]:
    """``links`` as (producer, consumer) indices of their kernels in ``leaves``."""
    by_layer = {leaf.layer: i for i, leaf in enumerate(self.leaves) if leaf.kind}
    return [(by_layer[a], by_layer[b]) for a, b in self.links]

  def _prune_units(self, params, masks, rounds, scores):
    flat, treedef = jax.tree.flatten(masks)
    out = structured.prune_units(
      treedef.flatten_up_to(params), flat, links=self.link_leaves(),
      rates=[pruning.compound_rate(leaf.rate, rounds) for leaf in self.leaves],
      scores=None if scores is None else treedef.flatten_up_to(scores),
    )  # fmt: skip
    return treedef.unflatten(out)

  def _prune_weights(self, params, masks, rounds, scores):
    if self.strategy == 'layerwise':
      compound = jax.tree.map(lambda r: pruning.compound_rate(r, rounds), self.rates())
      return pruning.prune_layerwise(params, masks, rates=compound, scores=scores)
    rate = max((leaf.rate for leaf in self.leaves), default=0.0)
    include = self.tree(leaf.rate > 0 for leaf in self.leaves)
    return pruning.prune_global(
      params, masks, rate=pruning.compound_rate(rate, rounds), include=include, scores=scores
    )

  def counts(self, masks) -> dict[str, tuple[int, int]]:
    """{layer: (weights kept, weights total)} over the counted leaves (host-side ints)."""
    out: dict[str, tuple[int, int]] = {}
    for leaf, m in zip(self.leaves, self.treedef.flatten_up_to(masks), strict=True):
      if leaf.kind:
        kept, total = out.get(leaf.layer, (0, 0))
        out[leaf.layer] = (kept + int(np.sum(np.asarray(m))), total + leaf.size)
    return out

  def fraction_remaining(self, masks) -> float:
    """Fraction of the counted weights kept (1.0 for the dense network)."""
    counts = self.counts(masks).values()
    return sum(k for k, _ in counts) / sum(t for _, t in counts)

  def collapsed_layers(self, masks) -> str:
    """'dense_0;dense_1': the layers left with no weight (layer collapse), '' for none."""
    return ';'.join(layer for layer, (kept, _) in self.counts(masks).items() if kept == 0)

  def table(self) -> str:
    """The plan as a small text table, for the start of a run."""
    rows = [('layer', 'leaf', 'shape', 'kind', 'rate', 'weights')]
    for leaf in sorted(self.leaves, key=lambda f: (f.kind == '', natural_key(f.layer))):
      shape = 'x'.join(map(str, leaf.shape)) or 'scalar'
      rate = f'{100 * leaf.rate:.3g}%' if leaf.kind else '—'
      rows.append(
        (
          leaf.layer,
          leaf.leaf,
          shape,
          leaf.kind or '—',
          rate,
          f'{leaf.size:,}' if leaf.kind else '—',
        )
      )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
      '  '.join(
        c.rjust(w) if i >= 4 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
      ).rstrip()
      for r in rows
    ]
    total = sum(leaf.size for leaf in self.leaves if leaf.kind)
    lines.append(
      f'prunable weights: {total:,} ({self.strategy.replace("layerwise", "layer-wise")})'
    )
    if self.granularity != 'weight':
      links = ', '.join(f'{a} -> {b}' for a, b in self.links)
      lines.append(f'granularity: {self.granularity}: whole units of {links} (rates: of units)')
    if self.n_m:
      lines.append(f'N:M: at most {self.n_m[0]} of every {self.n_m[1]} inputs kept')
    return '\n'.join(lines)

  def to_json(self) -> str:
    """plan.json of a run directory: one entry per params leaf."""
    leaves = [{'layer': f.layer, 'leaf': f.leaf, 'shape': list(f.shape), 'kind': f.kind,
               'rate': f.rate} for f in self.leaves]  # fmt: skip
    if self.granularity == 'weight' and self.n_m is None:
      return json.dumps(leaves, indent=1)  # The layout of directories made before structure.
    structure = {'granularity': self.granularity, 'links': [list(k) for k in self.links],
                 'n_m': list(self.n_m or ())}  # fmt: skip
    return json.dumps({'leaves': leaves, **structure}, indent=1)


def natural_key(name: str) -> list:
  """Sort key that puts 'conv_2' before 'conv_10'."""
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def default_kind(path, leaf) -> str:
  """The zoo's convention: 'conv'/'dense' for leaves named ``kernel``, else ''."""
  kind = masks_lib.leaf_kind(path, leaf)
  return 'dense' if kind == 'output' else (kind or '')


def make_plan(
  params,
  *,
  strategy: str = 'layerwise',
  rate_conv: float = 0.0,
  rate_dense: float = 0.0,
  rate_output: float = 0.0,
  rate: float = 0.0,
  prune_output: bool = False,
  output_layer: str | None = AUTO,
  prunable: Callable[[str, Any], bool] | Collection[str] | None = None,
  kinds: Mapping[str, str] | None = None,
  granularity: str = 'weight',
  links: Collection[tuple[str, str]] | None = None,
  n_m: str | tuple[int, int] | None = None,
) -> Plan:
  """The pruning plan of a model's params (arrays or shape structs).

  Args:
    params: the params pytree (or its ``jax.eval_shape``).
    strategy: 'layerwise' (each leaf at its kind's rate) or 'global' (one ranking).
    rate_conv, rate_dense, rate_output: layer-wise rates by kind.
    rate: the global rate.
    prune_output: global pruning includes the output layer.
    output_layer: the output layer's name (its module path, e.g. 'head' or
      'Dense_2'); 'auto': the layer named 'output' if any; None: no output layer.
    prunable: which leaves are weights, as a predicate ``(leaf_path, leaf) -> bool``
      or a collection of layer names (their leaves with ndim >= 2); default:
      leaves named ``kernel`` with ndim >= 2.
    kinds: {layer name: kind} overriding the default kind of listed layers.
    granularity: 'weight', 'unit' / 'channel' (whole units of the ``links``'
      producers, one rule) or 'refill' (``lth_jax.core.structured``). Structured
      plans are layer-wise; layers that produce no link keep their units (rate 0).
    links: (producer, consumer) layer pairs, the consumer's inputs being the
      producer's units (structured plans), e.g.
      ``structured.chain('dense_0', 'dense_1', 'output')``; ``core.compaction.unit_links``
      gives the zoo's.
    n_m: '2:4' or (2, 4): at most N of every M inputs of each counted kernel kept
      (granularity 'weight' only).

  Raises:
    ConfigError: an unknown strategy/kind/layer, or an output layer that cannot
      be told although it matters (the message says how to name it).
  """
  if strategy not in STRATEGIES:
    raise ConfigError(f'pruning strategy {strategy!r} is not one of {STRATEGIES}.')
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  names = [masks_lib.leaf_name(p) for p, _ in flat]
  layers = [masks_lib.layer_name(p) for p, _ in flat]
  base = [_base_kind(p, x, n, lay, prunable) for (p, x), n, lay in zip(flat, names, layers)]
  weights = sorted({lay for lay, k in zip(layers, base) if k}, key=natural_key)
  for layer, kind in (kinds or {}).items():
    if layer not in layers:
      raise ConfigError(
        f'kinds names layer {layer!r}, which the model does not have; layers: {", ".join(sorted(set(layers), key=natural_key))}.'
      )
    if kind not in ('', *KINDS):
      raise ConfigError(f'kind {kind!r} of layer {layer!r} is not one of {KINDS} or "".')
  base = [(kinds or {}).get(lay, k) for lay, k in zip(layers, base)]
  output = _output_layer(output_layer, weights, strategy, rate_dense, rate_output, prune_output)
  by_kind = {'conv': rate_conv, 'dense': rate_dense, 'output': rate_output}
  leaves = []
  for (_, x), name, layer, kind in zip(flat, names, layers, base):
    kind = 'output' if (kind and layer == output) else kind
    if strategy == 'layerwise':
      r = by_kind[kind] if kind else 0.0
    else:
      r = rate if kind and (kind != 'output' or prune_output) else 0.0
    leaves.append(Leaf(name, layer, tuple(int(d) for d in np.shape(x)), kind, float(r)))
  if isinstance(n_m, str) or n_m is None:
    n_m = structured.parse_n_m(n_m or '')
  else:
    n_m = structured.parse_n_m(f'{n_m[0]}:{n_m[1]}')
  links = tuple((str(a), str(b)) for a, b in (links or ()))
  structured.check_links(granularity, links, n_m, strategy, leaves)
  if granularity != 'weight':  # Only producers lose units; the rest keep theirs.
    producers = {a for a, _ in links}
    leaves = [dataclasses.replace(f, rate=f.rate if f.layer in producers else 0.0) for f in leaves]
  return Plan(strategy, tuple(leaves), treedef, granularity, links, n_m)


def _base_kind(path, leaf, name, layer, prunable) -> str:
  if prunable is None:
    return default_kind(path, leaf)
  # A list of layers names modules: their weights (ndim >= 2), not their biases.
  chosen = prunable(name, leaf) if callable(prunable) else layer in prunable and np.ndim(leaf) >= 2
  if not chosen:
    return ''
  return 'conv' if np.ndim(leaf) > 2 else 'dense'


def _output_layer(output_layer, weights, strategy, rate_dense, rate_output, prune_output):
  if output_layer is None:
    return None
  if output_layer != AUTO:
    if output_layer not in weights:
      raise ConfigError(
        f'output_layer={output_layer!r} is not a prunable layer of the model; '
        f'choose one of: {", ".join(weights)} (or None for no output layer).'
      )
    return output_layer
  named = [w for w in weights if w.split('/')[-1] == 'output']
  if len(named) == 1:
    return named[0]
  matters = (strategy == 'layerwise' and rate_output != rate_dense) or (
    strategy == 'global' and not prune_output
  )
  if matters:
    raise ConfigError(
      'cannot tell which layer is the output layer: no prunable layer is named "output". '
      "Name it with output_layer='<layer>' (pruning.output_layer in a config), one of: "
      f'{", ".join(weights)}; or output_layer=None to prune every layer by its kind.'
    )
  return None

"""Structured tickets made smaller for real: the zoo's links, and the compacted model.

A structured ticket (``core.structured``) has whole units removed: a producer's
kernel column and its consumer's inputs from it. ``compact`` slices them away
and gives a smaller dense model of the same family (fewer hidden units, conv
channels or channels inside ResNet blocks) whose logits equal the masked
network's: the producer's kernel, bias and the batch norm after it (scale, bias,
running statistics) lose the removed units, the consumer loses their inputs
(after a conv-to-dense flatten, every position of each removed channel). Masks
come along, sliced (what a unit pruning keeps is dense; other leaves keep their
own masks).

``unit_links(model)``: the zoo's (producer, consumer) pairs. LeNet, Conv-2/4/6
and VGG are chains; in a ResNet only the channels inside each block (its first
conv's outputs) can go: the others are added to the residual path, which ties
them across blocks.

>>> import jax, jax.numpy as jnp
>>> from lth_jax.core import models
>>> unit_links(models.LeNet300100())
(('dense_0', 'dense_1'), ('dense_1', 'output'))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import numpy as np
from flax import traverse_util

from lth_jax.core import models
from lth_jax.core.structured import chain
from lth_jax.errors import ConfigError

_RESIDUAL = (
  'a ResNet unit ticket removes channels inside its blocks only (the first conv of each '
  'block): the other channels are summed with the residual path.'
)


def unit_links(model: nn.Module) -> tuple[tuple[str, str], ...]:
  """(producer, consumer) layer pairs of a zoo model, for structured pruning.

  Raises:
    ConfigError: ``model`` is not from the zoo (give the links yourself).
  """
  if isinstance(model, models.LeNet300100):
    return chain(*(f'dense_{i}' for i in range(len(model.hidden))), 'output')
  if isinstance(model, models.ConvNet):
    convs = [f'conv_{i}' for i in range(2 * model.num_blocks)]
    return chain(*convs, *(f'dense_{i}' for i in range(len(model.hidden))), 'output')
  if isinstance(model, models.VGG):
    convs = [f'conv_{i}' for i in range(sum(isinstance(s, int) for s in model.plan))]
    return chain(*convs, 'output')
  if isinstance(model, models.ResNet):
    return tuple((f'{b}/conv_0', f'{b}/conv_1') for b in _blocks(model))
  raise ConfigError(
    f"{type(model).__name__} is not from the zoo: say which layer takes which layer's units as "
    "inputs, e.g. pruning={'links': structured.chain('dense_0', 'dense_1', 'head')}."
  )


def check_residual(model: nn.Module, links) -> None:
  """Refuses links of a ResNet other than its blocks' inner channels (ConfigError)."""
  if not isinstance(model, models.ResNet):
    return
  allowed = set(unit_links(model))
  wrong = [tuple(link) for link in links if tuple(link) not in allowed]
  if wrong:
    raise ConfigError(
      f'{_RESIDUAL} These links cannot be removed for real: {wrong}; leave pruning.links unset '
      'for the zoo ResNet (each block: conv_0 -> conv_1).'
    )


def _blocks(model) -> list[str]:
  per_stage = (model.depth - 2) // 6
  return [f'stage{s}_block{b}' for s in range(3) for b in range(per_stage)]


def _norm_of(model, layer: str) -> str | None:
  """The batch norm right after ``layer`` in a zoo model (None: none)."""
  if isinstance(model, models.VGG):
    return 'bn_' + layer.split('_')[-1]
  if isinstance(model, models.ResNet):
    return layer.rsplit('/', 1)[0] + '/bn_0'
  return None


@dataclasses.dataclass
class Compacted:
  """The smaller network: its model, variables and masks, and the units kept per producer."""

  model: nn.Module
  params: Any
  masks: Any
  model_state: dict
  kept: dict[str, np.ndarray]  # producer layer -> indices of the kept units

  def widths(self) -> dict[str, int]:
    return {layer: len(k) for layer, k in self.kept.items()}


def compact(
  model: nn.Module,
  params,
  masks,
  model_state: dict | None = None,
  *,
  links=None,
  norms: dict[str, str] | None = None,
  rebuild: Callable[[dict[str, int]], nn.Module] | None = None,
) -> Compacted:
  """The dense model left when the removed units of ``masks`` are gone (same logits).

  Args:
    model, params, masks, model_state: the masked network (``model_state``: e.g.
      ``{'batch_stats': ...}``).
    links: (producer, consumer) pairs; default ``unit_links(model)``.
    norms: {producer: the norm layer after it}; the zoo's by default.
    rebuild: ``widths -> model`` for models outside the zoo ({producer: units kept}).

  A unit is kept when any of its outgoing weights is: the others reach no output
  (whatever their incoming weights and bias), so the logits do not change; a
  structured ticket's removed units have neither. A layer left with no unit keeps
  one, whose outgoing weights are all pruned.

  Raises:
    ConfigError: a model outside the zoo without ``links`` or ``rebuild``.
  """
  links = tuple(links or unit_links(model))
  check_residual(model, links)
  flat_p = traverse_util.flatten_dict(_plain(params), sep='/')
  flat_m = traverse_util.flatten_dict(_plain(masks), sep='/')
  flat_s = traverse_util.flatten_dict(_plain(model_state or {}), sep='/')
  kept = {}
  for producer, consumer in links:
    units = np.shape(flat_m[f'{producer}/kernel'])[-1]
    keep = np.flatnonzero(_feeds(np.asarray(flat_m[f'{consumer}/kernel'], bool), units))
    if keep.size == 0:
      keep = np.arange(1)  # A layer keeps one unit, whose outgoing weights are all pruned.
    kept[producer] = keep
    norm = (norms or {}).get(producer) or _norm_of(model, producer)
    for tree in (flat_p, flat_m):
      _slice_units(tree, producer, keep)
      if norm:
        _slice_units(tree, norm, keep)
      _slice_inputs(tree, consumer, keep, units)
    if norm:
      _slice_units(flat_s, f'batch_stats/{norm}', keep)
  widths = {layer: len(k) for layer, k in kept.items()}
  smaller = rebuild(widths) if rebuild else resized(model, widths)
  return Compacted(
    model=smaller,
    params=traverse_util.unflatten_dict(flat_p, sep='/'),
    masks=traverse_util.unflatten_dict(flat_m, sep='/'),
    model_state=traverse_util.unflatten_dict(flat_s, sep='/'),
    kept=kept,
  )


def _plain(tree) -> dict:
  return {k: _plain(v) if isinstance(v, dict) else v for k, v in dict(tree).items()}


def _slice_units(flat: dict, layer: str, keep) -> None:
  for name in [n for n in flat if n.rsplit('/', 1)[0] == layer]:
    flat[name] = np.ascontiguousarray(np.asarray(flat[name])[..., keep])


def _feeds(consumer_mask, units: int):
  """[units]: which of the producer's units have a kept outgoing weight."""
  if consumer_mask.ndim == 2:  # Dense; after a flatten, input r is unit r % units.
    rows = consumer_mask.any(axis=1)
    return rows.reshape(-1, units).any(axis=0)
  return consumer_mask.any(axis=(0, 1, 3))


def _slice_inputs(flat: dict, layer: str, keep, units: int) -> None:
  name = f'{layer}/kernel'
  kernel = np.asarray(flat[name])
  if kernel.ndim == 2:  # Dense; after a flatten, input r is unit r % units.
    rows = np.flatnonzero(np.isin(np.arange(kernel.shape[0]) % units, keep))
    flat[name] = np.ascontiguousarray(kernel[rows])
  else:
    flat[name] = np.ascontiguousarray(kernel[..., keep, :])


def resized(model: nn.Module, widths: dict[str, int]) -> nn.Module:
  """The zoo model ``model`` with ``widths`` ({producer layer: units}) in place of its own."""
  fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.init}
  fields = {k: v for k, v in fields.items() if k not in ('parent', 'name')}
  if isinstance(model, models.LeNet300100):
    return models.LeNet300100(**{**fields, 'hidden': _widths(widths, 'dense', model.hidden)})
  if isinstance(model, models.ConvNet):
    convs = _widths(widths, 'conv', model.widths())
    hidden = _widths(widths, 'dense', model.hidden)
    fields = {k: v for k, v in fields.items() if k != 'conv_widths'}
    return models.SlimConvNet(**{**fields, 'hidden': hidden, 'conv_widths': convs})
  if isinstance(model, models.VGG):
    convs = iter(_widths(widths, 'conv', [s for s in model.plan if isinstance(s, int)]))
    plan = tuple(s if s == 'M' else next(convs) for s in model.plan)
    return models.VGG(**{**fields, 'plan': plan})
  if isinstance(model, models.ResNet):
    fields = {k: v for k, v in fields.items() if k != 'inner_widths'}
    per_stage = (model.depth - 2) // 6
    inner = tuple(
      widths.get(f'{b}/conv_0', model.width * 2 ** (i // per_stage))
      for i, b in enumerate(_blocks(model))
    )
    return models.SlimResNet(**{**fields, 'inner_widths': inner})
  raise ConfigError(
    f'{type(model).__name__} is not from the zoo: give compact(..., rebuild=widths -> model), '
    'a model of the smaller widths ({producer layer: units kept}).'
  )


def _widths(widths: dict[str, int], prefix: str, dense) -> tuple[int, ...]:
  return tuple(widths.get(f'{prefix}_{i}', w) for i, w in enumerate(dense))

"""Sparse from the start: arms at the ticket's sparsity whose masks are random, or move.

``static``, ``set`` and ``rigl`` start from the rewound weights (θ0, or θk when the
study rewinds late) with a random mask at the sparsity of the level's ticket, its
layer densities set by ``dst.distribution``: ``ticket`` (the ticket's own per-layer
counts, the fair comparison with IMP), ``erk`` or ``uniform`` (``core.dst``). A
``static`` mask stays as it starts; ``set`` and ``rigl`` masks move while they train
(``Arm.moves``; ``lth_jax.study.moving`` updates them every ``dst.update_every``
iterations until ``dst.end_step``): Mocanu et al. 2018 (SET: regrow at random) and
Evci et al. 2020 (RigL: regrow where the dense gradient is largest).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lth_jax.arms.registry import Arm, Context, register
from lth_jax.core import dst
from lth_jax.core.rewind import rewind
from lth_jax.core.train import TrainState

DST_DEFAULTS = {
  'update_every': 100, 'drop_fraction': 0.3, 'end_step': 0, 'distribution': 'ticket',
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Settings:
  """The ``dst.*`` config keys. ``end_step`` 0: three quarters of the run (RigL's default)."""

  update_every: int = 100
  drop_fraction: float = 0.3
  end_step: int = 0
  distribution: str = 'ticket'

  def end(self, num_steps: int) -> int:
    return self.end_step or (3 * num_steps) // 4


def sparse_masks(context: Context, masks, key):
  """A random mask with as many counted weights as ``masks`` in all, spread over the layers
  as ``dst.distribution`` says."""
  settings = context.dst or Settings()
  counted = context.plan.prunable()
  leaves, treedef = jax.tree.flatten(masks)
  chosen = [i for i, c in enumerate(treedef.flatten_up_to(counted)) if c]
  kept = [jnp.sum(leaves[i], dtype=jnp.int32) for i in chosen]
  if settings.distribution == 'ticket':
    per_layer = kept
  else:
    shapes = [leaves[i].shape for i in chosen]
    counts = dst.layer_counts(shapes, sum(kept), settings.distribution)
    per_layer = [counts[j] for j in range(len(chosen))]
  tree = [dst.WHOLE] * len(leaves)
  for i, count in zip(chosen, per_layer, strict=True):
    tree[i] = count
  return dst.random_masks(key, masks, treedef.unflatten(tree))


def sparse_start(context: Context, state_k: TrainState, masks, key) -> TrainState:
  return rewind(state_k, sparse_masks(context, masks, key))


register(Arm('static', 'static sparse (random mask, fixed)', sparse_start))
register(Arm('set', 'SET (drop smallest, regrow at random)', sparse_start, moves='set'))
register(Arm('rigl', 'RigL (drop smallest, regrow by gradient)', sparse_start, moves='rigl'))

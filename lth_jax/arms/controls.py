"""The ticket and the controls it is measured against, as arms.

Each starts from the same rewound state as the ticket (``core.rewind.rewind``)
and changes only params or masks:

* ``ticket``: ``masks ⊙ θk``, the winning ticket itself.
* ``reinit``: same masks, fresh random initialization (the ticket's structure
  without its initial values).
* ``random_prune``: a random mask with the ticket's per-layer counts, on θk
  (of structured plans: the ticket's number of units per layer; ``Plan.random_masks``).
* ``shuffle``: the ticket's kept values of θk permuted within each layer, mask
  unchanged ("rearranged connections").
* ``sign_reinit``: fresh magnitudes with the signs of θk (Zhou et al. 2019).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lth_jax.arms.registry import Arm, Context, register
from lth_jax.core.rewind import rewind
from lth_jax.core.train import TrainState


def ticket(context: Context, state_k: TrainState, masks, key) -> TrainState:
  del context, key
  return rewind(state_k, masks)


def reinit(context: Context, state_k: TrainState, masks, key) -> TrainState:
  return rewind(state_k._replace(params=context.init_params(key)), masks)


def random_prune(context: Context, state_k: TrainState, masks, key) -> TrainState:
  return rewind(state_k, context.plan.random_masks(key, masks))


def shuffle_within(key, values, mask):
  """``values`` with its kept entries randomly permuted among the kept positions."""
  flat_v, flat_m = values.reshape(-1), mask.reshape(-1)
  n = flat_v.size
  positions = jnp.arange(n)
  # Kept positions in index order, then the pruned ones.
  destination = jnp.argsort(jnp.where(flat_m, positions, n + positions))
  # Kept positions in random order, then the pruned ones.
  source = jnp.argsort(jnp.where(flat_m, jax.random.uniform(key, (n,)), 2.0))
  shuffled = jnp.zeros_like(flat_v).at[destination].set(flat_v[source])
  return jnp.where(flat_m, shuffled, 0).reshape(values.shape)


def shuffle(context: Context, state_k: TrainState, masks, key) -> TrainState:
  del context
  leaves, treedef = jax.tree.flatten(state_k.params)
  keys = jax.random.split(key, len(leaves))
  mask_leaves = treedef.flatten_up_to(masks)
  params = treedef.unflatten(
    [shuffle_within(k, v, m) for k, v, m in zip(keys, leaves, mask_leaves, strict=True)]
  )
  return rewind(state_k._replace(params=params), masks)


def sign_reinit(context: Context, state_k: TrainState, masks, key) -> TrainState:
  """Fresh magnitudes carrying the signs of θk ("Deconstructing Lottery Tickets")."""
  fresh = context.init_params(key)
  params = jax.tree.map(lambda f, p: jnp.abs(f) * jnp.sign(p), fresh, state_k.params)
  return rewind(state_k._replace(params=params), masks)


register(Arm('ticket', 'winning ticket (IMP)', ticket))
register(Arm('reinit', 'random reinit', reinit))
register(Arm('random_prune', 'random pruning', random_prune))
register(Arm('shuffle', 'shuffled init', shuffle))
register(Arm('sign_reinit', 'sign-preserving reinit', sign_reinit))
# The ticket's start with the masks the early-bird search found (You et al. 2020).
register(Arm('early_bird', 'early-bird ticket', ticket, masks='early_bird'))

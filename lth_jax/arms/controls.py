"""The controls every ticket is measured against, as pure functions.

Each control builds the state a level's run starts from, with the signature
``control(state_k, masks, key) -> TrainState``: it starts from the same rewound
state as the ticket (``rewind.rewind``) and changes only params or masks.

* ``reinit``: same masks, fresh random initialization (the ticket's structure
  without its initial values). Needs the model's init; see ``make_reinit``.
* ``random_prune``: a random mask with the ticket's per-layer sparsity, on θk.
* ``shuffle``: the ticket's kept values of θk permuted within each layer, mask
  unchanged ("rearranged connections").
* ``sign_reinit``: fresh magnitudes with the signs of θk (Zhou et al. 2019).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from lth_jax.core import pruning
from lth_jax.core.rewind import rewind
from lth_jax.core.train import TrainState

Control = Callable[[TrainState, object, jax.Array], TrainState]


def ticket(state_k: TrainState, masks, key) -> TrainState:
  """The winning-ticket arm itself, in the same signature as the controls."""
  del key
  return rewind(state_k, masks)


def random_prune(state_k: TrainState, masks, key) -> TrainState:
  return rewind(state_k, pruning.random_masks(key, masks))


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


def shuffle(state_k: TrainState, masks, key) -> TrainState:
  leaves, treedef = jax.tree.flatten(state_k.params)
  keys = jax.random.split(key, len(leaves))
  mask_leaves = treedef.flatten_up_to(masks)
  params = treedef.unflatten(
    [shuffle_within(k, v, m) for k, v, m in zip(keys, leaves, mask_leaves, strict=True)]
  )
  return rewind(state_k._replace(params=params), masks)


def make_reinit(init_params: Callable[[jax.Array], object]) -> Control:
  """The random-reinitialization control for a model's ``init_params(key)``."""

  def reinit(state_k: TrainState, masks, key) -> TrainState:
    return rewind(state_k._replace(params=init_params(key)), masks)

  return reinit


def make_sign_reinit(init_params: Callable[[jax.Array], object]) -> Control:
  """Fresh magnitudes carrying the signs of θk ("Deconstructing Lottery Tickets")."""

  def sign_reinit(state_k: TrainState, masks, key) -> TrainState:
    fresh = init_params(key)
    params = jax.tree.map(lambda f, p: jnp.abs(f) * jnp.sign(p), fresh, state_k.params)
    return rewind(state_k._replace(params=params), masks)

  return sign_reinit


def controls_for(init_params: Callable[[jax.Array], object]) -> dict[str, Control]:
  """Every arm by name. ``ticket`` is the ticket itself."""
  return {
    'ticket': ticket,
    'reinit': make_reinit(init_params),
    'random_prune': random_prune,
    'shuffle': shuffle,
    'sign_reinit': make_sign_reinit(init_params),
  }


# Every arm, in the order tables and figures show them. Append new arms: an arm's
# position is part of its control key (``arm_id``), so existing results stay valid.
ARMS = (
  'ticket', 'reinit', 'random_prune', 'shuffle', 'sign_reinit',
  # Masks chosen early, at the ticket's sparsity (``lth_jax.arms.at_init``).
  'snip', 'grasp', 'synflow', 'magnitude_init', 'signed_constant', 'supermask',
)  # fmt: skip


def arm_id(arm: str) -> int:
  """A stable number for ``arm`` (its position in ``ARMS``)."""
  return ARMS.index(arm)

"""Masks: boolean pytrees with exactly the structure of params.

Every params leaf has a mask leaf (all-True for leaves that are never pruned,
such as biases), so ``jax.tree.map(f, params, masks)`` always works and masks
can ride beside params through ``jit``, ``vmap`` and checkpoints.

The zoo's convention for which leaves may be pruned, decided from the leaf's
path outside jit: leaves named ``kernel`` are prunable weights; of those, the one
in the module named ``output`` is the output layer, conv kernels (rank 4) are
``conv`` and the other kernels are ``dense``. Everything else (biases,
batch-norm scales) is never pruned. A study's own choice, for any model, is its
plan (``lth_jax.core.plan``), which is also the one counter of weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _key_name(entry) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def leaf_name(path) -> str:
  """'dense_0/kernel' for the path of a params leaf."""
  return '/'.join(_key_name(e) for e in path)


def layer_name(path) -> str:
  """'dense_0' for the path of ``dense_0/kernel``: the module that owns the leaf."""
  names = [_key_name(e) for e in path]
  return '/'.join(names[:-1]) or names[-1]


def leaf_kind(path, leaf) -> str | None:
  """'conv', 'dense' or 'output' for prunable weights, None for the rest."""
  names = [_key_name(e) for e in path]
  if names[-1] != 'kernel':
    return None
  if 'output' in names[:-1]:
    return 'output'
  return 'conv' if np.ndim(leaf) == 4 else 'dense'


def kinds(params):
  """A pytree like ``params`` whose leaves are the kind strings (or None).

  Host-side only (strings are not arrays). None leaves would vanish from a
  pytree, so unprunable leaves are returned as the empty string ''.
  """
  return jax.tree_util.tree_map_with_path(lambda p, x: leaf_kind(p, x) or '', params)


def prunable(params, *, include_output: bool = True):
  """A pytree of Python bools: which leaves pruning may touch."""

  def is_prunable(path, leaf):
    kind = leaf_kind(path, leaf)
    return kind is not None and (include_output or kind != 'output')

  return jax.tree_util.tree_map_with_path(is_prunable, params)


def ones_like(params):
  """All-True masks: the dense network (level 0)."""
  return jax.tree.map(lambda x: jnp.ones(jnp.shape(x), dtype=bool), params)


def apply(params, masks):
  """``params ⊙ masks`` with pruned entries exactly zero."""
  return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, masks)

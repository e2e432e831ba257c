"""Orbax checkpoints of pytrees (θ0, θk, masks, final params, mid-level state).

Orbax writes each checkpoint into a temporary directory and renames it into
place when it is complete, so a checkpoint directory that exists was finished.
What can still go wrong (a file truncated or deleted afterwards, a disk that
filled up) is caught at load time and raised as ``CheckpointError`` naming the
directory, so callers can fall back to an earlier checkpoint.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

# Orbax writes this file last, when a checkpoint is complete.
_COMPLETE_MARKER = '_CHECKPOINT_METADATA'


class CheckpointError(RuntimeError):
  """A checkpoint is missing, partial or corrupt."""


def exists(path: str | os.PathLike) -> bool:
  """True when ``path`` holds a finished checkpoint."""
  return (Path(path) / _COMPLETE_MARKER).is_file()


def save(path: str | os.PathLike, tree) -> None:
  """Saves ``tree`` to ``path`` (replacing what was there), atomically."""
  path = Path(path).absolute()
  path.parent.mkdir(parents=True, exist_ok=True)
  tree = jax.tree.map(np.asarray, jax.device_get(tree))
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(path, tree, force=True)
      checkpointer.wait_until_finished()
  except OSError as e:
    raise CheckpointError(
        f'could not write checkpoint {path}: {e}. Free disk space or choose another '
        '--workdir; finished levels already on disk are kept.'
    ) from e


def load(path: str | os.PathLike, like=None):
  """Loads the pytree at ``path``; ``like`` gives the structure and dtypes.

  With ``like`` the result has its exact pytree structure (NamedTuples of
  optimizer states included); without it, nested dicts and lists.
  """
  path = Path(path).absolute()
  if not exists(path):
    raise CheckpointError(f'no finished checkpoint at {path}.')
  target = None
  if like is not None:
    target = jax.tree.map(lambda x: np.zeros(np.shape(x), getattr(x, 'dtype', None) or np.asarray(x).dtype), like)
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      restored = checkpointer.restore(path, target)
  except Exception as e:  # Orbax/TensorStore raise many types for damaged files.
    raise CheckpointError(
        f'checkpoint {path} is corrupt or incomplete ({type(e).__name__}: '
        f'{str(e)[:300]}). Delete that directory to recompute it.'
    ) from e
  return jax.tree.map(np.asarray, restored)


def remove(path: str | os.PathLike) -> None:
  shutil.rmtree(path, ignore_errors=True)

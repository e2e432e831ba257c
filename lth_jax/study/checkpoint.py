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
import threading
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from lth_jax.errors import CheckpointError, RunError, one_line

# Orbax's checkpointers share process-wide state (event loops, temporary
# directories): runs trained side by side in threads save and load one at a time.
_ORBAX = threading.Lock()
# Every checkpoint holds this file, the temporary directory of an unfinished one too.
_COMPLETE_MARKER = '_CHECKPOINT_METADATA'
# Orbax writes into '<path><suffix>' and renames it to '<path>' when complete.
TMP_SUFFIX = '.orbax-checkpoint-tmp'


def _checkpointer() -> ocp.StandardCheckpointer:
  """Orbax's checkpointer for this process alone.

  With several processes (``lth_jax.training.distributed``) only the primary one
  writes and every one reads on its own, so no checkpoint waits for the others.
  """
  if jax.process_count() == 1:
    return ocp.StandardCheckpointer()
  me = jax.process_index()
  return ocp.StandardCheckpointer(
    multiprocessing_options=ocp.options.MultiprocessingOptions(
      primary_host=me, active_processes={me}, barrier_sync_key_prefix=f'lth{me}'
    )
  )


def exists(path: str | os.PathLike) -> bool:
  """True when ``path`` holds a finished checkpoint (not Orbax's temporary directory)."""
  path = Path(path)
  return not is_partial(path) and (path / _COMPLETE_MARKER).is_file()


def is_partial(path: str | os.PathLike) -> bool:
  """True for Orbax's temporary directory of a checkpoint that was never finished."""
  return TMP_SUFFIX in Path(path).name


def partial_checkpoints(root: str | os.PathLike) -> list[Path]:
  """The unfinished checkpoints under ``root`` (left by a crash or a full disk)."""
  root = Path(root)
  return sorted(p for p in root.rglob(f'*{TMP_SUFFIX}*') if p.is_dir()) if root.is_dir() else []


def save(path: str | os.PathLike, tree) -> None:
  """Saves ``tree`` to ``path`` (replacing what was there), atomically."""
  path = Path(path).absolute()
  path.parent.mkdir(parents=True, exist_ok=True)
  tree = jax.tree.map(np.asarray, jax.device_get(tree))
  try:
    with _ORBAX, _checkpointer() as checkpointer:
      checkpointer.save(path, tree, force=True)
      checkpointer.wait_until_finished()
  except Exception as e:  # A full disk surfaces as OSError or as TensorStore's ValueError.
    for partial in path.parent.glob(f'{path.name}{TMP_SUFFIX}*'):
      remove(partial, root=path.parent)
    raise CheckpointError(
      f'could not write checkpoint {path} ({type(e).__name__}: {one_line(e)}). Free disk '
      'space or choose another --workdir, then rerun: finished runs on disk are kept.'
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
    target = jax.tree.map(
      lambda x: np.zeros(np.shape(x), getattr(x, 'dtype', None) or np.asarray(x).dtype), like
    )
  try:
    with _ORBAX, _checkpointer() as checkpointer:
      restored = checkpointer.restore(path, target)
  except Exception as e:  # Orbax/TensorStore raise many types for damaged files.
    raise CheckpointError(
      f'checkpoint {path} is corrupt or incomplete ({type(e).__name__}: {one_line(e)}).'
    ) from e
  return jax.tree.map(np.asarray, restored)


def remove(path: str | os.PathLike, *, root: str | os.PathLike) -> None:
  """Deletes the checkpoint directory ``path``, which must lie inside ``root`` (a study's
  ``checkpoints/``), symbolic links resolved: the one way anything of a study is deleted.

  Raises:
    RunError: ``path`` is not inside ``root`` (nothing is deleted).
  """
  target, inside = Path(path).resolve(), Path(root).resolve()
  if inside not in target.parents:
    raise RunError(f'refusing to delete {path}: it is not inside {root}.')
  shutil.rmtree(target, ignore_errors=True)

"""Several processes, one study: a GPU cluster, a TPU pod, or processes on one machine.

Every process runs the same ``lth run`` on a shared run directory after
``initialize``. Their devices form one mesh; each vmapped level's runs are
sharded over all of them (``parallel.Sharder``), and results are gathered to
every process (``parallel.to_host``). Every process computes the same study
(the same keys, masks and start states), but only the primary process (0)
writes: it takes the run directory's lock, repairs what a crash left, writes
checkpoints and result rows; the others keep what they compute in memory
(``store.Secondary``) and read the run directory only for what earlier launches
finished. Killing any process stops the others at their next collective; the
next launch of all of them resumes from the primary's checkpoints.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from lth_jax.errors import RunError


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """``jax.distributed.initialize``, with cross-process collectives on CPUs (gloo).

  With no arguments JAX finds the cluster itself (TPU pods, SLURM, Open MPI,
  Kubernetes); elsewhere give all three.
  """
  try:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  except Exception:  # Not every jaxlib has CPU collectives; GPUs and TPUs do not need them.
    pass
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )


def is_primary() -> bool:
  """True for the one process that writes (process 0), and for a single process."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process gets here (no-op for one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


LAUNCH = '.launch'  # In a study directory: the nonce of the current launch, written by process 0.


def write_launch(path: Path) -> int:
  """Process 0's side of ``check_same_directory``: a fresh nonce in ``path``; returns it."""
  nonce = secrets.randbits(31)
  (Path(path) / LAUNCH).write_text(f'{nonce}\n')
  return nonce


def sees_launch(path: Path, nonce: int) -> bool:
  """Whether ``path`` holds the nonce process 0 wrote (the same directory, shared)."""
  try:
    return int((Path(path) / LAUNCH).read_text()) == nonce
  except (OSError, ValueError):
    return False


def check_same_directory(path: Path) -> None:
  """With several processes: every process must see the study directory process 0 writes.

  Process 0 writes a nonce there and sends it to the others, who read it back; a process
  given another --workdir (or one not shared between hosts) stops with one line.
  """
  if jax.process_count() == 1:
    return
  nonce = write_launch(path) if is_primary() else 0
  nonce = int(multihost_utils.broadcast_one_to_all(np.int32(nonce)))
  barrier('lth: launch nonce written')
  if not sees_launch(path, nonce):
    raise RunError(
      f'process {jax.process_index()} does not see {path} as process 0 wrote it: give every '
      'process the same --workdir, on a file system they share.'
    )

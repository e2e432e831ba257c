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

import jax


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
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)

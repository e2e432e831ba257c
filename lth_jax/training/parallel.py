"""Many runs at once: vmap over a leading run axis, sharded over devices.

A level's runs (seeds × arms) are stacked on axis 0 of every leaf of the train
state and of the data-order keys (``stack``); ``fit`` with a vmapped
``Trainer`` trains them as one program. ``Sharder`` places that axis on a 1-D
``Mesh`` of all devices (``NamedSharding``), so jit splits the runs across
devices; a group is padded to a multiple of the device count (``pad``; the
copies' results are dropped, never the real runs'). Several hosts (TPU pods, multi-GPU
clusters) work the same way once ``jax.distributed.initialize()`` has run: the
mesh then spans every process's devices and each process supplies its own
shards (``jax.make_array_from_callback``).

Memory: ``runs_per_call`` asks the compiler how many bytes one run's training
chunk needs and the device how many it has, and the level loop then splits a
level into several compiled calls of that many runs (same program, reused).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lth_jax.errors import DeviceMemoryError

# Leave room for the data, the evaluation program and the allocator's slack.
MEMORY_FRACTION = 0.7


MODES = ('auto', 'true', 'false', 'threads')


def cpu_count() -> int:
  """The CPUs this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not on Linux.
    return os.cpu_count() or 1


def resolve(mode: str) -> tuple[bool, int]:
  """(vmapped, threads) for a ``parallel`` mode.

  'true': a level's runs stacked into one vmapped program (sharded over devices);
  'threads': each run its own program, up to one per CPU at a time (the same
  numbers as 'false', sooner); 'false': one run after another; 'auto': vmapped
  on GPUs/TPUs, threads on a CPU with several cores. On a CPU one LeNet step
  keeps about one core busy, so two runs side by side nearly double the
  throughput, while a vmapped program gains less (benchmarks/bench_parallel.py).
  """
  if mode == 'auto':
    if jax.default_backend() != 'cpu':
      mode = 'true'
    else:
      mode = 'threads' if cpu_count() > 1 else 'false'
  if mode == 'true':
    return True, 1
  return False, cpu_count() if mode == 'threads' else 1


def use_vmap(mode: str) -> bool:
  return resolve(mode)[0]


class Sharder:
  """Places a stacked pytree's leading axis across ``devices`` (default: all).

  Works across processes: every process holds the whole (cheap, deterministic)
  stack on its host and hands each of its devices that device's slice.
  """

  def __init__(self, devices=None):
    devices = list(devices or jax.devices())
    self.mesh = Mesh(np.array(devices), ('runs',))
    self.sharding = NamedSharding(self.mesh, PartitionSpec('runs'))
    self.multiple = len(devices)  # Groups are padded to a multiple of this.

  def _place(self, x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(
        self._place(jax.random.key_data(x)), impl=jax.random.key_impl(x)
      )
    if jax.process_count() == 1:
      return jax.device_put(x, self.sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, self.sharding, lambda index: host[index])

  def __call__(self, tree):
    return jax.tree.map(self._place, tree)


def stack(trees: Sequence[Any]):
  """One pytree with a leading axis over ``trees``."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, n: int) -> list[Any]:
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


def pad(items: Sequence[Any], multiple: int) -> list[Any]:
  """``items`` with its last one repeated up to a multiple of ``multiple`` (the copies are dropped later)."""
  return list(items) + [items[-1]] * (-len(items) % multiple)


def to_host(tree):
  """Numpy copies of (possibly sharded, possibly multi-process) arrays.

  Arrays spread over several processes are gathered (a collective every
  process must join); everything else is copied as it is.
  """
  leaves, treedef = jax.tree.flatten(tree)
  spread = [
    i for i, x in enumerate(leaves) if isinstance(x, jax.Array) and not x.is_fully_addressable
  ]
  host = jax.device_get([None if i in spread else x for i, x in enumerate(leaves)])
  if spread:
    gathered = multihost_utils.process_allgather([leaves[i] for i in spread], tiled=True)
    for i, x in zip(spread, gathered, strict=True):
      host[i] = x
  return jax.tree.unflatten(treedef, host)


def device_memory_bytes(device=None) -> int | None:
  """Bytes the device can hold, or None when it does not say (CPUs)."""
  device = device or jax.devices()[0]
  try:
    stats = device.memory_stats()
  except Exception:  # Some backends raise instead of returning None.
    return None
  return None if not stats else int(stats.get('bytes_limit') or 0) or None


def bytes_per_run(train_steps, state, train, data_key, num_steps: int) -> int:
  """Device bytes one run's training chunk needs: its arguments and temporaries.

  The data (shared by every run of a group) is counted out.
  """
  compiled = train_steps.lower(state, train, data_key, num_steps).compile()
  stats = compiled.memory_analysis()
  data_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(train))
  return max(1, int(stats.argument_size_in_bytes + stats.temp_size_in_bytes - data_bytes))


def runs_per_call(per_run: int, available: int | None, num_devices: int, requested: int = 0) -> int:
  """How many runs one compiled call may train (0: no limit).

  Raises:
    MemoryError: not even one run per device fits; the message says how much
      memory a run needs.
  """
  limit = requested
  if available is not None:
    fit = int(available * MEMORY_FRACTION) // per_run
    if fit < 1:
      raise DeviceMemoryError(
        f'one run needs about {per_run / 2**20:.0f} MiB of device memory and '
        f'{available * MEMORY_FRACTION / 2**20:.0f} MiB are usable: use a smaller batch_size '
        "or model, or parallel='false'."
      )
    fit *= num_devices
    limit = min(limit, fit) if limit else fit
  if limit and num_devices > 1:
    limit = max(num_devices, limit // num_devices * num_devices)
  return limit

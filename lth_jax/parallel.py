"""Many runs at once: vmap over a leading run axis, sharded over devices.

A level's runs (seeds × arms) are stacked on axis 0 of every leaf of the train
state and of the data-order keys; ``train.compiled(task, vmapped=True)`` trains
them as one program. ``sharder`` places that axis on a 1-D ``Mesh`` of all
devices (``NamedSharding``), so jit splits the runs across devices; a group is
padded to a multiple of the device count by ``imp.train_group``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lth_jax import config as config_lib


def use_vmap(config) -> bool:
  """``parallel``: 'true' vmaps, 'false' runs one after another, 'auto' vmaps off the CPU.

  On a CPU the vmapped program costs more per network than one network at a
  time (see benchmarks/bench_parallel.py); accelerators are the other way round.
  """
  mode = config_lib.parallel_mode(config)
  if mode == 'auto':
    return jax.default_backend() != 'cpu'
  return mode == 'true'


def sharder(devices=None):
  """A function placing a stacked pytree's leading axis across ``devices``."""
  devices = list(devices or jax.devices())
  mesh = Mesh(np.array(devices), ('runs',))
  sharding = NamedSharding(mesh, PartitionSpec('runs'))

  def shard(tree):
    return jax.device_put(tree, sharding)

  shard.multiple = len(devices)
  return shard

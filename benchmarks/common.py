"""Shared pieces of the benchmarks: the machine's matmul rate and LeNet tasks."""

from __future__ import annotations

import time

import jax
import numpy as np
import optax

from lth_jax.core import models
from lth_jax.core import train as train_lib

# One LeNet-300-100 step at batch 60: forward 2·266,200·60, weight gradients the
# same, input gradients of the two upper layers 2·(300·100 + 100·10)·60.
LENET_FORWARD_FLOP = 2 * 266_200 * 60
LENET_STEP_FLOP = 2 * LENET_FORWARD_FLOP + 2 * (300 * 100 + 100 * 10) * 60


def matmul_flops_per_second(n: int = 2048, repeats: int = 10) -> float:
  """The best sustained float32 matmul rate of this device, in FLOP/s."""
  a = jax.random.normal(jax.random.key(0), (n, n))
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best


def lenet_task() -> train_lib.Task:
  return train_lib.Task(
    model=models.get_model('lenet300', num_classes=10),
    optimizer=optax.adam(1.2e-3),
    batch_size=60,
    mean=(0.2860,),
    std=(0.3530,),
  )


def fake_mnist(n: int = 55_000) -> train_lib.DataArrays:
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)
  y = rng.integers(0, 10, size=(n,)).astype(np.int32)
  return train_lib.DataArrays(jax.device_put(x), jax.device_put(y))


def best_of(fn, repeats: int) -> float:
  """Best wall time of ``fn()`` (which must block until its work is done)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def initial_state(task, seed: int = 0):
  params, model_state = train_lib.init_variables(task.model, jax.random.key(seed), (28, 28, 1))
  return train_lib.create_state(task, params, model_state)


def describe_machine() -> str:
  return f'jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}'


def block(tree):
  return jax.block_until_ready(tree)


def chunked_seconds(trainer, state, keys, *, iterations: int, chunk: int, repeats: int) -> float:
  """Best wall time of ``iterations`` training iterations in ``chunk``-long compiled calls.

  ``trainer`` is a ``lth_jax.training.fit.Trainer``; the first call (compilation) is not timed.
  """
  state = block(trainer.train_steps(state, keys, chunk))

  def go():
    nonlocal state
    for _ in range(iterations // chunk):
      state = trainer.train_steps(state, keys, chunk)
    block(state)

  return best_of(go, repeats)


def interleaved(runs: dict, repeats: int, *, per: int) -> dict[str, float]:
  """Best ms per step of each run, timed in turns (a shared CPU's load hits them alike)."""
  best = dict.fromkeys(runs, float('inf'))
  for _ in range(repeats):
    for name, go in runs.items():
      began = time.perf_counter()
      go()
      best[name] = min(best[name], time.perf_counter() - began)
  return {name: 1e3 * seconds / per for name, seconds in best.items()}

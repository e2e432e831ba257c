"""One command that measures a machine: many networks at once, one IMP level, the LMC pair and path.

    python benchmarks/accelerator.py                  # a GPU or TPU: about 8 minutes at most
    python benchmarks/accelerator.py --small          # any CPU: a minute (the suite runs it)

No download: inputs are random images of the real shapes (Fashion-MNIST's 28x28x1,
CIFAR-10's 32x32x3); nothing here depends on what the networks learn. Prints one
table and writes it as JSON (``--output``, default ``accelerator.json``):

- ``networks``: N vmapped LeNet-300-100s (N = 1, 8, 32, 128, 512), Conv-2s and
  ResNet-20s (N = 1, 4, 16; ``--small``: LeNet 1, 4, Conv-2 1, ResNet-20 plain
  only) against one network's plain program: time per
  iteration and network, the throughput ratio, and the first call's time
  (compilation included). A size the device cannot hold is refused before it is
  tried when the compiler's memory analysis says so, and reported as "does not
  fit" when the device runs out anyway; a size whose projected time would pass
  ``--budget`` seconds is skipped and says so.
- ``imp level``: level 1 of LeNet (8 seeds x 3 arms: ticket, reinit,
  random_prune; level 0 trained once, not timed) one run after another, side by
  side in threads, and vmapped, each after an untimed run that compiles its
  programs: what ``parallel`` chooses between.
- ``lmc``: the LMC pair vmapped against two sequential trainings; the
  interpolation path in one vmap against one network at a time.
- ``split``: a level whose runs do not fit in one call, on purpose: the device
  memory is taken as holding a third of them (from the compiler's memory
  analysis of one run), and the level loop splits it; the number of calls made.
  On a device that reports its memory, also how many LeNet runs fit in one call.
- the device, its memory, jax and jaxlib versions, the CPU count.

Every ratio is measured in one process, one after the other, best of a few
repeats: load from other processes on a shared machine falls on both sides.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field

import common
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax

from experiments import lenet300
from lth_jax.analyses import lmc
from lth_jax.core import connectivity, models
from lth_jax.core import train as train_lib
from lth_jax.data.datasets import Dataset
from lth_jax.study import from_config, levels
from lth_jax.training import parallel
from lth_jax.training.fit import Trainer

MNIST_SHAPE, CIFAR_SHAPE = (28, 28, 1), (32, 32, 3)


@dataclass(frozen=True)
class Size:
  """What one mode measures."""

  lenet_n: tuple[int, ...]
  conv_n: tuple[int, ...]  # Conv-2's; ResNet-20's too unless resnet_n says otherwise.
  iterations: int  # Timed iterations per LeNet measurement.
  conv_iterations: int
  conv_batch: int  # 0: Conv-2 at batch 60 and ResNet-20 at 128 (their recipes).
  seeds: int  # Of the IMP level (x 3 arms).
  level_iterations: int
  pair_iterations: int
  num_alphas: int
  examples: int  # Random training images.
  resnet_n: tuple[int, ...] | None = None


FULL = Size((1, 8, 32, 128, 512), (1, 4, 16), 1000, 100, 0, 8, 1000, 1000, 31, 20_000)
SMALL = Size((1, 4), (1,), 100, 2, 8, 2, 50, 50, 5, 1_000, resnet_n=())  # ResNet-20: plain only.


@dataclass
class Table:
  rows: list[dict] = field(default_factory=list)

  def add(self, **row) -> dict:
    self.rows.append(row)
    line = '  '.join(f'{k}={_fmt(v)}' for k, v in row.items())
    print(line, flush=True)
    return row


def _fmt(v) -> str:
  return f'{v:.4g}' if isinstance(v, float) else str(v)


def _out_of_memory(e: Exception) -> bool:
  text = f'{type(e).__name__}: {e}'
  return isinstance(e, MemoryError) or 'RESOURCE_EXHAUSTED' in text or 'Out of memory' in text


def random_images(shape, n: int, seed: int = 0) -> train_lib.DataArrays:
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
  y = rng.integers(0, 10, size=(n,)).astype(np.int32)
  return train_lib.DataArrays(jax.device_put(x), jax.device_put(y))


def task_of(name: str, batch_size: int) -> train_lib.Task:
  channels = 1 if name == 'lenet300' else 3
  optimizer = optax.adam(1.2e-3) if name == 'lenet300' else optax.sgd(0.1, momentum=0.9)
  return train_lib.Task(
    model=models.get_model(name, num_classes=10), optimizer=optimizer, batch_size=batch_size,
    mean=(0.5,) * channels, std=(0.25,) * channels,
  )  # fmt: skip


def initial_state(task, shape, seed: int = 0):
  params, model_state = train_lib.init_variables(task.model, jax.random.key(seed), shape)
  return train_lib.create_state(task, params, model_state)


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def network_rows(table, name, shape, batch, ns, iterations, budget, examples):
  """N vmapped networks against one plain one: ms per iteration and network."""
  task, train = task_of(name, batch), random_images(shape, examples)
  chunk = max(1, min(100, iterations // 2))
  iterations = max(chunk, iterations // chunk * chunk)
  available = parallel.device_memory_bytes()
  steps, _ = train_lib.compiled(task, vmapped=False)
  one = jax.device_get(initial_state(task, shape))
  began = time.perf_counter()  # The plain program is compiled here, for its memory analysis.
  per_run = parallel.bytes_per_run(steps, one, train, jax.random.key(0), chunk)
  analysis = time.perf_counter() - began
  base = None
  for n in (None, *ns):
    label = 'plain' if n is None else n
    if n is not None and available and per_run * n > available * parallel.MEMORY_FRACTION:
      table.add(section='networks', model=name, n=label, note='does not fit (memory analysis)')
      break
    projected = (base or 0) * (n or 1) * iterations / 1000
    if base and projected > budget:
      table.add(section='networks', model=name, n=label, note=f'skipped: ~{projected:.0f} s')
      break
    trainer = Trainer(task, train, {}, vmapped=n is not None)
    if n is None:
      state, keys = jax.device_put(one), jax.random.key(1)
    else:
      state = parallel.stack([one] * n)
      keys = jax.random.split(jax.random.key(1), n)
    try:
      holder = [state]
      first = _timed(lambda: holder.__setitem__(0, common.block(
        trainer.train_steps(holder[0], keys, chunk))))  # fmt: skip
      first += analysis if n is None else 0.0
      seconds = common.chunked_seconds(
        trainer, holder[0], keys, iterations=iterations, chunk=chunk, repeats=2
      )
    except Exception as e:
      if not _out_of_memory(e):
        raise
      table.add(section='networks', model=name, n=label, note='does not fit (out of memory)')
      break
    ms = 1000 * seconds / iterations / (n or 1)
    base = base or ms
    table.add(
      section='networks', model=name, batch=batch, n=label, ms_per_iteration_per_network=ms,
      throughput_vs_plain=base / ms, first_call_s=first, bytes_per_run=per_run,
    )  # fmt: skip


def fake_dataset(size: Size) -> Dataset:
  rng = np.random.default_rng(0)
  images = lambda n: rng.integers(0, 256, size=(n, *MNIST_SHAPE), dtype=np.uint8)  # noqa: E731
  labels = lambda n: rng.integers(0, 10, size=(n,)).astype(np.int32)  # noqa: E731
  n = size.examples
  return Dataset(
    'fashion_mnist', images(n), labels(n), images(n // 10), labels(n // 10), images(n // 5),
    labels(n // 5), np.array([0.5], np.float32), np.array([0.25], np.float32), 10,
  )  # fmt: skip


def level_study(dataset, size: Size, mode: str):
  config = lenet300.get_config('quick')
  config.num_seeds, config.arms, config.num_levels = size.seeds, 'ticket,reinit,random_prune', 0
  config.num_steps, config.eval_every, config.parallel = size.level_iterations, 100, mode
  config.data.validation_size, config.train_eval_size = len(dataset.val_x), 500
  config.checkpoint_seconds = 0.0
  return from_config.from_config(config, dataset=dataset)


def with_mode(study, mode: str):
  """``study`` trained as ``parallel=mode`` says (the same task: its programs are shared)."""
  vmapped, threads = parallel.resolve(mode)
  study.execution = dataclasses.replace(
    study.execution, vmapped=vmapped, threads=threads, group_size=0,
    sharder=parallel.Sharder() if vmapped else None,
  )  # fmt: skip
  return study


def imp_level_rows(table, study, size: Size, level_zero):
  """Level 1 of 3 arms x seeds: one after another, in threads, vmapped."""
  modes = ('false', 'threads', 'true') if jax.default_backend() == 'cpu' else ('false', 'true')
  seconds = {}
  for mode in modes:
    with_mode(study, mode)
    levels.train_levels(study, copy.deepcopy(level_zero), progress=False)  # Compiles; not timed.
    store = copy.deepcopy(level_zero)
    seconds[mode] = _timed(lambda store=store: levels.train_levels(study, store, progress=False))
  for mode, s in seconds.items():
    table.add(
      section='imp level', runs=3 * size.seeds, iterations=size.level_iterations, parallel=mode,
      seconds=s, speedup_vs_one_at_a_time=seconds['false'] / s,
    )  # fmt: skip


def lmc_rows(table, size: Size):
  task, train = task_of('lenet300', 60), random_images(MNIST_SHAPE, size.examples)
  test = random_images(MNIST_SHAPE, 2000, seed=1)
  split = train_lib.make_eval_split(np.asarray(test.x), np.asarray(test.y), 1000)
  start = jax.device_get(initial_state(task, MNIST_SHAPE))
  keys = (jax.random.key(1), jax.random.key(2))
  pair, plain, n = (
    Trainer(task, train, {}, vmapped=True),
    Trainer(task, train, {}),
    size.pair_iterations,
  )

  def vmapped():
    common.block(lmc.train_pair(pair, start, keys, until=n))

  def sequential():
    for key in keys:
      common.block(plain.train_steps(jax.device_put(start), key, n))

  vmapped(), sequential()  # Compilation, not timed.
  v, s = common.best_of(vmapped, 2), common.best_of(sequential, 2)
  table.add(section='lmc', what=f'pair, {n} iterations', vmapped_s=v, sequential_s=s,
            sequential_over_vmapped=s / v)  # fmt: skip
  a, b = lmc.train_pair(pair, start, keys, until=n)
  grid = connectivity.alphas(size.num_alphas)
  path = jax.jit(connectivity.path_metrics, static_argnums=0)
  one = jax.jit(
    lambda alpha: train_lib.evaluate(task, connectivity.interpolate_state(a, b, alpha), split)
  )

  def vmapped_path():
    common.block(path(task, a, b, split, grid))

  def one_at_a_time():
    common.block([one(alpha) for alpha in grid])

  vmapped_path(), one_at_a_time()
  v, s = common.best_of(vmapped_path, 2), common.best_of(one_at_a_time, 2)
  table.add(section='lmc', what=f'path of {len(grid)} networks', vmapped_s=v, sequential_s=s,
            sequential_over_vmapped=s / v)  # fmt: skip


def split_rows(table, study, size: Size, level_zero):
  """A level that does not fit in one call, on purpose; the calls the level loop made."""
  store = copy.deepcopy(level_zero)
  with_mode(study, 'true')
  steps, _ = train_lib.compiled(study.task, vmapped=False)
  data_key = jax.eval_shape(lambda: jax.random.key(0))
  per_run = parallel.bytes_per_run(
    steps, study.state_like(), study.train, data_key, study.eval_every
  )
  runs = 3 * size.seeds
  pretend = math.ceil(per_run * math.ceil(runs / 3) / parallel.MEMORY_FRACTION)
  multiple = study.execution.sharder.multiple
  study.execution.group_size = parallel.runs_per_call(per_run, pretend, multiple)
  calls, real = [], levels.train_group

  def counted(*args, **kwargs):
    calls.append(len(args[2]))
    return real(*args, **kwargs)

  levels.train_group = counted
  try:
    levels.train_levels(study, store, progress=False)
  finally:
    levels.train_group = real
  available = parallel.device_memory_bytes()
  table.add(
    section='split', runs=runs, bytes_per_run=per_run, pretend_memory=pretend,
    runs_per_call=study.execution.group_size, calls=len(calls), runs_in_calls=calls,
    lenet_runs_per_call_on_this_device=(
      parallel.runs_per_call(per_run, available, multiple) if available else 'no limit reported'
    ),
  )  # fmt: skip


def machine() -> dict:
  device = jax.devices()[0]
  memory = parallel.device_memory_bytes()
  return {
    'device': getattr(device, 'device_kind', str(device)), 'backend': jax.default_backend(),
    'devices': jax.device_count(), 'memory_bytes': memory, 'jax': jax.__version__,
    'jaxlib': jaxlib.__version__, 'cpus': parallel.cpu_count(),
  }  # fmt: skip


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--small', action='store_true', help='small sizes, for a CPU (and the tests)')
  parser.add_argument('--output', default='accelerator.json')
  parser.add_argument('--budget', type=float, default=60.0,
                      help='skip a size whose projected time passes this many seconds')  # fmt: skip
  args = parser.parse_args(argv)
  size = SMALL if args.small else FULL
  start = time.perf_counter()
  about = machine()
  print('  '.join(f'{k}={v}' for k, v in about.items()), flush=True)
  table = Table()
  network_rows(table, 'lenet300', MNIST_SHAPE, 60, size.lenet_n, size.iterations, args.budget,
               size.examples)  # fmt: skip
  resnet_n = size.conv_n if size.resnet_n is None else size.resnet_n
  for name, batch, ns in (('conv2', size.conv_batch or 60, size.conv_n),
                          ('resnet20', size.conv_batch or 128, resnet_n)):  # fmt: skip
    network_rows(table, name, CIFAR_SHAPE, batch, ns, size.conv_iterations, args.budget,
                 size.examples)  # fmt: skip
  study = level_study(fake_dataset(size), size, 'false')  # One task: its programs are shared.
  level_zero = levels.train_levels(study, progress=False)
  study.num_levels = 1
  imp_level_rows(table, study, size, level_zero)
  lmc_rows(table, size)
  split_rows(table, study, size, level_zero)
  about['seconds'] = time.perf_counter() - start
  about['mode'] = 'small' if args.small else 'full'
  with open(args.output + '.tmp', 'w') as f:
    json.dump({'machine': about, 'rows': table.rows}, f, indent=1, default=str)
  os.replace(args.output + '.tmp', args.output)
  print(f'{about["seconds"]:.0f} s in all; written to {args.output}', flush=True)


if __name__ == '__main__':
  jnp.zeros(())  # Start the backend before the first timing.
  main()

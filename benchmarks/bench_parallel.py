"""Many LeNet-300-100s at once: per-network throughput and one IMP level, vmapped vs sequential.

    python benchmarks/bench_parallel.py [--iterations 1000] [--data-dir DIR]

1. Per-network time per iteration of N vmapped networks (N = 1, 8, 32), with one
   shared data order (the arms of a seed) and with independent orders (seeds).
2. The wall time of one IMP level (level 1) for 4 seeds × 2 arms (ticket,
   reinit) on Fashion-MNIST: one vmapped program vs one run after another.
"""

from __future__ import annotations

import argparse
import time

import common
import jax

from experiments import lenet300
from lth_jax import build, data, imp, parallel
from lth_jax.fit import Trainer


def per_network_ms(task, train, n: int, iterations: int, shared_order: bool) -> float:
  trainer = Trainer(task, train, splits={}, vmapped=True)
  state = parallel.stack([common.initial_state(task, seed) for seed in range(n)])
  keys = jax.random.split(jax.random.key(1), n)
  if shared_order:
    keys = parallel.stack([keys[0]] * n)
  seconds = common.chunked_seconds(
    trainer, state, keys, iterations=iterations, chunk=100, repeats=2
  )
  return 1000 * seconds / iterations / n


def single_ms(task, train, iterations: int) -> float:
  seconds = common.chunked_seconds(
      Trainer(task, train, splits={}), common.initial_state(task), jax.random.key(1),
      iterations=iterations, chunk=100, repeats=2,
  )  # fmt: skip
  return 1000 * seconds / iterations


def level_seconds(dataset, data_dir: str, parallel: str, iterations: int) -> float:
  config = lenet300.get_config('quick')
  config.data.data_dir = data_dir or ''
  config.num_seeds, config.arms, config.num_levels = 4, 'ticket,reinit', 0
  config.num_steps, config.eval_every, config.parallel = iterations, 250, parallel
  study = build.from_config(config, dataset=dataset)
  store = imp.run_imp(study)  # Level 0 (not timed) ...
  study.num_levels = 1
  start = time.perf_counter()
  imp.run_imp(study, store)  # ... level 1: 8 runs, compilation included.
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--iterations', type=int, default=1000)
  parser.add_argument('--data-dir', default=None)
  args = parser.parse_args()
  print(common.describe_machine())
  task, train = common.lenet_task(), common.fake_mnist()
  one = single_ms(task, train, args.iterations)
  print(f'one network, unvmapped: {one:.3f} ms / iteration')
  for n in (1, 8, 32):
    for shared in (True, False):
      ms = per_network_ms(task, train, n, args.iterations, shared)
      order = 'shared data order' if shared else 'independent orders'
      print(
        f'{n:>3} vmapped, {order:<18}: {ms:.3f} ms / iteration / network ({ms / one:.2f}x one network)'
      )
  dataset = data.load('fashion_mnist', validation_size=5000, data_dir=args.data_dir)
  seq = level_seconds(dataset, args.data_dir, 'false', args.iterations)
  vec = level_seconds(dataset, args.data_dir, 'true', args.iterations)
  print(f'one IMP level, 4 seeds x 2 arms, {args.iterations} iterations each:')
  print(
    f'  sequential: {seq:.1f} s   vmapped: {vec:.1f} s   (vmapped / sequential = {vec / seq:.2f})'
  )


if __name__ == '__main__':
  main()

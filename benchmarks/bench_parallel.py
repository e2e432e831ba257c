"""Many LeNet-300-100s at once: per-network cost of the vmapped programs, and one IMP level.

    python benchmarks/bench_parallel.py [--periods 10] [--data-dir DIR]

1. Per-network time per iteration of N vmapped networks (N = 1, 2, 8, 32) in
   the programs ``fit`` runs (segments of evaluation periods: 100 steps, then
   the validation split), against one network's plain program, with one shared
   data order (the arms of a seed) and independent orders (seeds).
2. The wall time of one IMP level (level 1) for 4 seeds x 2 arms (ticket,
   reinit) on Fashion-MNIST: one run after another, side by side in threads,
   and vmapped (compilation included).
"""

from __future__ import annotations

import argparse
import time

import common
import jax
import jax.numpy as jnp

from experiments import lenet300
from lth_jax import data
from lth_jax.core import train as train_lib
from lth_jax.study import from_config, levels
from lth_jax.training import fit, parallel
from lth_jax.training import segment as segment_lib
from lth_jax.training.fit import Trainer


def per_network_ms(study, n: int | None, periods: int, shared_order: bool = True) -> float:
  """ms per iteration and network of the segment program; ``n`` None: the plain program."""
  trainer = Trainer(study.task, study.train, study.eval_splits, vmapped=n is not None)
  _, _, segment, _ = fit.programs_of(trainer, eval_every=100, until=10**6, capacity=periods + 1)
  if n is None:
    state, keys = study.initial_state(0), jax.random.key(1)
  else:
    state = parallel.stack([study.initial_state(s) for s in range(n)])
    keys = jax.random.split(jax.random.key(1), n)
    keys = parallel.stack([keys[0]] * n) if shared_order else keys
  inf = jnp.full(() if n is None else (n,), jnp.inf, jnp.float32)
  carry = [state, train_lib.no_order(trainer.num_examples(), n), segment_lib.best_of(state, inf)]

  def go():
    carry[0], carry[1], carry[2], rows, _ = segment(*carry, keys, jnp.int32(0), jnp.int32(periods))
    common.block(rows)

  go()  # Compilation, not timed.
  return 1000 * common.best_of(go, 3) / (periods * 100) / (n or 1)


def level_seconds(dataset, data_dir: str | None, parallel_mode: str, iterations: int) -> float:
  config = lenet300.get_config('quick')
  config.data.data_dir = data_dir or ''
  config.num_seeds, config.arms, config.num_levels = 4, 'ticket,reinit', 0
  config.num_steps, config.eval_every, config.parallel = iterations, 100, parallel_mode
  study = from_config.from_config(config, dataset=dataset)
  store = levels.train_levels(study)  # Level 0 (not timed) ...
  study.num_levels = 1
  start = time.perf_counter()
  levels.train_levels(study, store)  # ... level 1: 8 runs, compilation included.
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--periods', type=int, default=10)
  parser.add_argument('--iterations', type=int, default=1000)
  parser.add_argument('--data-dir', default=None)
  args = parser.parse_args()
  print(common.describe_machine(), f'cores {parallel.cpu_count()}')
  dataset = data.load('fashion_mnist', validation_size=5000, data_dir=args.data_dir)
  config = lenet300.get_config('quick')
  config.data.data_dir = args.data_dir or ''
  study = from_config.from_config(config, dataset=dataset)
  one = per_network_ms(study, None, args.periods)
  print(f'one network, plain program: {one:.3f} ms / iteration (evaluation included)')
  for n in (1, 2, 8, 32):
    for shared in (True, False):
      ms = per_network_ms(study, n, args.periods, shared)
      order = 'shared data order' if shared else 'independent orders'
      print(
        f'{n:>3} vmapped, {order:<18}: {ms:.3f} ms / iteration / network ({ms / one:.2f}x one network)'
      )
  times = {
    m: level_seconds(dataset, args.data_dir, m, args.iterations)
    for m in ('false', 'threads', 'true')
  }
  print(f'one IMP level, 4 seeds x 2 arms, {args.iterations} iterations each:')
  print('  ' + ', '.join(f'{m}: {t:.1f} s' for m, t in times.items())
        + f'  (threads / one at a time = {times["threads"] / times["false"]:.2f}, '
        f'vmapped / one at a time = {times["true"] / times["false"]:.2f})')  # fmt: skip


if __name__ == '__main__':
  main()

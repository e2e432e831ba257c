"""The LMC pair of LeNet-300-100s: one vmapped call, two sequential trainings, two in threads.

    python benchmarks/bench_lmc.py [--iterations 500] [--rounds 5]

Both copies start from the same state and train ``--iterations`` steps with
their own data keys (``lth_jax.analyses.lmc.train_copies``): vmapped in one compiled
call, one after the other with the plain program, or side by side in two threads (what
``parallel='auto'`` gives on a multi-core CPU). Rounds of the three are
interleaved (so load from other processes falls on both alike); the best round
of each and their ratio are printed. Compilation is not timed. Then the same for
the path: 31 interpolated networks evaluated in one vmap against one at a time.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import common
import jax
import numpy as np

from lth_jax.analyses import lmc
from lth_jax.core import connectivity
from lth_jax.core import train as train_lib
from lth_jax.training.fit import Trainer


def interleaved(fns: dict, rounds: int) -> dict[str, float]:
  """Best wall seconds of each of ``fns`` over ``rounds`` interleaved rounds (after a warm-up)."""
  for fn in fns.values():
    fn()
  best = dict.fromkeys(fns, float('inf'))
  for _ in range(rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      best[name] = min(best[name], time.perf_counter() - start)
  return best


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--iterations', type=int, default=500)
  parser.add_argument('--rounds', type=int, default=5)
  args = parser.parse_args()
  print(common.describe_machine())
  task, train = common.lenet_task(), common.fake_mnist()
  test = common.fake_mnist(10_000)
  splits = {'test': train_lib.make_eval_split(np.asarray(test.x), np.asarray(test.y), 1000)}
  start = jax.device_get(common.initial_state(task))
  keys = (jax.random.key(1), jax.random.key(2))
  pair = Trainer(task, train, splits, vmapped=True)
  plain = Trainer(task, train, splits)
  n = args.iterations

  def vmapped():
    common.block(lmc.train_pair(pair, start, keys, until=n))

  def sequential():
    for key in keys:
      common.block(plain.train_steps(jax.device_put(start), key, n))

  def threads():  # What ``lmc.train_copies`` does under parallel='threads' (auto on a CPU).
    with ThreadPoolExecutor(2) as pool:
      common.block(list(pool.map(lambda k: plain.train_steps(jax.device_put(start), k, n), keys)))

  best = interleaved(
    {'vmapped': vmapped, 'sequential': sequential, 'threads': threads}, args.rounds
  )
  print(
    f'pair of {n} iterations: vmapped {best["vmapped"]:.3f} s, two sequential '
    f'{best["sequential"]:.3f} s, two in threads {best["threads"]:.3f} s; sequential / vmapped '
    f'= {best["sequential"] / best["vmapped"]:.2f}, sequential / threads = '
    f'{best["sequential"] / best["threads"]:.2f}'
  )
  a, b = lmc.train_pair(pair, start, keys, until=n)
  grid = connectivity.alphas()
  path = jax.jit(connectivity.path_metrics, static_argnums=0)
  one = jax.jit(
    lambda alpha: train_lib.evaluate(
      task, connectivity.interpolate_state(a, b, alpha), splits['test']
    )
  )

  def vmapped_path():
    common.block(path(task, a, b, splits['test'], grid))

  def one_at_a_time():
    common.block([one(alpha) for alpha in grid])

  best = interleaved({'vmapped': vmapped_path, 'one': one_at_a_time}, args.rounds)
  print(
    f'path of {len(grid)} networks on 10,000 test images: vmapped {best["vmapped"]:.3f} s, '
    f'one at a time {best["one"]:.3f} s; ratio {best["one"] / best["vmapped"]:.2f}'
  )


if __name__ == '__main__':
  main()

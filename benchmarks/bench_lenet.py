"""LeNet-300-100 training speed against the machine's FLOP floor.

    python benchmarks/bench_lenet.py [--iterations 5000] [--repeats 3]

Prints the seconds per 1,000 iterations of the library's own training
(``fit.Trainer.train_steps``, what ``fit`` calls between evaluations: lax.scan
over chunks of steps, donated state, data on the device; evaluation excluded), a bare jitted step called from
Python for comparison, the matmul FLOP rate measured in the same run and the
floor it implies for the 67.6 MFLOP of one batch-60 step.
"""

from __future__ import annotations

import argparse

import common
import jax

from lth_jax.core import train as train_lib
from lth_jax.training.fit import Trainer


def bare_step(task, data, iterations: int):
  step = jax.jit(lambda s, x, y, k: train_lib.train_step(task, s, x, y, k), donate_argnums=0)
  state = common.initial_state(task)
  idx = train_lib.batch_indices(
    jax.random.key(1), 0, iterations, num_examples=data.x.shape[0], batch_size=60
  )
  batches = [(data.x[i], data.y[i]) for i in idx]
  state, loss = step(state, *batches[0], jax.random.key(0))
  common.block(loss)

  def go():
    nonlocal state
    for i, (x, y) in enumerate(batches):
      state, loss = step(state, x, y, jax.random.fold_in(jax.random.key(0), i))
    common.block(loss)

  return go


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--iterations', type=int, default=5000)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  print(common.describe_machine())
  task, data = common.lenet_task(), common.fake_mnist()
  rate = common.matmul_flops_per_second()
  floor = 1000 * common.LENET_STEP_FLOP / rate
  print(
    f'matmul rate: {rate / 1e9:.0f} GFLOP/s; one step = {common.LENET_STEP_FLOP / 1e6:.1f} MFLOP'
  )
  print(f'floor:                         {floor:.3f} s / 1,000 iterations')
  per_k = 1000 / args.iterations
  trainer = Trainer(task, data, splits={})
  for chunk in (100, 1000):
    t = common.chunked_seconds(
        trainer, common.initial_state(task), jax.random.key(1),
        iterations=args.iterations, chunk=chunk, repeats=args.repeats,
    ) * per_k  # fmt: skip
    print(
      f'library loop (chunks of {chunk:>4}): {t:.3f} s / 1,000 iterations  ({t / floor:.2f}x floor)'
    )
  t = common.best_of(bare_step(task, data, min(args.iterations, 2000)), args.repeats)
  t *= 1000 / min(args.iterations, 2000)
  print(f'bare jitted step, Python loop: {t:.3f} s / 1,000 iterations  ({t / floor:.2f}x floor)')


if __name__ == '__main__':
  main()

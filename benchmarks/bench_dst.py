"""The cost of a moving mask: one SET / RigL update against one plain training step (LeNet-300-100).

    python benchmarks/bench_dst.py [--repeats 20]

The update (``lth_jax.study.moving``: a batch's dense gradient for RigL, then per
layer drop the smallest kept magnitudes and grow the largest scores) runs once
every ``dst.update_every`` (100) iterations; its cost over 100 plain steps is
what a moving mask adds to training. Compilation is not timed; best of repeats.
"""

from __future__ import annotations

import argparse

import common
import jax
import jax.numpy as jnp

from lth_jax.study import moving
from lth_jax.training.fit import Trainer


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=20)
  args = parser.parse_args()
  print(common.describe_machine())
  task, train = common.lenet_task(), common.fake_mnist()
  state = common.initial_state(task)
  counted = tuple(x.ndim == 2 for x in jax.tree.leaves(state.params))
  update = moving._program(task, counted, False)  # noqa: SLF001 (the program the hook runs)
  trainer = Trainer(task, train, {})
  ticket = jax.device_get(state.masks)
  held = [state]

  def steps():
    held[0] = common.block(trainer.train_steps(held[0], jax.random.key(1), 100))

  def updated(mode):
    def go():
      held[0], stats = update(held[0], train, jax.random.key(2), jnp.float32(0.3), mode, ticket)
      common.block((held[0], stats))

    return go

  steps()
  hundred = common.best_of(steps, args.repeats) / 100
  for name, mode in (('set', 1), ('rigl', 2)):
    updated(mode)()
    seconds = common.best_of(updated(mode), args.repeats)
    print(
      f'{name} update: {1000 * seconds:.2f} ms = {seconds / hundred:.1f} plain steps '
      f'({1000 * hundred:.3f} ms each); every 100 steps: +{seconds / hundred:.1f}% of training'
    )


if __name__ == '__main__':
  main()

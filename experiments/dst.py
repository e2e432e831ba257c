"""Sparse from the start: static, SET and RigL against the ticket, at the ticket's sparsity.

Evci et al., "Rigging the Lottery" (ICML 2020); Mocanu et al. 2018 (SET). At each
level L the arms ``static``, ``set`` and ``rigl`` start from θ0 (θk when rewinding
late) with a random mask holding as many weights as the ticket of level L, spread
over the layers as ``dst.distribution`` says (``ticket``: the ticket's per-layer
counts; ``erk``; ``uniform``); ``set`` and ``rigl`` move their masks every
``dst.update_every`` iterations until ``dst.end_step`` (``lth_jax.arms.sparse``,
``lth_jax.core.dst``). Each trains for as many iterations as the ticket, with the
same data order and early stopping. ``dst.csv`` records every update.

Run (from the repository root):

    lth run --config=experiments/dst.py:lenet300 --workdir=runs       # the ticket's counts
    lth run --config=experiments/dst.py:lenet300-erk --workdir=runs   # ERK densities

Variants:
  lenet300: LeNet-300-100 on Fashion-MNIST, the main job's recipe (Adam 1.2e-3,
    batch 60, T = 5,000 iterations, evaluation every 250), 5 levels of three of
    the paper's rounds each (51%, 26%, 13.5%, 7.0% and 3.6% of the weights
    remaining), arms ticket, random_prune, static, set, rigl; updates every 100
    iterations, drop fraction 0.3 decayed to 0 at 75% of T (RigL's defaults);
    layer densities of the ticket; 3 seeds.
  lenet300-erk: the same with ERK layer densities (ticket, static, set, rigl).
  smoke: a few hundred examples and iterations, 1 level; seconds, for tests.
"""

from experiments import lenet300
from experiments.lenet300 import PAPER  # noqa: F401 (the report's reference for LeNet runs)
from experiments.prune_early import rounds_per_level

VARIANTS = ('lenet300', 'lenet300-erk', 'smoke')


def get_config(variant: str = 'lenet300'):
  if variant not in VARIANTS:
    raise ValueError(f'unknown variant {variant!r} of dst: use one of {", ".join(VARIANTS)}.')
  config = lenet300.get_config('smoke' if variant == 'smoke' else 'quick')
  config.arms = 'ticket,random_prune,static,set,rigl'
  if variant == 'smoke':
    config.num_levels = 1
    config.dst.update_every = 20
  else:
    config.num_seeds = 3
    rounds_per_level(config, 5, rounds=3)
  if variant == 'lenet300-erk':
    config.arms = 'ticket,static,set,rigl'
    config.dst.distribution = 'erk'
  config.name = f'dst-{variant}'
  return config

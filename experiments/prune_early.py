"""Pruning early: the IMP ticket against masks chosen at initialization, at equal sparsity.

At every level the ticket is compared with arms pruned ONE-SHOT from the same
θ0 (θk with late rewinding) to the ticket's number of weights, then trained the
same way: snip, grasp, synflow, magnitude_init (lth_jax.arms.at_init), random_prune
(the ticket's per-layer counts), signed_constant (the ticket's mask, ±σ by
sign) and supermask (a mask learned over frozen θ0, no weight trained).

Run (from the repository root):

    lth run --config=experiments/prune_early.py:lenet300     # Fashion-MNIST, here
    lth run --config=experiments/prune_early.py:conv2        # CIFAR-10, for a GPU
    lth run --config=experiments/prune_early.py:resnet20     # CIFAR-10, for a GPU

Variants (``get_config(variant)``):
  lenet300 (default): LeNet-300-100 on Fashion-MNIST, Adam 1.2e-3, batch 60,
    1,500 iterations per run (short: sized to run on a shared 2-core machine),
    evaluation every 250, 7 levels of two of the paper's rounds each (36% of
    hidden / 19% of output survivors per level: 4.5% remaining at level 7),
    supermasks learned for 1,000 iterations, 3 seeds: 150 trained runs, about
    an hour on 2 busy CPU cores. Measured: see README ("Pruning early").
  conv2: Conv-2 on CIFAR-10 with the paper's recipe, 10 levels of two rounds.
  resnet20: ResNet-20 on CIFAR-10, rewinding to 1,000, global pruning of 36%
    per level, 10 levels.
  smoke: a few hundred examples and iterations, one level; seconds, for tests.
"""

from experiments import conv, resnet20
from experiments.lenet300 import PAPER  # noqa: F401 (the report's reference for LeNet runs)
from lth_jax.study.config import default_config

ARMS = 'ticket,random_prune,snip,grasp,synflow,magnitude_init,signed_constant,supermask'
TWO_ROUNDS = {0.2: 0.36, 0.1: 0.19, 0.15: 0.2775}  # 1 - (1 - rate)^2: two rounds per level.


def _two_rounds_per_level(config, levels: int):
  p = config.pruning
  p.rate_conv, p.rate_dense, p.rate_output, p.rate = (
    TWO_ROUNDS.get(r, r) for r in (p.rate_conv, p.rate_dense, p.rate_output, p.rate)
  )
  config.num_levels = levels
  return config


def get_config(variant: str = 'lenet300'):
  if variant in ('lenet300', 'smoke'):
    config = default_config()
    config.data.name = 'fashion_mnist'
    config.num_steps = 1500
    config.eval_every = 250
    config.num_seeds = 3
    config.at_init.supermask_steps = 1000
    _two_rounds_per_level(config, 7)
  elif variant == 'conv2':
    config = _two_rounds_per_level(conv.get_config('conv2-paper'), 10)
  elif variant == 'resnet20':
    config = _two_rounds_per_level(resnet20.get_config('paper'), 10)
  else:
    raise ValueError(
      f"unknown variant {variant!r} of prune_early: use 'lenet300', 'conv2', 'resnet20' or 'smoke'."
    )
  config.arms = ARMS
  if variant == 'smoke':
    config.data.train_size = 1200
    config.data.validation_size = 200
    config.data.test_size = 300
    config.train_eval_size = 200
    config.eval_batch_size = 300
    config.num_steps = 40
    config.eval_every = 20
    config.curve_every = 0
    config.num_levels = 1
    config.num_seeds = 1
    config.at_init.supermask_steps = 20
    config.at_init.samples_per_class = 4
  config.name = f'prune_early-{variant}'
  return config

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
    an hour on 2 busy CPU cores. Measured: docs/studies/pruning-early.md.
  conv2: Conv-2 on CIFAR-10 with the paper's recipe, 10 levels of two rounds.
  resnet20: ResNet-20 on CIFAR-10, rewinding to 1,000, global pruning of 36%
    per level, 10 levels.
  ablations: which part of a mask matters (Frankle, Dziugaite, Roy & Carbin, ICLR
    2021): lenet300's recipe, every at-init source with its mask shuffled within
    each layer (``<source>/shuffle``) and its weights reinitialized
    (``<source>/reinit``) beside the ticket's ``shuffle`` and ``reinit``, 16 arms;
    4 levels of three of the paper's rounds each (51%, 26%, 13% and 6.9% of the
    weights remaining), 3 seeds. Measured: docs/studies/pruning-early.md
    ("Which part of a mask matters").
  smoke: a few hundred examples and iterations, one level; seconds, for tests.
"""

from experiments import conv, resnet20
from experiments.lenet300 import PAPER  # noqa: F401 (the report's reference for LeNet runs)
from lth_jax.study.config import default_config

ARMS = 'ticket,random_prune,snip,grasp,synflow,magnitude_init,signed_constant,supermask'
SOURCES = ('snip', 'grasp', 'synflow', 'magnitude_init')
ABLATIONS = ','.join(
  ('ticket', 'shuffle', 'reinit', 'random_prune')
  + tuple(f'{source}{control}' for source in SOURCES for control in ('', '/shuffle', '/reinit'))
)

VARIANTS = ('lenet300', 'ablations', 'conv2', 'resnet20', 'smoke')


def rounds_per_level(config, levels: int, rounds: int = 2):
  """Levels of ``rounds`` of the paper's rounds each: 1 - (1 - rate)^rounds per level."""
  p = config.pruning
  p.rate_conv, p.rate_dense, p.rate_output, p.rate = (
    round(1 - (1 - r) ** rounds, 6) for r in (p.rate_conv, p.rate_dense, p.rate_output, p.rate)
  )
  config.num_levels = levels
  return config


def get_config(variant: str = 'lenet300'):
  if variant in ('lenet300', 'smoke', 'ablations'):
    config = default_config()
    config.data.name = 'fashion_mnist'
    config.num_steps = 1500
    config.eval_every = 250
    config.num_seeds = 3
    config.at_init.supermask_steps = 1000
    if variant == 'ablations':
      rounds_per_level(config, 4, rounds=3)
    else:
      rounds_per_level(config, 7)
  elif variant == 'conv2':
    config = rounds_per_level(conv.get_config('conv2-paper'), 10)
  elif variant == 'resnet20':
    config = rounds_per_level(resnet20.get_config('paper'), 10)
  else:
    raise ValueError(
      f'unknown variant {variant!r} of prune_early: use lenet300, ablations, conv2, resnet20 '
      'or smoke.'
    )
  config.arms = ABLATIONS if variant == 'ablations' else ARMS
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

"""Do tickets transfer? A ticket found on one task, trained on another (Morcos et al. 2019).

Run (from the repository root; every stage resumes):

    lth run --config=experiments/transfer.py:fmnist_04_to_59 --workdir=runs/transfer
    lth run --config=experiments/transfer.py:smoke --workdir=/tmp/transfer

The source study is IMP with the ticket arm on the source task, down to the last
of the variant's levels (``transfer.levels``); its ``transfer`` stage
(``lth_jax.analyses.transfer``) exports each of those levels' tickets and trains
them on the target task (``transfer.data``, ``transfer.classes``) against a
random reinit and a random pruning with the same per-layer counts, then writes
``transfer.csv`` in the source directory: per level, test accuracy at early stop
of each arm and the paired-by-seed differences ticket − reinit,
ticket − random_prune and ticket − dense, in percentage points, mean ± sample std
over seeds.

Variants:
  fmnist_04_to_59, fmnist_59_to_04: Fashion-MNIST classes 0–4 → 5–9 (both
    relabelled 0..4) and the reverse; LeNet-300-100, Adam 1.2e-3, batch 60,
    4,000 iterations, evaluation every 200, 3 seeds, tickets at levels 5 and 10
    (32.8% and 10.7% of the weights). ≈ 10–15 min per variant on 2 CPU cores.
  mnist_to_fmnist, fmnist_to_mnist: MNIST ↔ Fashion-MNIST, all 10 classes,
    the paper's LeNet recipe (needs the internet for MNIST).
  cifar10_04_to_59_conv2, cifar10_59_to_04_conv2: CIFAR-10 class halves with the
    Conv-2 recipe (needs the internet, and a GPU to be quick).
  smoke: a few hundred examples and iterations, for tests.
"""

from __future__ import annotations

from experiments import conv
from experiments.lenet300 import PAPER  # noqa: F401 (the report's reference for LeNet runs)
from lth_jax.study.config import default_config

HALVES = {'04': (0, 1, 2, 3, 4), '59': (5, 6, 7, 8, 9)}
# Source levels whose tickets are transferred, per variant.
LEVELS = {
  'fmnist_04_to_59': (5, 10), 'fmnist_59_to_04': (5, 10), 'mnist_to_fmnist': (5, 10),
  'fmnist_to_mnist': (5, 10), 'cifar10_04_to_59_conv2': (5, 11),
  'cifar10_59_to_04_conv2': (5, 11), 'smoke': (1,),
}  # fmt: skip
VARIANTS = tuple(LEVELS)


def _tasks(variant: str):
  """((source data name, classes), (target data name, classes)) of a variant."""
  if variant.startswith(('fmnist_0', 'fmnist_5', 'cifar10_')):
    name = 'cifar10' if variant.startswith('cifar10') else 'fashion_mnist'
    src, dst = variant.split('_')[1], variant.split('_')[3]
    return (name, HALVES[src]), (name, HALVES[dst])
  if variant == 'mnist_to_fmnist':
    return ('mnist', ()), ('fashion_mnist', ())
  if variant == 'fmnist_to_mnist':
    return ('fashion_mnist', ()), ('mnist', ())
  return ('fashion_mnist', HALVES['04']), ('fashion_mnist', HALVES['59'])  # smoke


def _recipe(variant: str):
  if variant.endswith('conv2'):
    config = conv.paper('conv2', dropout=0.0)
    config.num_seeds = 3
    return config
  config = default_config()
  config.arms = 'ticket'
  if variant == 'smoke':
    config.data.train_size = 600
    config.data.validation_size = 500  # ~250 of them in the chosen classes.
    config.data.test_size = 1000
    config.train_eval_size = 200
    config.num_steps = 40
    config.eval_every = 20
    config.eval_batch_size = 250
    config.rewind_step = 20  # Tickets from θk, and a control to export, for the tests.
    config.arms = 'ticket,reinit'
  elif variant.startswith('fmnist_'):
    config.num_steps = 4000
    config.eval_every = 200
    config.num_seeds = 3
  else:
    config.num_seeds = 3
  config.checkpoint_seconds = 0.0
  return config


def get_config(variant: str = 'fmnist_04_to_59'):
  """The source study of ``variant``, whose transfer stage trains its tickets on the target."""
  if variant not in LEVELS:
    raise ValueError(f'unknown variant {variant!r} of transfer: use one of {", ".join(LEVELS)}.')
  config = _recipe(variant)
  (src_data, src_classes), (dst_data, dst_classes) = _tasks(variant)
  config.name = f'transfer-{variant}-source'
  config.data.name, config.data.classes = src_data, src_classes
  config.num_levels = max(LEVELS[variant])
  config.transfer.levels = LEVELS[variant]
  config.transfer.data, config.transfer.classes = dst_data, dst_classes
  return config

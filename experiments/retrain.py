"""How to retrain a pruned network: weight rewinding, learning-rate rewinding, fine-tuning.

Renda, Frankle & Carbin, "Comparing Rewinding and Fine-tuning in Neural Network
Pruning" (ICLR 2020). Each variant is one study whose ``retrain`` setting says
how every pruned level retrains, which is also what the next level prunes:

  rewind     weights and learning-rate schedule back to k (IMP with rewinding)
  lr_rewind  the trained weights θT ⊙ masks, the schedule replayed from k for T − k
  finetune   the trained weights θT ⊙ masks at the final learning rate for T − k

Run (from the repository root), then set the three side by side:

    for mode in rewind lr_rewind finetune; do
      lth run --config=experiments/retrain.py:lenet300-$mode --workdir=runs
    done
    lth compare runs/retrain-lenet300-* --labels=finetune,lr_rewind,rewind --output=runs/retrain

Variants ``<recipe>-<mode>``:
  lenet300-*: LeNet-300-100 on Fashion-MNIST under SGD with momentum 0.9 and step
    decay (0.1, x0.1 at 50% and 75% of T = 3,000 iterations, batch 60), k = 300
    (10% of T), 8 levels of 20% / 10% (output) of the survivors (16.8% remaining),
    the ticket arm, 3 seeds: a few minutes per mode on 2 CPU cores. A schedule
    that decays is where the three differ (under a constant rate, learning-rate
    rewinding is fine-tuning).
  resnet20-*: the paper's ResNet-20 grid on CIFAR-10 (experiments/resnet20.py's
    open_lth recipe: 160 epochs, step decay at 80 and 120), k = 1,000, global
    pruning of 20% per level, 20 levels, 5 seeds: for a GPU.
  smoke-*: a few hundred examples and iterations; seconds, for tests.
"""

from experiments import lenet300, resnet20
from experiments.lenet300 import PAPER  # noqa: F401 (the report's reference for LeNet runs)

MODES = ('rewind', 'lr_rewind', 'finetune')
RECIPES = ('lenet300', 'resnet20', 'smoke')
VARIANTS = tuple(f'{recipe}-{mode}' for recipe in RECIPES for mode in MODES)


def _lenet(variant: str):
  config = lenet300.get_config('smoke' if variant == 'smoke' else 'quick')
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.num_steps = 3000 if variant == 'lenet300' else 60
  config.optimizer.milestones = tuple(int(config.num_steps * f) for f in (0.5, 0.75))
  config.optimizer.decay_factor = 0.1
  config.eval_every = 250 if variant == 'lenet300' else 20
  config.curve_every = 0 if variant == 'lenet300' else 20
  config.rewind_step = config.num_steps // 10 if variant == 'lenet300' else 20
  config.arms = 'ticket'
  if variant == 'lenet300':
    config.num_levels, config.num_seeds = 8, 3
  return config


def get_config(variant: str = 'lenet300-lr_rewind'):
  recipe, _, mode = variant.rpartition('-')
  if recipe not in RECIPES or mode not in MODES:
    raise ValueError(f'unknown variant {variant!r} of retrain: use one of {", ".join(VARIANTS)}.')
  config = resnet20.get_config('paper') if recipe == 'resnet20' else _lenet(recipe)
  config.retrain = mode
  config.name = f'retrain-{recipe}-{mode}'
  return config

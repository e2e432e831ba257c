"""When the ticket appears: early-bird tickets (You et al., "Drawing Early-Bird Tickets", ICLR 2020).

While each level's ticket trains, the masks its pruning would give are computed
at every evaluation from the current weights; the early-bird step is the first
evaluation where the newest mask is within ``early_bird.epsilon`` (0.1) of each of
the last ``early_bird.window`` (5) masks, in normalised Hamming distance (the
authors' defaults). The ``early_bird`` arm of the next level starts from the masks
found there, on the rewound weights, beside the ticket (pruned from the trained
network) and the random control. The distances are in ``early_bird.csv`` and the
report's "early-bird tickets" section.

Run (from the repository root):

    lth run --config=experiments/early_bird.py:lenet300 --workdir=runs

Variants:
  lenet300: LeNet-300-100 on Fashion-MNIST, Adam 1.2e-3, batch 60, T = 3,000
    iterations evaluated every 100 (30 masks per level), 4 levels of two of the
    paper's rounds each (64%, 42%, 27% and 17% of the weights remaining), arms
    ticket, early_bird, random_prune, 3 seeds. Measured: docs/studies/early-bird.md.
  smoke: a few hundred examples, 60 iterations evaluated every 10, a window of 3,
    2 levels; seconds, for tests.
"""

from experiments import lenet300
from experiments.lenet300 import PAPER  # noqa: F401 (the report's reference for LeNet runs)
from experiments.prune_early import rounds_per_level

VARIANTS = ('lenet300', 'smoke')


def get_config(variant: str = 'lenet300'):
  if variant not in VARIANTS:
    raise ValueError(
      f'unknown variant {variant!r} of early_bird: use one of {", ".join(VARIANTS)}.'
    )
  config = lenet300.get_config('quick' if variant == 'lenet300' else 'smoke')
  config.arms = 'ticket,early_bird,random_prune'
  if variant == 'lenet300':
    config.num_steps = 3000
    config.eval_every = 100
    config.num_seeds = 3
    rounds_per_level(config, 4)
  else:  # Evaluations every 10 iterations and a window of 3, so the search can settle.
    config.eval_every = 10
    config.early_bird.window = 3
  config.name = f'early_bird-{variant}'
  return config

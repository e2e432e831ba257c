"""Do tickets still win under Kaiming (He) initialization? One variant per init scheme.

A question from the paper's forum discussion: the lottery-ticket experiments
use Glorot initialization; do winning tickets — and the bimodal distribution of
their initial weights — survive other schemes? Each variant is the LeNet-300-100
``quick`` recipe (Fashion-MNIST, 5,000 iterations per run, 8 levels, ticket +
random reinit) with the prunable weights drawn from one scheme
(``model.init``; the reinit control draws from the same scheme).

Run (from the repository root), then overlay them:

    for s in glorot_normal glorot_uniform he_normal he_uniform lecun_normal; do
      lth run --config=experiments/init_schemes.py:$s --workdir=runs
    done
    lth compare runs/init-* --output runs/init_compare

Each run's report shows the ticket's initial weights per layer (its "Initial
weights of the winning ticket" section): compare their shapes across schemes.
About 5 minutes per scheme on 2 CPU cores. ``smoke``: seconds, for tests.
"""

from experiments import lenet300
from experiments.lenet300 import PAPER  # noqa: F401 (the report's reference for LeNet runs)
from lth_jax.core import models

SCHEMES = tuple(models.INITS)
VARIANTS = (*SCHEMES, 'smoke')


def get_config(variant: str = 'he_normal'):
  if variant not in VARIANTS:
    raise ValueError(
      f'unknown variant {variant!r} of init_schemes: use one of {", ".join(VARIANTS)}.'
    )
  config = lenet300.get_config('smoke' if variant == 'smoke' else 'quick')
  config.model.init = 'he_normal' if variant == 'smoke' else variant
  config.name = f'init-{variant}'
  return config

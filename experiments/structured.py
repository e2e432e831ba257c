"""Tickets that are really smaller: whole units and channels, refilled channels, N:M.

With ``pruning.granularity=unit`` (``channel`` is the same rule, named for conv
layers) each level removes ``rate`` of the surviving units of every hidden layer,
those whose surviving incoming weights have the smallest norm, with their
outgoing weights; the output keeps its units (``lth_jax.core.structured``). The
random control (``random_prune``) keeps the ticket's number of units per layer,
chosen at random. ``refill`` is Chen et al.'s (ICML 2022) refilling after each
unstructured round; ``pruning.n_m='2:4'`` keeps at most 2 of every 4 inputs.
``lth export RUN_DIR --level L --output t.npz --compact`` writes the ticket as a
smaller model of the same family (``lth_jax.core.compaction``);
``python benchmarks/bench_sparse.py --structured RUN_DIR`` times it against the
dense-masked network.

Run (from the repository root):

    lth run --config=experiments/structured.py:lenet300-unit --workdir=runs
    lth run --config=experiments/structured.py:lenet300-weight --workdir=runs   # unstructured

Variants (Fashion-MNIST, the main job's recipe: Adam 1.2e-3, batch 60, 5,000
iterations, evaluation every 250; arms ticket and random_prune; 3 seeds):
  lenet300-unit: 8 levels of 20% of the hidden units (300-100 down to 50-17).
  lenet300-refill: 8 levels of the paper's rounds (20% / 10%), refilled to whole units.
  lenet300-weight: 8 levels of the paper's unstructured rounds, the same arms and
    seeds: the unstructured tickets to compare with.
  lenet300-2of4: one level, 2:4 of every layer (50% of the weights).
  lenet300-half: one level, 50% of every layer unstructured: 2:4's counterpart.
  conv2-channel: Conv-2 on Fashion-MNIST, 2,000 iterations (evaluation every 200),
    4 levels of 30% of the channels and hidden units (down to 24%). Conv-2's 64-channel
    convs at 28x28 cost about 0.5 s per step on 2 CPU cores: for an accelerator.
  conv2-weight: its unstructured counterpart (30% of the weights per level).
  conv2_small-channel, conv2_small-weight: the same with ``conv2_small`` (8 and 16
    channels, one hidden layer of 64), 1,000 iterations (evaluation every 100): minutes.
  smoke: a few hundred examples and iterations, unit tickets, 2 levels; for tests.
"""

from experiments import lenet300
from experiments.lenet300 import PAPER  # noqa: F401 (the report's reference for LeNet runs)

VARIANTS = (
  'lenet300-unit', 'lenet300-refill', 'lenet300-weight', 'lenet300-2of4', 'lenet300-half',
  'conv2-channel', 'conv2-weight', 'conv2_small-channel', 'conv2_small-weight', 'smoke',
)  # fmt: skip


def get_config(variant: str = 'lenet300-unit'):
  if variant not in VARIANTS:
    raise ValueError(
      f'unknown variant {variant!r} of structured: use one of {", ".join(VARIANTS)}.'
    )
  config = lenet300.get_config('smoke' if variant == 'smoke' else 'quick')
  config.name = f'structured-{variant}'
  config.arms = 'ticket,random_prune'
  p = config.pruning
  if variant != 'smoke':
    config.num_seeds = 3
  if variant in ('lenet300-unit', 'smoke') or variant.endswith('-channel'):
    p.granularity = 'unit'
  if variant == 'lenet300-refill':
    p.granularity = 'refill'
  if variant in ('lenet300-2of4', 'lenet300-half'):
    config.num_levels = 1
    p.rate_dense = p.rate_output = 0.5
  if variant == 'lenet300-2of4':
    p.n_m, p.rate_dense, p.rate_output = '2:4', 0.0, 0.0
  if variant.startswith('conv2'):
    config.model.name = variant.split('-')[0]
    config.num_steps, config.eval_every, config.num_levels = 2000, 200, 4
    p.rate_conv = p.rate_dense = p.rate_output = 0.3
  if variant.startswith('conv2_small'):
    config.num_steps, config.eval_every = 1000, 100
  if p.granularity != 'weight':
    p.rate_output = 0.0  # The output's units are the classes; its inputs go with their units.
  return config

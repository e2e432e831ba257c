"""LeNet-300-100 lottery tickets (Frankle & Carbin 2019, Section 2).

Run (from the repository root):

    lth run --config=experiments/lenet300.py            # 'quick' on Fashion-MNIST
    lth run --config=experiments/lenet300.py:paper      # the paper's recipe, MNIST
    lth run --config=experiments/lenet300.py:paper --config.data.name=fashion_mnist

Variants:
  paper: MNIST, Adam 1.2e-3, batch 60, 50,000 iterations, evaluation every 100,
    layer-wise pruning of 20% (hidden) / 10% (output) of the survivors per level,
    16 levels, rewinding to θ0, controls ticket + random reinit, 5 seeds.
    Expected (paper): dense ≈ 98.0%; tickets reach minimum validation loss
    sooner down to 21.1% remaining and stay ≥ dense accuracy to ~3.6%; reinit
    loses accuracy from 21.1% on. Runtime: 5 seeds × 33 runs × 50K iterations
    ≈ 8.25M iterations ≈ 1.5–2 h on 2 CPU cores; minutes on one GPU with
    ``--config.parallel=true``.
  quick (default): Fashion-MNIST from /usr/share/datasets/fashion-mnist, 5,000
    iterations per run, evaluation every 250, 8 levels (down to 16.8%), one
    seed: a few minutes on 2 CPU cores. Dense accuracy ≈ 87–88%.
  smoke: a few hundred examples and iterations; seconds, for tests.
"""

from lth_jax.study.config import default_config

# What the paper reports for this recipe; the report shows it beside runs of a LeNet on
# (Fashion-)MNIST (``model`` and ``data`` are parts of the config's model.name / data.name).
PAPER = {
  'title': 'Frankle & Carbin 2019, LeNet-300-100 on MNIST',
  'model': 'lenet',
  'data': 'mnist',
  # Weights remaining at which the paper shows training curves (its Figure 3).
  'curve_remaining': (0.513, 0.211, 0.070),
  'findings': (
    'Dense test accuracy ≈ 98.0 ± 0.2%.',
    'Weights remaining after k rounds: 51.3% (k=3), 21.1% (7), 13.5% (9), 7.0% (12), 3.6% (15).',
    'Tickets learn faster down to 21.1% remaining: about 2.5× earlier minimum validation loss '
    'than a random reinit there, and about 0.5 pp more accurate.',
    'More than 0.3 pp above dense at 13.5%; back to dense accuracy at 3.6%; random reinit '
    'loses accuracy from 21.1% on.',
    'At 10.7% remaining: IMP ≈ 98.3 ± 0.1% vs random mask ≈ 97.5 ± 0.3% (Stabilizing the LTH).',
  ),
  # Notes for runs on another data set: {part of data.name: note}.
  'notes': {
    'fashion': 'This run uses Fashion-MNIST; the numbers above are for MNIST. Dense MLPs of this '
    'size reach about 89–90% on Fashion-MNIST.',
  },
}

VARIANTS = ('paper', 'quick', 'smoke')


def get_config(variant: str = 'quick'):
  config = default_config()
  config.name = f'lenet300-{variant}'
  if variant == 'paper':
    config.num_seeds = 5
  elif variant == 'quick':
    config.data.name = 'fashion_mnist'
    config.num_steps = 5000
    config.eval_every = 250
    config.num_levels = 8
  elif variant == 'smoke':
    config.data.name = 'fashion_mnist'
    config.data.train_size = 1200
    config.data.validation_size = 200
    config.data.test_size = 500
    config.train_eval_size = 200
    config.num_steps = 60
    config.eval_every = 20
    config.eval_batch_size = 250
    config.num_levels = 2
    config.checkpoint_every = 20
  else:
    raise ValueError(f"unknown variant {variant!r} of lenet300: use 'paper', 'quick' or 'smoke'.")
  return config

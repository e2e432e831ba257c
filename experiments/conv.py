"""Conv-2 / Conv-4 / Conv-6 lottery tickets on CIFAR-10 (Frankle & Carbin 2019, Section 3).

Run (from the repository root):

    lth run --config=experiments/conv.py:conv2-paper
    lth run --config=experiments/conv.py:conv6-dropout-paper
    lth run --config=experiments/conv.py:fashion --workdir=/tmp/conv_runs

Variants (``get_config(variant)``):
  conv2-paper, conv4-paper, conv6-paper: the paper's recipe (its Figure 2 table
    and Section 3): CIFAR-10 with 5,000 training images held out for
    validation, Adam 2e-4 / 3e-4 / 3e-4, batch 60, 20K / 25K / 30K iterations,
    evaluation every 100, layer-wise pruning per level of 10% / 10% / 15% (conv),
    20% (dense) and 10% (output) of the survivors, rewinding to θ0, ticket +
    random reinit, 5 seeds. 18 / 22 / 22 levels, the first level at or below 2%
    remaining (1.9% / 1.7% / 1.8%); the paper's points 8.8% / 9.2% / 15.1% are
    levels 11 / 12 / 10.
    Expected (paper): tickets stay above the dense accuracy while more than ~2%
    of the weights remain; early-stopping speed-ups up to ~3.5x (Conv-2 at
    8.8%), ~3.5x (Conv-4 at 9.2%), ~2.5x (Conv-6 at 15.1%) and accuracy gains of
    ~+3.4 / +3.5 / +3.3 pp over dense; reinitialized tickets learn slower and
    lose accuracy early.
    Runtime: Conv-2 is 5 seeds x 37 runs x 20K = 3.7M iterations (Conv-4: 4.5M,
    Conv-6: 6.6M). On one modern GPU a Conv-2 iteration at batch 60 takes
    ~1-2 ms, so about 1-3 h per study (more with --config.parallel=false);
    on 2 CPU cores ~0.3 s/iteration: weeks, so use a GPU.
  conv2-dropout-paper, conv4-dropout-paper, conv6-dropout-paper: the same with
    dropout 0.5 after each hidden dense layer (the paper's Section 3 dropout
    experiment; it reports that dropout and pruning gains compound). The paper
    tunes the dropout runs' learning rates separately; here they keep the
    non-dropout rates.
  fashion (default): Conv-2 on Fashion-MNIST (28x28x1) from
    /usr/share/datasets/fashion-mnist, 300 iterations per run, 3 levels (down to
    ~52%), one seed, small evaluation splits: ~15 min on 2 CPU cores.
  smoke: a few hundred Fashion-MNIST images and 20 iterations of batch 16, with
    augmentation on; seconds, for tests.
"""

from lth_jax.study.config import default_config

# model: (learning rate, iterations, conv pruning rate, levels to <= 2% remaining).
RECIPES = {
  'conv2': (2e-4, 20_000, 0.10, 18),
  'conv4': (3e-4, 25_000, 0.10, 22),
  'conv6': (3e-4, 30_000, 0.15, 22),
}
VARIANTS = tuple(f'{m}{d}-paper' for m in RECIPES for d in ('', '-dropout')) + ('fashion', 'smoke')


def paper(model: str, dropout: float = 0.0):
  """The paper's recipe for ``model`` ('conv2', 'conv4' or 'conv6') on CIFAR-10."""
  lr, steps, rate_conv, levels = RECIPES[model]
  config = default_config()
  config.model.name = model
  config.model.dropout = dropout
  config.data.name = 'cifar10'
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = lr
  config.batch_size = 60
  config.num_steps = steps
  config.eval_every = 100
  config.num_levels = levels
  config.num_seeds = 5
  config.pruning.strategy = 'layerwise'
  config.pruning.rate_conv = rate_conv
  config.pruning.rate_dense = 0.2
  config.pruning.rate_output = 0.1
  return config


def _fashion():
  config = paper('conv2')
  config.data.name = 'fashion_mnist'
  config.data.validation_size = 1000
  config.data.test_size = 2000
  config.train_eval_size = 1000
  config.num_steps = 300
  config.eval_every = 50
  config.num_levels = 3
  config.num_seeds = 1
  return config


def _smoke():
  config = paper('conv2')
  config.data.name = 'fashion_mnist'
  config.data.augment = True  # Exercises the augmentation path too.
  config.data.train_size = 600
  config.data.validation_size = 200
  config.data.test_size = 200
  config.train_eval_size = 200
  config.eval_batch_size = 100
  config.batch_size = 16
  config.num_steps = 20
  config.eval_every = 10
  config.num_levels = 2
  config.num_seeds = 1
  config.checkpoint_every = 10
  return config


def get_config(variant: str = 'fashion'):
  if variant == 'fashion':
    config = _fashion()
  elif variant == 'smoke':
    config = _smoke()
  elif variant in VARIANTS:
    model, *rest = variant.split('-')
    config = paper(model, dropout=0.5 if 'dropout' in rest else 0.0)
  else:
    raise ValueError(f'unknown variant {variant!r} of conv: use one of {", ".join(VARIANTS)}.')
  config.name = variant if variant.startswith('conv') else f'conv-{variant}'
  return config

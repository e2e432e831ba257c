"""VGG-19 lottery tickets on CIFAR-10 with late rewinding (Frankle et al., "Stabilizing the LTH").

Run (from the repository root):

    lth run --config=experiments/vgg19.py:paper
    lth run --config=experiments/vgg19.py:open-lth

Variants (``get_config(variant)``):
  paper: open_lth's ``cifar_vgg`` ``default_hparams`` (facebookresearch/open_lth,
    models/cifar_vgg.py): SGD momentum 0.9, lr 0.1, weight decay 1e-4, batch 128,
    160 epochs with the lr x0.1 at epochs 80 and 120, global magnitude pruning of
    20% of the survivors per level with the output layer excluded
    (``pruning_layers_to_ignore='fc.weight'``); plus the original LTH paper's 10K
    iterations of linear warmup to lr 0.1 (Frankle & Carbin 2019, Section 4), and
    rewinding to iteration 2,000. Epochs are open_lth's ceil(50,000 / 128) = 391
    iterations: 62,560 iterations, milestones 31,280 / 46,920. Standard
    augmentation (4-pixel pad, random crop, flip). 5,000 training images are
    held out for validation (the early-stopping criterion), so an "epoch" here
    sees 45,000 images. 20 levels (1.2% remaining), ticket + reinit, 5 seeds.
    Not reproduced here: open_lth's U[0, 1) batch-norm scale init (the model
    supports ``bn_init='uniform'`` but the config has no key for it yet).
    Expected: dense ≈ 93.5%; with rewinding to k ≈ 2,000 tickets match dense
    down to ~2-5% remaining while reinit and rewinding to 0 (at lr 0.1 without
    warmup) fall off early. Runtime: 5 seeds x 41 runs x 62.6K ≈ 12.8M iterations;
    VGG-19 at batch 128 is ~15-25 ms/iteration on one modern GPU: ~3 days per
    study on one GPU (fewer seeds or levels to shorten it). Not feasible on CPU.
  open-lth: exactly open_lth's defaults, i.e. ``paper`` without the warmup.
  smoke: a few hundred Fashion-MNIST images, batch 16, 12 iterations, one
    level; for tests (tens of seconds on 2 CPU cores: VGG-19 has 20M weights).
"""

from lth_jax.study.config import default_config

# open_lth: iterations_per_epoch = ceil(50,000 / 128) = 391.
EPOCH = 391


def open_lth_recipe(model: str):
  """open_lth's CIFAR-10 SGD recipe (cifar_vgg / cifar_resnet default_hparams) for ``model``."""
  config = default_config()
  config.model.name = model
  config.data.name = 'cifar10'
  config.data.augment = True
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.optimizer.milestones = (80 * EPOCH, 120 * EPOCH)
  config.optimizer.decay_factor = 0.1
  config.batch_size = 128
  config.num_steps = 160 * EPOCH
  config.eval_every = EPOCH * 2  # Every 2 epochs: 80 evaluations per run.
  config.curve_every = EPOCH * 10  # Test accuracy for the curves every 10 epochs.
  config.num_seeds = 5
  config.pruning.strategy = 'global'
  config.pruning.rate = 0.2
  config.pruning.prune_output = False
  return config


def smoke(config):
  """Shrinks a recipe to seconds on Fashion-MNIST, keeping its optimizer and pruning kind."""
  config.data.name = 'fashion_mnist'
  config.data.train_size = 600
  config.data.validation_size = 100
  config.data.test_size = 100
  config.train_eval_size = 100
  config.eval_batch_size = 100
  config.batch_size = 16
  config.num_steps = 12
  config.eval_every = 6
  config.curve_every = 6
  config.checkpoint_every = 6
  config.rewind_step = 6  # At an evaluation: every chunk has one length, one compilation.
  config.optimizer.warmup_steps = 2 if config.optimizer.warmup_steps else 0
  config.optimizer.milestones = (8, 10)
  config.num_levels = 1
  config.num_seeds = 1
  return config


VARIANTS = ('paper', 'open-lth', 'smoke')


def get_config(variant: str = 'paper'):
  config = open_lth_recipe('vgg19')
  config.rewind_step = 2000
  config.num_levels = 20
  if variant in ('paper', 'smoke'):
    config.optimizer.warmup_steps = 10_000
  elif variant != 'open-lth':
    raise ValueError(f"unknown variant {variant!r} of vgg19: use 'paper', 'open-lth' or 'smoke'.")
  if variant == 'smoke':
    smoke(config)
  config.name = f'vgg19-{variant}'
  return config

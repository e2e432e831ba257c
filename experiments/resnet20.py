"""ResNet-20 lottery tickets on CIFAR-10 with late rewinding (Frankle et al., "Stabilizing the LTH").

Run (from the repository root):

    lth run --config=experiments/resnet20.py:paper

Variants (``get_config(variant)``):
  paper: open_lth's ``cifar_resnet`` ``default_hparams`` (facebookresearch/open_lth,
    models/cifar_resnet.py): SGD momentum 0.9, lr 0.1, weight decay 1e-4, batch 128,
    160 epochs (62,560 iterations at open_lth's 391 per epoch) with the lr x0.1
    at epochs 80 and 120 (31,280 / 46,920), no warmup, global magnitude pruning
    of 20% of the survivors per level; augmentation on; rewinding to iteration
    1,000; 5,000 training images held out for validation. One deliberate
    difference: the output layer is excluded from pruning (open_lth's ResNet
    default prunes it, its VGG default does not; later LTH work excludes it).
    20 levels (1.2% remaining), ticket + reinit, 5 seeds. Not reproduced: the
    U[0, 1) batch-norm scale init (no config key for ``bn_init`` yet).
    Expected: dense ≈ 91-92%; rewinding to k ≈ 500-2,000 keeps tickets at
    dense accuracy down to ~10-20% remaining, rewinding to 0 does not.
    Runtime: 5 seeds x 41 runs x 62.6K ≈ 12.8M iterations; ~5-10 ms/iteration
    on one modern GPU: ~1-1.5 days per study on one GPU. Not feasible on CPU.
  smoke: a few hundred Fashion-MNIST images, batch 16, 12 iterations, one
    level; seconds, for tests.
"""

from experiments.vgg19 import open_lth_recipe, smoke

VARIANTS = ('paper', 'smoke')


def get_config(variant: str = 'paper'):
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of resnet20: use 'paper' or 'smoke'.")
  config = open_lth_recipe('resnet20')
  config.rewind_step = 1000
  config.num_levels = 20
  if variant == 'smoke':
    smoke(config)
  config.name = f'resnet20-{variant}'
  return config

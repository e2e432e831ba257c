"""Linear mode connectivity and the rewind point (Frankle, Dziugaite, Roy & Carbin, ICML 2020).

For each k of ``lmc.rewind_steps``: IMP with rewinding to k, then at each level of
``lmc.levels`` (0: the dense network) two copies of the network at k trained to T
with different SGD noise, and the test error along the straight path between them.
Instability = max over the path of the error − the mean of the two ends' errors.

Run (from the repository root):

    lth run --config=experiments/lmc.py:lenet300                # 3 seeds, ~40 min on a CPU
    lth run --config=experiments/lmc.py:resnet20                # CIFAR-10, for a GPU
    lth run --config=experiments/lmc.py:vgg16

Variants:
  lenet300: LeNet-300-100 on Fashion-MNIST (runs here), lenet300.py's recipe
    (Adam 1.2e-3, batch 60, evaluation every 250) with T = 3,000 iterations,
    k in (0, 100, 500, 2000), levels 0, 3 (51% of the weights left) and 6 (26%),
    31 points on the path, 3 seeds. The paper finds LeNet on MNIST stable from
    k = 0, dense and sparse. Runtime on 2 CPU cores shared with other jobs:
    39 minutes measured (4 k x 3 seeds x (7 IMP runs + 3 pairs)).
  resnet20: ResNet-20 on CIFAR-10 with open_lth's recipe (experiments/resnet20.py),
    k in (0, 100, 500, 2000, 5000), levels 0, 4 (41%) and 8 (16.8%), global
    pruning, 3 seeds. The paper finds it stable only after hundreds to a few
    thousand iterations.
  vgg16: VGG-16 on CIFAR-10, open_lth's cifar_vgg recipe with warmup
    (experiments/vgg19.py's), k in (0, 100, 500, 2000, 5000), levels 0, 8 and
    16 (2.8%), 3 seeds.
  successive: connectivity between consecutive levels (Paul et al., ICLR 2023):
    lenet300.py's main job (T = 5,000 iterations, k = 0) over all 16 levels (2.8%
    of the weights left), ``lmc.successive``: the path from each level's trained
    network projected on the next level's mask to the next level's trained
    network, 31 points, 3 seeds. Measured: docs/studies/lmc.md
    ("Consecutive levels").
  smoke: lenet300.py's smoke (a few hundred Fashion-MNIST images), 40 iterations,
    k in (0, 20), levels 0 and 1, 3 points on the path; seconds, for tests.
"""

from experiments import lenet300
from experiments.lenet300 import PAPER  # noqa: F401 (the report's reference for LeNet runs)
from experiments.vgg19 import open_lth_recipe

VARIANTS = ('lenet300', 'successive', 'resnet20', 'vgg16', 'smoke')


def get_config(variant: str = 'lenet300'):
  if variant == 'successive':
    config = lenet300.get_config('quick')
    config.num_levels = 16
    config.num_seeds = 3
    config.lmc.successive = True
  elif variant in ('lenet300', 'smoke'):
    config = lenet300.get_config('quick' if variant == 'lenet300' else 'smoke')
    config.num_levels = 6 if variant == 'lenet300' else 1
    config.num_steps = 3000 if variant == 'lenet300' else 40
    config.num_seeds = 3 if variant == 'lenet300' else 1
    config.lmc.rewind_steps = (0, 100, 500, 2000) if variant == 'lenet300' else (0, 20)
    config.lmc.levels = (0, 3, 6) if variant == 'lenet300' else (0, 1)
    if variant == 'smoke':
      config.lmc.num_alphas = 3
  elif variant in ('resnet20', 'vgg16'):
    config = open_lth_recipe(variant)
    config.num_seeds = 3
    config.lmc.rewind_steps = (0, 100, 500, 2000, 5000)
    if variant == 'resnet20':
      config.num_levels = 8
      config.lmc.levels = (0, 4, 8)
    else:
      config.optimizer.warmup_steps = 10_000
      config.num_levels = 16
      config.lmc.levels = (0, 8, 16)
  else:
    raise ValueError(f'unknown variant {variant!r} of lmc: use one of {", ".join(VARIANTS)}.')
  config.name = f'lmc-{variant}'
  config.arms = 'ticket'
  return config

"""Networks of the lottery-ticket papers, as plain Flax (Linen) modules.

Conventions every model follows, so that masks, pruning and the training loop
work on any of them unchanged:

* ``model.apply({'params': p, **model_state}, x, train=...)`` takes float images
  ``[batch, height, width, channels]`` and returns logits ``[batch, classes]``.
* Prunable weights are the leaves named ``kernel`` (dense and conv); the last
  layer is a ``Dense`` named ``output``, so it can be given its own pruning rate
  or be excluded from global pruning.
* Batch-norm statistics live in the ``batch_stats`` collection (model state,
  never pruned); dropout draws from the ``dropout`` PRNG stream.
* Conv models take ``conv_impl``: 'lax', 'im2col' (same forward, faster weight
  gradient on XLA:CPU; see ``lth_jax.core.im2col``) or None for the backend's default.
  Both give the same parameters, so checkpoints are interchangeable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from lth_jax.core import im2col

# The paper's "Gaussian Glorot" initialization.
glorot_normal = nn.initializers.glorot_normal()


class LeNet300100(nn.Module):
  """LeNet-300-100: fully connected 784-300-100-10 with ReLU (266,200 weights)."""

  num_classes: int = 10
  hidden: tuple[int, ...] = (300, 100)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train  # No dropout or batch norm.
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, kernel_init=glorot_normal, name=f'dense_{i}')(x))
    return nn.Dense(self.num_classes, kernel_init=glorot_normal, name='output')(x)


# He et al. (2015) normal init, fan-in, untruncated: torch's kaiming_normal_, which
# open_lth applies to every conv and linear weight (Flax's he_normal is truncated).
kaiming_normal = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


def _batch_norm(train: bool, bn_init: str, name: str | None = None) -> nn.BatchNorm:
  """BN with torch's defaults (momentum 0.1 there is 0.9 here); stats in ``batch_stats``."""
  if bn_init not in ('ones', 'uniform'):
    raise ValueError(f"bn_init={bn_init!r}; choose 'ones' or 'uniform'.")
  # open_lth's default 'uniform' BN init draws the scale from U[0, 1).
  scale_init = nn.initializers.ones if bn_init == 'ones' else nn.initializers.uniform(1.0)
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    scale_init=scale_init,
    name=name,
  )


def _conv(conv_impl: str | None, *args, **kwargs) -> nn.Conv:
  """``nn.Conv`` with the convolution of ``conv_impl`` (None: the backend's default)."""
  impl = conv_impl or im2col.default_impl()
  return nn.Conv(*args, conv_general_dilated=im2col.conv_fn(impl), **kwargs)


class ConvNet(nn.Module):
  """Conv-2/4/6 of Frankle & Carbin (2019): VGG-style blocks, then 256-256-classes.

  Each block is two 3x3 SAME convs with ReLU and a 2x2 max-pool; block ``i`` has
  ``64 * 2**i`` filters. Dropout (the paper's 0.5 variant) follows each hidden
  dense layer and is active only with ``train=True``.
  """

  num_classes: int = 10
  num_blocks: int = 2
  hidden: tuple[int, ...] = (256, 256)
  dropout: float = 0.0
  conv_impl: str | None = None

  def widths(self) -> tuple[int, ...]:
    """Output channels of each conv layer."""
    return tuple(64 * 2**block for block in range(self.num_blocks) for _ in range(2))

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    widths = self.widths()
    for block in range(self.num_blocks):
      for j in range(2):
        conv = _conv(
          self.conv_impl,
          widths[2 * block + j],
          (3, 3),
          padding='SAME',
          kernel_init=glorot_normal,
          name=f'conv_{2 * block + j}',
        )
        x = nn.relu(conv(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, kernel_init=glorot_normal, name=f'dense_{i}')(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=glorot_normal, name='output')(x)


# open_lth's cifar_vgg_19 plan; 'M' is a 2x2 max-pool.
VGG19_PLAN = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M',
              512, 512, 512, 512, 'M', 512, 512, 512, 512)  # fmt: skip
# open_lth's cifar_vgg_16 plan (the linear mode connectivity paper's VGG-16).
VGG16_PLAN = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M',
              512, 512, 512, 'M', 512, 512, 512)  # fmt: skip


class VGG(nn.Module):
  """CIFAR VGG of open_lth: 3x3 conv + BN + ReLU per plan entry, global average pool, output.

  ``bn_init='uniform'`` reproduces open_lth's default BN scale init (U[0, 1)).
  """

  num_classes: int = 10
  plan: tuple[int | str, ...] = VGG19_PLAN
  bn_init: str = 'ones'
  conv_impl: str | None = None

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    i = 0
    for spec in self.plan:
      if spec == 'M':
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        continue
      x = _conv(
        self.conv_impl, spec, (3, 3), padding=1, kernel_init=kaiming_normal, name=f'conv_{i}'
      )(x)
      x = nn.relu(_batch_norm(train, self.bn_init, name=f'bn_{i}')(x))
      i += 1
    # open_lth average-pools the final 2x2 map; a global mean also fits 28x28 inputs.
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=kaiming_normal, name='output')(x)


class SlimConvNet(ConvNet):
  """A ConvNet with its own conv widths: a channel ticket compacted (``core.compaction``)."""

  conv_widths: tuple[int, ...] = ()

  def widths(self) -> tuple[int, ...]:
    return self.conv_widths


class BasicBlock(nn.Module):
  """Two 3x3 conv + BN; 1x1 strided conv + BN shortcut when the shape changes.

  ``inner``: the channels between the two convs (None: ``features``).
  """

  features: int
  strides: int = 1
  bn_init: str = 'ones'
  conv_impl: str | None = None
  inner: int | None = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = lambda f, k, s, p, name: _conv(
      self.conv_impl,
      f,
      (k, k),
      strides=s,
      padding=p,
      use_bias=False,
      kernel_init=kaiming_normal,
      name=name,
    )
    # Explicit padding 1 (not SAME) so stride-2 windows align with torch's.
    y = conv(self.inner or self.features, 3, self.strides, 1, 'conv_0')(x)
    y = nn.relu(_batch_norm(train, self.bn_init, 'bn_0')(y))
    y = conv(self.features, 3, 1, 1, 'conv_1')(y)
    y = _batch_norm(train, self.bn_init, 'bn_1')(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = conv(self.features, 1, self.strides, 0, 'shortcut_conv')(x)
      x = _batch_norm(train, self.bn_init, 'shortcut_bn')(x)
    return nn.relu(y + x)


class ResNet(nn.Module):
  """CIFAR ResNet of He et al. (2016) as in open_lth: depth ``6n + 2``, widths 16/32/64."""

  num_classes: int = 10
  depth: int = 20
  width: int = 16
  bn_init: str = 'ones'
  conv_impl: str | None = None

  def inner(self, block: int) -> int | None:
    """The channels inside block ``block`` (counted over stages); None: its width."""
    del block
    return None

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if (self.depth - 2) % 6:
      raise ValueError(f'ResNet depth must be 6n + 2, got {self.depth}.')
    blocks_per_stage = (self.depth - 2) // 6
    x = _conv(
        self.conv_impl, self.width, (3, 3), padding=1, use_bias=False,
        kernel_init=kaiming_normal, name='conv',
    )(x)  # fmt: skip
    x = nn.relu(_batch_norm(train, self.bn_init, 'bn')(x))
    for stage in range(3):
      for b in range(blocks_per_stage):
        strides = 2 if stage > 0 and b == 0 else 1
        block = BasicBlock(
            self.width * 2**stage, strides, self.bn_init, self.conv_impl,
            self.inner(stage * blocks_per_stage + b), name=f'stage{stage}_block{b}',
        )  # fmt: skip
        x = block(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=kaiming_normal, name='output')(x)


class SlimResNet(ResNet):
  """A ResNet with its own channels inside each block: a channel ticket compacted."""

  inner_widths: tuple[int, ...] = ()

  def inner(self, block: int) -> int | None:
    return self.inner_widths[block]


# name -> constructor taking ``num_classes`` (and model-specific keywords).
MODELS: dict[str, Callable[..., nn.Module]] = {
  'lenet300': LeNet300100,
  'conv2': functools.partial(ConvNet, num_blocks=1),
  'conv4': functools.partial(ConvNet, num_blocks=2),
  'conv6': functools.partial(ConvNet, num_blocks=3),
  'vgg19': VGG,
  'vgg16': functools.partial(VGG, plan=VGG16_PLAN),
  'resnet20': functools.partial(ResNet, depth=20),
  # A Conv-2 of 8 and 16 channels and one hidden layer of 64: channel tickets on a CPU.
  'conv2_small': functools.partial(SlimConvNet, num_blocks=1, conv_widths=(8, 16), hidden=(64,)),
}


def get_model(name: str, *, num_classes: int, **kwargs) -> nn.Module:
  """Returns the model called ``name`` (a key of ``MODELS``)."""
  if name not in MODELS:
    raise ValueError(f'model.name={name!r} is not a known model; choose one of {sorted(MODELS)}.')
  return MODELS[name](num_classes=num_classes, **kwargs)


def count_params(params) -> int:
  return int(sum(jnp.size(x) for x in jax.tree.leaves(params)))


# Initialization schemes for the weights a study prunes ('default': each model's own).
# Flax's normal variants are truncated normals scaled to the stated variance.
INITS: dict[str, Callable] = {
  'glorot_normal': nn.initializers.glorot_normal(),
  'glorot_uniform': nn.initializers.glorot_uniform(),
  'he_normal': nn.initializers.he_normal(),
  'he_uniform': nn.initializers.he_uniform(),
  'lecun_normal': nn.initializers.lecun_normal(),
  'kaiming_normal': kaiming_normal,  # Untruncated, fan-in: torch's kaiming_normal_.
}
DEFAULT_INIT = 'default'


def reinitialize(params, key, scheme: str, weights):
  """``params`` with every leaf marked in ``weights`` (bools like params) drawn from ``scheme``.

  Fans are computed from each kernel's shape (Flax's convention: the last axis
  is the output, the one before the input, the rest the receptive field), so
  dense and conv kernels of any model get the scheme's variance. 'default'
  returns ``params`` unchanged.
  """
  if scheme == DEFAULT_INIT:
    return params
  if scheme not in INITS:
    raise ValueError(
      f'init={scheme!r} is not a known scheme; choose one of {[DEFAULT_INIT, *INITS]}.'
    )
  init = INITS[scheme]
  leaves, treedef = jax.tree.flatten(params)
  chosen = treedef.flatten_up_to(weights)
  out = [
    init(jax.random.fold_in(key, i), x.shape, x.dtype) if pick else x
    for i, (x, pick) in enumerate(zip(leaves, chosen, strict=True))
  ]
  return treedef.unflatten(out)

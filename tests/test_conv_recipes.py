"""The convolutional recipes (Conv-2/4/6, VGG-19, ResNet-20): configs, pruning, rewinding, smoke runs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_data import fraction_remaining, layer_counts, layer_fractions, write_cifar10

from experiments import conv, resnet20, vgg19
from lth_jax import data
from lth_jax.core import im2col as conv_lib
from lth_jax.core import masks as masks_lib
from lth_jax.core import models
from lth_jax.core import train as train_lib
from lth_jax.core.rewind import rewind
from lth_jax.study import config as config_lib
from lth_jax.study import from_config, levels

VARIANTS = (
  [(conv, v) for v in conv.VARIANTS]
  + [(vgg19, v) for v in ('paper', 'open-lth', 'smoke')]
  + [(resnet20, v) for v in ('paper', 'smoke')]
)


@pytest.mark.parametrize('module,variant', VARIANTS, ids=[f'{m.__name__}:{v}' for m, v in VARIANTS])
def test_every_variant_validates(module, variant):
  config = module.get_config(variant)
  config_lib.validate(config)
  if variant.endswith('paper'):
    assert config.data.name == 'cifar10' and config.num_seeds == 5


def test_paper_values():
  c2, c6 = conv.get_config('conv2-paper'), conv.get_config('conv6-dropout-paper')
  assert (c2.optimizer.learning_rate, c2.batch_size, c2.num_steps) == (2e-4, 60, 20_000)
  assert (c6.optimizer.learning_rate, c6.num_steps, c6.pruning.rate_conv, c6.model.dropout) == (
    3e-4,
    30_000,
    0.15,
    0.5,
  )
  v, r = vgg19.get_config('paper'), resnet20.get_config('paper')
  assert v.optimizer.warmup_steps == 10_000 and r.optimizer.warmup_steps == 0
  for c in (v, r):
    assert (c.optimizer.name, c.optimizer.learning_rate, c.batch_size, c.num_steps) == (
      'sgd',
      0.1,
      128,
      62_560,
    )
    assert c.optimizer.milestones == (31_280, 46_920) and c.data.augment
    assert (c.pruning.strategy, c.pruning.rate, c.pruning.prune_output) == ('global', 0.2, False)
  with pytest.raises(ValueError, match='unknown variant'):
    conv.get_config('conv8-paper')


def _init(name, shape=(32, 32, 3)):
  model = models.get_model(name, num_classes=10)
  return train_lib.init_variables(model, jax.random.key(0), shape)


def test_conv2_layerwise_rates():
  config = conv.get_config('conv2-paper')
  params, _ = _init('conv2')
  prune = from_config.make_plan(config, params).prune
  dense = masks_lib.ones_like(params)
  counts = layer_counts(prune(params, dense, rounds=1))
  rates = {'conv_0': 0.1, 'conv_1': 0.1, 'dense_0': 0.2, 'dense_1': 0.2, 'output': 0.1}
  assert set(counts) == set(rates)
  for layer, (kept, total) in counts.items():
    assert kept == total - round(rates[layer] * total), layer
  assert all(np.all(m) for m in jax.tree.leaves(prune(params, dense, rounds=1)['conv_0']['bias']))


def test_resnet20_global_pruning_keeps_output_and_batch_norm_whole():
  params, _ = _init('resnet20')
  prune = from_config.make_plan(resnet20.get_config('paper'), params).prune
  masks = prune(params, masks_lib.ones_like(params), rounds=1)
  counts = layer_counts(masks)
  assert counts['output'][0] == counts['output'][1]
  kept = sum(k for name, (k, _) in counts.items() if name != 'output')
  total = sum(t for name, (_, t) in counts.items() if name != 'output')
  assert kept == total - round(0.2 * total)
  for path, m in jax.tree_util.tree_flatten_with_path(masks)[0]:
    if 'bn' in masks_lib.layer_name(path):
      assert np.all(np.asarray(m)), masks_lib.leaf_name(path)


def test_resnet20_rewind_restores_batch_stats_of_step_k():
  """θk's batch_stats come back exactly; BN scales and biases keep all-True masks."""
  config = resnet20.get_config('smoke')
  model = models.get_model('resnet20', num_classes=10, width=4)  # Narrow: speed only.
  task = train_lib.Task(model=model, optimizer=from_config.make_optimizer(config.optimizer),
                        batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, augment=True)  # fmt: skip
  params, model_state = train_lib.init_variables(model, jax.random.key(0), (8, 8, 3))
  rng = np.random.default_rng(0)
  train = train_lib.DataArrays(
    jnp.asarray(rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)),
    jnp.asarray(rng.integers(0, 10, 64, dtype=np.int32)),
  )
  steps, _ = train_lib.compiled(task, vmapped=False)
  state, _ = steps(train_lib.create_state(task, params, model_state), train, jax.random.key(1), 3)
  state_k = jax.device_get(state)  # The train function donates its input.
  state, _ = steps(state, train, jax.random.key(1), 3)  # Same length: one compile.
  moved = jax.tree.leaves(
    jax.tree.map(lambda a, b: np.any(a != b), state.model_state, state_k.model_state)
  )
  assert any(moved)  # Training did change the statistics after step k.
  masks = from_config.make_plan(config, params).prune(state.params, state.masks, rounds=1)
  ticket = rewind(state_k, masks)
  for a, b in zip(
    jax.tree.leaves(ticket.model_state), jax.tree.leaves(state_k.model_state), strict=True
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert int(ticket.step) == 3
  for path, m in jax.tree_util.tree_flatten_with_path(ticket.masks)[0]:
    if masks_lib.leaf_kind(path, m) is None:  # BN scale/bias (and any bias): never masked.
      assert np.all(np.asarray(m)), masks_lib.leaf_name(path)
  assert fraction_remaining(masks) < 1


def _run_smoke(config, dataset):
  study = from_config.from_config(config, dataset=dataset)
  store = levels.train_levels(study)
  rows = store.summary
  assert [(r['level'], r['arm']) for r in rows][:2] == [(0, 'ticket'), (1, 'ticket')]
  for r in rows:
    assert r['diverged'] == 0 and 0 <= r['test_accuracy_at_early_stop'] <= 1
  assert rows[-1]['weights_remaining'] < 1
  return study, store


def test_conv_smoke_on_generated_cifar10_archive(tmp_path):
  """The CIFAR-10 builder reads a real-format archive and feeds an augmented Conv-2 study."""
  written = write_cifar10(tmp_path / 'raw', num_train_per_batch=80, num_test=100, as_archive=True)
  dataset = data.load('cifar10', validation_size=100, data_dir=str(tmp_path / 'tfds'),
                      manual_dir=str(tmp_path / 'raw'), download=False,
                      verify_checksums=False)  # fmt: skip
  np.testing.assert_array_equal(dataset.test_x, written['test'][0])
  assert dataset.train_x.shape == (300, 32, 32, 3)
  config = conv.get_config('smoke')
  config.data.name = 'cifar10'
  config.data.train_size, config.data.validation_size, config.data.test_size = 300, 100, 100
  config.train_eval_size, config.num_steps, config.num_levels = 100, 20, 1
  config.eval_every = config.checkpoint_every = 10
  assert config.data.augment
  study, _ = _run_smoke(config, dataset)
  assert study.task.augment and study.input_shape == (32, 32, 3)


@pytest.mark.slow  # ~60 s, mostly compiling; the CIFAR-archive smoke run covers this recipe by default.
def test_conv_smoke_on_fashion_mnist(fashion_mnist):
  _, store = _run_smoke(conv.get_config('smoke'), fashion_mnist)
  level2 = [r for r in store.summary if r['level'] == 2 and r['arm'] == 'ticket'][0]
  # Conv 10%, dense 20%, output 10% per level: Conv-2 on 28x28 after two levels.
  counts = {'conv': 64 * 9 + 64 * 64 * 9, 'dense': 14 * 14 * 64 * 256 + 256 * 256, 'output': 2560}
  from lth_jax.core.pruning import expected_fraction

  expected = expected_fraction(counts, {'conv': 0.1, 'dense': 0.2, 'output': 0.1}, 2)
  assert level2['weights_remaining'] == pytest.approx(expected, abs=1e-5)


def test_resnet20_smoke(fashion_mnist):
  study, store = _run_smoke(resnet20.get_config('smoke'), fashion_mnist)
  masks = store.load('seed_0/level_1/masks')
  assert layer_fractions(masks)['output'] == 1.0
  assert int(store.load('seed_0/rewind').step) == study.rewind_step


@pytest.mark.slow  # ~65 s on 2 shared cores, mostly compiling: run with -m slow.
def test_vgg19_smoke_reduced_width(fashion_mnist):
  """VGG-19's recipe and depth (16 convs + BN, 4 pools), at 1/8 width.

  The full-width model (20M weights) took several minutes on 2 shared CPU
  cores, so the model is swapped for the same plan with 8x fewer filters.
  """
  study = from_config.from_config(vgg19.get_config('smoke'), dataset=fashion_mnist)
  plan = tuple(s if s == 'M' else s // 8 for s in models.VGG19_PLAN)
  study.task = dataclasses.replace(study.task, model=models.VGG(plan=plan))
  store = levels.train_levels(study)
  assert [(r['level'], r['arm']) for r in store.summary] == [
    (0, 'ticket'),
    (1, 'ticket'),
    (1, 'reinit'),
  ]
  assert all(r['diverged'] == 0 for r in store.summary)
  assert store.summary[-1]['weights_remaining'] == pytest.approx(0.8, abs=1e-3)
  assert layer_fractions(store.load('seed_0/level_1/masks'))['output'] == 1.0


CONV_CASES = [  # (input HWC, kernel, strides, padding): every conv shape the models use.
  ((10, 10, 5), (3, 3, 5, 7), (1, 1), 'SAME'),
  ((10, 10, 5), (3, 3, 5, 7), (1, 1), ((1, 1), (1, 1))),
  ((9, 9, 4), (3, 3, 4, 6), (2, 2), ((1, 1), (1, 1))),
  ((9, 9, 4), (1, 1, 4, 6), (2, 2), ((0, 0), (0, 0))),
  # Edges of the plain input gradient (padding beyond the kernel, rows never read):
  ((10, 10, 3), (3, 3, 3, 4), (2, 2), 'VALID'),  # The last row and column unread.
  ((8, 7, 2), (3, 2, 2, 3), (2, 1), ((2, 0), (0, 3))),  # Padding beyond the kernel (right).
  ((6, 6, 2), (1, 1, 2, 3), (2, 2), 'SAME'),
  ((5, 5, 1), (5, 5, 1, 2), (3, 3), ((5, 4), (4, 6))),  # Beyond it on three sides.
]


@pytest.mark.parametrize('hwc,kernel,strides,padding', CONV_CASES)
def test_im2col_conv_matches_lax_gradients(hwc, kernel, strides, padding):
  x = jax.random.normal(jax.random.key(1), (3, *hwc))
  w = jax.random.normal(jax.random.key(2), kernel)
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ('NHWC', 'HWIO', 'NHWC'))

  def loss(conv_fn):
    return lambda x, w: jnp.sum(jnp.sin(conv_fn(x, w, strides, padding, dimension_numbers=dn)))

  ref = jax.value_and_grad(loss(jax.lax.conv_general_dilated), argnums=(0, 1))(x, w)
  got = jax.jit(jax.value_and_grad(loss(conv_lib.conv_general_dilated), argnums=(0, 1)))(x, w)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name', ['conv2', 'resnet20'])
def test_models_same_with_either_conv_impl(name):
  x = jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
  y = jax.random.randint(jax.random.key(4), (2,), 0, 10)
  outs = []
  for impl in conv_lib.IMPLS:
    model = models.get_model(name, num_classes=10, conv_impl=impl)
    variables = model.init(jax.random.key(0), x)

    def loss(params, model=model, variables=variables):
      logits = model.apply({**variables, 'params': params}, x, train=False)
      return train_lib.cross_entropy(logits, y)

    outs.append(jax.grad(loss)(variables['params']))
  for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match='conv impl'):
    conv_lib.conv_fn('winograd')

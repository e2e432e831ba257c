"""Compaction: dead units removed by hand-checkable rules, the same logits as the masked network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax.analyses import compact
from lth_jax.core import masks as masks_lib
from lth_jax.core import models
from lth_jax.errors import ConfigError


def lenet(hidden=(300, 100), seed=0):
  model = models.LeNet300100(num_classes=10, hidden=hidden)
  params = model.init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))['params']
  return model, jax.tree.map(np.asarray, params)


def random_masks(params, density, seed=0):
  rng = np.random.default_rng(seed)
  return {
    layer: {
      'kernel': rng.random(p['kernel'].shape) < density,
      'bias': np.ones_like(p['bias'], bool),
    }
    for layer, p in params.items()
  }


def with_dead_units(masks):
  """Kills units three ways: no incoming, no outgoing, and a unit fed only by a killed one."""
  m = jax.tree.map(np.copy, masks)
  m['dense_0']['kernel'][:, 3] = False  # unit 3 of layer 1: constant relu(b)
  m['dense_1']['kernel'][:, 5] = True  # ... which still feeds unit 5 of layer 2
  m['output']['kernel'][7, :] = False  # unit 7 of layer 2: no outgoing
  m['dense_1']['kernel'][:, 9] = False
  m['dense_1']['kernel'][3, 9] = True  # unit 9 of layer 2: fed by the constant unit 3 only
  m['dense_0']['kernel'][:, 11] = False
  m['dense_1']['kernel'][11, :] = False  # unit 11 of layer 1: neither
  m['dense_0']['kernel'][:28, :] = False  # the image's first row of pixels: no outgoing
  return m


@pytest.mark.parametrize('density', [1.0, 0.5, 0.1, 0.02])
def test_compact_logits_equal_masked_logits(density):
  model, params = lenet()
  params = jax.tree.map(lambda p: p + 0.05, params)  # Positive biases: constant units matter.
  masks = with_dead_units(random_masks(params, density, seed=int(density * 100)))
  x = np.random.default_rng(1).normal(size=(64, 28, 28, 1)).astype(np.float32)
  want = np.asarray(model.apply({'params': masks_lib.apply(params, masks)}, x))
  small = compact.compact(params, masks)
  np.testing.assert_allclose(np.asarray(small(x)), want, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(small.sparse()(x), want, rtol=1e-4, atol=1e-4)
  unfolded = compact.compact(params, masks, fold=False)  # Keeps the constant units.
  np.testing.assert_allclose(np.asarray(unfolded(x)), want, rtol=1e-4, atol=1e-4)
  assert unfolded.shapes[0][1] >= small.shapes[0][1] + (density == 1.0)  # unit 3 kept
  assert small.shapes[-1][1] == 10
  assert small.inputs.min() >= 28  # The first row of pixels is gone.
  assert small.shapes[0][1] <= 298 and small.shapes[1][1] <= 98  # 3, 11 and 7, 9 gone at least.


def test_dead_unit_rules_by_hand():
  # 3 inputs -> 3 hidden -> 2 outputs. Hidden unit 0 has no incoming weight (constant
  # relu(b0) = 2), unit 2 has no outgoing weight, input 1 feeds only unit 2.
  w0 = np.array([[9.0, 1.0, 0.0], [0.0, 0.0, 5.0], [0.0, 2.0, 0.0]], np.float32)
  m0 = np.array([[0, 1, 0], [0, 0, 1], [0, 1, 0]], bool)
  b0 = np.array([2.0, -1.0, 3.0], np.float32)
  w1 = np.array([[1.0, -1.0], [0.5, 2.0], [7.0, 7.0]], np.float32)
  m1 = np.array([[1, 1], [1, 1], [0, 0]], bool)
  b1 = np.array([0.25, 0.5], np.float32)
  params = {'dense_0': {'kernel': w0, 'bias': b0}, 'output': {'kernel': w1, 'bias': b1}}
  masks = {
    'dense_0': {'kernel': m0, 'bias': np.ones(3, bool)},
    'output': {'kernel': m1, 'bias': np.ones(2, bool)},
  }
  small = compact.compact(params, masks)
  assert small.inputs.tolist() == [0, 2]  # input 1 fed only the dead unit 2
  assert small.shapes == [(2, 1), (1, 2)]  # only hidden unit 1 is left
  np.testing.assert_array_equal(small.kernels[0], [[1.0], [2.0]])
  np.testing.assert_array_equal(small.kernels[1], [[0.5, 2.0]])
  np.testing.assert_array_equal(small.biases[0], [-1.0])
  np.testing.assert_array_equal(small.biases[1], [0.25 + 2.0 * 1.0, 0.5 + 2.0 * -1.0])  # folded


def test_conv_networks_are_refused():
  params = {'conv_0': {'kernel': np.zeros((3, 3, 1, 4)), 'bias': np.zeros(4)}}
  with pytest.raises(ConfigError, match='conv channels are not compacted'):
    compact.compact(params, jax.tree.map(lambda p: np.ones(p.shape, bool), params))

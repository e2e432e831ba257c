"""Properties of magnitude pruning, random pruning and the paper's sparsity schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_data import fraction_remaining, layer_counts

from lth_jax.core import masks as masks_lib
from lth_jax.core import models, pruning


def lenet_params(key):
  model = models.get_model('lenet300', num_classes=10)
  return model.init(key, jnp.zeros((1, 28, 28, 1)))['params']


def kernels(tree):
  return {
    masks_lib.layer_name(p): np.asarray(x)
    for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    if masks_lib.leaf_kind(p, x)
  }


def test_lenet_has_266200_prunable_weights(key):
  counts = layer_counts(masks_lib.ones_like(lenet_params(key)))
  assert counts == {'dense_0': (235200, 235200), 'dense_1': (30000, 30000), 'output': (1000, 1000)}


@pytest.mark.parametrize('rate', [0.2, 0.5, 0.9])
def test_layerwise_removes_exact_fraction_of_survivors_and_keeps_largest(key, rate):
  params = lenet_params(key)
  rates = pruning.layer_rates(params, dense=rate, output=rate / 2)
  masks = masks_lib.ones_like(params)
  for _ in range(3):
    alive = layer_counts(masks)
    new = jax.jit(pruning.prune_layerwise)(params, masks, rates=rates)
    after = layer_counts(new)
    for layer, (kept, _) in alive.items():
      r = rate / 2 if layer == 'output' else rate
      assert after[layer][0] == kept - round(r * kept)
    # Nested: nothing revives.
    for old, nxt in zip(jax.tree.leaves(masks), jax.tree.leaves(new), strict=True):
      assert not np.any(np.asarray(nxt) & ~np.asarray(old))
    # Every kept weight outweighs every pruned one of its layer.
    for layer, w in kernels(params).items():
      m = kernels(new)[layer]
      survivors_before = kernels(masks)[layer]
      pruned_now = survivors_before & ~m
      if pruned_now.any() and m.any():
        assert np.abs(w[m]).min() >= np.abs(w[pruned_now]).max()
    masks = new
  # Biases are never pruned.
  assert all(
    np.all(np.asarray(m))
    for p, m in jax.tree_util.tree_flatten_with_path(masks)[0]
    if masks_lib.leaf_kind(p, m) is None
  )


def test_global_pruning_one_threshold_and_output_excluded(key):
  params = lenet_params(key)
  include = masks_lib.prunable(params, include_output=False)
  masks = masks_lib.ones_like(params)
  new = pruning.prune_global(params, masks, rate=0.3, include=include)
  counts = layer_counts(new)
  assert counts['output'] == (1000, 1000)
  pooled = 235200 + 30000
  assert counts['dense_0'][0] + counts['dense_1'][0] == pooled - round(0.3 * pooled)
  w, m = kernels(params), kernels(new)
  kept = np.concatenate([np.abs(w[k][m[k]]) for k in ('dense_0', 'dense_1')])
  pruned = np.concatenate([np.abs(w[k][~m[k]]) for k in ('dense_0', 'dense_1')])
  assert kept.min() >= pruned.max()
  # A second round is of the survivors and nested.
  newer = pruning.prune_global(params, new, rate=0.3, include=include)
  alive = pooled - round(0.3 * pooled)
  got = sum(layer_counts(newer)[k][0] for k in ('dense_0', 'dense_1'))
  assert got == alive - round(0.3 * alive)


def test_ties_are_broken_deterministically_with_exact_counts():
  params = {'dense': {'kernel': jnp.ones((10, 10))}}
  masks = {'dense': {'kernel': jnp.ones((10, 10), bool)}}
  new = pruning.prune_layerwise(params, masks, rates={'dense': {'kernel': 0.25}})
  kept = np.asarray(new['dense']['kernel']).reshape(-1)
  assert kept.sum() == 75
  np.testing.assert_array_equal(kept, np.arange(100) < 75)  # Lower flat index survives.


def test_random_masks_match_per_layer_counts(key):
  params = lenet_params(key)
  rates = pruning.layer_rates(params, dense=0.2, output=0.1)
  masks = masks_lib.ones_like(params)
  for _ in range(4):
    masks = pruning.prune_layerwise(params, masks, rates=rates)
  rand = pruning.random_masks(jax.random.key(3), masks)
  assert layer_counts(rand) == layer_counts(masks)
  overlap = np.mean(np.asarray(rand['dense_0']['kernel']) == np.asarray(masks['dense_0']['kernel']))
  assert overlap < 0.9  # A different structure, not the ticket's mask.
  again = pruning.random_masks(jax.random.key(3), masks)
  assert all(
    np.array_equal(a, b) for a, b in zip(jax.tree.leaves(rand), jax.tree.leaves(again), strict=True)
  )


def test_fraction_after_k_layerwise_rounds_matches_paper_formula(key):
  params = lenet_params(key)
  rates = pruning.layer_rates(params, dense=0.2, output=0.1)
  prune = jax.jit(pruning.prune_layerwise)
  masks = masks_lib.ones_like(params)
  paper = {3: 0.513, 7: 0.211, 9: 0.135, 12: 0.070, 15: 0.036, 16: 0.029}
  for k in range(1, 17):
    masks = prune(params, masks, rates=rates)
    formula = (265_200 * 0.8**k + 1_000 * 0.9**k) / 266_200
    # Each round rounds each of the 3 layers to whole weights: at most 1.5 weights per round.
    assert abs(fraction_remaining(masks) - formula) <= 1.5 * k / 266_200
    if k in paper:
      assert round(100 * fraction_remaining(masks), 1) == pytest.approx(100 * paper[k], abs=0.05)


def test_one_shot_compound_rate_reaches_the_iterative_sparsity(key):
  params = lenet_params(key)
  ones = masks_lib.ones_like(params)
  rates = pruning.layer_rates(
    params, dense=pruning.compound_rate(0.2, 7), output=pruning.compound_rate(0.1, 7)
  )
  oneshot = pruning.prune_layerwise(params, ones, rates=rates)
  assert fraction_remaining(oneshot) == pytest.approx(0.211, abs=5e-4)


def test_layer_kinds(key):
  kinds = jax.tree.leaves(masks_lib.kinds(lenet_params(key)))
  assert sorted(kinds) == ['', '', '', 'dense', 'dense', 'output']

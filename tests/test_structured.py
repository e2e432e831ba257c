"""Structured tickets: whole units and channels, refilling, N:M, and compaction to a smaller model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from smoke import REPO

from lth_jax.core import compaction, models, structured
from lth_jax.core import masks as masks_lib
from lth_jax.core.plan import make_plan
from lth_jax.errors import ConfigError

MLP_LINKS = structured.chain('dense_0', 'dense_1', 'output')


def init(model, shape, key=0):
  variables = jax.jit(model.init)(jax.random.key(key), jnp.zeros((2, *shape)))
  return variables['params'], {k: v for k, v in variables.items() if k != 'params'}


def unit_plan(params, links, rate=0.5, **kwargs):
  return make_plan(
    params, rate_dense=rate, rate_conv=rate, rate_output=0.0, granularity='unit', links=links,
    **kwargs,
  )  # fmt: skip


def kernel(tree, layer):
  return np.asarray(tree[layer]['kernel'])


def units_of(mask):
  return mask.reshape(-1, mask.shape[-1]).any(axis=0)


def test_unit_pruning_by_hand():
  # Unit norms of dense_0: [1, 5, 2, 4] -> rate 0.5 keeps units 1 and 3.
  k0 = np.array([[1.0, 3.0, 2.0, 0.0], [0.0, 4.0, 0.0, 4.0]])
  # dense_1's unit norms over its surviving inputs (rows 1 and 3): [sqrt(2), 1] -> keeps unit 0,
  # although over all inputs unit 1 is larger (its weight 9 comes from the removed unit 0).
  k1 = np.array([[0.0, 9.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
  out = np.ones((2, 3))
  params = {
    'dense_0': {'kernel': k0, 'bias': np.zeros(4)},
    'dense_1': {'kernel': k1, 'bias': np.zeros(2)},
    'output': {'kernel': out, 'bias': np.zeros(3)},
  }
  plan = unit_plan(params, MLP_LINKS)
  new = plan.prune(params, masks_lib.ones_like(params))
  assert kernel(new, 'dense_0').tolist() == [[False, True, False, True]] * 2
  assert kernel(new, 'dense_1').tolist() == [[False, False], [True, False], [False, False],
                                             [True, False]]  # fmt: skip
  assert kernel(new, 'output').tolist() == [[True] * 3, [False] * 3]
  assert all(np.all(new[layer]['bias']) for layer in new)  # Biases are not counted.
  assert plan.leaves[-2].rate == 0.0  # The output's units are the classes (output/kernel).


@pytest.mark.parametrize('rate', [0.2, 0.5])
def test_unit_masks_are_whole_units_exact_counts_and_nested(rate):
  params, _ = init(models.LeNet300100(hidden=(40, 20)), (6, 6, 1))
  plan = unit_plan(params, MLP_LINKS, rate=rate)
  prune = jax.jit(lambda p, m: plan.prune(p, m))
  masks = masks_lib.ones_like(params)
  for _ in range(3):
    new = prune(params, masks)
    inputs = np.ones(36, bool)
    for layer, nxt in (('dense_0', 'dense_1'), ('dense_1', 'output')):
      m, before = kernel(new, layer), kernel(masks, layer)
      alive, kept = units_of(before), units_of(m)
      assert kept.sum() == alive.sum() - round(rate * alive.sum())
      assert not np.any(kept & ~alive)  # Nothing revives.
      # Whole units: a kept unit has every live input, a removed one none.
      assert np.array_equal(m, np.outer(inputs, kept))
      assert not kernel(new, nxt)[~kept].any()  # Its outgoing weights went with it.
      # Ranked by the norm of the inputs that survive this level (the previous layer's cut).
      live = before & inputs[:, None]
      norms = np.sqrt(((np.asarray(params[layer]['kernel']) * live) ** 2).sum(axis=0))
      removed = alive & ~kept
      if removed.any():
        assert norms[kept].min() >= norms[removed].max()
      inputs = kept
    masks = new
  # The weights removed are counted: fewer than the units alone would say.
  assert plan.fraction_remaining(masks) < (1 - rate) ** 3


def test_channels_follow_a_flatten_into_dense_inputs():
  model = models.SlimConvNet(num_blocks=1, conv_widths=(4, 6), hidden=(8,))
  params, _ = init(model, (4, 4, 1))
  plan = unit_plan(params, compaction.unit_links(model))
  masks = jax.jit(plan.prune)(params, masks_lib.ones_like(params))
  channels = units_of(kernel(masks, 'conv_1'))
  assert channels.sum() == 3
  assert np.array_equal(
    kernel(masks, 'conv_1').any(axis=(0, 1, 3)), units_of(kernel(masks, 'conv_0'))
  )
  rows = kernel(masks, 'dense_0').any(axis=1)  # 2x2 positions x 6 channels, channels fastest.
  assert np.array_equal(rows, np.tile(channels, 4))


SMALL_MODELS = {
  'mlp': (models.LeNet300100(hidden=(12, 8)), (5, 5, 1)),
  'conv': (models.SlimConvNet(num_blocks=1, conv_widths=(4, 6), hidden=(8, 8)), (6, 6, 1)),
  'vgg_batch_norm': (models.VGG(plan=(4, 'M', 6, 6), bn_init='uniform'), (8, 8, 3)),
  'resnet_blocks': (models.ResNet(depth=8, width=4), (8, 8, 3)),
}


@pytest.mark.parametrize(
  'name, train',
  [('mlp', False), ('conv', False), ('vgg_batch_norm', False), ('vgg_batch_norm', True),
   ('resnet_blocks', True)],
)  # fmt: skip
def test_compacted_model_has_the_masked_models_logits(name, train):
  model, shape = SMALL_MODELS[name]
  params, state = init(model, shape)
  if state:  # Running statistics that are not the init's, so slicing them matters.
    state = jax.tree.map(lambda s: s + jax.random.uniform(jax.random.key(3), s.shape), state)
  plan = unit_plan(params, compaction.unit_links(model))
  masks = jax.jit(lambda p, m: plan.prune(p, m, rounds=2))(params, masks_lib.ones_like(params))
  small = compaction.compact(model, params, masks, state)
  assert all(w < 12 for w in small.widths().values())
  x = jax.random.normal(jax.random.key(1), (3, *shape))

  def logits(m, p, s):
    kwargs = {'train': train, 'mutable': ['batch_stats']} if train and s else {'train': train}
    out = jax.jit(lambda v: m.apply(v, x, **kwargs))({'params': p, **s})
    return out[0] if isinstance(out, tuple) else out

  full = logits(model, masks_lib.apply(params, masks), state)
  compact = logits(small.model, masks_lib.apply(small.params, small.masks), small.model_state)
  np.testing.assert_allclose(compact, full, rtol=1e-5, atol=1e-5)
  assert models.count_params(small.params) < models.count_params(params)
  assert all(np.all(m) for m in jax.tree.leaves(small.masks))  # What is left is dense.


def test_compaction_of_unstructured_masks_keeps_the_logits():
  model, shape = SMALL_MODELS['mlp']
  params, _ = init(model, shape)
  masks = jax.tree.map(
    lambda p: jax.random.uniform(jax.random.key(p.size), p.shape) < 0.15 if p.ndim > 1
    else jnp.ones(p.shape, bool), params,
  )  # fmt: skip
  small = compaction.compact(model, params, masks)
  x = jax.random.normal(jax.random.key(1), (3, *shape))
  full = model.apply({'params': masks_lib.apply(params, masks)}, x)
  compact = small.model.apply({'params': masks_lib.apply(small.params, small.masks)}, x)
  np.testing.assert_allclose(compact, full, rtol=1e-5, atol=1e-6)


def test_refill_by_hand():
  # After an unstructured step dense_0's units keep [3, 0, 1, 2] weights of 3 inputs: 6
  # weights = 2 dense units -> units 0 and 3 (the most), made whole again.
  pruned = [
    np.array([[1, 0, 1, 1], [1, 0, 0, 1], [1, 0, 0, 0]], bool),
    np.ones((4, 2), bool),
  ]
  before = [np.ones((3, 4), bool), np.ones((4, 2), bool)]
  out = structured.refill([jnp.asarray(m) for m in pruned], before, links=[(0, 1)])
  assert np.asarray(out[0]).tolist() == [[True, False, False, True]] * 3
  assert np.asarray(out[1]).tolist() == [[True, True], [False, False], [False, False],
                                         [True, True]]  # fmt: skip


def test_refill_plan_keeps_whole_units_near_the_weight_count():
  params, _ = init(models.LeNet300100(hidden=(40, 20)), (6, 6, 1))
  plan = make_plan(params, rate_dense=0.5, rate_output=0.0, granularity='refill', links=MLP_LINKS)
  masks = jax.jit(plan.prune)(params, masks_lib.ones_like(params))
  m0 = kernel(masks, 'dense_0')
  assert np.array_equal(m0, np.outer(np.ones(36, bool), units_of(m0)))
  assert units_of(m0).sum() == 20  # Half of the 40 units' weights: 20 whole units.


def test_n_m_by_hand_and_for_every_group():
  w = np.array([[0.1, 5.0], [0.4, 1.0], [0.3, 2.0], [0.2, 3.0], [9.0, 1.0]])  # 5 inputs: 4 + 1
  kept = structured.n_m(jnp.abs(w), jnp.ones(w.shape, bool), 2, 4)
  assert np.asarray(kept).tolist() == [[False, True], [True, False], [True, False],
                                       [False, True], [True, True]]  # fmt: skip
  params, _ = init(models.SlimConvNet(num_blocks=1, conv_widths=(4, 6), hidden=(8,)), (4, 4, 1))
  plan = make_plan(params, rate_conv=0.0, rate_dense=0.2, rate_output=0.0, n_m='2:4')
  prune = jax.jit(plan.prune)
  masks = params_masks = prune(params, masks_lib.ones_like(params))
  for _ in range(2):
    for leaf, m in zip(plan.leaves, jax.tree.leaves(masks), strict=True):
      if leaf.kind:
        assert int(np.max(structured.group_counts(m, 4))) <= 2
    masks = prune(params, masks)
    assert not any(np.any(np.asarray(b) & ~np.asarray(a))
                   for a, b in zip(jax.tree.leaves(params_masks), jax.tree.leaves(masks)))  # fmt: skip
    params_masks = masks
  random = jax.jit(plan.random_masks)(jax.random.key(2), masks)
  for leaf, m, r in zip(plan.leaves, jax.tree.leaves(masks), jax.tree.leaves(random), strict=True):
    assert int(np.sum(m)) == int(np.sum(r))
    if leaf.kind:
      assert int(np.max(structured.group_counts(r, 4))) <= 2


def test_random_units_keep_the_tickets_unit_counts():
  params, _ = init(models.LeNet300100(hidden=(40, 20)), (6, 6, 1))
  plan = unit_plan(params, MLP_LINKS)
  ticket = jax.jit(lambda p, m: plan.prune(p, m, rounds=2))(params, masks_lib.ones_like(params))
  random = jax.jit(plan.random_masks)(jax.random.key(5), ticket)
  for layer in ('dense_0', 'dense_1'):
    assert units_of(kernel(random, layer)).sum() == units_of(kernel(ticket, layer)).sum()
  assert plan.counts(random) == plan.counts(ticket)
  assert not np.array_equal(kernel(random, 'dense_0'), kernel(ticket, 'dense_0'))
  assert not kernel(random, 'dense_1')[~units_of(kernel(random, 'dense_0'))].any()


@pytest.mark.parametrize(
  'kwargs, says',
  [
    ({'granularity': 'units'}, 'granularity'),
    ({'granularity': 'unit'}, 'links=structured.chain'),
    ({'granularity': 'unit', 'links': MLP_LINKS, 'strategy': 'global', 'rate': 0.2}, 'layerwise'),
    ({'granularity': 'unit', 'links': MLP_LINKS, 'n_m': '2:4'}, 'n_m'),
    ({'granularity': 'unit', 'links': [('dense_0', 'output')]}, 'does not take the 12 units'),
    ({'granularity': 'unit', 'links': [('dense_0', 'head')]}, "['head']"),
    ({'n_m': '4:2'}, '0 < N < M'),
    ({'n_m': 'two'}, '0 < N < M'),
  ],
)
def test_bad_structure_is_refused_with_the_fix(kwargs, says):
  params, _ = init(models.LeNet300100(hidden=(12, 8)), (5, 5, 1))
  with pytest.raises(ConfigError, match=None) as error:
    make_plan(params, rate_dense=0.2, **kwargs)
  assert says in str(error.value)


def test_models_outside_the_zoo_name_their_links():
  class Mine(models.nn.Module):
    @models.nn.compact
    def __call__(self, x, train=False):
      return models.nn.Dense(3, name='head')(x.reshape((x.shape[0], -1)))

  with pytest.raises(ConfigError, match='not from the zoo'):
    compaction.unit_links(Mine())


def test_unit_study_exports_a_smaller_model_with_the_same_logits(smoke_run, tmp_path):
  from lth_jax import cli
  from lth_jax.analyses import ticket

  workdir, printed = smoke_run('structured')
  assert any('granularity: unit' in line for line in printed)  # The plan says what it removes.
  (run_dir,) = workdir.iterdir()
  full, small = tmp_path / 'full.npz', tmp_path / 'small.npz'
  cli.export_ticket([str(run_dir), '--level', '2', '--output', str(full)], log=lambda m: None)
  cli.export_ticket(
    [str(run_dir), '--level', '2', '--output', str(small), '--compact'], log=lambda m: None
  )
  model, params, masks = ticket.load(full)
  compact_model, compact_params, compact_masks = ticket.load(small)
  assert compact_model.hidden == (192, 64)  # 300 and 100 units, 20% of them per level, twice.
  assert np.array_equal(
    units_of(params['dense_0']['kernel'] != 0), units_of(masks['dense_0']['kernel'])
  )
  x = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
  np.testing.assert_allclose(
    compact_model.apply({'params': masks_lib.apply(compact_params, compact_masks)}, x),
    model.apply({'params': masks_lib.apply(params, masks)}, x),
    rtol=1e-5, atol=1e-5,
  )  # fmt: skip


def test_the_speed_benchmark_times_both_ways(smoke_run):
  import sys

  sys.path.insert(0, str(REPO / 'benchmarks'))
  import structured_speed

  workdir, _ = smoke_run('structured')
  (run_dir,) = workdir.iterdir()
  row = structured_speed.measure(run_dir, 2, steps=3, repeats=1)
  assert row['widths'] == {'dense_0': 192, 'dense_1': 64}
  assert all(row[k] > 0 for k in ('train_masked', 'train_compact', 'infer_masked', 'infer_compact'))
  assert '| 2 | 61.4% | 192-64 |' in structured_speed.table([row])


def test_a_criterion_ranks_units_by_the_sum_of_its_signed_scores():
  kernels = [jnp.ones((2, 3)), jnp.ones((3, 2))]
  masks = [jnp.ones((2, 3), bool), jnp.ones((3, 2), bool)]
  # Unit 0's weights all shrank (-1 each), unit 1's grew (+0.5), unit 2's grew most (+2).
  scores = [jnp.array([[-1.0, 0.5, 2.0], [-1.0, 0.5, 2.0]]), jnp.zeros((3, 2))]
  out = structured.prune_units(kernels, masks, links=[(0, 1)], rates=[1 / 3, 0.0], scores=scores)
  assert units_of(np.asarray(out[0])).tolist() == [False, True, True]


def test_a_layer_keeps_at_least_one_unit():
  masks = [jnp.ones((2, 2), bool), jnp.ones((2, 2), bool)]
  out = structured.prune_units([jnp.ones((2, 2))] * 2, masks, links=[(0, 1)], rates=[0.8, 0.0])
  assert int(units_of(np.asarray(out[0])).sum()) == 1


def test_n_m_with_a_ranked_criterion_scores_every_layer():
  model = models.LeNet300100(hidden=(12, 8))
  params, _ = init(model, (4, 4, 1))
  plan = make_plan(params, rate_dense=0.0, rate_output=0.0, n_m='2:4')
  scoring = jax.tree.leaves(plan.scoring_pools())
  kinds = [leaf.kind for leaf in plan.leaves]
  assert all(p != -1 for p, kind in zip(scoring, kinds, strict=True) if kind)
  assert len({p for p, kind in zip(scoring, kinds, strict=True) if kind}) == 3


def test_resnet_links_outside_the_blocks_are_refused():
  model = models.ResNet(depth=8, width=4)
  with pytest.raises(ConfigError, match='residual'):
    compaction.check_residual(model, [('stage0_block0/conv_1', 'stage1_block0/conv_0')])
  compaction.check_residual(model, compaction.unit_links(model))  # The zoo's links pass.


def test_links_out_of_feeding_order_are_refused():
  params, _ = init(models.LeNet300100(hidden=(12, 8)), (5, 5, 1))
  with pytest.raises(ConfigError, match='order'):
    make_plan(
      params,
      rate_dense=0.2,
      granularity='unit',
      links=[('dense_1', 'output'), ('dense_0', 'dense_1')],
    )

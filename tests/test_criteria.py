"""IMP's mask criteria (Zhou et al. 2019) against hand computations; the new keys keep old runs valid."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import conv, lenet300, prune_early
from lth_jax.core import criteria, pruning
from lth_jax.core.plan import make_plan
from lth_jax.errors import ConfigError
from lth_jax.study import config as config_lib
from lth_jax.study import results
from lth_jax.study.store import DiskResults

RNG = np.random.default_rng(0)
INIT = {
  'dense_0': {
    'kernel': RNG.normal(size=(6, 5)).astype(np.float32),
    'bias': np.zeros(5, np.float32),
  },
  'output': {'kernel': RNG.normal(size=(5, 3)).astype(np.float32), 'bias': np.zeros(3, np.float32)},
}
FINAL = jax.tree.map(lambda p: p + RNG.normal(size=p.shape).astype(np.float32), INIT)


def dense_masks():
  return jax.tree.map(lambda p: jnp.ones(p.shape, bool), INIT)


def by_hand(criterion, t, i):
  if criterion == 'large_final':
    return np.abs(t)
  if criterion == 'magnitude_increase':
    return np.abs(t) - np.abs(i)
  if criterion == 'movement':
    return np.abs(t - i)
  # Same percentile cut on |θ0| and |θT|: the rank of each, the smaller one.
  rank = lambda v: np.argsort(np.argsort(v.ravel(), kind='stable'), kind='stable').reshape(v.shape)
  return np.minimum(rank(np.abs(i)), rank(np.abs(t))).astype(np.float64)


def keep_top_by_hand(score, count):
  order = np.argsort(-score.ravel(), kind='stable')
  keep = np.zeros(score.size, bool)
  keep[order[:count]] = True
  return keep.reshape(score.shape)


@pytest.mark.parametrize('criterion', criteria.CRITERIA)
def test_layerwise_criteria_keep_the_hand_computed_top_weights(criterion):
  plan = make_plan(INIT, output_layer='output', rate_dense=0.4, rate_output=0.2)
  pools = plan.ranking_pools()
  scores = criteria.scores(criterion, FINAL, INIT, dense_masks(), pools=pools)
  got = plan.prune(FINAL, dense_masks(), scores=scores)
  for layer, keep in (('dense_0', 30 - 12), ('output', 15 - 3)):
    t, i = FINAL[layer]['kernel'], INIT[layer]['kernel']
    expected = keep_top_by_hand(by_hand(criterion, t, i), keep)
    np.testing.assert_array_equal(got[layer]['kernel'], expected, err_msg=f'{criterion} {layer}')
  assert bool(got['dense_0']['bias'].all())


@pytest.mark.parametrize('criterion', ['magnitude_increase', 'movement'])
def test_global_criteria_rank_both_layers_together(criterion):
  plan = make_plan(INIT, strategy='global', rate=0.5, prune_output=True, output_layer='output')
  pools = plan.ranking_pools()
  scores = criteria.scores(criterion, FINAL, INIT, dense_masks(), pools=pools)
  got = plan.prune(FINAL, dense_masks(), scores=scores)
  pooled = np.concatenate(
    [
      by_hand(criterion, FINAL[n]['kernel'], INIT[n]['kernel']).ravel()
      for n in ('dense_0', 'output')
    ]
  )
  keep = keep_top_by_hand(pooled, 45 - round(0.5 * 45))
  np.testing.assert_array_equal(
    np.concatenate([got[n]['kernel'].ravel() for n in ('dense_0', 'output')]), keep
  )


def test_large_init_large_final_ranks_only_survivors():
  plan = make_plan(INIT, output_layer='output', rate_dense=0.5, rate_output=0.5)
  masks = plan.prune(FINAL, dense_masks())
  pools = plan.ranking_pools()
  scores = criteria.scores('large_init_large_final', FINAL, INIT, masks, pools=pools)
  again = plan.prune(FINAL, masks, scores=scores)
  for layer in ('dense_0', 'output'):
    m = np.asarray(masks[layer]['kernel'])
    s = np.asarray(scores[layer]['kernel'])
    assert m.any() and s[m].min() >= 0 and (s[~m] == -1).all()
    assert not np.any(np.asarray(again[layer]['kernel']) & ~m)  # Never revived.
    assert int(np.sum(again[layer]['kernel'])) == int(m.sum()) - round(0.5 * int(m.sum()))


@pytest.mark.parametrize('strategy', ['layerwise', 'global'])
def test_large_final_is_bit_identical_to_magnitude_pruning(strategy):
  plan = make_plan(INIT, strategy=strategy, output_layer='output', rate_dense=0.4,
                   rate_output=0.2, rate=0.4)  # fmt: skip
  assert criteria.scores('large_final', FINAL, INIT, dense_masks(), pools={}) is None
  before = plan.prune(FINAL, dense_masks())
  explicit = plan.prune(FINAL, dense_masks(), scores=jax.tree.map(jnp.abs, FINAL))
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(explicit), strict=True):
    np.testing.assert_array_equal(a, b)
  rates = pruning.layer_rates(INIT, dense=0.4, output=0.2)
  if strategy == 'layerwise':  # And the same as the pruning functions always gave.
    old = pruning.prune_layerwise(FINAL, dense_masks(), rates=rates)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(old), strict=True):
      np.testing.assert_array_equal(a, b)


def test_new_keys_at_their_defaults_keep_every_run_directory_name():
  # Hashes of these configs before the keys pruning.criterion and at_init.* existed.
  assert config_lib.study_hash(lenet300.get_config('quick')) == '031d0873f6'
  assert config_lib.study_hash(lenet300.get_config('paper')) == 'b8ae85cb84'
  assert config_lib.study_hash(conv.get_config('smoke')) == '61b7a317b8'
  changed = lenet300.get_config('quick')
  changed.pruning.criterion = 'movement'
  assert config_lib.study_hash(changed) != '031d0873f6'
  changed = lenet300.get_config('quick')
  changed.at_init.samples_per_class = 5
  assert config_lib.study_hash(changed) != '031d0873f6'


def test_an_older_config_json_gains_the_new_keys_at_their_defaults():
  old = lenet300.get_config('quick').to_dict()
  del old['at_init'], old['pruning']['criterion']
  filled = config_lib.with_new_keys(old)
  config_lib.validate(filled)
  assert filled.pruning.criterion == 'large_final' and filled.at_init.supermask_steps == 2000
  assert config_lib.study_hash(filled) == '031d0873f6'


def test_bad_new_keys_are_refused_with_the_allowed_values():
  config = prune_early.get_config('smoke')
  config.pruning.criterion = 'largest'
  with pytest.raises(ConfigError, match='pruning.criterion'):
    config_lib.validate(config)
  config = prune_early.get_config('smoke')
  config.at_init.samples_per_class = 0
  with pytest.raises(ConfigError, match='at_init.samples_per_class'):
    config_lib.validate(config)


def test_a_summary_written_before_collapsed_layers_still_reads_and_grows(tmp_path):
  old_columns = [c for c in results.SUMMARY_COLUMNS if c != 'collapsed_layers']
  with open(tmp_path / results.SUMMARY, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=old_columns)
    writer.writeheader()
    writer.writerow({c: 0 for c in old_columns} | {'arm': 'ticket', 'diverged_step': ''})
  disk = DiskResults(tmp_path)
  assert disk.finished() == {(0, 0, 'ticket'): False}
  row = {c: 1 for c in results.SUMMARY_COLUMNS} | {'arm': 'snip', 'collapsed_layers': 'dense_0'}
  disk.record(row, [], [], 1.0)
  rows = disk.summary()
  assert [r['arm'] for r in rows] == ['ticket', 'snip']
  assert rows[0]['collapsed_layers'] == '' and rows[1]['collapsed_layers'] == 'dense_0'
  assert (tmp_path / results.SUMMARY).read_text().splitlines()[0].split(',') == list(
    results.SUMMARY_COLUMNS
  )

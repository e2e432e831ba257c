"""Which part of a mask matters: controls applied to masks chosen at init, each by hand."""

import jax
import numpy as np
import pytest
from test_early import tiny_study

from lth_jax.arms import ablations
from lth_jax.study import artifacts, levels, starts
from lth_jax.study.definition import RunKey

ARMS = ('ticket', 'snip', *(f'{s}/{c}' for s in ablations.SOURCES for c in ablations.CONTROLS))


@pytest.fixture(scope='module')
def ran():
  study = tiny_study(levels=1, arms=ARMS)
  return study, levels.train_levels(study)


def start_of(study, store, arm):
  return starts.start_states(study, store, [RunKey(0, 1, arm)])[0]


def counts(study, masks):
  return study.plan.counts(jax.device_get(masks))


def test_a_shuffled_mask_keeps_each_layers_count_on_the_rewound_weights(ran):
  study, store = ran
  state_k = store.load(artifacts.rewind(0))  # θ0 here (rewind_step 0).
  for source in ablations.SOURCES:
    plain, shuffled = start_of(study, store, source), start_of(study, store, f'{source}/shuffle')
    assert counts(study, shuffled.masks) == counts(study, plain.masks), source
    moved = [
      not np.array_equal(a, b)
      for a, b in zip(jax.tree.leaves(plain.masks), jax.tree.leaves(shuffled.masks), strict=True)
    ]
    assert any(moved), source
    for w, w0, m in zip(
      jax.tree.leaves(shuffled.params), jax.tree.leaves(state_k.params),
      jax.tree.leaves(shuffled.masks), strict=True,
    ):  # fmt: skip
      np.testing.assert_array_equal(np.asarray(w), np.where(m, w0, 0))  # θ0 at the new places.


def test_a_reinitialized_mask_is_the_sources_own_with_fresh_weights(ran):
  study, store = ran
  state_k = store.load(artifacts.rewind(0))
  for source in ablations.SOURCES:
    plain, fresh = start_of(study, store, source), start_of(study, store, f'{source}/reinit')
    for a, b in zip(jax.tree.leaves(plain.masks), jax.tree.leaves(fresh.masks), strict=True):
      np.testing.assert_array_equal(a, b)  # Paired: the very mask of the source arm.
    kernel = np.asarray(fresh.params['dense_0']['kernel'])
    kept = np.asarray(fresh.masks['dense_0']['kernel'])
    assert not np.allclose(kernel[kept], np.asarray(state_k.params['dense_0']['kernel'])[kept])
    assert np.all(kernel[~kept] == 0)


def test_every_ablation_trains_at_the_tickets_sparsity(ran):
  study, store = ran
  rows = {r['arm']: r for r in store.summary if r['level'] == 1}
  assert set(rows) == set(ARMS)
  assert len({r['weights_remaining'] for r in rows.values()}) == 1
  for arm in ARMS:  # Stored under a name that is a directory ('snip/shuffle' -> 'snip~shuffle').
    assert store.trees.has(artifacts.trained(0, 1, arm))


def test_ablations_vmapped_equal_sequential(ran):
  _, sequential = ran
  vmapped = levels.train_levels(tiny_study(levels=1, arms=ARMS, parallel='true'))
  seq = {r['arm']: r for r in sequential.summary if r['level'] == 1}
  for row in (r for r in vmapped.summary if r['level'] == 1):
    assert row['test_accuracy_at_early_stop'] == pytest.approx(
      seq[row['arm']]['test_accuracy_at_early_stop'], abs=0.02
    ), row['arm']
  for arm in ARMS[2:]:
    got = vmapped.load(artifacts.trained(0, 1, arm))['params']
    want = sequential.load(artifacts.trained(0, 1, arm))['params']
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
      np.testing.assert_array_equal(np.asarray(a) != 0, np.asarray(b) != 0)  # The same masks.

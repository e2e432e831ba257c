"""The level loop end to end on real data (in memory), and the smoke experiment's run directory."""

import csv
import re

import jax
import numpy as np
import pytest
from fake_data import fraction_remaining
from test_report import _check_png

from experiments import lenet300
from lth_jax import report
from lth_jax.commands import run as run_study
from lth_jax.study import checkpoint, from_config, levels, results, starts
from lth_jax.study.definition import RunKey


def smoke_config(data_dir, **overrides):
  config = lenet300.get_config('smoke')
  config.data.data_dir = data_dir
  config.arms = 'ticket,reinit,random_prune,shuffle,sign_reinit'
  config.rewind_step = 20
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope='module')
def study_and_store(fashion_mnist_dir, fashion_mnist):
  study = from_config.from_config(smoke_config(fashion_mnist_dir), dataset=fashion_mnist)
  return study, levels.train_levels(study)


def test_every_level_and_arm_is_recorded(study_and_store):
  study, store = study_and_store
  keys = [(r['seed'], r['level'], r['arm']) for r in store.summary]
  arms = ['ticket', 'reinit', 'random_prune', 'shuffle', 'sign_reinit']
  assert keys == [(0, 0, 'ticket')] + [(0, level, a) for level in (1, 2) for a in arms]
  for row in store.summary:
    assert set(results.SUMMARY_COLUMNS) <= set(row)
    assert row['diverged'] == 0
    assert 0 < row['test_accuracy_at_early_stop'] <= 1
    assert row['early_stop_step'] % study.eval_every == 0
  assert store.summary[0]['weights_remaining'] == 1.0
  # Every arm of a level has the ticket's sparsity.
  for level in (1, 2):
    fractions = {r['weights_remaining'] for r in store.summary if r['level'] == level}
    assert len(fractions) == 1


def test_masks_are_nested_and_levels_start_from_theta_k(study_and_store):
  study, store = study_and_store
  state_k = store.load('seed_0/rewind')
  assert int(state_k.step) == study.rewind_step
  previous = store.load('seed_0/level_0/masks')
  for level in (1, 2):
    masks = store.load(f'seed_0/level_{level}/masks')
    for m, p in zip(jax.tree.leaves(masks), jax.tree.leaves(previous), strict=True):
      assert not np.any(np.asarray(m) & ~np.asarray(p))
    assert fraction_remaining(masks) < fraction_remaining(previous)
    # The ticket's trained weights are zero where pruned.
    trained = store.load(f'seed_0/level_{level}/ticket')['params']
    for w, m in zip(jax.tree.leaves(trained), jax.tree.leaves(masks), strict=True):
      assert not np.any(np.asarray(w)[~np.asarray(m)])
    previous = masks


def test_level_starts_rebuild_exactly(study_and_store):
  """Rebuilding a level's start states gives the ticket = masks ⊙ θk, bit for bit."""
  study, store = study_and_store
  runs = [RunKey(0, 2, 'ticket'), RunKey(0, 2, 'reinit')]
  ticket, reinit = starts.start_states(study, store, runs)
  state_k = store.load('seed_0/rewind')
  masks = store.load('seed_0/level_2/masks')
  for w, wk, m in zip(
    jax.tree.leaves(ticket.params),
    jax.tree.leaves(state_k.params),
    jax.tree.leaves(masks),
    strict=True,
  ):
    np.testing.assert_array_equal(np.asarray(w), np.where(np.asarray(m), np.asarray(wk), 0))
  assert int(ticket.step) == int(reinit.step) == study.rewind_step
  assert not np.array_equal(
    np.asarray(ticket.params['dense_0']['kernel']), np.asarray(reinit.params['dense_0']['kernel'])
  )


def test_same_seed_same_result(fashion_mnist_dir, fashion_mnist, study_and_store):
  _, store = study_and_store
  config = smoke_config(fashion_mnist_dir, num_levels=1)
  config.arms = 'ticket,reinit'
  again = levels.train_levels(from_config.from_config(config, dataset=fashion_mnist))
  first = {(r['level'], r['arm']): r for r in store.summary if r['level'] <= 1}
  for row in again.summary:
    assert row == first[row['level'], row['arm']]


def test_smoke_experiment_writes_run_directory_and_report(tmp_path, fashion_mnist_dir):
  config = lenet300.get_config('smoke')
  config.data.data_dir = fashion_mnist_dir
  run_dir = run_study(config, tmp_path, log=lambda *a: None, progress=False)
  with open(run_dir / 'summary.csv') as f:
    rows = list(csv.DictReader(f))
  promised = ['seed', 'level', 'arm', 'weights_remaining', 'early_stop_step', 'val_loss_at_early_stop',
              'test_accuracy_at_early_stop', 'final_test_accuracy']  # fmt: skip
  assert set(promised) <= set(rows[0])
  assert [(r['level'], r['arm']) for r in rows] == [
    ('0', 'ticket'),
    ('1', 'ticket'),
    ('1', 'reinit'),
    ('2', 'ticket'),
    ('2', 'reinit'),
  ]
  assert float(rows[0]['weights_remaining']) == 1.0
  assert float(rows[3]['weights_remaining']) == pytest.approx(
    (235200 * 0.64 + 30000 * 0.64 + 1000 * 0.81) / 266200, abs=1e-5
  )
  for name in ('curves.csv', 'layers.csv', 'config.json'):
    assert (run_dir / name).stat().st_size > 0
  for seed_item in ('init', 'rewind', 'level_2/masks', 'level_2/ticket', 'level_2/reinit'):
    assert checkpoint.exists(run_dir / 'checkpoints' / 'seed_0' / seed_item)
  index = run_dir / 'report' / 'index.html'
  html = index.read_text()
  assert 'could not be drawn' not in html
  images = re.findall(r'<img src="([^"]+)"', html)
  assert set(images) == set(report.FIGURE_NAMES) - {'mask_overlap.png'}  # One seed: no overlap.
  for name in images:
    _check_png(index.parent / name)

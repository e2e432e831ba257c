"""Studies grow in place: more levels, seeds or arms train only the new runs."""

import pytest
from fake_data import tiny_study

import lth_jax
from experiments import lenet300
from lth_jax import commands
from lth_jax.study import levels, results


@pytest.fixture
def trained_runs(monkeypatch):
  """Records every (seed, level, arm) that is trained."""
  trained = []
  original = levels.train_group

  def spy(study, store, runs, starts, progress):
    trained.extend((r.seed, r.level, r.arm) for r in runs)
    return original(study, store, runs, starts, progress)

  monkeypatch.setattr(levels, 'train_group', spy)
  monkeypatch.setattr(commands, 'write_report', lambda path, log: None)
  return trained


def test_more_levels_seeds_and_arms_train_only_the_new_runs(
  fashion_mnist_dir, tmp_path, trained_runs
):
  config = lenet300.get_config('smoke')
  config.data.data_dir = fashion_mnist_dir
  config.num_steps, config.eval_every, config.checkpoint_every = 40, 20, 0
  config.num_levels, config.num_seeds, config.arms = 1, 1, 'ticket'
  steps = [
    ({}, [(0, 0, 'ticket'), (0, 1, 'ticket')]),
    ({'num_levels': 2}, [(0, 2, 'ticket')]),
    ({'num_seeds': 2}, [(1, 0, 'ticket'), (1, 1, 'ticket'), (1, 2, 'ticket')]),
    ({'arms': 'ticket,reinit'}, [(0, 1, 'reinit'), (1, 1, 'reinit'), (0, 2, 'reinit'), (1, 2, 'reinit')]),
  ]  # fmt: skip
  run_dirs, lines_before = set(), []
  for changes, expected in steps:
    for key, value in changes.items():
      config[key] = value
    trained_runs.clear()
    run_dir = commands.run(config, tmp_path, log=lambda *a: None, progress=False)
    run_dirs.add(run_dir)
    assert sorted(trained_runs) == sorted(expected)
    lines = (run_dir / results.SUMMARY).read_text().splitlines()
    assert set(lines_before) <= set(lines)  # Every finished row stays, byte for byte.
    lines_before = lines
  assert len(run_dirs) == 1
  assert len(lines_before) == 1 + 2 * 3 + 2 * 2 * 1  # Header, tickets, reinits.


def test_a_results_changing_setting_makes_a_new_directory(
  fashion_mnist_dir, tmp_path, trained_runs
):
  config = lenet300.get_config('smoke')
  config.data.data_dir = fashion_mnist_dir
  config.num_steps, config.eval_every, config.num_levels, config.arms = 40, 20, 0, 'ticket'
  first = commands.run(config, tmp_path, log=lambda *a: None, progress=False)
  config.data.download = False  # Where files come from: same results, same directory.
  assert commands.run(config, tmp_path, log=lambda *a: None, progress=False) == first
  config.optimizer.learning_rate = 1e-3
  assert commands.run(config, tmp_path, log=lambda *a: None, progress=False) != first


def test_a_user_study_grows_in_its_run_dir_and_refuses_another(tmp_path, trained_runs):
  run_dir = tmp_path / 'mine'
  lth_jax.run_imp(tiny_study(num_levels=1), run_dir=run_dir, log=None)
  assert (run_dir / 'plan.json').exists() and (run_dir / 'study.json').exists()
  trained_runs.clear()
  store = lth_jax.run_imp(tiny_study(num_levels=2), run_dir=run_dir, log=None)
  assert sorted(trained_runs) == [(0, 2, 'reinit'), (0, 2, 'ticket')]
  assert len(store.summary) == 5
  with pytest.raises(lth_jax.RunError, match='holds another study.*num_steps'):
    lth_jax.run_imp(tiny_study(num_steps=60), run_dir=run_dir, log=None)

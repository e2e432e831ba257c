"""Linear mode connectivity between consecutive levels: the path's ends are the two networks."""

import shutil

import jax
import numpy as np
import pytest

from experiments import lenet300
from lth_jax import commands
from lth_jax.analyses import successive
from lth_jax.study import from_config, results, workdir
from lth_jax.study.store import DiskStore


@pytest.fixture(scope='module')
def measured(smoke_run, fashion_mnist_dir, tmp_path_factory):
  runs, _ = smoke_run('lenet300')  # IMP done: the stage alone runs.
  config = lenet300.get_config('smoke')
  config.data.data_dir, config.parallel = fashion_mnist_dir, 'false'
  copy = tmp_path_factory.mktemp('successive')
  path = shutil.copytree(workdir.run_dir_for(runs, config), workdir.run_dir_for(copy, config))
  config.lmc.successive = True  # A stage key: the same directory, IMP's runs reused.
  lines = []
  assert commands.run(config, copy, log=lines.append, progress=False) == path
  return config, path, lines


def test_each_pair_of_levels_is_measured_once(measured):
  config, path, lines = measured
  rows = results.read_rows(path / successive.SUCCESSIVE)
  assert [(r['seed'], r['level']) for r in rows] == [('0', '1'), ('0', '2')]
  assert len(results.read_rows(path / successive.SUCCESSIVE_PATH)) == 2 * 31
  assert not any('done:' in line for line in lines)  # IMP's runs were all there.
  assert any(line.startswith('levels 0->1 seed 0') for line in lines)
  again = []
  commands.run(config, path.parent, log=again.append, progress=False)
  assert not any(line.startswith('levels ') for line in again)  # Nothing measured twice.


def test_the_ends_are_the_pruned_and_the_retrained_networks(measured, fashion_mnist):
  config, path, _ = measured
  study = from_config.from_config(config, dataset=fashion_mnist)
  store = DiskStore(path, log=lambda m: None)
  summary = {results.run_key(r): r for r in results.read_rows(path / 'summary.csv')}
  trainer = study.trainer(vmapped=False)
  for row in results.read_rows(path / successive.SUCCESSIVE):
    level = int(row['level'])
    state_a, state_b = successive.endpoints(study, store, 0, level)
    for state in (state_a, state_b):  # Both on level's mask, pruned weights exactly zero.
      for p, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(state.masks), strict=True):
        assert not np.any(np.asarray(p)[~np.asarray(m)])
    error_a = 1 - float(trainer.evaluate(state_a)['test_accuracy'])
    assert float(row['error_a']) == pytest.approx(error_a, abs=1e-6)
    retrained = summary[0, level, 'ticket']  # Stored at the final step.
    assert float(row['error_b']) == pytest.approx(
      1 - float(retrained['final_test_accuracy']), abs=1e-6
    )
    errors = [float(r['test_error']) for r in results.read_rows(path / successive.SUCCESSIVE_PATH)
              if r['level'] == row['level']]  # fmt: skip
    assert errors[0] == float(row['error_a']) and errors[-1] == float(row['error_b'])
    by_hand = max(errors) - (errors[0] + errors[-1]) / 2
    assert float(row['instability']) == pytest.approx(by_hand, abs=1e-6)
  assert 'Consecutive levels' in (path / 'report' / 'index.html').read_text()

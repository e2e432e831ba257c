"""experiments/prune_early.py: its configs, and the smoke variant end to end."""

import pytest

from experiments import prune_early
from lth_jax import arms
from lth_jax.study import config as config_lib
from lth_jax.study import results
from lth_jax.study import workdir as workdir_lib


@pytest.mark.parametrize('variant', ['lenet300', 'conv2', 'resnet20', 'smoke'])
def test_every_variant_is_a_valid_config_with_every_early_arm(variant):
  config = prune_early.get_config(variant)
  config_lib.validate(config)
  arms = config_lib.arms_of(config)
  assert arms == ['ticket', 'random_prune', 'snip', 'grasp', 'synflow', 'magnitude_init',
                  'signed_constant', 'supermask']  # fmt: skip
  if variant == 'lenet300':  # Two of the paper's rounds per level: 4.5% left at level 7.
    assert (config.pruning.rate_dense, config.pruning.rate_output) == (0.36, 0.19)
    assert config.num_levels == 7 and config.num_seeds == 3


def test_every_arm_has_a_label_in_the_report():
  assert all(arms.label(a) != a for a in arms.names())  # Every arm has its own label.


def test_smoke_runs_end_to_end(smoke_run):
  workdir, _ = smoke_run('prune_early')  # `lth run --config=experiments/prune_early.py:smoke`.
  config = prune_early.get_config('smoke')
  rows = results.read_rows(workdir / workdir_lib.run_dir_for(workdir, config).name / 'summary.csv')
  assert [(int(r['level']), r['arm']) for r in rows] == [(0, 'ticket')] + [
    (1, a) for a in config_lib.arms_of(config)
  ]
  level_1 = {r['arm']: r for r in rows if r['level'] == '1'}
  assert len({r['weights_remaining'] for r in level_1.values()}) == 1  # The ticket's sparsity.
  assert all(r['collapsed_layers'] == '' and r['diverged'] == '0' for r in rows)
  assert level_1['supermask']['early_stop_step'] == ''  # No weight trained: no early stop.
  assert level_1['supermask']['mask_steps'] == str(config.at_init.supermask_steps)
  assert all(0 <= float(r['test_accuracy_at_early_stop']) <= 1 for r in rows)

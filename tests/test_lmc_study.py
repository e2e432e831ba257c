"""The LMC study from a config: its keys, its directories, the smoke variant end to end."""

import pytest

from experiments import lenet300, lmc, resnet20, vgg19
from lth_jax.errors import ConfigError
from lth_jax.study import config as config_lib


@pytest.mark.parametrize(
  ('module', 'variant', 'expected'),
  [
    (lenet300, 'smoke', '8f7c7a3359'),
    (lenet300, 'quick', '031d0873f6'),
    (resnet20, 'paper', '5cd36cd340'),
    (vgg19, 'paper', '506e42bb71'),
  ],
)
def test_lmc_keys_at_their_defaults_keep_run_directory_names(module, variant, expected):
  # The hashes these configs had before the lmc.* keys existed.
  assert config_lib.study_hash(module.get_config(variant)) == expected


def test_lmc_keys_name_their_study_when_used():
  config = lenet300.get_config('smoke')
  plain = config_lib.study_hash(config)
  for key, value in (('rewind_steps', (0, 20)), ('num_alphas', 5), ('bn_recompute', False)):
    changed = lenet300.get_config('smoke')
    changed.lmc[key] = value
    assert config_lib.study_hash(changed) != plain, key


@pytest.mark.parametrize(
  ('key', 'value', 'message'),
  [
    ('rewind_steps', (0, 40), 'iterations before num_steps=40'),
    ('rewind_steps', (0, 0), 'distinct iterations'),
    ('levels', (0, 2), 'levels up to num_levels=1'),
    ('levels', (), 'non-empty tuple'),
    ('num_alphas', 1, 'an integer in'),
  ],
)
def test_bad_lmc_keys_are_refused_with_the_fix(key, value, message):
  config = lmc.get_config('smoke')
  config_lib.validate(config)
  config.lmc[key] = value
  with pytest.raises(ConfigError, match=f'lmc.{key}.*{message}'):
    config_lib.validate(config)


def test_every_variant_is_a_valid_config():
  for variant in lmc.VARIANTS:
    config = lmc.get_config(variant)
    config_lib.validate(config)
    assert config.arms == 'ticket'
    # A sweep of the rewind step, or the consecutive-level stage (successive).
    assert bool(config.lmc.rewind_steps) != (variant == 'successive') == config.lmc.successive
  assert lmc.get_config('vgg16').model.name == 'vgg16'
  with pytest.raises(ValueError, match='unknown variant'):
    lmc.get_config('mnist')


def test_smoke_variant_end_to_end_and_resumed(fashion_mnist_dir, smoke_run):
  from lth_jax import commands, report
  from lth_jax.analyses import lmc as lmc_lib
  from lth_jax.analyses import lmc_sections
  from lth_jax.study.results import read_rows

  tmp_path, logged = smoke_run('lmc')  # `lth run --config=experiments/lmc.py:smoke`.
  (lmc_dir,) = tmp_path.glob('lmc-smoke-*')
  config = lmc.get_config('smoke')
  config.data.data_dir = fashion_mnist_dir
  config.parallel = 'false'
  instability = (lmc_dir / 'instability.csv').read_text().splitlines()
  assert instability[0] == (
    'seed,level,weights_remaining,rewind_step,error_a,error_b,max_path_error,instability'
  )
  rows = read_rows(lmc_dir / 'instability.csv')
  assert [(r['rewind_step'], r['level']) for r in rows] == [
    ('0', '0'), ('0', '1'), ('20', '0'), ('20', '1'),
  ]  # fmt: skip
  assert float(rows[0]['weights_remaining']) == 1.0 > float(rows[1]['weights_remaining'])
  path = read_rows(lmc_dir / 'interpolation.csv')
  assert list(path[0]) == ['seed', 'level', 'rewind_step', 'alpha', 'test_loss', 'test_error']
  assert len(path) == 4 * 3
  for k in (0, 20):  # Each k: an ordinary run directory with its pairs beside summary.csv.
    k_dir = lmc_dir / f'rewind_{k}'
    assert len(read_rows(k_dir / 'summary.csv')) == 2
    assert len(read_rows(k_dir / lmc_lib.INSTABILITY)) == 2
    assert (k_dir / 'config.json').exists()
  for name in lmc_sections.FIGURES:
    assert (lmc_dir / 'report' / name).stat().st_size > 0
  # `lth report` draws what the study's stages have to show: the sweep's connectivity,
  # and for each k its IMP and its pairs.
  text = report.write_report(lmc_dir).read_text()
  assert 'Linear mode connectivity' in text and 'could not be drawn' not in text
  text = report.write_report(lmc_dir / 'rewind_0').read_text()
  assert 'Accuracy and early stopping' in text and 'Linear mode connectivity' in text
  assert any('instability %' in line for line in logged)
  (listed,) = [
    line for line in commands.list_runs(tmp_path).splitlines() if line.startswith('lmc-')
  ]
  assert 'LMC study' in listed and 'stopped' not in listed
  assert 'finished' in commands.list_runs(lmc_dir)  # Each rewind_<k>/ is an ordinary run.
  # Run again: every IMP run and every pair is already there; nothing is recomputed.
  before = (lmc_dir / 'instability.csv').read_text()
  logged = []
  assert commands.run(config, tmp_path, log=logged.append, progress=False) == lmc_dir
  assert (lmc_dir / 'instability.csv').read_text() == before
  assert not [line for line in logged if line.startswith(('k=', 'done:'))]


def test_resumed_lmc_configs_name_the_same_directory_and_old_ones_get_the_defaults():
  import json

  config = lmc.get_config('smoke')
  saved = json.loads(config_lib.to_json(config))
  assert saved['lmc']['rewind_steps'] == [0, 20]  # JSON has lists: still valid, same directory.
  cfg = config_lib.with_new_keys(saved)
  config_lib.validate(cfg)
  assert config_lib.study_hash(cfg) == config_lib.study_hash(config)
  old = json.loads(config_lib.to_json(lenet300.get_config('smoke')))
  del old['lmc']  # A config.json written before the lmc keys existed.
  cfg = config_lib.with_new_keys(old)
  config_lib.validate(cfg)
  assert config_lib.study_hash(cfg) == '8f7c7a3359'

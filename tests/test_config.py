"""Config validation and run-directory naming: bad input fails in one line, up front."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import ml_collections
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import lenet300
from lth_jax import cli
from lth_jax.study import config as config_lib
from lth_jax.study import workdir

REPO = Path(__file__).resolve().parents[1]


def smoke():
  return lenet300.get_config('smoke')


def with_value(config, key, value):
  config = ml_collections.ConfigDict(config.to_dict())
  *path, leaf = key.split('.')
  node = config
  for part in path:
    node = node[part]
  with node.ignore_type():
    node[leaf] = value
  return config


def dict_with(key, value):
  """The smoke config as plain dicts with one value changed (no ConfigDict type coercion)."""
  config = smoke().to_dict()
  *path, leaf = key.split('.')
  node = config
  for part in path:
    node = node[part]
  node[leaf] = value
  return config


def test_defaults_and_variants_are_valid():
  config_lib.validate(config_lib.default_config())
  files = sorted(p.stem for p in (REPO / 'experiments').glob('*.py') if p.stem != '__init__')
  assert len(files) >= 10
  for name in files:
    module = importlib.import_module(f'experiments.{name}')
    assert module.VARIANTS, name
    names = set()
    for variant in module.VARIANTS:
      config = module.get_config(variant)
      config_lib.validate(config)
      names.add(config.name)
    assert len(names) == len(module.VARIANTS), name  # Each variant its own run directories.
    with pytest.raises(ValueError, match='unknown variant'):
      module.get_config('no-such-variant')


@pytest.mark.parametrize('key, value, allowed', [
    ('pruning.rate_dense', 1.5, 'a number in [0, 1)'),
    ('pruning.rate_dense', 1.0, 'a number in [0, 1)'),
    ('pruning.rate_conv', -0.1, 'a number in [0, 1)'),
    ('optimizer.learning_rate', -1e-3, 'a number in (0, 10]'),
    ('optimizer.learning_rate', math.nan, 'a number in (0, 10]'),
    ('num_steps', 'abc', 'an integer >= 1'),
    ('num_steps', True, 'an integer >= 1'),
    ('pruning.rate', 10**400, 'a number in [0, 1)'),  # Too big for a float.
    ('rewind_step', 60, 'an iteration before num_steps=60'),
    ('batch_size', 5000, 'at most the 1000 training examples left after validation'),
    ('data.test_size', 20_000, 'at most 10000'),
    ('model.name', 'resnet9000', 'one of'),
    ('data.name', 'imagenet', 'one of'),
    ('arms', 'ticket,ticket', 'distinct arms'),
    ('checkpoint_every', 30, 'a multiple of eval_every=20'),
])  # fmt: skip
def test_bad_values_name_key_value_and_what_is_allowed(key, value, allowed):
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(dict_with(key, value))
  message = str(e.value)
  assert message.startswith(f'config.{key}=') and 'is not allowed: expected' in message
  assert allowed in message and '\n' not in message and len(message) < 300


def test_an_int_too_long_to_print_is_still_one_line():
  with pytest.raises(config_lib.ConfigError, match=r'^config\.seed=<int> is not allowed'):
    config_lib.validate(dict_with('seed', -(10**5000)))


def test_unknown_and_missing_keys():
  config = smoke()
  with config.unlocked():
    config.nope = 1
  with pytest.raises(config_lib.ConfigError, match=r'^config\.nope is not a known key'):
    config_lib.validate(config)
  flat = smoke().to_dict()
  del flat['data']['download']
  with pytest.raises(config_lib.ConfigError, match=r'^config\.data\.download is missing'):
    config_lib.validate(flat)


# Anything a config value could be, including what a YAML typo or a sweep script produces.
ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(['', 'auto', 'true', 'ticket,reinit', 'fashion_mnist', 'lenet300', 'adam']),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)  # fmt: skip
KEYS = st.sampled_from(sorted(config_lib.SCHEMA))


@settings(max_examples=300, deadline=None)
@given(changes=st.lists(st.tuples(KEYS | st.text(min_size=1, max_size=8), ANY), max_size=4))
def test_validate_fuzz_only_ever_raises_config_error(changes):
  config = smoke().to_dict()
  for key, value in changes:
    *path, leaf = key.split('.')
    node = config
    for part in path:
      node = node.setdefault(part, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
      node[leaf] = value
  try:
    config_lib.validate(config)
  except config_lib.ConfigError as e:
    message = str(e)
    assert message.startswith('config.') and '\n' not in message


def test_cli_config_errors_are_one_line(capsys, tmp_path):
  base = ['lth', 'run', '--config=experiments/lenet300.py:smoke', f'--workdir={tmp_path}']
  cases = {
      '--config.pruning.rate_dense=1.5':
          'lth: error: config.pruning.rate_dense=1.5 is not allowed: expected a number in [0, 1).',
      '--config.num_steps=abc': 'lth: error: flag --config.num_steps=abc: invalid literal',
      '--config.nope=1': 'lth: error: config.nope is not a known key',
      '--config=experiments/lenet300.py:bogus':
          "lth: error: cannot load --config=experiments/lenet300.py:bogus: ValueError: unknown variant 'bogus'",
  }  # fmt: skip
  for flag, expected in cases.items():
    with pytest.raises(SystemExit) as exit_:
      cli.main([*base, flag])
    assert exit_.value.code == 1, flag
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected), (flag, err)
  assert list(tmp_path.iterdir()) == []  # Nothing was started.
  assert sys.argv[0] != 'lth'  # main() restores sys.argv.


# Run directories.


def changed(value):
  if isinstance(value, bool):
    return not value
  if isinstance(value, int | float):
    return value + 1
  if isinstance(value, tuple):
    return (*value, 7)
  return value + 'x'


def test_run_dir_names_follow_the_resolved_config(tmp_path):
  config = smoke()
  run_dir = workdir.run_dir_for(tmp_path, config)
  assert (
    run_dir.name.startswith('lenet300-smoke-') and len(run_dir.name) == len('lenet300-smoke-') + 10
  )
  assert workdir.run_dir_for(tmp_path, smoke()) == run_dir
  flat = config_lib.flatten(config.to_dict())
  for key in flat:
    other = workdir.run_dir_for(tmp_path, with_value(config, key, changed(flat[key])))
    unhashed = (*config_lib.EXECUTION_KEYS, *config_lib.GROWTH_KEYS, *config_lib.LOCATION_KEYS)
    if key in (*unhashed, *config_lib.STAGE_KEYS):
      assert other == run_dir, key
    else:
      assert other != run_dir, key
  with workdir.open_study(run_dir, config=config, log=lambda m: None) as opened:
    assert opened.path == run_dir
  assert workdir.load_config_json(run_dir) == config.to_dict() | {
    'optimizer': config.optimizer.to_dict() | {'milestones': []},
    'lmc': config.lmc.to_dict() | {'rewind_steps': [], 'levels': [0]},  # JSON lists.
    'data': config.data.to_dict() | {'classes': []},
    'transfer': config.transfer.to_dict() | {'levels': [], 'classes': []},
  }

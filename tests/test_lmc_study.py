"""The LMC study from a config: its keys, its directories, the smoke variant end to end."""

import pytest

from experiments import lenet300, lmc, resnet20, vgg19
from lth_jax import config as config_lib
from lth_jax.errors import ConfigError


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
    assert config.lmc.rewind_steps and config.arms == 'ticket'
  assert lmc.get_config('vgg16').model.name == 'vgg16'
  with pytest.raises(ValueError, match='unknown variant'):
    lmc.get_config('mnist')

"""The init-scheme recipe: every variant validates; the smoke variant runs with He weights."""

import numpy as np
import pytest

from experiments import init_schemes
from lth_jax.study import artifacts, from_config, levels
from lth_jax.study import config as config_lib


@pytest.mark.parametrize('variant', init_schemes.VARIANTS)
def test_every_variant_validates(variant):
  config = init_schemes.get_config(variant)
  config_lib.validate(config)
  assert config.model.init == ('he_normal' if variant == 'smoke' else variant)


def test_smoke_runs_from_he_initial_weights(fashion_mnist_dir, fashion_mnist):
  config = init_schemes.get_config('smoke')
  config.data.data_dir = fashion_mnist_dir
  config.num_levels = 1
  store = levels.train_levels(from_config.from_config(config, dataset=fashion_mnist))
  theta0 = store.load(artifacts.init(0))['params']['dense_0']['kernel']
  assert float(np.std(theta0)) == pytest.approx(np.sqrt(2 / 784), rel=0.03)  # He, fan-in 784.
  assert [(r['level'], r['arm']) for r in store.summary] == [
    (0, 'ticket'),
    (1, 'ticket'),
    (1, 'reinit'),
  ]

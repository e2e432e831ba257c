"""The init-scheme recipe: every variant validates; the smoke variant runs with He weights."""

import numpy as np
import pytest

from experiments import init_schemes
from lth_jax.study import artifacts
from lth_jax.study import config as config_lib
from lth_jax.study import workdir as workdir_lib
from lth_jax.study.store import DiskStore


@pytest.mark.parametrize('variant', init_schemes.VARIANTS)
def test_every_variant_validates(variant):
  config = init_schemes.get_config(variant)
  config_lib.validate(config)
  assert config.model.init == ('he_normal' if variant == 'smoke' else variant)


def test_smoke_runs_from_he_initial_weights(smoke_run):
  workdir, _ = smoke_run('init_schemes')  # `lth run --config=experiments/init_schemes.py:smoke`.
  run_dir = workdir_lib.run_dir_for(workdir, init_schemes.get_config('smoke'))
  store = DiskStore(run_dir, log=lambda m: None)
  theta0 = store.load(artifacts.init(0))['params']['dense_0']['kernel']
  assert float(np.std(theta0)) == pytest.approx(np.sqrt(2 / 784), rel=0.03)  # He, fan-in 784.
  assert [(int(r['level']), r['arm']) for r in store.summary] == [
    (0, 'ticket'), (1, 'ticket'), (1, 'reinit'), (2, 'ticket'), (2, 'reinit'),
  ]  # fmt: skip

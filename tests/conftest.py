import jax
import pytest

jax.config.update('jax_numpy_rank_promotion', 'raise')


_COMPILED: list[str] = []


def _record_compile(event, duration, fun_name='', **kwargs):
  if event == '/jax/core/compile/backend_compile_duration':
    _COMPILED.append(fun_name)


jax.monitoring.register_event_duration_secs_listener(_record_compile)


@pytest.fixture
def compiled_names():
  """Names of the functions XLA compiles while the test runs (a list that grows)."""
  return _COMPILED


@pytest.fixture
def key():
  return jax.random.key(0)


FASHION_MNIST = '/usr/share/datasets/fashion-mnist'


@pytest.fixture(scope='session')
def fashion_mnist_dir(tmp_path_factory):
  """A tfds data dir with the real Fashion-MNIST prepared once per test session."""
  import os

  if not os.path.isdir(FASHION_MNIST):
    pytest.skip(f'{FASHION_MNIST} is missing: apt-get install dataset-fashion-mnist')
  from lth_jax import data

  data_dir = tmp_path_factory.mktemp('tfds')
  data.load('fashion_mnist', validation_size=5000, data_dir=str(data_dir))
  return str(data_dir)


@pytest.fixture(scope='session')
def fashion_mnist(fashion_mnist_dir):
  from lth_jax import data

  return data.load('fashion_mnist', validation_size=5000, data_dir=fashion_mnist_dir)

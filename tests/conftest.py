import atexit
import os
import shutil
import tempfile

import jax
import pytest

from lth_jax import commands

jax.config.update('jax_numpy_rank_promotion', 'raise')
# `lth` keeps compiled programs in $LTH_CACHE_DIR: one directory for this test session (and
# the processes it starts), not the user's ~/.cache.
if 'LTH_CACHE_DIR' not in os.environ:
  os.environ['LTH_CACHE_DIR'] = tempfile.mkdtemp(prefix='lth_test_cache_')
  atexit.register(shutil.rmtree, os.environ['LTH_CACHE_DIR'], ignore_errors=True)
# The tests' own process keeps them there too: a program another test (or module) compiled
# is read back instead of compiled again.
commands.use_compilation_cache()


_COMPILED: list[str] = []


def _record_compile(event, duration, fun_name='', **kwargs):
  if event == '/jax/core/compile/backend_compile_duration':
    _COMPILED.append(fun_name)
  elif event == '/jax/compilation_cache/cache_retrieval_time_sec':  # Compiled by another test.
    _COMPILED.append('<read from the compilation cache>')


jax.monitoring.register_event_duration_secs_listener(_record_compile)


@pytest.fixture(autouse=True, scope='module')
def fresh_programs():
  """Forgets every compiled program after each test module: each holds mapped code, and one
  process that kept them all would run out of memory maps (vm.max_map_count) before the end."""
  yield
  from lth_jax.study import programs

  programs.clear()


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


@pytest.fixture(scope='session')
def subprocess_env(tmp_path_factory):
  env = dict(os.environ)
  # Later processes reuse the first one's compiled programs: seconds, not tens of them.
  env['JAX_COMPILATION_CACHE_DIR'] = str(tmp_path_factory.mktemp('jax_cache'))
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  env['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  env['JAX_PLATFORMS'] = 'cpu'
  return env


@pytest.fixture(scope='session')
def smoke_run(fashion_mnist_dir, tmp_path_factory):
  """``smoke_run(name) -> (workdir, printed lines)``: ``lth run`` of an experiment's smoke
  variant (``tests/smoke.py``), once per session, shared by the golden check and the
  end-to-end tests (they read it; a test that changes it runs its own)."""
  from smoke import run_variant

  done = {}

  def run(name: str):
    if name not in done:
      workdir = tmp_path_factory.mktemp(f'smoke_{name}') / 'runs'
      workdir.mkdir()
      done[name] = (workdir, run_variant(name, workdir, fashion_mnist_dir))
    return done[name]

  return run


@pytest.fixture(scope='session')
def transfer_smoke(smoke_run):
  """``experiments/transfer.py``'s smoke variant: (source directory, rows of its
  transfer.csv); the target studies are beside the source."""
  from lth_jax.study import results

  workdir, _ = smoke_run('transfer')
  source = next(workdir.glob('transfer-smoke-source-??????????'))
  rows = [
    {k: int(v) if k in ('source_level', 'seeds') else float(v) for k, v in r.items()}
    for r in results.read_rows(source / 'transfer.csv')
  ]
  return source, rows

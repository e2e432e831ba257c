"""Vmapped studies equal sequential ones, compile once, and shard over devices."""

import math
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest

from experiments import lenet300
from lth_jax.core import models
from lth_jax.core import train as train_lib
from lth_jax.study import from_config, levels
from lth_jax.study.definition import RunKey, seed_keys
from lth_jax.study.store import Store
from lth_jax.training import parallel


def config_for(
  data_dir, *, parallel_mode, num_seeds=2, arms='ticket,reinit,random_prune', levels=2
):
  config = lenet300.get_config('smoke')
  config.data.data_dir = data_dir
  config.num_seeds = num_seeds
  config.arms = arms
  config.num_levels = levels
  config.num_steps = 40
  config.parallel = parallel_mode
  return config


def assert_same_results(a: Store, b: Store):
  """Same runs, identical masks, metrics equal to float tolerance at every evaluation.

  Batched and unbatched matrix products round differently, and Adam amplifies
  ulp-level differences of near-zero gradients, so metrics are compared at every
  evaluation with a tolerance rather than at the early-stop evaluation (an argmin
  that two nearly equal losses can flip).
  """
  assert [(r['seed'], r['level'], r['arm']) for r in a.summary] == [
    (r['seed'], r['level'], r['arm']) for r in b.summary
  ]
  assert len(a.curves) == len(b.curves)
  for ca, cb in zip(a.curves, b.curves, strict=True):
    assert (ca['seed'], ca['level'], ca['arm'], ca['step']) == (
      cb['seed'],
      cb['level'],
      cb['arm'],
      cb['step'],
    )
    assert ca['val_loss'] == pytest.approx(cb['val_loss'], rel=2e-2), (ca, cb)
    if math.isnan(cb['test_accuracy']):  # Evaluated only where read: at the same steps in both.
      assert math.isnan(ca['test_accuracy']), (ca, cb)
    else:
      assert ca['test_accuracy'] == pytest.approx(cb['test_accuracy'], abs=2e-2), (ca, cb)
  masks = [n for n in a.trees.trees if n.endswith('/masks')]
  assert masks and sorted(masks) == sorted(n for n in b.trees.trees if n.endswith('/masks'))
  for name in masks:  # Identical tickets, seed by seed.
    for x, y in zip(jax.tree.leaves(a.load(name)), jax.tree.leaves(b.load(name)), strict=True):
      np.testing.assert_array_equal(x, y)


@pytest.fixture(scope='module')
def sequential(fashion_mnist_dir, fashion_mnist):
  study = from_config.from_config(
    config_for(fashion_mnist_dir, parallel_mode='false'), dataset=fashion_mnist
  )
  assert not study.execution.vmapped
  return levels.train_levels(study)


def test_vmapped_equals_sequential_and_compiles_once(
  fashion_mnist_dir, fashion_mnist, sequential, compiled_names
):
  config = config_for(fashion_mnist_dir, parallel_mode='true')
  config.num_levels = 1
  study = from_config.from_config(config, dataset=fashion_mnist)
  assert study.execution.vmapped
  store = levels.train_levels(study)
  before = len(compiled_names)
  assert before > 0  # The listener sees compilations (level 0 and 1 compiled).
  study.num_levels = 2  # One more level: new masks, rewound params, same programs.
  levels.train_levels(study, store)
  assert len(store.summary) == 2 + 2 * 2 * 3  # Level 2 did run ...
  assert compiled_names[before:] == []  # ... and compiled nothing new.
  assert_same_results(store, sequential)


def test_groups_split_to_fit_memory_give_the_same_results(
  fashion_mnist_dir, fashion_mnist, sequential
):
  study = from_config.from_config(
    config_for(fashion_mnist_dir, parallel_mode='true'), dataset=fashion_mnist
  )
  study.execution.group_size = 4  # 6 runs per level: calls of 4 and 2.
  level_1 = [RunKey(seed, 1, arm) for seed in (0, 1) for arm in study.arms]
  assert [len(g) for g in levels.groups_of(study, level_1)] == [4, 2]
  assert_same_results(levels.train_levels(study), sequential)


def test_runs_per_call_limits():
  assert parallel.runs_per_call(100, None, 1) == 0  # No memory figure: one call per level.
  assert parallel.runs_per_call(100, None, 1, requested=5) == 5
  assert parallel.runs_per_call(100, 1000, 1) == 7  # 70% of 1000 bytes.
  assert parallel.runs_per_call(100, 1000, 4, requested=30) == 28  # A multiple of the devices.
  with pytest.raises(MemoryError, match='one run needs about'):
    parallel.runs_per_call(2**30, 2**29, 1)


def test_bytes_per_run_counts_state_but_not_data(fashion_mnist_dir, fashion_mnist):
  study = from_config.from_config(
    config_for(fashion_mnist_dir, parallel_mode='false'), dataset=fashion_mnist
  )
  steps, _ = train_lib.compiled(study.task, vmapped=False)
  key = jax.eval_shape(lambda: seed_keys(0).data)
  per_run = parallel.bytes_per_run(steps, study.state_like(), study.train, key, 20)
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(study.state_like()))
  assert state_bytes <= per_run < state_bytes + 50 * 2**20


SHARDED = textwrap.dedent("""
    import socket
    import jax, numpy as np
    # The multi-host entry point, as on a pod: here one process with 4 simulated devices.
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      port = s.getsockname()[1]
    jax.distributed.initialize(coordinator_address=f'127.0.0.1:{{port}}', num_processes=1, process_id=0)
    from experiments import lenet300
    from lth_jax import data
    from lth_jax.study import from_config
    from lth_jax.study import levels, starts
    assert len(jax.devices()) == 4, jax.devices()
    dataset = data.load('fashion_mnist', validation_size=5000, data_dir={data_dir!r})
    results = {{}}
    for mode in ('true', 'false'):
      config = lenet300.get_config('smoke')
      config.data.data_dir = {data_dir!r}
      config.num_seeds, config.arms, config.num_levels, config.num_steps = 3, 'ticket,reinit', 1, 40
      config.parallel = mode
      study = from_config.from_config(config, dataset=dataset)
      if mode == 'true':
        assert study.execution.sharder.multiple == 4
        placed = study.execution.sharder(np.zeros((8, 3)))
        assert len(placed.sharding.device_set) == 4
      results[mode] = levels.train_levels(study)
    a, b = results['true'], results['false']
    assert len(a.summary) == len(b.summary) == 3 + 6  # 6 runs on 4 devices: padded, none dropped.
    for ra, rb in zip(a.summary, b.summary):
      assert (ra['seed'], ra['level'], ra['arm']) == (rb['seed'], rb['level'], rb['arm'])
      assert ra['weights_remaining'] == rb['weights_remaining']
    for ca, cb in zip(a.curves, b.curves):
      assert abs(ca['val_loss'] - cb['val_loss']) < 2e-2 * cb['val_loss'], (ca, cb)
    print('sharded ok')
""")


def test_sharded_over_four_devices_equals_sequential(fashion_mnist_dir):
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
      [sys.executable, '-c', SHARDED.format(data_dir=fashion_mnist_dir)],
      env=env, cwd=root, capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'sharded ok' in out.stdout


def test_threads_give_exactly_the_sequential_results(fashion_mnist_dir, fashion_mnist, sequential):
  """Runs side by side in threads: each its own program, so the numbers are the same bits."""
  study = from_config.from_config(
    config_for(fashion_mnist_dir, parallel_mode='threads'), dataset=fashion_mnist
  )
  assert not study.execution.vmapped and study.execution.threads >= 1
  study.execution.threads = 2  # Even on a one-core machine.
  store = levels.train_levels(study)
  assert store.summary == sequential.summary
  assert [str(c) for c in store.curves] == [str(c) for c in sequential.curves]


def test_a_group_of_one_runs_the_plain_program(fashion_mnist):
  """vmap_runs: a group of one calls the one-run function on the squeezed arguments (no
  batched program) and returns vmap's shapes; larger groups are jax.vmap's."""
  seen = []

  def f(a, b):
    seen.append((a.shape, isinstance(a, jax.core.Tracer)))  # A batch tracer under vmap.
    return {'sum': a + b, 'first': a[:1]}

  a, b = np.arange(6.0).reshape(2, 3), np.float32(1.0)
  for n, batched in ((1, False), (2, True)):
    seen.clear()
    got = train_lib.vmap_runs(f, in_axes=(0, None))(a[:n], b)
    assert seen == [((3,), batched)]
    jax.tree.map(np.testing.assert_array_equal, got, jax.vmap(f, in_axes=(0, None))(a[:n], b))
  # The training loop of a group of one: one run's numbers (to float tolerance: the two
  # programs fuse differently), with the run axis.
  task = train_lib.Task(
    model=models.get_model('lenet300', num_classes=10), optimizer=optax.adam(1e-3), batch_size=20
  )
  data = train_lib.DataArrays(
    *jax.device_put((fashion_mnist.train_x[:200], fashion_mnist.train_y[:200]))
  )
  state = train_lib.initial_state(task, jax.random.key(0), (28, 28, 1))
  key = jax.random.key(3)
  plain, plain_loss = jax.jit(train_lib.train_steps, static_argnums=(0, 4))(
    task, state, data, key, 25
  )
  group, group_loss = jax.jit(train_lib.group_train_steps, static_argnums=(0, 4))(
    task, parallel.stack([state]), data, key[None], 25
  )
  np.testing.assert_allclose(group_loss, [plain_loss], rtol=1e-6)
  for x, y in zip(jax.tree.leaves(group), jax.tree.leaves(plain), strict=True):
    assert x.shape == (1, *y.shape)
    np.testing.assert_allclose(x[0], y, rtol=1e-4, atol=1e-6)

"""Several processes, one study (``lth run --coordinator_address ...``).

Two processes on this machine (one CPU device each, collectives over gloo)
must give exactly what one process with two devices gives; only the primary
process writes; SIGKILL of a process mid-level stops the launch, and the next
launch of both resumes to the same tables.
"""

from __future__ import annotations

import socket
import time

import pytest
from processes import TABLES, flags_of, kill_when, lth, progress_checkpoints

from lth_jax.study import results

KEY = {
  'num_levels': 1,
  'num_seeds': 2,
  'arms': 'ticket,reinit',
  'num_steps': 400,
  'eval_every': 20,
  'checkpoint_every': 40,
  'parallel': 'true',
}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def launch(data_dir, workdir, env, logs, tag):
  """Both processes of one launch, started together."""
  port = free_port()
  env = {**env, 'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
  args = ['run', *flags_of(data_dir, **KEY), f'--workdir={workdir}']
  return [
    lth(
      [*args, f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'],
      env,
      logs / f'{tag}-{i}.txt',
    )
    for i in (0, 1)
  ]


def run_dir_of(workdir):
  return next((p for p in workdir.iterdir() if (p / 'config.json').exists()), None)


@pytest.fixture(scope='module')
def one_process(fashion_mnist_dir, subprocess_env, tmp_path_factory):
  workdir, logs = tmp_path_factory.mktemp('one'), tmp_path_factory.mktemp('one_logs')
  env = {**subprocess_env, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  proc = lth(['run', *flags_of(fashion_mnist_dir, **KEY), f'--workdir={workdir}'], env, logs / 'a')
  assert proc.wait(timeout=300) == 0, (logs / 'a').read_text()
  return run_dir_of(workdir)


@pytest.mark.slow
def test_two_processes_equal_one_process_and_resume_after_sigkill(
  fashion_mnist_dir, subprocess_env, tmp_path_factory, one_process
):
  workdir, logs = tmp_path_factory.mktemp('two'), tmp_path_factory.mktemp('two_logs')
  primary, secondary = launch(fashion_mnist_dir, workdir, subprocess_env, logs, 'killed')
  kill_when(primary, lambda: run_dir_of(workdir) and progress_checkpoints(run_dir_of(workdir), 0))
  assert results.read_rows(run_dir_of(workdir) / 'summary.csv') == [], 'the kill came too late'
  # The other process fails at its next collective instead of waiting forever.
  deadline = time.monotonic() + 120
  while secondary.poll() is None:
    assert time.monotonic() < deadline, 'the secondary outlived the primary by 2 min'
    time.sleep(0.2)
  assert secondary.returncode != 0

  procs = launch(fashion_mnist_dir, workdir, subprocess_env, logs, 'resumed')
  for i, proc in enumerate(procs):
    assert proc.wait(timeout=300) == 0, (logs / f'resumed-{i}.txt').read_text()
  log = (logs / 'resumed-0.txt').read_text()
  assert 'resuming level_0' in log, log
  run_dir = run_dir_of(workdir)
  for table in TABLES:
    assert (run_dir / table).read_bytes() == (one_process / table).read_bytes(), table
  # Only the primary wrote: one Orbax process directory per checkpoint.
  assert not list(run_dir.rglob('ocdbt.process_1'))
  # The secondary prints nothing of the study (the primary's log is the study's).
  assert 'done: seed' not in (logs / 'resumed-1.txt').read_text()


def test_a_secondary_process_reads_the_run_directory_and_writes_nothing(tmp_path):
  import numpy as np

  from lth_jax.study import store as store_lib

  primary = store_lib.DiskStore(tmp_path, log=lambda m: None)
  primary.trees.save('seed_0/init', {'w': np.arange(3.0)})
  secondary = store_lib.Secondary(tmp_path)
  assert secondary.trees.has('seed_0/init')
  np.testing.assert_array_equal(secondary.trees.load('seed_0/init')['w'], np.arange(3.0))
  secondary.trees.save('seed_0/rewind', {'w': np.ones(2)})
  secondary.trees.save_progress('progress/level_0/x', 10, {'w': np.ones(2)})
  assert secondary.trees.has('seed_0/rewind') and not primary.trees.has('seed_0/rewind')
  assert not [p for p in (tmp_path / 'checkpoints').rglob('*') if 'rewind' in p.name]
  assert not (tmp_path / 'checkpoints' / 'progress').exists()

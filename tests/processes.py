"""Helpers for tests that run ``lth`` in subprocesses and interrupt them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from lth_jax import commands
from lth_jax.study import checkpoint, levels
from lth_jax.training import fit as fit_lib

REPO = Path(__file__).resolve().parents[1]
TABLES = ('summary.csv', 'curves.csv', 'layers.csv')


def flags_of(data_dir, **overrides):
  return ['--config=experiments/lenet300.py:smoke', f'--config.data.data_dir={data_dir}'] + [
    f'--config.{k}={v}' for k, v in overrides.items()
  ]


def progress_checkpoints(run_dir: Path, level: int) -> list[Path]:
  base = run_dir / 'checkpoints' / 'progress' / f'level_{level}'
  return sorted(p for p in base.glob('*/at_*') if checkpoint.exists(p))


def lth(args, env, log_path: Path) -> subprocess.Popen:
  code = 'import sys; from lth_jax.cli import main; sys.exit(main())'
  with open(log_path, 'w') as log:
    return subprocess.Popen(
        [sys.executable, '-c', code, *args], cwd=REPO, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
  """SIGKILLs ``proc`` as soon as ``ready()`` holds; fails if it exits first."""
  deadline = time.monotonic() + timeout
  while not ready():
    assert proc.poll() is None, 'the run ended before it could be interrupted'
    assert time.monotonic() < deadline, 'timed out waiting for a mid-level checkpoint'
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()


class Interrupt(Exception):
  """Raised inside a run by ``interrupted_then_resumed``."""


def interrupted_then_resumed(config, workdir: Path, monkeypatch, *, call: int, step: int) -> Path:
  """``lth run`` of ``config`` into ``workdir``, stopped at ``step`` of the ``call``-th training
  (``levels.fit``) as if killed, then run again to the end; returns the run directory. Fails
  when no mid-level checkpoint was there to resume from."""
  real_fit, calls = levels.fit, []

  def fit(trainer, state, data_key, *, hooks=(), **kwargs):
    calls.append(1)
    if len(calls) != call:
      return real_fit(trainer, state, data_key, hooks=hooks, **kwargs)

    def stop(step, state, curve):
      raise Interrupt

    hooks = [*hooks, fit_lib.Hook(stop, at=(step,))]
    return real_fit(trainer, state, data_key, hooks=hooks, **kwargs)

  monkeypatch.setattr(levels, 'fit', fit)
  try:
    commands.run(config, workdir, log=lambda line: None, progress=False)
  except Interrupt:
    pass
  else:
    raise AssertionError('the run was not interrupted')
  (run_dir,) = [p for p in Path(workdir).iterdir() if (p / 'config.json').exists()]
  levels_begun = range(len(list((run_dir / 'checkpoints' / 'progress').glob('level_*'))) + 1)
  assert any(progress_checkpoints(run_dir, level) for level in levels_begun), (
    'interrupted before a mid-level checkpoint'
  )
  monkeypatch.setattr(levels, 'fit', real_fit)
  commands.run(config, workdir, log=lambda line: None, progress=False)
  return run_dir

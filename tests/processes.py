"""Helpers for tests that run ``lth`` in subprocesses and interrupt them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from lth_jax.study import checkpoint

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

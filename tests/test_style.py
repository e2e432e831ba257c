"""The code keeps the project's format and lint rules (pyproject's [tool.ruff])."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ruff(*args):
  exe = shutil.which('ruff', path=str(Path(sys.executable).parent)) or shutil.which('ruff')
  if exe is None:
    pytest.skip('ruff is not installed (pip install -e .[test])')
  return subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_ruff_format_leaves_every_file_unchanged():
  out = ruff('format', '--check', '.')
  assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_lint_is_clean():
  out = ruff('check', '.')
  assert out.returncode == 0, out.stdout + out.stderr

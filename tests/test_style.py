"""The code keeps the project's format and lint rules (pyproject's [tool.ruff])."""

import ast
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


def test_each_layer_imports_only_the_layers_below_it():
  exe = shutil.which('lint-imports', path=str(Path(sys.executable).parent))
  if exe is None:
    pytest.skip('import-linter is not installed (pip install -e .[test])')
  out = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stdout + out.stderr
  assert 'KEPT' in out.stdout and 'BROKEN' not in out.stdout


# Imports inside functions are for optional dependencies only (they cost nothing until used).
OPTIONAL = ('matplotlib',)


def test_no_import_inside_a_function_but_of_optional_dependencies():
  found = []
  for path in sorted((REPO / 'lth_jax').rglob('*.py')):
    tree = ast.parse(path.read_text())
    for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
      for node in ast.walk(function):
        if isinstance(node, ast.Import):
          names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
          names = [node.module or '']
        else:
          continue
        names = [n for n in names if not n.startswith(OPTIONAL)]
        if names:
          found.append(f'{path.relative_to(REPO)}:{node.lineno} {", ".join(names)}')
  assert not found, '\n'.join(found)

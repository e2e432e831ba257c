"""Every result file of the smoke variants is byte-identical to the one the code made before.

``tests/golden/<variant>/`` holds the result tables (summary, curves, layers,
instability, interpolation, transfer) that the smoke variants wrote, each
variant run through the public ``lth run`` command with ``parallel=false``
(``tests/smoke.py``). A change that only moves code (refactors, new layers, new
arms) must leave them byte for byte as they are; a change that means to alter
results regenerates them on purpose, and says why in its commit:

    .venv/bin/python tests/test_golden.py           # rewrites tests/golden/

Floats are compared as the CSV text, which depends on XLA's arithmetic: with
other jax/jaxlib versions than ``tests/golden/versions.json`` names, or on
another CPU family, the check is skipped (with the reason), not failed.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from smoke import REPO, VARIANTS, run_variant

GOLDEN = REPO / 'tests' / 'golden'
TABLES = (
  'summary.csv', 'curves.csv', 'layers.csv', 'instability.csv', 'interpolation.csv',
  'transfer.csv',
)  # fmt: skip
SLOW = ('conv',)  # Checked with -m slow.


def versions() -> dict:
  import jax
  import jaxlib

  return {
    'jax': jax.__version__,
    'jaxlib': jaxlib.__version__,
    'machine': platform.machine(),
    'python': platform.python_version_tuple()[0] + '.' + platform.python_version_tuple()[1],
  }


def tables_of(workdir: Path) -> dict[str, bytes]:
  """{path relative to ``workdir``: bytes} of every result table under it.

  A transfer target's directory name hashes the path of its ticket files (under
  the temporary workdir): its hash is left out of the key.
  """
  found = {}
  for path in sorted(workdir.rglob('*.csv')):
    if path.name in TABLES and 'report' not in path.parts:
      rel = path.relative_to(workdir).as_posix()
      found[re.sub(r'-level(\d+)-[0-9a-f]{10}/', r'-level\1/', rel)] = path.read_bytes()
  return found


@pytest.fixture(scope='module')
def recorded():
  path = GOLDEN / 'versions.json'
  if not path.exists():
    pytest.skip('no golden results recorded: run tests/test_golden.py')
  saved = json.loads(path.read_text())
  if saved != versions():
    pytest.skip(f'golden results were made with {saved}; this is {versions()}')
  return saved


@pytest.mark.parametrize(
  'name', [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in VARIANTS]
)
def test_smoke_results_are_byte_identical(name, recorded, smoke_run):
  workdir, _ = smoke_run(name)
  got = tables_of(workdir)
  want = {
    p.relative_to(GOLDEN / name).as_posix(): p.read_bytes() for p in (GOLDEN / name).rglob('*.csv')
  }
  assert sorted(got) == sorted(want)
  for path, content in want.items():
    assert got[path] == content, f'{name}: {path} differs from tests/golden/{name}/{path}'


def main() -> None:
  sys.path.insert(0, str(REPO))
  from lth_jax import data

  with tempfile.TemporaryDirectory() as tmp:
    data_dir = str(Path(tmp) / 'tfds')
    data.load('fashion_mnist', validation_size=5000, data_dir=data_dir)
    shutil.rmtree(GOLDEN, ignore_errors=True)
    for name in VARIANTS:
      workdir = Path(tmp) / name / 'runs'
      workdir.mkdir(parents=True)
      run_variant(name, workdir, data_dir)
      for rel, content in tables_of(workdir).items():
        out = GOLDEN / name / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(content)
      print(f'{name}: {len(tables_of(workdir))} tables')
  (GOLDEN / 'versions.json').write_text(json.dumps(versions(), indent=1) + '\n')


if __name__ == '__main__':
  main()

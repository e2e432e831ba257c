"""The experiments' smoke variants run as a user runs them: ``lth run`` with the recipe file.

``run_variant`` is what the ``smoke_run`` fixture (tests/conftest.py) runs once per test
session; the golden check (tests/test_golden.py) and the end-to-end tests read its output.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# name -> (experiment module, variant).
VARIANTS = {
  'lenet300': ('lenet300', 'smoke'),
  'lmc': ('lmc', 'smoke'),
  'prune_early': ('prune_early', 'smoke'),
  'init_schemes': ('init_schemes', 'smoke'),
  'transfer': ('transfer', 'smoke'),
  'conv': ('conv', 'smoke'),
  'structured': ('structured', 'smoke'),
}


def run_variant(name: str, workdir: Path, data_dir: str) -> list[str]:
  """Runs the smoke variant ``name`` into ``workdir`` with the ``lth`` command (in this
  process, ``parallel=false``); returns the lines it printed."""
  from lth_jax import cli

  module, variant = VARIANTS[name]
  config = REPO / 'experiments' / f'{module}.py'
  printed = io.StringIO()
  try:
    with contextlib.redirect_stdout(printed), contextlib.chdir(workdir.parent):
      cli.main([
        'lth', 'run', f'--config={config}:{variant}', f'--workdir={workdir}',
        '--config.parallel=false', f'--config.data.data_dir={data_dir}',
      ])  # fmt: skip
  except SystemExit as e:  # absl's app.run ends with sys.exit, 0 when all went well.
    if e.code not in (0, None):
      raise
  return printed.getvalue().splitlines()

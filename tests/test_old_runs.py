"""Run directories written by earlier code resume and grow with today's.

``tests/fixtures/made_before_layers/`` holds two directories made by the code before
the package was split into layers (commit 4ef837f): ``lth run`` of
``experiments/lenet300.py:smoke`` with one level and the ticket arm only, and
``lth_jax.run_imp(tiny_study(num_levels=1, arms='ticket'), run_dir=...)``. Both are
copied, then grown to two levels with the reinit arm: only the new runs train,
and the tables equal those of a study run from scratch today.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fake_data import tiny_study
from smoke import run_variant
from test_golden import GOLDEN

import lth_jax
from lth_jax.study import results

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'made_before_layers'
LENET = 'lenet300-smoke-8f7c7a3359'


def test_a_config_run_directory_made_before_grows_into_todays_study(
  fashion_mnist_dir, tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  workdir = tmp_path / 'runs'
  shutil.copytree(FIXTURES / LENET, workdir / LENET)
  before = results.read_rows(workdir / LENET / results.SUMMARY)
  assert [results.run_key(r) for r in before] == [(0, 0, 'ticket'), (0, 1, 'ticket')]
  run_variant('lenet300', workdir, fashion_mnist_dir)  # Two levels, ticket and reinit.
  trained = {results.run_key(r) for r in results.read_rows(workdir / LENET / results.TIMINGS)}
  assert trained == {(0, 1, 'reinit'), (0, 2, 'ticket'), (0, 2, 'reinit')}  # Only the new runs.
  for table in ('summary.csv', 'curves.csv', 'layers.csv'):
    golden = GOLDEN / 'lenet300' / LENET / table
    assert (workdir / LENET / table).read_bytes() == golden.read_bytes(), table


def test_an_api_run_directory_made_before_grows_into_todays_study(tmp_path):
  run_dir = tmp_path / 'tiny-api'
  shutil.copytree(FIXTURES / 'tiny-api', run_dir)
  grown = lth_jax.run_imp(tiny_study(parallel='false'), run_dir=run_dir, log=None, progress=False)
  trained = {results.run_key(r) for r in results.read_rows(run_dir / results.TIMINGS)}
  assert trained == {(0, 1, 'reinit'), (0, 2, 'ticket'), (0, 2, 'reinit')}
  fresh = lth_jax.run_imp(tiny_study(parallel='false'), log=None, progress=False)
  key = lambda r: results.run_key(r)
  as_text = lambda rows: sorted((key(r), {k: str(v) for k, v in r.items()}) for r in rows)
  assert as_text(grown.summary) == as_text(fresh.summary)

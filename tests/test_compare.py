"""lth compare: two tiny runs in one report, its tables equal to the runs' summary means."""

import math

import matplotlib.image
import numpy as np
import pytest
from fake_data import tiny_study

import lth_jax
from lth_jax import cli
from lth_jax.report import compare
from lth_jax.study import results

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
STEMS = ('accuracy_vs_remaining', 'early_stop_vs_remaining')


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
  """Iterative and one-shot-like (a higher rate, one level) tiny studies of two seeds each."""
  root = tmp_path_factory.mktemp('compare')
  pruning = {'output_layer': 'head', 'rate_dense': 0.8, 'rate_output': 0.5}
  short = dict(seeds=2, num_steps=20, eval_every=10, num_levels=1)
  studies = {
    'iterative': tiny_study(**short),
    'oneshot': tiny_study(**short, arms='ticket', pruning=pruning),
  }
  for name, study in studies.items():
    lth_jax.run_imp(study, run_dir=root / name, log=None)
  return root / 'iterative', root / 'oneshot'


def _lth_compare(*args):
  with pytest.raises(SystemExit) as exit_:
    cli.main(['lth', 'compare', *map(str, args)])
  return exit_.value.code


def _hand_means(run_dir, column):
  """{(arm, level): (mean, sample std, n)} straight from summary.csv, with numpy."""
  groups = {}
  for row in results.read_rows(run_dir / 'summary.csv'):
    if not results.is_diverged(row):
      groups.setdefault((row['arm'], int(row['level'])), []).append(float(row[column]))
  return {
    k: (np.mean(v), np.std(v, ddof=1) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()
  }


def test_compare_writes_figures_and_tables(two_runs, tmp_path, capsys):
  out = tmp_path / 'cmp'
  assert _lth_compare(*two_runs, '--labels=iter,one', f'--output={out}') in (None, 0)
  assert capsys.readouterr().out.strip().endswith('index.html')
  md = (out / 'report.md').read_text()
  html = (out / 'index.html').read_text()
  for stem in STEMS:
    png = out / f'{stem}.png'
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert float(matplotlib.image.imread(png)[..., :3].std()) > 0.02, f'{png} looks blank'
    assert f'({stem}.png)' in md and f'src="{stem}.png"' in html
  for metric in compare.METRICS:
    rows = results.read_rows(out / f'{metric.name}.csv')
    for label, run_dir in zip(('iter', 'one'), two_runs):
      expected = _hand_means(run_dir, metric.column)
      got = {(r['arm'], int(r['level'])): r for r in rows if r['run'] == label}
      assert set(got) == set(expected)
      for key, (mean, std, n) in expected.items():
        assert float(got[key]['mean']) == pytest.approx(mean, rel=1e-12)
        assert float(got[key]['std']) == pytest.approx(std, rel=1e-9, abs=1e-12)
        assert int(got[key]['n_seeds']) == n == 2
  # One table row per (run, arm, level) in each metric's Markdown table, and one in 'Runs'.
  rows_per_table = len(_hand_means(two_runs[0], 'early_stop_step'))
  assert sum(line.startswith('| iter |') for line in md.splitlines()) == 2 * rows_per_table + 1
  # The runs' settings (study.json of run_imp) differ in the pruning rates only.
  settings = md.split('Settings on which the runs differ')[1].split('Means and')[0]
  assert '| plan[1].rate | 0.25 | 0.5 |' in settings and '| plan[3].rate | 0.5 | 0.8 |' in settings


def test_compare_default_labels_are_directory_names(two_runs, tmp_path):
  index = compare.write_comparison(two_runs, output=tmp_path / 'out')
  rows = results.read_rows(index.parent / 'accuracy_vs_remaining.csv')
  assert {r['run'] for r in rows} == {'iterative', 'oneshot'}
  assert all(math.isfinite(float(r['mean'])) for r in rows)


def test_compare_needs_two_runs(two_runs, tmp_path, capsys):
  assert _lth_compare(two_runs[0], f'--output={tmp_path}') == 2
  assert 'at least 2 RUN_DIRs, got 1' in capsys.readouterr().err
  with pytest.raises(lth_jax.ConfigError, match='at least 2 run directories'):
    compare.write_comparison(two_runs[:1], output=tmp_path)


def test_compare_needs_output(two_runs, capsys):
  assert _lth_compare(*two_runs) == 2
  assert '--output=DIR' in capsys.readouterr().err


def test_compare_refuses_a_directory_without_summary(two_runs, tmp_path, capsys):
  assert _lth_compare(two_runs[0], tmp_path, f'--output={tmp_path / "out"}') == 1
  err = capsys.readouterr().err
  assert err.startswith('lth: error:') and f'{tmp_path} has no summary.csv' in err
  (tmp_path / 'summary.csv').write_text(','.join(results.SUMMARY_COLUMNS) + '\n')
  assert _lth_compare(two_runs[0], tmp_path, f'--output={tmp_path / "out"}') == 1
  assert f'{tmp_path} has an empty summary.csv' in capsys.readouterr().err
  assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('labels', ['a', 'a,b,c', 'a,a'])
def test_compare_refuses_wrong_labels(two_runs, tmp_path, capsys, labels):
  assert _lth_compare(*two_runs, f'--labels={labels}', f'--output={tmp_path / "out"}') == 1
  assert '--labels' in capsys.readouterr().err


def test_compare_help(capsys):
  assert cli.main(['lth', 'compare', '--help']) is None
  out = capsys.readouterr().out
  assert out.startswith('usage: lth compare') and '--labels' in out and '--output' in out
  cli.main(['lth', '--help'])
  assert 'lth compare' in capsys.readouterr().out

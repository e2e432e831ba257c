"""Tests of lth_jax.report on synthetic run directories."""

import csv
import json
import re
import shutil

import matplotlib.image
import numpy as np
import pytest

from experiments.lenet300 import PAPER
from lth_jax import report
from lth_jax.report import figures
from lth_jax.study import checkpoint

SEEDS = (0, 1)
LEVELS = 4
ARMS = ('ticket', 'reinit')
SHAPES = {'dense_0': (20, 16), 'output': (16, 4)}
RATES = {'dense_0': 0.2, 'output': 0.1}
STEPS = (0, 100, 200, 300, 400)
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# The diverged training: its nonsense accuracy must never reach a mean.
DIVERGED = (1, 2, 'reinit')


def _write_csv(path, rows):
  with path.open('w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def _params(rng):
  return {
    name: {
      'kernel': rng.normal(0, 0.3, shape).astype(np.float32),
      'bias': np.zeros(shape[1], np.float32),
    }
    for name, shape in SHAPES.items()
  }


def _masks(params, level, rng):
  """Keeps the largest-magnitude (noisy) weights: survivors avoid zero, like IMP."""
  out = {}
  for name, layer in params.items():
    w = layer['kernel']
    keep = int(round(w.size * (1 - RATES[name]) ** level))
    score = np.abs(w) + rng.normal(0, 0.05, w.shape)
    threshold = np.sort(score, axis=None)[::-1][keep - 1]
    out[name] = {'kernel': score >= threshold, 'bias': np.ones(w.shape[1], bool)}
  return out


def _remaining(masks):
  kept = sum(int(m['kernel'].sum()) for m in masks.values())
  return kept / sum(int(np.prod(s)) for s in SHAPES.values())


def _accuracy(seed, level, arm):
  if (seed, level, arm) == DIVERGED:
    return 0.1
  return 0.9 + 0.01 * level * (1 if arm == 'ticket' else -1) + 0.002 * seed


def _rows(seed, level, arm, masks):
  acc = _accuracy(seed, level, arm)
  diverged = int((seed, level, arm) == DIVERGED)
  summary = dict(
    seed=seed,
    level=level,
    arm=arm,
    weights_remaining=_remaining(masks),
    early_stop_step=300 - 50 * level * (arm == 'ticket'),
    val_loss_at_early_stop=0.3,
    val_accuracy_at_early_stop=acc,
    test_accuracy_at_early_stop=acc,
    train_accuracy_at_early_stop=min(1.0, acc + 0.03),
    final_test_accuracy=acc,
    final_step=STEPS[-1],
    diverged=diverged,
    diverged_step=200 if diverged else '',
    wall_seconds=1.5,
  )
  curves = [
    dict(
      seed=seed,
      level=level,
      arm=arm,
      step=step,
      train_loss=1 / (1 + step),
      train_accuracy=acc * (1 - np.exp(-step / 100)),
      val_loss=1 / (1 + step),
      val_accuracy=acc,
      test_loss=1 / (1 + step),
      test_accuracy=acc * (1 - 0.5 * np.exp(-step / 100)),
    )
    for step in STEPS
  ]
  layers = [
    dict(
      seed=seed,
      level=level,
      arm=arm,
      layer=name,
      kept=int(m['kernel'].sum()),
      total=m['kernel'].size,
      fraction=m['kernel'].mean(),
    )
    for name, m in masks.items()
  ]
  return summary, curves, layers


def make_run(run_dir, seeds=SEEDS, levels=LEVELS, arms=ARMS):
  """A finished synthetic run: CSVs, config and Orbax checkpoints of θ0 and the masks."""
  summary, curves, layers = [], [], []
  for seed in seeds:
    rng = np.random.default_rng(seed)
    params = _params(rng)
    checkpoint.save(
      run_dir / 'checkpoints' / f'seed_{seed}' / 'init', {'params': params, 'model_state': {}}
    )
    for level in range(levels):
      masks = _masks(params, level, rng)
      checkpoint.save(run_dir / 'checkpoints' / f'seed_{seed}' / f'level_{level}' / 'masks', masks)
      for arm in arms if level else ('ticket',):
        s, c, lay = _rows(seed, level, arm, masks)
        summary.append(s)
        curves.extend(c)
        layers.extend(lay)
  _write_csv(run_dir / 'summary.csv', summary)
  _write_csv(run_dir / 'curves.csv', curves)
  _write_csv(run_dir / 'layers.csv', layers)
  config = {
    'name': 'synthetic',
    'model': {'name': 'lenet300'},
    'data': {'name': 'mnist'},
    'num_levels': levels,
    'rewind_step': 0,
  }
  (run_dir / 'config.json').write_text(json.dumps(config))
  # What `lth run` keeps of a recipe's PAPER when it fits the run's model and data.
  (run_dir / 'reference.json').write_text(json.dumps(PAPER))
  return run_dir


@pytest.fixture(scope='module')
def template(tmp_path_factory):
  return make_run(tmp_path_factory.mktemp('run'))


@pytest.fixture
def run_dir(template, tmp_path):
  return shutil.copytree(template, tmp_path / 'run')


@pytest.fixture(scope='module')
def full_report(template, tmp_path_factory):
  """index.html of the complete synthetic run (written once; tests only read it)."""
  return report.write_report(shutil.copytree(template, tmp_path_factory.mktemp('full') / 'run'))


def _images(index):
  return re.findall(r'<img src="([^"]+)"', index.read_text())


def _check_png(path):
  assert path.read_bytes()[:8] == PNG_SIGNATURE, path
  pixels = matplotlib.image.imread(path)
  assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100, path
  assert float(pixels[..., :3].std()) > 0.02, f'{path} looks blank'


def test_full_report(full_report):
  index = full_report
  assert index.name == 'index.html' and index.parent.name == 'report'
  assert (index.parent / 'report.md').is_file()
  images = _images(index)
  assert sorted(images) == sorted(report.FIGURE_NAMES)
  for name in images:
    _check_png(index.parent / name)
  text = index.read_text()
  assert 'could not be drawn' not in text
  assert 'Paper reference' in text
  md = (index.parent / 'report.md').read_text()
  assert all(f'({name})' in md for name in images)


def _md_row(md, prefix):
  row = next(line for line in md.splitlines() if line.startswith(prefix))
  return [c.strip() for c in row.strip('|').split('|')]


def test_diverged_row_excluded_from_means(full_report):
  md = (full_report.parent / 'report.md').read_text()
  # Level 2 reinit: only seed 0 counts, so the mean is its accuracy and n = 1, 1 diverged.
  cells = _md_row(md, '| 2 | random reinit |')
  assert cells[3] == f'{100 * _accuracy(0, 2, "reinit"):.2f}'
  assert cells[-2:] == ['1', '1']
  # Level 2 ticket: both seeds, mean ± sample std.
  values = [100 * _accuracy(s, 2, 'ticket') for s in SEEDS]
  cells = _md_row(md, '| 2 | winning ticket')
  assert cells[3] == f'{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}'
  assert cells[-2:] == ['2', '0']


def test_aggregate_counts_diverged(run_dir):
  stats = report.aggregate(report.read_csv(run_dir / 'summary.csv'))
  reinit = next(s for s in stats if (s.level, s.arm) == (2, 'reinit'))
  assert (reinit.n, reinit.n_diverged, reinit.seeds) == (1, 1, (0,))
  assert reinit.test_acc == pytest.approx((_accuracy(0, 2, 'reinit'), 0.0))


def test_jaccard():
  a = np.array([[True, False], [True, True]])
  assert report.jaccard(a, a) == 1.0
  assert report.jaccard(a, ~a) == 0.0
  assert report.jaccard(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(1 / 3)
  assert report.mean_pairwise_jaccard([a, a, a]) == (1.0, 0.0, 3)
  assert report.random_jaccard(1.0) == 1.0
  assert report.random_jaccard(0.5) == pytest.approx(1 / 3)


def test_random_masks_overlap_like_independent_masks():
  rng = np.random.default_rng(0)
  d = 0.2
  masks = [rng.random(200_000) < d for _ in range(3)]
  mean, _, pairs = report.mean_pairwise_jaccard(masks)
  assert pairs == 3
  assert mean == pytest.approx(report.random_jaccard(d), abs=0.005)


def test_select_curve_levels_finds_paper_levels():
  remaining = {k: (265_200 * 0.8**k + 1_000 * 0.9**k) / 266_200 for k in range(17)}
  assert report.select_curve_levels(remaining) == [0, 3, 7, 12]
  assert report.select_curve_levels({0: 1.0, 1: 0.8}) == [0, 1]
  assert len(report.select_curve_levels({k: 0.9**k for k in range(30)})) == 4


def test_pct_label():
  assert [report.pct_label(x) for x in (1.0, 0.513, 0.0703, 0.0042)] == [
    '100',
    '51.3',
    '7.0',
    '0.42',
  ]


def _keep_rows(run_dir, keep):
  """Rewrites the run's CSV files with only the rows for which ``keep(row)`` is true."""
  for name in ('summary.csv', 'curves.csv', 'layers.csv'):
    with (run_dir / name).open() as f:
      _write_csv(run_dir / name, [r for r in csv.DictReader(f) if keep(r)])


def test_only_level_zero_of_one_seed(run_dir):
  """The first finished level of a single-seed run: dense network only."""
  _keep_rows(run_dir, lambda r: r['level'] == '0' and r['seed'] == '0')
  index = report.write_report(run_dir)
  text = index.read_text()
  assert 'could not be drawn' not in text
  assert 'Only one seed' in text
  images = _images(index)
  assert 'accuracy_vs_remaining.png' in images and 'mask_overlap.png' not in images
  for name in images:
    _check_png(index.parent / name)


def test_missing_checkpoints(run_dir):
  shutil.rmtree(run_dir / 'checkpoints')
  index = report.write_report(run_dir)
  text = index.read_text()
  assert 'No θ0 checkpoint' in text and 'mask checkpoints' in text
  images = _images(index)
  assert 'init_weight_histograms.png' not in images and 'mask_overlap.png' not in images
  assert not (index.parent / 'mask_overlap.png').exists()
  for name in images:
    _check_png(index.parent / name)


def test_partial_run_and_curve_levels(run_dir):
  """A level-3 mask missing for one seed, the level-3 reinit rows missing, levels chosen."""
  shutil.rmtree(run_dir / 'checkpoints' / 'seed_1' / 'level_3')
  _keep_rows(run_dir, lambda r: (r['level'], r['arm']) != ('3', 'reinit'))
  index = report.write_report(run_dir, curve_levels=[0, 2, 3])
  assert 'could not be drawn' not in index.read_text()
  for name in _images(index):
    _check_png(index.parent / name)
  md = (index.parent / 'report.md').read_text()
  table = md.split('Table 3.')[1].split('Table 4.')[0]
  rows = [_md_row(line, '|') for line in table.splitlines() if re.match(r'\| \d', line)]
  # Unfinished (level-3 reinit) and diverged runs drop out of the curve means, never the level.
  assert [(r[0], r[2]) for r in rows] == [
    ('0', 'ticket'),
    ('2', 'ticket'),
    ('2', 'reinit'),
    ('3', 'ticket'),
  ]


def test_empty_directory(tmp_path):
  index = report.write_report(tmp_path)
  assert index.is_file() and _images(index) == []
  assert 'summary.csv is missing' in index.read_text()
  assert (tmp_path / 'report' / 'report.md').is_file()


def test_remaining_axis_labels_never_crowd():
  """Two runs of nearly the same sparsity share a label; an IMP schedule keeps every label
  up to 12; the densest and the sparsest are always labelled."""
  assert figures.remaining_ticks([1, 0.513, 0.49, 0.484, 0.243, 0.24, 0.1]) == [1, 0.484, 0.24, 0.1]
  schedule = [round(0.8**k, 6) for k in range(9)]
  assert figures.remaining_ticks(schedule) == schedule
  long = [round(0.8**k, 6) for k in range(17)]
  ticks = figures.remaining_ticks(long)
  assert ticks[0] == 1 and ticks[-1] == long[-1] and len(ticks) <= 12
  gaps = np.diff(np.log(ticks[::-1]))
  assert gaps.min() >= np.log(1 / long[-1]) / 12 * 0.999
  assert figures.remaining_ticks([0.5]) == [0.5] and figures.remaining_ticks([]) == []

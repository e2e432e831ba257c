"""The report package's seams: levels counted as the run header counts them, layers in natural
order, the paper's numbers from the recipe, sections that fail alone, and the data errors'
advice for both command-line and library users."""

import csv
import json

import numpy as np
import pytest
from fake_data import tiny_study

from experiments.lenet300 import PAPER
from lth_jax import data
from lth_jax.report import Doc, layer_table, load_run, prunable_leaves, write_report
from lth_jax.report import sections as report_sections
from lth_jax.report.references import fits, paper_reference
from lth_jax.report.write import SECTIONS
from lth_jax.study import levels, results


def _write(path, rows):
  with path.open('w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def _summary_row(seed, level, arm, accuracy):
  return dict(seed=seed, level=level, arm=arm, weights_remaining=0.8**level,
              early_stop_step=100, test_accuracy_at_early_stop=accuracy,
              train_accuracy_at_early_stop=accuracy, final_test_accuracy=accuracy,
              diverged=0)  # fmt: skip


@pytest.fixture
def run_dir(tmp_path):
  """Two pruning levels (num_levels=2) of one seed, LeNet on Fashion-MNIST, no checkpoints."""
  config = {'name': 'tiny', 'model': {'name': 'lenet300'}, 'data': {'name': 'fashion_mnist'},
            'num_levels': 2, 'rewind_step': 0}  # fmt: skip
  (tmp_path / 'config.json').write_text(json.dumps(config))
  (tmp_path / 'reference.json').write_text(json.dumps(PAPER))  # Kept by `lth run`.
  rows = [_summary_row(0, 0, 'ticket', 0.85)]
  rows += [_summary_row(0, lv, arm, 0.8) for lv in (1, 2) for arm in ('ticket', 'reinit')]
  _write(tmp_path / 'summary.csv', rows)
  return tmp_path


def _header_rows(run):
  doc = Doc()
  report_sections.section_header(run, doc)
  table = next(b for b in doc.blocks if b[0] == 'table')
  return dict(table[2]), doc


def test_report_counts_pruning_levels_as_the_run_header_does(run_dir):
  rows, _ = _header_rows(load_run(run_dir))
  done = rows['Pruning levels done']
  assert done.startswith('2 of 2 (levels 0–2')  # Not "3 (0–2) of 2".
  header = levels.describe(tiny_study(num_levels=2))
  assert 'the dense network and 2 pruning levels' in header


def test_paper_reference_comes_from_the_recipe(run_dir, tmp_path_factory):
  assert paper_reference(run_dir) == json.loads(json.dumps(PAPER))  # As JSON keeps it.
  assert paper_reference(tmp_path_factory.mktemp('none')) is None
  assert fits(PAPER, {'model': {'name': 'lenet300'}, 'data': {'name': 'mnist'}})
  assert not fits(PAPER, {'model': {'name': 'vgg19'}, 'data': {'name': 'cifar10'}})
  _, doc = _header_rows(load_run(run_dir))
  assert ('ul', list(PAPER['findings'])) in doc.blocks
  assert ('note', PAPER['notes']['fashion']) in doc.blocks  # A Fashion-MNIST run.


def test_layers_sort_naturally(tmp_path):
  names = ['conv_10', 'conv_2', 'conv_1', 'dense_0']
  rows = [
    dict(seed=0, level=1, arm='ticket', layer=n, kept=1, total=2, fraction=0.5) for n in names
  ]
  _write(tmp_path / 'layers.csv', rows)
  order, _ = layer_table(load_run(tmp_path).layers)
  assert order == ['conv_1', 'conv_2', 'conv_10', 'dense_0']
  tree = {n: {'kernel': np.ones((3, 3, 1, 2)), 'bias': np.ones(2)} for n in names}
  assert list(prunable_leaves(tree)) == ['conv_1', 'conv_2', 'conv_10', 'dense_0']


def test_a_failing_section_costs_only_itself(run_dir):
  _write(run_dir / 'instability.csv', [dict(level=1, instability=0.25)])

  def section_instability(run, doc):
    table = run.table('instability.csv')
    doc.heading('Instability')
    doc.table(['Level', 'Instability'], zip(table['level'].astype(int), table['instability']))

  def section_broken(run, doc):
    raise KeyError('no such column')

  extra = [('broken', section_broken), ('instability', section_instability)]
  index = write_report(run_dir, sections=[*SECTIONS, *extra])
  md = (index.parent / 'report.md').read_text()
  assert 'Section "broken" could not be drawn: KeyError' in md
  assert '## Instability' in md and '| 1 | 0.25 |' in md
  assert '(accuracy_vs_remaining.png)' in md  # The built-in sections are still drawn.


def test_missing_files_error_names_the_config_key_and_the_argument(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(data.DataError) as err:
    data.load('mnist', validation_size=5, data_dir=str(tmp_path / 'tfds'),
              manual_dir=str(empty), download=False)  # fmt: skip
  message = str(err.value)
  assert '--config.data.download=true' in message and 'download=True' in message
  assert '--config.data.manual_dir=DIR' in message and 'call load(' not in message


def test_summary_means_use_the_sample_std(run_dir):
  rows = [_summary_row(s, 0, 'ticket', acc) for s, acc in enumerate((0.8, 0.9, 1.0))]
  _write(run_dir / 'summary.csv', rows)
  (dense,) = load_run(run_dir).stats
  assert dense.test_acc == pytest.approx((0.9, 0.1))  # ddof=1: sqrt(0.02 / 2).
  assert dense.test_acc == pytest.approx(results.mean_std([0.8, 0.9, 1.0]))

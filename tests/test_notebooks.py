"""The notebooks: committed without outputs, and they run top to bottom in smoke mode."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / 'notebooks'
NAMES = ('01_walkthrough.ipynb', '02_explore_run.ipynb', '03_your_own_model.ipynb')
CELL_TIMEOUT = 300  # Seconds per cell.


def _read(name):
  return nbformat.read(NOTEBOOKS / name, as_version=4)


@pytest.mark.parametrize('name', NAMES)
def test_notebook_is_stripped(name):
  nb = _read(name)
  for i, cell in enumerate(nb.cells):
    if cell.cell_type != 'code':
      continue
    assert cell.outputs == [], f'{name}: cell {i} has outputs; clear them before committing'
    assert cell.execution_count is None, f'{name}: cell {i} has an execution count'
    assert 'execution' not in cell.metadata, f'{name}: cell {i} has execution timings'


@pytest.mark.parametrize('name', NAMES)
def test_notebook_has_parameters_cell(name):
  tagged = [c for c in _read(name).cells if 'parameters' in c.metadata.get('tags', [])]
  assert len(tagged) == 1, f'{name}: expected one cell tagged "parameters"'


def _execute(name, tmp_path):
  from nbclient import NotebookClient

  nb = _read(name)
  client = NotebookClient(
    nb, timeout=CELL_TIMEOUT, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}
  )
  client.execute()  # Raises CellExecutionError, with the traceback, if a cell fails.
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  text = ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
  images = sum('image/png' in o.get('data', {}) for o in outputs)
  return text, images


@pytest.fixture
def smoke_env(monkeypatch, fashion_mnist_dir, tmp_path):
  """The kernel inherits the environment: tiny settings and the prepared data."""
  monkeypatch.setenv('TMPDIR', str(tmp_path))  # Where 02 puts the study it runs itself.
  monkeypatch.setenv('LTH_NOTEBOOK_SMOKE', '1')
  monkeypatch.setenv('LTH_DATA_DIR', fashion_mnist_dir)
  monkeypatch.delenv('LTH_RUN_DIR', raising=False)
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')


def test_walkthrough_runs(smoke_env, tmp_path):
  text, images = _execute('01_walkthrough.ipynb', tmp_path)
  assert 'comparison table' in text
  for arm in ('dense', 'ticket', 'reinit'):
    assert f'\n{arm} ' in text, f'no {arm} row in the comparison table'
  assert 'every kept weight equals θk' in text
  assert 'every pruned weight is still exactly 0' in text
  assert images >= 3  # Curves, weights per layer, initial weights.


def test_explore_run_runs(smoke_env, tmp_path):
  # Without LTH_RUN_DIR the notebook runs the smoke study itself (through lth_jax.commands.run).
  text, images = _execute('02_explore_run.ipynb', tmp_path)
  assert 'summary of lenet300-smoke-' in text
  assert 'masks are nested' in text
  assert 'report: ' in text
  assert images >= 4 + 1  # Its own four figures and at least one of the report's.


def test_your_own_model_runs(smoke_env, tmp_path):
  text, images = _execute('03_your_own_model.ipynb', tmp_path)
  assert (
    'classifier  classifier/kernel' in text and 'output' in text
  )  # The plan, with the named head.
  assert 'without output_layer: cannot tell which layer is the output layer' in text
  assert '7 runs now' in text  # Dense + 2 levels x 2 arms, grown by one level (2 more runs).
  assert images >= 1

"""The ``lth`` command end to end: help, errors, run on the smoke config, ls, report."""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lth_jax import cli

REPO = Path(__file__).resolve().parent.parent
SMOKE_CONFIG = f'--config={REPO / "experiments" / "lenet300.py"}:smoke'
COMMANDS = ('run', 'resume', 'report', 'ls')
PROMISED_COLUMNS = (
    'seed', 'level', 'arm', 'weights_remaining', 'early_stop_step', 'val_loss_at_early_stop',
    'test_accuracy_at_early_stop', 'final_test_accuracy',
)  # fmt: skip
# What a tqdm bar draws: "47%|████▋     | 28/60 [00:01<00:01, 20.1it/s]".
BAR_MARKS = ('%|', 'it/s]', 's/it]', '\r')


def _lth(*args, cwd=None, timeout=600):
  exe = Path(sys.executable).with_name('lth')
  command = [str(exe)] if exe.exists() else [shutil.which('lth')]
  return subprocess.run(
      command + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
  )  # fmt: skip


# Help, in-process: cheap, and the parsing is the same code the console script runs.
def test_top_level_help(capsys):
  assert cli.main(['lth', '--help']) is None
  out = capsys.readouterr().out
  for command in COMMANDS:
    assert f'lth {command}' in out
  assert 'lth COMMAND --help' in out


@pytest.mark.parametrize('command', COMMANDS)
@pytest.mark.parametrize('form', ['flag_after', 'short_flag', 'help_command'])
def test_command_help(capsys, command, form):
  args = {
    'flag_after': [command, '--help'],
    'short_flag': ['-h', command],
    'help_command': ['help', command],
  }[form]
  assert cli.main(['lth', *args]) is None
  out = capsys.readouterr().out
  assert out.startswith(f'usage: lth {command}')
  assert len(out.splitlines()) >= 4  # A description, not just the usage line.


def test_run_help_lists_its_options(capsys):
  cli.main(['lth', 'run', SMOKE_CONFIG, '--help'])
  out = capsys.readouterr().out
  for option in ('--config=', '--config.KEY=VALUE', '--workdir='):
    assert option in out


# The console script, as a user runs it.
def test_console_script_help():
  result = _lth('--help')
  assert result.returncode == 0, result.stderr
  assert 'lth run' in result.stdout and 'lth ls' in result.stdout
  result = _lth('run', '--help')
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith('usage: lth run')


@pytest.mark.parametrize(
    'args, message',
    [
        (['frobnicate'], "unknown command 'frobnicate'"),
        ([], 'no command given'),
        (['resume'], 'lth resume takes one RUN_DIR'),
        (['run'], 'lth run needs --config'),
    ],
)  # fmt: skip
def test_usage_errors(args, message):
  result = _lth(*args)
  assert result.returncode == 2
  assert message in result.stderr
  assert 'usage' in result.stderr.lower()
  assert 'Traceback' not in result.stderr


def test_config_error_is_one_line(tmp_path):
  result = _lth('run', SMOKE_CONFIG, f'--workdir={tmp_path}', '--config.num_steps=0', cwd=tmp_path)
  assert result.returncode == 1
  assert 'lth: error: config.num_steps=0 is not allowed' in result.stderr
  assert 'Traceback' not in result.stderr
  assert not list(tmp_path.iterdir())  # Validated before anything is written.


# One smoke study for the whole module.
@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory, fashion_mnist_dir):
  workdir = tmp_path_factory.mktemp('lth_cli')
  result = _lth(
      'run', SMOKE_CONFIG, '--workdir=runs', f'--config.data.data_dir={fashion_mnist_dir}',
      cwd=workdir,
  )  # fmt: skip
  assert result.returncode == 0, result.stderr
  (run_dir,) = (workdir / 'runs').iterdir()
  return result, workdir / 'runs', run_dir


def test_run_prints_level_table(smoke_run):
  result, _, run_dir = smoke_run
  lines = result.stdout.splitlines()
  header = next(i for i, line in enumerate(lines) if line.split()[:2] == ['level', 'remaining'])
  rows = [line.split() for line in lines[header + 1 : header + 6]]
  assert [(r[0], r[2]) for r in rows] == [
      ('0', 'ticket'), ('1', 'ticket'), ('1', 'reinit'), ('2', 'ticket'), ('2', 'reinit')  # Ticket first.
  ]  # fmt: skip
  assert rows[0][1] == '100.0%'
  assert f'runs/{run_dir.name}/summary.csv' in result.stdout


def test_run_writes_summary_csv(smoke_run):
  _, _, run_dir = smoke_run
  with open(run_dir / 'summary.csv', newline='') as f:
    reader = csv.DictReader(f)
    rows = list(reader)
  assert set(PROMISED_COLUMNS) <= set(reader.fieldnames)
  assert len(rows) == 1 + 2 * 2  # Level 0: the dense ticket; levels 1-2: ticket and reinit.
  dense = [r for r in rows if r['level'] == '0']
  assert [r['arm'] for r in dense] == ['ticket']
  assert float(dense[0]['weights_remaining']) == 1.0
  for row in rows:
    assert 0 < float(row['weights_remaining']) <= 1
    assert 0 <= int(row['early_stop_step']) <= 60
    assert 0 <= float(row['test_accuracy_at_early_stop']) <= 1
    assert 0 <= float(row['final_test_accuracy']) <= 1
  for name in ('curves.csv', 'layers.csv', 'config.json'):
    assert (run_dir / name).is_file()


def test_run_has_no_progress_bars_when_piped(smoke_run):
  result, _, _ = smoke_run
  bar_lines = [line for line in result.stderr.splitlines() if any(m in line for m in BAR_MARKS)]
  assert bar_lines == []
  assert '\r' not in result.stderr
  # A batch job's log gets a line per finished run instead.
  done = [line for line in result.stdout.splitlines() if ' done: seed 0 level ' in line]
  assert len(done) == 5 and 'remaining, early stop' in done[-1]
  assert 'first training step done' in result.stdout


def test_ls_lists_the_run(smoke_run):
  _, runs, run_dir = smoke_run
  result = _lth('ls', runs)
  assert result.returncode == 0, result.stderr
  (line,) = [line for line in result.stdout.splitlines() if line.startswith(run_dir.name)]
  # The smoke recipe's 2 pruning levels (level 0, the dense network, is not counted).
  assert line.split()[1:] == ['lenet300-smoke', '2/2', 'finished']


def test_ls_of_a_missing_directory_is_an_error(tmp_path):
  result = _lth('ls', tmp_path / 'nope')
  assert result.returncode == 1
  assert 'is not a directory' in result.stderr and 'Traceback' not in result.stderr


def test_report_writes_the_report(smoke_run):
  _, _, run_dir = smoke_run
  shutil.rmtree(run_dir / 'report', ignore_errors=True)
  result = _lth('report', run_dir)
  assert result.returncode == 0, result.stderr
  index = Path(result.stdout.strip().splitlines()[-1])
  assert index == run_dir / 'report' / 'index.html' and index.is_file()
  assert (run_dir / 'report' / 'report.md').is_file()
  assert list((run_dir / 'report').glob('*.png'))


def test_log_progress_heartbeat_and_run_lines():
  from lth_jax.study.progress import LogProgress

  lines = []
  progress = LogProgress(1000, 0, log=lines.append, heartbeat=0.0)
  progress.start('level 1 seed 0 ticket', 500)
  progress.advance(100, {'val_loss': 0.5})
  assert 'first training step done' in lines[0]
  assert 'level 1 seed 0 ticket: 100/500 it, val loss 0.5000; study 10% (100/1000 it)' in lines[1]
  row = {'seed': 0, 'level': 1, 'arm': 'ticket', 'weights_remaining': 0.8, 'early_stop_step': 300,
         'test_accuracy_at_early_stop': 0.875, 'diverged': 0}  # fmt: skip
  progress.run_finished(row, 12.34)
  assert lines[-1].endswith(
    'done: seed 0 level 1 ticket, 80.0% remaining, early stop 300, test acc 87.50%, 12.3 s'
  )
  quiet = LogProgress(1000, 0, log=lines.append, heartbeat=60.0)
  count = len(lines)
  quiet.advance(1, {})
  quiet.advance(1, {})
  assert len(lines) == count + 1  # The first-step line only: no heartbeat within a minute.

"""Runs that survive interruption, bad input and bad luck, with nothing lost.

Faults are injected into real (tiny) studies on Fashion-MNIST: SIGKILL of the
``lth`` process mid-level, damaged checkpoints, a live or stale lock, a
diverging run, missing data, an unwritable workdir, a disk that fills up. Each
time the rerun must end exactly where an uninterrupted run ends: tables
byte-identical, masks and params bit-identical.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from processes import TABLES, flags_of, kill_when, lth, progress_checkpoints

from experiments import lenet300
from lth_jax import cli, commands, data
from lth_jax.study import checkpoint, levels, results, workdir
from lth_jax.study.lock import Lock
from lth_jax.training import fit as fit_lib

# ml_collections loads --config files with the deprecated importlib API.
REPO = Path(__file__).resolve().parents[1]
# Long enough levels that a kill lands mid-level: 9 mid-level checkpoints per run.
KEY = {'num_levels': 1, 'num_steps': 400, 'eval_every': 20, 'checkpoint_every': 40}


def smoke(data_dir, **overrides):
  config = lenet300.get_config('smoke')
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    node, *path = key.split('.')
    target = config
    for part in [node, *path][:-1]:
      target = target[part]
    target[[node, *path][-1]] = value
  return config


@pytest.fixture(autouse=True)
def no_report(monkeypatch):
  # The report is tested elsewhere; here it would only cost time.
  monkeypatch.setattr(commands, 'write_report', lambda path, log: None)


def study(config, workdir, log=None):
  lines = []
  commands.run(config, workdir, log=log or lines.append, progress=False)
  return lines


def the_run_dir(workdir) -> Path:
  (run_dir,) = [p for p in Path(workdir).iterdir() if (p / 'config.json').exists()]
  return run_dir


def assert_same_results(run_dir: Path, reference: Path):
  for table in TABLES:
    assert (run_dir / table).read_bytes() == (reference / table).read_bytes(), table
  summary = results.read_rows(reference / 'summary.csv')
  names = ['seed_{seed}/level_{level}/{arm}'.format(**r) for r in summary]
  names += ['seed_{seed}/level_{level}/masks'.format(**r) for r in summary]
  names += ['seed_0/init', 'seed_0/rewind']
  for name in sorted(set(names)):
    got = checkpoint.load(run_dir / 'checkpoints' / name)
    want = checkpoint.load(reference / 'checkpoints' / name)
    assert jax.tree.structure(got) == jax.tree.structure(want), name
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
      assert np.array_equal(a, b), name


# ---------------------------------------------------------------------------
# Shared studies.


@pytest.fixture(scope='module')
def reference(fashion_mnist_dir, tmp_path_factory):
  """An uninterrupted run of the KEY config, in process."""
  workdir = tmp_path_factory.mktemp('reference')
  with pytest.MonkeyPatch.context() as m:
    m.setattr(commands, 'write_report', lambda path, log: None)
    study(smoke(fashion_mnist_dir, **KEY), workdir)
  return the_run_dir(workdir)


@pytest.fixture(scope='module')
def killed_twice(fashion_mnist_dir, subprocess_env, tmp_path_factory):
  """`lth run` SIGKILLed mid-level 0, rerun, SIGKILLed mid-level 1, rerun to the end.

  Returns the workdir, the logs of the three processes, what was on disk at
  each kill, and a copy of the run directory as the second kill left it.
  """
  workdir = tmp_path_factory.mktemp('killed')
  logs = tmp_path_factory.mktemp('logs')
  args = ['run', *flags_of(fashion_mnist_dir, **KEY), f'--workdir={workdir}']
  run_dir = lambda: next((p for p in workdir.iterdir() if (p / 'config.json').exists()), None)
  seen = {}

  proc = lth(args, subprocess_env, logs / '1.txt')
  kill_when(proc, lambda: run_dir() and progress_checkpoints(run_dir(), 0))
  seen['kill 1'] = (
    progress_checkpoints(run_dir(), 0),
    results.read_rows(run_dir() / 'summary.csv'),
  )

  proc = lth(args, subprocess_env, logs / '2.txt')
  ticket_1 = lambda: [p for p in progress_checkpoints(run_dir(), 1) if '0-ticket' in str(p)]
  kill_when(proc, lambda: len(ticket_1()) >= 2)
  seen['kill 2'] = (ticket_1(), results.read_rows(run_dir() / 'summary.csv'))
  partial = tmp_path_factory.mktemp('partial') / 'work'
  shutil.copytree(workdir, partial)

  proc = lth(args, subprocess_env, logs / '3.txt')
  assert proc.wait(timeout=300) == 0, (logs / '3.txt').read_text()
  texts = [(logs / f'{i}.txt').read_text() for i in (1, 2, 3)]
  return workdir, texts, seen, partial


# ---------------------------------------------------------------------------
# 2. Resume after SIGKILL.


def test_sigkill_twice_then_resume_matches_uninterrupted_run(killed_twice, reference):
  workdir, (_, second, third), seen, _ = killed_twice
  run_dir = the_run_dir(workdir)
  assert run_dir.name == reference.name  # Same config, same directory name.

  # Both kills landed mid-level: a progress checkpoint existed, the level's row did not.
  kept, rows = seen['kill 1']
  assert kept and rows == []
  kept, rows = seen['kill 2']
  assert len(kept) >= 2 and [(r['level'], r['arm']) for r in rows] == [('0', 'ticket')]

  # Each rerun took over the dead process's lock and resumed from its checkpoints.
  assert 'took over the stale lock' in second and 'took over the stale lock' in third
  assert 'resuming level_0/0-ticket at step' in second
  assert '1 runs already finished' in third
  assert 'resuming level_1/0-ticket at step' in third
  assert not Lock(run_dir).held() and (run_dir / 'lock').read_text() == ''  # Released.
  assert not progress_checkpoints(run_dir, 0) and not progress_checkpoints(run_dir, 1)
  assert_same_results(run_dir, reference)


# ---------------------------------------------------------------------------
# 3. Damaged checkpoints.


def damage(path: Path, how: str) -> Path:
  """Truncates or deletes the largest data file of the checkpoint at ``path``."""
  files = sorted((p for p in path.rglob('*') if p.is_file() and p.parent.name == 'd'),
                 key=lambda p: p.stat().st_size)  # fmt: skip
  target = files[-1]
  if how == 'truncate':
    os.truncate(target, target.stat().st_size // 2)
  else:
    target.unlink()
  return target


# A failed Orbax restore leaves TensorStore callbacks aimed at a closed asyncio loop,
# printed as "Event loop is closed" from its threads: noise, not an error of ours.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_damaged_progress_checkpoints_fall_back(killed_twice, reference, tmp_path):
  """Newest mid-level checkpoint damaged -> the previous one; both -> the level start."""
  *_, partial = killed_twice
  for case in ('newest', 'all'):
    workdir = tmp_path / case
    shutil.copytree(partial, workdir)
    run_dir = the_run_dir(workdir)
    kept = [p for p in progress_checkpoints(run_dir, 1) if '0-ticket' in str(p)]
    hit = kept[-1:] if case == 'newest' else kept
    for i, path in enumerate(hit):
      damage(path, 'truncate' if i % 2 == 0 else 'delete')
    lines = []
    commands.resume(run_dir, log=lines.append)  # `lth resume RUN_DIR`
    text = '\n'.join(lines)
    for path in hit:
      assert f'checkpoint {path} is corrupt or incomplete' in text
    if case == 'newest':
      assert f'resuming level_1/0-ticket at step {int(kept[-2].name[3:])} from {kept[-2]}' in text
    else:
      assert 'that level restarts from its beginning' in text
    assert_same_results(run_dir, reference)


# A failed Orbax restore leaves TensorStore callbacks aimed at a closed asyncio loop,
# printed as "Event loop is closed" from its threads: noise, not an error of ours.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_damaged_finished_run_is_recomputed(reference, tmp_path):
  workdir = tmp_path / 'work'
  shutil.copytree(reference.parent, workdir)
  run_dir = the_run_dir(workdir)
  final = run_dir / 'checkpoints' / 'seed_0' / 'level_1' / 'reinit'
  masks = run_dir / 'checkpoints' / 'seed_0' / 'level_1' / 'masks'
  damage(final, 'truncate')
  damage(masks, 'delete')
  # A save torn by a crash: Orbax's temporary directory and a half-written table row.
  shutil.copytree(final, final.with_name('ticket.orbax-checkpoint-tmp'))
  with open(run_dir / 'curves.csv', 'a') as f:
    f.write('0,1,ticket,20,0.5')
  lines = study(_config_of(run_dir), workdir)
  text = '\n'.join(lines)
  assert f'checkpoint {final} is corrupt or incomplete' in text
  assert f'checkpoint {masks} is corrupt or incomplete' in text
  assert 'removed the unfinished checkpoint' in text
  assert_same_results(run_dir, reference)


def _config_of(run_dir: Path):
  import ml_collections

  config = ml_collections.ConfigDict(workdir.load_config_json(run_dir))
  config.optimizer.milestones = tuple(config.optimizer.milestones)
  return config


# ---------------------------------------------------------------------------
# 7. A disk that fills up while saving.


def test_full_disk_keeps_finished_runs_and_rerun_completes(
  fashion_mnist_dir, reference, tmp_path, monkeypatch, capsys
):
  import orbax.checkpoint as ocp

  real_save, calls = ocp.StandardCheckpointer.save, []

  def save(self, *args, **kwargs):
    calls.append(1)
    if len(calls) > 15:  # Level 0 (12 saves) is done, level 1 is under way.
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_save(self, *args, **kwargs)

  monkeypatch.setattr(ocp.StandardCheckpointer, 'save', save)
  workdir = tmp_path / 'work'
  with pytest.raises(SystemExit) as exit_:
    cli.main(['lth', 'run', *flags_of(fashion_mnist_dir, **KEY), f'--workdir={workdir}'])
  assert exit_.value.code == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('lth: error: could not write checkpoint ')
  assert 'No space left on device' in err[0] and 'Traceback' not in err[0]
  run_dir = the_run_dir(workdir)
  rows = results.read_rows(run_dir / 'summary.csv')
  assert [(r['level'], r['arm']) for r in rows] == [('0', 'ticket')]
  assert not checkpoint.partial_checkpoints(run_dir)
  assert not Lock(run_dir).held() and (run_dir / 'lock').read_text() == ''  # Released.

  monkeypatch.setattr(ocp.StandardCheckpointer, 'save', real_save)
  study(_config_of(run_dir), workdir)
  assert_same_results(run_dir, reference)


# ---------------------------------------------------------------------------
# 4. The lock.


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, f'{os.getpid()} {os.uname().nodename} boot\\n'.encode(), 0)
print('locked', flush=True)
time.sleep(60)
"""


def test_live_lock_refuses_a_second_process(fashion_mnist_dir, tmp_path, capsys):
  config = smoke(fashion_mnist_dir)
  run_dir = workdir.run_dir_for(tmp_path, config)
  run_dir.mkdir(parents=True)
  holder = subprocess.Popen(
    [sys.executable, '-c', HOLD_LOCK, str(run_dir / 'lock')], stdout=subprocess.PIPE, text=True
  )
  try:
    assert holder.stdout.readline().strip() == 'locked'
    assert workdir.Lock(run_dir).held()
    with pytest.raises(SystemExit) as exit_:
      cli.main(['lth', 'run', *flags_of(fashion_mnist_dir), f'--workdir={tmp_path}'])
  finally:
    holder.kill()
    holder.communicate()
  assert exit_.value.code == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  assert f'process {holder.pid} on {socket.gethostname()}' in err[0]
  assert f'lock file {run_dir / "lock"}' in err[0]
  assert not (run_dir / 'summary.csv').exists()
  assert not workdir.Lock(run_dir).held()  # The kernel let go of it with its holder.


def test_stale_lock_is_taken_over(tmp_path):
  dead = subprocess.Popen(['true'])
  dead.wait()
  lock_path = tmp_path / 'lock'
  lock_path.write_text(f'{dead.pid} {socket.gethostname()}\n')
  lines = []
  with workdir.Lock(tmp_path, log=lines.append) as lock:
    assert lock_path.read_text().split()[0] == str(os.getpid())
    assert lock.held()
  assert lock_path.read_text() == ''  # Released: nobody's.
  assert f'took over the stale lock {lock_path} of process {dead.pid}' in lines[0]


def test_the_lock_has_one_owner_however_many_try(tmp_path):
  """Processes started together on one directory: exactly one gets it (no check-then-delete)."""
  code = (
    'import sys; from lth_jax.study.lock import Lock; from lth_jax.errors import RunError\n'
    'try:\n  Lock(sys.argv[1]).acquire(); print("owner", flush=True); sys.stdin.read()\n'
    'except RunError:\n  print("refused", flush=True)\n'
  )
  (tmp_path / 'lock').write_text('12345 some-host\n')  # A stale owner to take over, too.
  procs = [
    subprocess.Popen(
      [sys.executable, '-c', code, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
      text=True,
    )
    for _ in range(4)
  ]  # fmt: skip
  said = sorted(p.stdout.readline().strip() for p in procs)  # The owner holds it meanwhile.
  for p in procs:
    p.communicate(timeout=60)
  assert said == ['owner', 'refused', 'refused', 'refused']


# ---------------------------------------------------------------------------
# 6. Divergence.


def test_divergence_is_recorded_and_only_stops_its_seed(fashion_mnist_dir, tmp_path, monkeypatch):
  """Seed 0's ticket and seed 1's reinit diverge at level 1; everything else carries on."""
  doomed = {(0, 1, 'ticket'), (1, 1, 'reinit')}
  current = threading.local()  # Runs may train side by side in threads.
  real_train_group, real_fit = levels.train_group, levels.fit

  def train_group(study_, store, runs, starts, progress):
    current.run = runs[0]
    return real_train_group(study_, store, runs, starts, progress)

  class Interrupt(Exception):
    pass

  def poisoned_fit(trainer, state, data_key, *, hooks=(), **kwargs):
    """The doomed runs' weights turn NaN during step 40."""
    r = current.run
    if (r.seed, r.level, r.arm) not in doomed:
      return real_fit(trainer, state, data_key, hooks=hooks, **kwargs)
    seen = {}

    def stop(step, state, curve):
      seen.update(state=jax.device_get(state), curve=curve)
      raise Interrupt

    with pytest.raises(Interrupt):
      real_fit(trainer, state, data_key, hooks=[*hooks, fit_lib.Hook(stop, at=(39,))], **kwargs)
    nan = seen['state']._replace(params=jax.tree.map(lambda p: p * jnp.nan, seen['state'].params))
    kwargs['curve'] = seen['curve']
    return real_fit(trainer, jax.device_put(nan), data_key, hooks=hooks, **kwargs)

  monkeypatch.setattr(levels, 'train_group', train_group)
  monkeypatch.setattr(levels, 'fit', poisoned_fit)
  lines = study(smoke(fashion_mnist_dir, num_seeds=2), tmp_path)
  run_dir = the_run_dir(tmp_path)
  rows = {
    (int(r['seed']), int(r['level']), r['arm']): r
    for r in results.read_rows(run_dir / 'summary.csv')
  }
  assert sorted(rows) == [
      (0, 0, 'ticket'), (0, 1, 'reinit'), (0, 1, 'ticket'),
      (1, 0, 'ticket'), (1, 1, 'reinit'), (1, 1, 'ticket'), (1, 2, 'reinit'), (1, 2, 'ticket'),
  ]  # fmt: skip
  for key, row in rows.items():
    assert row['diverged'] == ('1' if key in doomed else '0')
    assert row['diverged_step'] == ('40' if key in doomed else '')
    assert float(row['final_test_accuracy']) > 0.1  # From the last finite evaluation.
  text = '\n'.join(lines)
  assert 'diverged: seed 0 level 1 ticket (non-finite loss at step 40)' in text
  assert 'levels 2-2 of seed 0 were not run' in text
  assert 'diverged: seed 1 level 1 reinit' in text
  table = [line.split() for line in text.splitlines() if line.strip().startswith('1 ')]
  by_arm = {cells[2]: cells for cells in table}
  # seeds and diverged columns: one of two seeds kept in each level-1 mean.
  assert by_arm['ticket'][-2:] == ['1', '1'] and by_arm['reinit'][-2:] == ['1', '1']
  assert (
    f'{100 * float(rows[1, 1, "ticket"]["test_accuracy_at_early_stop"]):.2f}' in by_arm['ticket']
  )
  assert 'failed (diverged runs)' in commands.list_runs(tmp_path)  # `lth ls`


# ---------------------------------------------------------------------------
# 7. Missing data, unwritable workdir.


def test_missing_data_files_is_a_clear_error(tmp_path, capsys):
  empty = tmp_path / 'raw'
  empty.mkdir()
  args = ['--config=experiments/lenet300.py:smoke', '--config.data.name=mnist',
          f'--config.data.manual_dir={empty}', f'--config.data.data_dir={tmp_path / "tfds"}',
          '--config.data.download=false', f'--workdir={tmp_path / "work"}']  # fmt: skip
  with pytest.raises(SystemExit) as exit_:
    cli.main(['lth', 'run', *args])
  assert exit_.value.code == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('lth: error: ') and 'Traceback' not in err[0]
  assert 'mnist' in err[0].lower() and str(empty) in err[0]
  with pytest.raises(data.DataError):
    study(smoke('', **{'data.name': 'mnist', 'data.manual_dir': str(empty),
                       'data.data_dir': str(tmp_path / 'tfds'), 'data.download': False}),
          tmp_path / 'work')  # fmt: skip


def test_unwritable_workdir_is_a_clear_error(fashion_mnist_dir, tmp_path, capsys):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  workdir = blocker / 'sub'  # Fails for root too, unlike chmod.
  with pytest.raises(SystemExit) as exit_:
    cli.main(['lth', 'run', *flags_of(fashion_mnist_dir), f'--workdir={workdir}'])
  assert exit_.value.code == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(f'lth: error: cannot write to {workdir}/')
  assert 'Choose a writable --workdir' in err[0]

"""Run directories on disk: naming, locking, resumable storage of results.

A study's directory is ``<workdir>/<name>-<hash>``, the hash taken over the
resolved config (less execution-only keys, see ``config.EXECUTION_KEYS``): the
same config always maps to the same directory, a changed one never reuses old
results. Inside:

    config.json      the resolved config
    lock             pid and host of the process writing here
    summary.csv      one row per (seed, level, arm), written when the run is done
    curves.csv       one row per evaluation of a finished run
    layers.csv       per-layer weights remaining of a finished run
    timings.csv      wall seconds per finished run (kept apart: summary.csv is
                     bit-identical between an interrupted and an uninterrupted run)
    checkpoints/     Orbax: seed_S/init (θ0), seed_S/rewind (θk, whole state),
                     seed_S/level_L/masks, seed_S/level_L/<arm> (trained params),
                     progress/... (mid-level train state, the last two kept)

A run's row in summary.csv is written last, after its checkpoint and its other
rows, so it marks the run as finished; on start, rows of unfinished runs are
dropped and damaged checkpoints of finished runs send those runs back to work.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import time
from pathlib import Path

from lth_jax import checkpoint
from lth_jax import config as config_lib
from lth_jax.imp import CURVE_COLUMNS, LAYER_COLUMNS, SUMMARY_COLUMNS

TABLES = {
  'summary.csv': SUMMARY_COLUMNS,
  'curves.csv': CURVE_COLUMNS,
  'layers.csv': LAYER_COLUMNS,
  'timings.csv': ('seed', 'level', 'arm', 'wall_seconds'),
}
_KEEP_PROGRESS = 2
_PROGRESS_STEP = re.compile(r'at_(\d+)')


class RunError(RuntimeError):
  """The run directory cannot be used; the message says why and what to do."""


def run_dir_for(workdir: str | os.PathLike, config) -> Path:
  return Path(workdir) / f'{config.name}-{config_lib.study_hash(config)}'


class Lock:
  """An exclusive claim on a run directory by this process (file ``lock``)."""

  def __init__(self, run_dir: Path, log=None):
    self.path = Path(run_dir) / 'lock'
    self.log = log or (lambda message: None)

  def acquire(self) -> None:
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      except FileExistsError:
        owner = self._read()
        if self._owner_alive():
          raise RunError(
            f'{self.path.parent} is in use by {_describe_owner(owner)} (lock file '
            f'{self.path}). Wait for it to finish or stop it; delete the lock file only if '
            'that process is gone.'
          ) from None
        self.path.unlink(missing_ok=True)  # A stale lock from a dead process: take it over.
        self.log(f'took over the stale lock {self.path} of {_describe_owner(owner)}, which is gone')
        continue
      with os.fdopen(fd, 'w') as f:
        f.write(f'{os.getpid()} {socket.gethostname()}\n')
      return
    raise RunError(f'could not take the lock {self.path}.')

  def release(self) -> None:
    if self._read().split()[:1] == [str(os.getpid())]:
      self.path.unlink(missing_ok=True)

  def _read(self) -> str:
    try:
      return self.path.read_text().strip()
    except OSError:
      return ''

  def _owner_alive(self) -> bool:
    parts = self._read().split()
    if len(parts) != 2 or not parts[0].isdigit():
      return _just_created(self.path)  # Its owner may not have written its pid yet.
    pid, host = int(parts[0]), parts[1]
    if host != socket.gethostname():
      return True  # Another machine's process: we cannot tell, so do not steal it.
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return False
    except PermissionError:
      return True
    return True

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()


def _describe_owner(owner: str) -> str:
  parts = owner.split()
  if len(parts) == 2 and parts[0].isdigit():
    return f'process {parts[0]} on {parts[1]}'
  return f'an unknown process (lock file content {owner!r})'


def _just_created(path: Path, seconds: float = 10.0) -> bool:
  try:
    return time.time() - path.stat().st_mtime < seconds
  except OSError:
    return False


def read_table(path: Path) -> list[dict[str, str]]:
  """Rows of a CSV file; a partly written last line (a crash) is ignored."""
  if not path.exists():
    return []
  text = path.read_text()
  if text and not text.endswith('\n'):
    text = text[: text.rfind('\n') + 1]
  return list(csv.DictReader(io.StringIO(text)))


def _torn(path: Path) -> bool:
  """True when ``path`` ends in a partly written line."""
  if not path.exists() or path.stat().st_size == 0:
    return False
  with open(path, 'rb') as f:
    f.seek(-1, os.SEEK_END)
    return f.read(1) != b'\n'


def _write_table(path: Path, columns, rows) -> None:
  tmp = path.with_suffix('.tmp')
  with open(tmp, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _run_key(row) -> tuple[int, int, str]:
  return int(row['seed']), int(row['level']), row['arm']


class DiskStore:
  """The ``imp.Store`` of a run directory (see the module docstring)."""

  def __init__(self, run_dir: Path, log=print):
    self.dir = Path(run_dir)
    self.checkpoints = self.dir / 'checkpoints'
    self.log = log

  # Pytrees.
  def _path(self, name: str) -> Path:
    return self.checkpoints / name

  def _progress_steps(self, name: str) -> list[Path]:
    """Mid-level checkpoints of ``name``, newest first."""
    base = self._path(name)
    found = [
        p for p in base.glob('at_*') if _PROGRESS_STEP.fullmatch(p.name) and checkpoint.exists(p)
    ] if base.is_dir() else []  # fmt: skip
    return sorted(found, reverse=True)

  def has(self, name: str) -> bool:
    if name.startswith('progress/'):
      return bool(self._progress_steps(name))
    return checkpoint.exists(self._path(name))

  def load(self, name: str, like=None):
    if not name.startswith('progress/'):
      return checkpoint.load(self._path(name), like)
    for path in self._progress_steps(name):
      try:
        tree = checkpoint.load(path, like)
      except checkpoint.CheckpointError as e:
        self.log(f'warning: {e} Falling back to the previous mid-level checkpoint.')
        checkpoint.remove(path)
        continue
      step = int(_PROGRESS_STEP.fullmatch(path.name).group(1))
      self.log(f'resuming {name.removeprefix("progress/")} at step {step} from {path}')
      return tree
    self.log(f'warning: no readable mid-level checkpoint under {self._path(name)}; '
             'that level restarts from its beginning.')  # fmt: skip
    raise LookupError(name)

  def save(self, name: str, tree) -> None:
    if not name.startswith('progress/'):
      checkpoint.save(self._path(name), tree)
      return
    step = int(tree['record']['steps'][int(tree['record']['count']) - 1])
    checkpoint.save(self._path(name) / f'at_{step:012d}', tree)
    for old in self._progress_steps(name)[_KEEP_PROGRESS:]:
      checkpoint.remove(old)

  def delete(self, name: str) -> None:
    checkpoint.remove(self._path(name))

  # Rows.
  def finished(self) -> dict[tuple[int, int, str], bool]:
    return {_run_key(r): r['diverged'] == '1' for r in read_table(self.dir / 'summary.csv')}

  def summary(self) -> list[dict[str, str]]:
    return read_table(self.dir / 'summary.csv')

  def record(self, summary, curves, layers, seconds) -> None:
    key = {k: summary[k] for k in ('seed', 'level', 'arm')}
    self._append('curves.csv', curves)
    self._append('layers.csv', layers)
    self._append('timings.csv', [{**key, 'wall_seconds': round(seconds, 3)}])
    self._append('summary.csv', [summary])  # Last: this row marks the run finished.

  def _append(self, table: str, rows) -> None:
    path = self.dir / table
    new = not path.exists()
    try:
      with open(path, 'a', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=TABLES[table])
        if new:
          writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
      raise RunError(f'could not write {path}: {e}. Finished runs are kept on disk.') from e

  # Consistency after a crash.
  def repair(self) -> list[str]:
    """Drops rows of unfinished runs and sends runs with damaged checkpoints back to work.

    Returns messages describing what was repaired.
    """
    notes = []
    for partial in checkpoint.partial_checkpoints(self.checkpoints):
      notes.append(f'removed the unfinished checkpoint {partial} (an interrupted save).')
      checkpoint.remove(partial)
    summary = read_table(self.dir / 'summary.csv')
    keep = []
    for row in summary:
      name = 'seed_{}/level_{}/{}'.format(*_run_key(row))
      try:
        checkpoint.load(self._path(name))
        keep.append(row)
      except checkpoint.CheckpointError as e:
        notes.append(f'{e} That run will be recomputed.')
        self.delete(name)
    for pattern in ('seed_*/init', 'seed_*/rewind', 'seed_*/level_*/masks'):
      for path in self.checkpoints.glob(pattern):
        try:
          checkpoint.load(path)
        except checkpoint.CheckpointError as e:
          notes.append(f'{e} It will be recomputed with the runs that make it.')
          checkpoint.remove(path)
    keep = [r for r in keep if self._inputs_intact(r)]
    finished = {_run_key(r) for r in keep}
    for table, columns in TABLES.items():
      rows = read_table(self.dir / table)
      good = [r for r in rows if _run_key(r) in finished]
      # A torn last line (a crash mid-write) must go too, or the next row is glued onto it.
      if len(good) != len(rows) or _torn(self.dir / table):
        _write_table(self.dir / table, columns, good)
    return notes

  def _inputs_intact(self, row) -> bool:
    """False when a run's inputs are gone, so that it is run again to remake them.

    θ0 and θk are made by the dense run (level 0), a level's masks by its runs.
    """
    seed, level, _ = _run_key(row)
    if level == 0:
      needed = [f'seed_{seed}/init', f'seed_{seed}/rewind']
    else:
      needed = [f'seed_{seed}/level_{level}/masks']
    if all(checkpoint.exists(self._path(n)) for n in needed):
      return True
    if level == 0:  # Its mid-level checkpoints may be past the rewind step: start over.
      checkpoint.remove(self.checkpoints / 'progress' / 'level_0')
    return False

  def sort_tables(self, arms) -> None:
    """Puts every table in the order an uninterrupted run writes it: level, seed, arm.

    Runs recomputed after a repair are appended at the end; sorting makes the
    tables of a repaired or resumed study identical to an uninterrupted one.
    """
    rank = {arm: i for i, arm in enumerate(arms)}

    def order(row):
      seed, level, arm = _run_key(row)
      return level, seed, rank.get(arm, len(rank))

    for table, columns in TABLES.items():
      rows = read_table(self.dir / table)
      ordered = sorted(rows, key=order)  # Stable: a run's curve keeps its step order.
      if ordered != rows:
        _write_table(self.dir / table, columns, ordered)


def prepare(workdir: str | os.PathLike, config) -> Path:
  """Creates (or reopens) the run directory of ``config`` and writes config.json."""
  run_dir = run_dir_for(workdir, config)
  try:
    run_dir.mkdir(parents=True, exist_ok=True)
    probe = run_dir / '.write_test'
    probe.write_text('ok')
    probe.unlink()
  except OSError as e:
    raise RunError(
      f'cannot write to {run_dir}: {e.strerror or e}. Choose a writable --workdir.'
    ) from e
  (run_dir / 'config.json').write_text(config_lib.to_json(config) + '\n')
  return run_dir


def load_config_json(run_dir: Path) -> dict:
  try:
    return json.loads((Path(run_dir) / 'config.json').read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise RunError(f'{run_dir} has no readable config.json ({e}); is it a run directory?') from e

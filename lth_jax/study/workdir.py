"""Run directories: naming, locking, and consistency after a crash.

A study's directory is ``<workdir>/<name>-<hash>``, the hash taken over the
resolved config less the keys that do not change results
(``config.study_hash``): the same config always maps to the same directory, a
changed one never reuses old results. Inside:

    config.json      the resolved config
    lock             pid and host of the process writing here
    summary.csv, curves.csv, layers.csv, timings.csv   (``lth_jax.study.results``)
    checkpoints/     the study's pytrees (``lth_jax.study.artifacts``)

A run's row in summary.csv is written last, after its checkpoint and its other
rows, so it marks the run as finished; ``repair`` drops rows of unfinished runs
and sends runs with damaged checkpoints back to work.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from lth_jax.errors import CheckpointError, RunError
from lth_jax.study import artifacts, checkpoint, results
from lth_jax.study import config as config_lib
from lth_jax.study.store import Store


def run_dir_for(workdir: str | os.PathLike, config) -> Path:
  return Path(workdir) / f'{config.name}-{config_lib.study_hash(config)}'


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


def load_config(run_dir: Path):
  """The config of a run directory (its config.json, with keys added since it was written)."""
  return config_lib.with_new_keys(load_config_json(run_dir))


def load_config_json(run_dir: Path) -> dict:
  try:
    return json.loads((Path(run_dir) / 'config.json').read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise RunError(f'{run_dir} has no readable config.json ({e}); is it a run directory?') from e


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
        if self.held():
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

  def held(self) -> bool:
    """True when the lock file exists and its owner may still be alive."""
    if not self.path.exists():
      return False
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


# ----------------------------------------------------------------------------- after a crash


def repair(store: Store) -> list[str]:
  """Drops rows of unfinished runs and sends runs with damaged checkpoints back to work.

  ``store`` is a run directory's ``DiskStore``. Returns what was repaired.
  """
  trees, tables = store.trees, store.results
  notes = []
  for partial in checkpoint.partial_checkpoints(trees.root):
    notes.append(f'removed the unfinished checkpoint {partial} (an interrupted save).')
    checkpoint.remove(partial)
  keep = []
  for row in tables.summary():
    name = artifacts.trained(*results.run_key(row))
    try:
      checkpoint.load(trees.path(name))
      keep.append(row)
    except CheckpointError as e:
      notes.append(f'{e} That run will be recomputed.')
      trees.delete(name)
  for pattern in artifacts.SEED_INPUT_PATTERNS:
    for path in trees.root.glob(pattern):
      try:
        checkpoint.load(path)
      except CheckpointError as e:
        notes.append(f'{e} It will be recomputed with the runs that make it.')
        checkpoint.remove(path)
  keep = [r for r in keep if _inputs_intact(store, r)]
  finished = {results.run_key(r) for r in keep}
  for table in results.TABLES:
    rows = tables.rows(table)
    good = [r for r in rows if results.run_key(r) in finished]
    # A torn last line (a crash mid-write) must go too, or the next row is glued onto it.
    if len(good) != len(rows) or tables.torn(table):
      tables.rewrite(table, good)
  return notes


def _inputs_intact(store: Store, row) -> bool:
  """False when a run's inputs are gone, so that it is run again to remake them.

  θ0 and θk are made by the dense run (level 0), a level's masks by its runs.
  """
  seed, level, _ = results.run_key(row)
  needed = (
    [artifacts.init(seed), artifacts.rewind(seed)] if level == 0 else [artifacts.masks(seed, level)]
  )
  if all(store.trees.has(n) for n in needed):
    return True
  if level == 0:  # Its mid-level checkpoints may be past the rewind step: start over.
    store.trees.delete(artifacts.progress_of_level(0))
  return False


def sort_tables(store: Store) -> None:
  """Puts every table in the order an uninterrupted run writes it: level, seed, arm.

  Runs recomputed after a repair (or added to a grown study) are appended at the
  end; sorting makes the tables of a repaired or resumed study identical to an
  uninterrupted one.
  """

  def order(row):
    seed, level, arm = results.run_key(row)
    return level, seed, results.arm_rank(arm)

  for table in results.TABLES:
    rows = store.results.rows(table)
    ordered = sorted(rows, key=order)  # Stable: a run's curve keeps its step order.
    if ordered != rows:
      store.results.rewrite(table, ordered)

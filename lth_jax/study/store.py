"""Where a study keeps what it computes: a tree store for pytrees and a sink for result rows.

``levels.train_levels`` writes through a ``Store``: its ``trees`` (θ0, θk, masks,
trained params, mid-level progress; names in ``lth_jax.study.artifacts``) and its
``results`` (summary, curve, layer and timing rows; columns in
``lth_jax.study.results``). A result already in the store is never recomputed, which
is what makes studies resumable and growable.

* ``MemoryStore()``: both in memory, for notebooks.
* ``DiskStore(run_dir)``: Orbax checkpoints under ``run_dir/checkpoints`` and
  CSV tables in ``run_dir`` (see ``lth_jax.study.workdir`` for the directory itself).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Protocol

import jax

from lth_jax.errors import CheckpointError, RunError
from lth_jax.study import artifacts, checkpoint, results

_KEEP_PROGRESS = 2  # Mid-level checkpoints kept per group: a damaged newest one falls back.
_PROGRESS_STEP = re.compile(r'at_(\d+)')


class TreeStore(Protocol):
  """Named pytrees (see ``lth_jax.study.artifacts`` for the names)."""

  def has(self, name: str) -> bool: ...
  def load(self, name: str, like: Any = None) -> Any: ...
  def save(self, name: str, tree: Any) -> None: ...
  def delete(self, name: str) -> None: ...
  def save_progress(self, name: str, step: int, tree: Any) -> None: ...
  def load_progress(self, name: str, like: Any) -> Any | None:
    """The newest readable progress tree of ``name``, or None."""
    ...


class ResultSink(Protocol):
  """Result rows of finished runs."""

  def finished(self) -> dict[tuple[int, int, str], bool]:
    """{(seed, level, arm): diverged} of the runs already recorded."""
    ...

  def record(
    self, summary: dict, curves: list[dict], layers: list[dict], seconds: float, extra=None
  ) -> None:
    """Records a finished run; its summary row is written last and marks it finished.

    ``extra``: {table: rows} of the other tables the run writes (``results.TABLES``).
    """
    ...


@dataclasses.dataclass
class Store:
  """A study's tree store and result sink."""

  trees: TreeStore
  results: ResultSink

  @property
  def summary(self) -> list[dict]:
    return self.results.summary()

  @property
  def curves(self) -> list[dict]:
    return self.results.rows(results.CURVES)

  @property
  def layers(self) -> list[dict]:
    return self.results.rows(results.LAYERS)

  def load(self, name: str, like: Any = None) -> Any:
    return self.trees.load(name, like)


# ----------------------------------------------------------------------------- in memory


class MemoryTrees:
  def __init__(self):
    self.trees: dict[str, Any] = {}

  def has(self, name):
    return name in self.trees

  def load(self, name, like=None):
    del like
    return self.trees[name]

  def save(self, name, tree):
    self.trees[name] = jax.device_get(tree)

  def delete(self, name):
    self.trees.pop(name, None)

  def save_progress(self, name, step, tree):
    del step
    self.save(name, tree)

  def load_progress(self, name, like):
    return self.trees.get(name)


class MemoryResults:
  def __init__(self):
    self.tables: dict[str, list[dict]] = {name: [] for name in results.TABLES}

  def finished(self):
    return {results.run_key(r): results.is_diverged(r) for r in self.summary()}

  def record(self, summary, curves, layers, seconds, extra=None):
    key = {k: summary[k] for k in ('seed', 'level', 'arm')}
    self.tables[results.CURVES].extend(curves)
    self.tables[results.LAYERS].extend(layers)
    for table, rows in (extra or {}).items():
      self.tables[table].extend(rows)
    self.tables[results.TIMINGS].append({**key, 'wall_seconds': round(seconds, 3)})
    self.tables[results.SUMMARY].append(summary)

  def summary(self):
    return self.tables[results.SUMMARY]

  def rows(self, table):
    return self.tables[table]


def MemoryStore() -> Store:  # noqa: N802 (reads as the class it used to be)
  """A ``Store`` in memory: ``store.summary``, ``store.curves``, ``store.trees.trees``."""
  return Store(MemoryTrees(), MemoryResults())


# ----------------------------------------------------------------------------- on disk


class DiskTrees:
  """Orbax checkpoints under ``root``; progress trees keep their last two steps."""

  def __init__(self, root: Path, log=print):
    self.root = Path(root)
    self.log = log

  def path(self, name: str) -> Path:
    return self.root / name

  def _progress_steps(self, name: str) -> list[Path]:
    """Finished mid-level checkpoints of ``name``, newest first."""
    base = self.path(name)
    if not base.is_dir():
      return []
    found = [
      p for p in base.glob('at_*') if _PROGRESS_STEP.fullmatch(p.name) and checkpoint.exists(p)
    ]
    return sorted(found, reverse=True)

  def has(self, name):
    return checkpoint.exists(self.path(name))

  def load(self, name, like=None):
    return checkpoint.load(self.path(name), like)

  def save(self, name, tree):
    checkpoint.save(self.path(name), tree)

  def delete(self, name):
    checkpoint.remove(self.path(name), root=self.root)

  def save_progress(self, name, step, tree):
    checkpoint.save(self.path(name) / f'at_{step:012d}', tree)
    for old in self._progress_steps(name)[_KEEP_PROGRESS:]:
      checkpoint.remove(old, root=self.root)

  def load_progress(self, name, like, *, remove_damaged: bool = True):
    if not self.path(name).is_dir():
      return None
    for path in self._progress_steps(name):
      try:
        tree = checkpoint.load(path, like)
      except CheckpointError as e:
        self.log(f'warning: {e} Falling back to the previous mid-level checkpoint.')
        if remove_damaged:
          checkpoint.remove(path, root=self.root)
        continue
      step = int(_PROGRESS_STEP.fullmatch(path.name).group(1))
      self.log(f'resuming {name.removeprefix(artifacts.PROGRESS + "/")} at step {step} from {path}')
      return tree
    self.log(
      f'warning: no readable mid-level checkpoint under {self.path(name)}; '
      'that level restarts from its beginning.'
    )
    return None


class DiskResults:
  """CSV tables in ``run_dir``, appended with a flush and fsync per finished run."""

  def __init__(self, run_dir: Path):
    self.dir = Path(run_dir)

  def finished(self):
    return {results.run_key(r): results.is_diverged(r) for r in self.summary()}

  def summary(self):
    return self.rows(results.SUMMARY)

  def rows(self, table):
    return results.read_rows(self.dir / table)

  def record(self, summary, curves, layers, seconds, extra=None):
    key = {k: summary[k] for k in ('seed', 'level', 'arm')}
    self._append(results.CURVES, curves)
    self._append(results.LAYERS, layers)
    for table, rows in (extra or {}).items():
      self._append(table, rows)
    self._append(results.TIMINGS, [{**key, 'wall_seconds': round(seconds, 3)}])
    self._append(results.SUMMARY, [summary])  # Last: this row marks the run finished.

  def _append(self, table: str, rows) -> None:
    path = self.dir / table
    if path.exists() and self._header(path) != list(results.TABLES[table]):
      self.rewrite(table, self.rows(table))  # Written before a column was added: new header.
    append_csv(path, results.TABLES[table], rows)

  @staticmethod
  def _header(path: Path) -> list[str]:
    with open(path, newline='') as f:
      return next(csv.reader(f), [])

  def rewrite(self, table: str, rows) -> None:
    """Replaces a table atomically (a temporary file renamed over it)."""
    rewrite_csv(self.dir / table, results.TABLES[table], rows)

  def torn(self, table: str) -> bool:
    """True when ``table`` ends in a partly written line."""
    path = self.dir / table
    if not path.exists() or path.stat().st_size == 0:
      return False
    with open(path, 'rb') as f:
      f.seek(-1, os.SEEK_END)
      return f.read(1) != b'\n'


def append_csv(path: Path, columns, rows) -> None:
  """Appends ``rows`` to a CSV table (header first when new), flushed and fsynced."""
  new = not path.exists()
  try:
    with open(path, 'a', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=columns)
      if new:
        writer.writeheader()
      writer.writerows(rows)
      f.flush()
      os.fsync(f.fileno())
  except OSError as e:
    raise RunError(f'could not write {path}: {e}. Finished runs are kept on disk.') from e


def rewrite_csv(path: Path, columns, rows) -> None:
  """Replaces a CSV table atomically (a temporary file renamed over it)."""
  tmp = path.with_suffix('.tmp')
  with open(tmp, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def DiskStore(run_dir: str | os.PathLike, log=print) -> Store:  # noqa: N802
  """The ``Store`` of a run directory: checkpoints/ and the CSV tables."""
  run_dir = Path(run_dir)
  return Store(DiskTrees(run_dir / artifacts.CHECKPOINTS, log=log), DiskResults(run_dir))


# ----------------------------------------------------------------------------- other processes


class SecondaryTrees:
  """A process other than the primary: reads the run directory, keeps its own writes in memory.

  Every process computes the same trees; only the primary writes them to disk
  (``lth_jax.training.distributed``).
  """

  def __init__(self, disk: DiskTrees):
    self.disk, self.mine = disk, MemoryTrees()

  def has(self, name):
    return self.mine.has(name) or self.disk.has(name)

  def load(self, name, like=None):
    return self.mine.load(name) if self.mine.has(name) else self.disk.load(name, like)

  def save(self, name, tree):
    self.mine.save(name, tree)

  def delete(self, name):
    self.mine.delete(name)

  def save_progress(self, name, step, tree):
    del name, step, tree  # The primary keeps the progress.

  def load_progress(self, name, like):
    return self.disk.load_progress(name, like, remove_damaged=False)


class SecondaryResults:
  """Result rows of earlier launches from disk, this launch's in memory."""

  def __init__(self, disk: DiskResults):
    self.disk, self.mine = disk, MemoryResults()

  def finished(self):
    return {**self.disk.finished(), **self.mine.finished()}

  def record(self, summary, curves, layers, seconds, extra=None):
    self.mine.record(summary, curves, layers, seconds, extra)

  def summary(self):
    return self.disk.summary() + self.mine.summary()

  def rows(self, table):
    return self.disk.rows(table) + self.mine.rows(table)


def Secondary(run_dir: str | os.PathLike) -> Store:  # noqa: N802
  """The ``Store`` of a run directory for a process that does not write."""
  disk = DiskStore(run_dir, log=lambda message: None)
  return Store(SecondaryTrees(disk.trees), SecondaryResults(disk.results))

"""Running a study, in memory or in a run directory: ``lth_jax.run_imp``.

The level loop itself is ``levels.train_levels`` (a study and a store). This shell
around it prints the pruning plan, shows progress, and for a run directory
takes its lock, repairs what a crash left, writes ``plan.json`` and keeps the
tables in order — the same steps for ``lth run`` and for a notebook.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from lth_jax.errors import RunError
from lth_jax.study import levels, workdir
from lth_jax.study.definition import Study
from lth_jax.study.store import DiskStore, Secondary, Store
from lth_jax.training import distributed

STUDY_JSON = 'study.json'
PLAN_JSON = 'plan.json'


def run_imp(
  study: Study,
  store: Store | None = None,
  *,
  run_dir: str | os.PathLike | None = None,
  log=print,
  progress: bool | None = None,
) -> Store:
  """Runs, resumes or grows ``study``: the same computation as ``lth run``.

  Args:
    study: from ``lth_jax.make_study`` (or ``lth_jax.study.from_config.from_config``).
    store: where results go (default: in memory, ``store.summary``).
    run_dir: a directory to keep everything in instead, resumable: rerunning
      trains only what is not there yet. A directory made by another study (its
      ``study.json`` differs in anything but levels, seeds and arms) is refused.
    log: where messages go (None: nowhere). The pruning plan is printed first.
    progress: True: bars; False: nothing; None: bars on a terminal, else a line per
      finished run and a heartbeat at most every minute (batch jobs).

  Returns:
    The store: ``store.summary``, ``store.curves``, ``store.layers``, ``store.load(name)``.
  """
  log = log or (lambda message: None)
  if run_dir is None:
    return run_in(study, store, log=log, progress=progress)
  if store is not None:
    raise RunError('give run_imp either a store or a run_dir, not both.')
  run_dir = Path(run_dir)
  _claim(run_dir, study)
  with opened(run_dir, log) as disk:
    return run_in(study, disk, log=log, progress=progress, run_dir=run_dir)


@contextlib.contextmanager
def opened(run_dir: Path, log) -> Iterator[Store]:
  """The run directory's store, locked by this process and repaired after any crash.

  With several processes (``lth_jax.training.distributed``) the primary one locks,
  repairs and writes; the others read what it repaired and keep their own
  results in memory.
  """
  if not distributed.is_primary():
    distributed.barrier('lth: run directory repaired')
    yield Secondary(run_dir)
    return
  with workdir.Lock(run_dir, log=log):
    store = DiskStore(run_dir, log=log)
    for note in workdir.repair(store):
      log(f'repaired: {note}')
    distributed.barrier('lth: run directory repaired')
    yield store


def run_in(
  study: Study, store: Store | None, *, log, progress=None, run_dir: Path | None = None
) -> Store:
  """The level loop with the plan printed, bars shown and (on disk) the tables sorted."""
  from lth_jax.study import progress as progress_lib

  log(f'pruning plan ({study.inputs.describe()}):\n{study.plan.table()}')
  writes = run_dir is not None and distributed.is_primary()
  if writes:
    (run_dir / PLAN_JSON).write_text(study.plan.to_json() + '\n')
  store = store if store is not None else levels.MemoryStore()
  finished = store.results.finished()
  bars = progress_lib.for_output(
    levels.total_steps(study), levels.steps_done(study, finished), show=progress, log=log
  )
  try:
    levels.train_levels(study, store, bars)
  finally:
    bars.finish()
  if writes:
    workdir.sort_tables(store)
  return store


def _claim(run_dir: Path, study: Study) -> None:
  """Writes study.json, or checks that the directory holds this study's results."""
  try:
    run_dir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise RunError(f'cannot create {run_dir}: {e.strerror or e}. Choose a writable run_dir.') from e
  identity = json.loads(json.dumps(study.identity()))
  path = run_dir / STUDY_JSON
  if path.exists():
    saved = json.loads(path.read_text())
    changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    if changed:
      raise RunError(
        f'{run_dir} holds another study (it differs in {", ".join(changed)}); use a new run_dir, '
        'or delete that directory to start over.'
      )
  elif any(run_dir.iterdir()):
    raise RunError(f'{run_dir} is not empty and has no {STUDY_JSON}; use a new or empty run_dir.')
  else:
    path.write_text(json.dumps(identity, indent=1) + '\n')

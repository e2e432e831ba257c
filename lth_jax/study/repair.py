"""A study directory made consistent after a crash, and its tables in their order.

A run's row in summary.csv is written last, after its checkpoint and its other
rows, so it marks the run as finished; ``repair`` drops rows of unfinished runs
and sends runs with damaged checkpoints back to work. ``sort_tables`` puts every
table in the order an uninterrupted run writes it.
"""

from __future__ import annotations

from lth_jax.errors import CheckpointError
from lth_jax.study import artifacts, checkpoint, results
from lth_jax.study.store import Store


def repair(store: Store) -> list[str]:
  """Drops rows of unfinished runs and sends runs with damaged checkpoints back to work.

  ``store`` is a run directory's ``DiskStore``. A line of a table that is not a row (a field
  missing, or not of its column's kind: ``results.read_table``) is named and dropped, and the
  run it describes is recomputed; a table that is not a CSV text at all is moved aside
  (``<table>.unreadable``). Returns what was repaired.
  """
  trees, tables = store.trees, store.results
  notes = []
  for table in results.TABLES:
    path = tables.dir / table
    _, problems = results.read_table(path)
    for problem in problems:
      if problem.line == 0:
        path.replace(path.with_name(f'{table}.unreadable'))
        notes.append(f'{problem}; moved it to {table}.unreadable: its runs will be recomputed.')
      else:
        notes.append(f'{problem}; that line is dropped and its run, if any, recomputed.')
  for partial in checkpoint.partial_checkpoints(trees.root):
    notes.append(f'removed the unfinished checkpoint {partial} (an interrupted save).')
    checkpoint.remove(partial, root=trees.root)
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
        checkpoint.remove(path, root=trees.root)
  keep = [r for r in keep if _inputs_intact(store, r)]
  finished = {results.run_key(r) for r in keep}
  for table in results.TABLES:
    raw, problems = results.read_table(tables.dir / table)
    good = [r for r in raw if results.run_key(r) in finished]
    # A torn last line (a crash mid-write) must go too, or the next row is glued onto it.
    if len(good) != len(raw) or problems or tables.torn(table):
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

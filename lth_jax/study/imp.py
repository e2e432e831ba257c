"""Iterative magnitude pruning: the first stage of every study, and ``lth_jax.run_imp``.

``run_imp(study)`` runs (or resumes, or grows) the level loop of
``lth_jax.study.levels`` in memory or in a study directory, printing the pruning
plan first and showing progress — the same computation as ``lth run``, whose
pipeline runs it as its first stage (``IMP``).
"""

from __future__ import annotations

import os
from pathlib import Path

from lth_jax.errors import RunError
from lth_jax.study import config as config_lib
from lth_jax.study import levels, results, stages, tables, workdir
from lth_jax.study import progress as progress_lib
from lth_jax.study import repair as repair_lib
from lth_jax.study.definition import Study
from lth_jax.study.lock import Lock
from lth_jax.study.store import MemoryStore, Store
from lth_jax.training import distributed

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
    return train(study, MemoryStore() if store is None else store, log=log, progress=progress)
  if store is not None:
    raise RunError('give run_imp either a store or a run_dir, not both.')
  with workdir.open_study(run_dir, identity=study.identity(), log=log) as opened:
    return train(study, opened.store, log=log, progress=progress, run_dir=opened.path)


def train(study: Study, store: Store, *, log, progress=None, run_dir: Path | None = None) -> Store:
  """The level loop with the plan printed, bars shown and (in a directory) the tables sorted."""
  log(f'pruning plan ({study.inputs.describe()}):\n{study.plan.table()}')
  writes = run_dir is not None and distributed.is_primary()
  if writes:
    (run_dir / PLAN_JSON).write_text(study.plan.to_json() + '\n')
  bars = progress_lib.for_output(
    levels.total_steps(study), levels.steps_done(study, store.results.finished()),
    show=progress, log=log,
  )  # fmt: skip
  try:
    levels.train_levels(study, store, bars)
  finally:
    bars.finish()
  if writes:
    repair_lib.sort_tables(store)
  return store


# ----------------------------------------------------------------------------- the stage


def _run(ctx: stages.StageContext) -> None:
  finished = ctx.store.results.finished()
  if finished:
    ctx.log(f'resuming {ctx.path}: {len(finished)} runs already finished')
  ctx.log(f'{ctx.config.name}: {levels.describe(ctx.study)}; results in {ctx.path}')
  train(ctx.study, ctx.store, log=ctx.log, progress=ctx.progress, run_dir=ctx.path)


def _summary(path: Path, config) -> str:
  rows = results.read_rows(path / results.SUMMARY)
  return '\n'.join([tables.level_table(rows), *divergence_notes(rows, config.num_levels)])


def divergence_notes(rows, num_levels: int) -> list[str]:
  """One line per diverged run, saying what was left out and what was not run."""
  notes = []
  for r in rows:
    if not results.is_diverged(r):
      continue
    level, seed = int(r['level']), r['seed']
    note = (f'diverged: seed {seed} level {level} {r["arm"]} (non-finite loss at step '
            f'{r["diverged_step"]}); left out of the means above')  # fmt: skip
    if r['arm'] == 'ticket' and level < num_levels:
      note += f'; levels {level + 1}-{num_levels} of seed {seed} were not run (no ticket to prune)'
    notes.append(note + '.')
  return notes


def _status(path: Path, config) -> str:
  """'3/8 stopped (resume with lth resume)': pruning levels done of those configured, and state."""
  rows = results.read_rows(path / results.SUMMARY)
  seeds, arms = config.num_seeds, len(config_lib.arms_of(config))
  complete = [
    level for level in range(config.num_levels + 1)
    if sum(int(r['level']) == level for r in rows) >= seeds * (1 if level == 0 else arms)
  ]  # fmt: skip
  done = len([level for level in complete if level > 0])
  finished = len(complete) == config.num_levels + 1
  if Lock(path).held():
    state = 'running'
  elif any(results.is_diverged(r) for r in rows):
    state = 'diverged' if finished else 'failed (diverged runs)'
  else:
    state = 'finished' if finished else 'stopped (resume with lth resume)'
  return f'{done:>4}/{config.num_levels:<4}  {state}'


IMP = stages.register(
  stages.Stage(
    'imp', wanted=lambda config: not config.lmc.rewind_steps, run=_run, after=(),
    tables=results.TABLES, summary=_summary, status=_status,
  )
)  # fmt: skip

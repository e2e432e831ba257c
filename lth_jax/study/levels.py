"""Iterative magnitude pruning's level loop, composed from the pure pieces.

    level 0:  θ0 ──train──► θk ──train──► θT       (the dense network; θk kept)
    level L:  masks_L = prune(θT of level L-1, masks_{L-1})
              for each arm: start = arm(θk, masks_L, key) ──train──► a summary row
              (only the ticket feeds level L+1)

A level's runs (seed, arm) are trained in groups: one run at a time, or all at
once under ``jax.vmap`` (``lth_jax.training.parallel``), each group by one ``fit``.
Everything goes through a ``Store`` (``lth_jax.study.store``): a result already there
is never recomputed, so a study resumes, and grows, for free.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Sequence

import jax
import numpy as np

from lth_jax.arms import registry
from lth_jax.core.train import EVAL_METRICS
from lth_jax.study import artifacts, early_bird, moving
from lth_jax.study import starts as starts_lib
from lth_jax.study.definition import RunKey, Study, seed_keys
from lth_jax.study.store import MemoryStore, Store
from lth_jax.training import parallel
from lth_jax.training import segment as segment_lib
from lth_jax.training.curve import Curve, early_stop, new_curve
from lth_jax.training.fit import Hook, fit


class SilentProgress:
  """A progress display that shows nothing (see ``lth_jax.study.progress.TqdmProgress``)."""

  def start(self, description: str, total_steps: int) -> None:
    pass

  def advance(self, steps: int, metrics: dict[str, float]) -> None:
    pass

  def run_finished(self, row: dict, seconds: float) -> None:
    pass

  def close(self) -> None:
    pass


def train_levels(study: Study, store: Store | None = None, progress=None) -> Store:
  """Trains (or resumes, or grows) the whole study: level 0, then ``num_levels`` pruning levels.

  Returns the store, whose ``summary`` holds one row per (seed, level, arm).
  """
  store = MemoryStore() if store is None else store
  progress = progress or SilentProgress()
  for level in range(study.num_levels + 1):
    pending = pending_runs(study, store, level)
    for batch in batches_of(study, [r for r in pending if registry.trains(r.arm)]):
      states = starts_lib.start_states(study, store, [run for group in batch for run in group])
      trained = _train_side_by_side(study, store, batch, states, progress)
      for group, (finals, curve, seconds) in zip(batch, trained, strict=True):
        for i, (run, final) in enumerate(zip(group, finals, strict=True)):
          extra = {
            table: mine for table, rows in curve.extra.items()
            if (mine := [r for r in rows if (r['seed'], r['arm']) == (run.seed, run.arm)])
          }  # fmt: skip
          row = finish(study, store, run, final, *curve.of_run(i), seconds, extra or None)
          progress.run_finished(row, seconds)
        store.trees.delete(progress_name(group))
    for run in [r for r in pending if not registry.trains(r.arm)]:
      progress.run_finished(*evaluate_untrained(study, store, run))
  return store


def evaluate_untrained(study: Study, store: Store, run: RunKey) -> tuple[dict, float]:
  """Records an arm that trains no weight (a supermask) as it starts: one evaluation.

  Its row reads the metrics of that evaluation (at the start step) as the early-stop ones,
  with no early-stop step (nothing was trained) and the iterations its mask took.
  """
  began = time.perf_counter()
  state = starts_lib.start_states(study, store, [run])[0]
  metrics = jax.device_get(study.trainer(vmapped=False).evaluate(state))
  row = np.array([[float(metrics[m]) for m in EVAL_METRICS]], np.float64)
  steps = np.array([int(state.step)])
  seconds = time.perf_counter() - began
  return finish(study, store, run, jax.device_get(state), steps, row, -1, seconds), seconds


def _train_side_by_side(study: Study, store: Store, batch, starts, progress):
  """Trains each group of ``batch`` (in its own thread when there are several).

  Returns [(final states, curve, seconds per run)] in ``batch`` order. Start
  states are made before (their masks are shared between runs) and results are
  recorded after, in order, so threads only train.
  """
  offsets = np.cumsum([0] + [len(g) for g in batch])
  progress = _Shared(progress, batch) if len(batch) > 1 else progress

  def train(i):
    began = time.perf_counter()
    finals, curve = train_group(
      study, store, batch[i], starts[offsets[i] : offsets[i + 1]], progress
    )
    return finals, curve, (time.perf_counter() - began) / len(batch[i])

  if len(batch) == 1:
    return [train(0)]
  try:
    with concurrent.futures.ThreadPoolExecutor(len(batch)) as pool:
      return list(pool.map(train, range(len(batch))))
  finally:
    progress.progress.close()


class _Shared:
  """One progress display for runs trained side by side in threads."""

  def __init__(self, progress, batch):
    self.progress, self.lock, self.started = progress, threading.Lock(), False
    self.runs = sum(map(len, batch))
    self.description = f'level {batch[0][0].level}: {self.runs} runs side by side'

  def start(self, description, total_steps):
    with self.lock:
      if not self.started:
        self.progress.start(self.description, total_steps * self.runs)
        self.started = True

  def advance(self, steps, metrics):
    with self.lock:
      self.progress.advance(steps, metrics)

  def close(self):
    pass  # The caller's progress closes its own bar; a thread finishing early must not.


def describe(study: Study) -> str:
  """'2 seeds, the dense network and 8 pruning levels, arms ticket,reinit, one run at a time'."""
  seeds = f'{len(study.seeds)} seed' + ('s' if len(study.seeds) != 1 else '')
  levels = f'{study.num_levels} pruning level' + ('s' if study.num_levels != 1 else '')
  mode = study.execution.describe()
  return f'{seeds}, the dense network and {levels}, arms {",".join(study.arms)}, {mode}'


def run_steps(study: Study, level: int) -> int:
  """Training iterations of one run at ``level`` (levels >= 1 start from the rewind step)."""
  return study.num_steps - (study.rewind_step if level else 0)


def total_steps(study: Study) -> int:
  """Training iterations of the whole study (for an overall progress bar)."""
  trained = [a for a in study.arms if registry.trains(a)]
  per_seed = run_steps(study, 0) + study.num_levels * len(trained) * run_steps(study, 1)
  return len(study.seeds) * per_seed


def steps_done(study: Study, finished) -> int:
  """Training iterations of the ``finished`` runs ((seed, level, arm) keys) of the study."""
  return sum(
    run_steps(study, level)
    for (seed, level, arm) in finished
    if seed in study.seeds
    and level <= study.num_levels
    and arm in study.arms
    and registry.trains(arm)
  )


def pending_runs(study: Study, store: Store, level: int) -> list[RunKey]:
  """The runs of ``level`` not yet finished, in (seed, arm) order."""
  done = store.results.finished()
  arms = ['ticket'] if level == 0 else list(study.arms)
  runs = []
  for seed in study.seeds:
    if level > 0 and done.get((seed, level - 1, 'ticket'), True):
      continue  # The last ticket diverged or is missing: nothing to prune.
    runs += [RunKey(seed, level, a) for a in arms if (seed, level, a) not in done]
  return runs


def groups_of(study: Study, runs: Sequence[RunKey]) -> list[list[RunKey]]:
  """The groups of runs trained by one ``fit``: vmapped groups, or single runs."""
  if not study.execution.vmapped:
    return [[r] for r in runs]
  size = study.execution.group_size or max(1, len(runs))
  return [list(runs[i : i + size]) for i in range(0, len(runs), size)]


def batches_of(study: Study, runs: Sequence[RunKey]) -> list[list[list[RunKey]]]:
  """Batches of groups trained at the same time (side by side in threads)."""
  groups = groups_of(study, runs)
  size = 1 if study.execution.vmapped else max(1, study.execution.threads)
  return [groups[i : i + size] for i in range(0, len(groups), size)]


def progress_name(runs: Sequence[RunKey]) -> str:
  return artifacts.progress(runs[0].level, [(r.seed, r.arm) for r in runs])


# ----------------------------------------------------------------------------- training


def train_group(study: Study, store: Store, runs: Sequence[RunKey], starts, progress):
  """Trains ``runs`` from ``starts`` to ``study.num_steps`` with one ``fit``, resumably.

  Returns (final host states of ``runs``, curve). Vmapped groups are padded to
  a multiple of the device count; the copies are dropped here. A group of one
  run (on one device) takes the plain program: vmapping one network only costs.
  """
  num_real = len(runs)
  data_keys = [seed_keys(r.seed).data for r in runs]
  execution = study.execution
  sharder = execution.sharder
  stacked = execution.vmapped and len(parallel.pad(runs, sharder.multiple)) > 1
  if stacked:
    multiple = sharder.multiple
    state = sharder(parallel.stack(parallel.pad(starts, multiple)))
    data_key = sharder(parallel.stack(parallel.pad(data_keys, multiple)))
    num_runs = len(parallel.pad(runs, multiple))
  else:
    assert num_real == 1, 'unstacked groups hold one run'
    state, data_key, num_runs = starts[0], data_keys[0], 1
  name = progress_name(runs)
  first = int(np.asarray(starts[0].step))
  curve = new_curve(first, study.num_steps, eval_every=study.eval_every, num_runs=num_runs)
  val_like = np.zeros((num_runs,) if stacked else (), np.float32)
  curve.best = segment_lib.Best(val_like, state.params, state.model_state)
  # What else watches (the early-bird search) or moves (SET, RigL) the group's runs: each a
  # hook of fit, its state kept in the checkpoints, its rows for a table of its own.
  trackers = [
    t for t in (_early_bird(study, store, runs, stacked, first),
                moving.mover(study, store, runs, stacked, first)) if t is not None
  ]  # fmt: skip
  like = {'state': state, 'curve': curve.to_tree()}
  like.update({t.name: t.to_tree() for t in trackers})
  saved = store.trees.load_progress(name, like=like)
  if saved is None:
    curve = None
    for t in trackers:
      t.begin(first, state)
  else:
    place = sharder if stacked else jax.device_put
    curve.load_tree(saved['curve'])
    curve.best = place(curve.best)
    restored = jax.tree.map(lambda s, x: np.asarray(s, dtype=x.dtype), saved['state'], state)
    state = place(restored)
    for t in trackers:
      t.load_tree(saved[t.name])

  def keep_rewind_state(step, state, curve):
    # Every process gathers (a collective); the store decides who writes.
    host = parallel.to_host(state)
    for run, s in zip(runs, parallel.unstack(host, num_real) if stacked else [host]):
      store.trees.save(artifacts.rewind(run.seed), s)

  def save_progress(step, state, curve):
    tree = parallel.to_host({'state': state, 'curve': curve.to_tree()})
    tree.update({t.name: t.to_tree() for t in trackers})
    store.trees.save_progress(name, step, tree)

  resumed_at = first if curve is None else curve.last_step
  progress.start(_describe(runs), study.num_steps - resumed_at)
  hooks = [_progress_hook(progress, resumed_at)]
  if runs[0].level == 0 and study.rewind_step > 0:
    hooks.append(Hook(keep_rewind_state, at=(study.rewind_step,)))
  hooks += [t.hook() for t in trackers]  # Before the checkpoint's: it holds what they did.
  if execution.checkpoint_every or execution.checkpoint_seconds:
    hooks.append(
      Hook(save_progress, every=execution.checkpoint_every, seconds=execution.checkpoint_seconds)
    )
  trainer = study.trainer(vmapped=stacked)
  try:
    state, curve = fit(
      trainer, state, data_key, until=study.num_steps, eval_every=study.eval_every,
      curve=curve, hooks=hooks,
    )  # fmt: skip
  finally:
    progress.close()
  host = parallel.to_host(state)
  curve.extra = {t.table: t.finish() for t in trackers}
  return (parallel.unstack(host, num_real) if stacked else [host]), curve


def _early_bird(study: Study, store: Store, runs, stacked: bool, first: int):
  """The early-bird search of the group's ticket runs, when the study has the early_bird arm
  and a next level to find its masks for (else None)."""
  if 'early_bird' not in study.arms or runs[0].level >= study.num_levels:
    return None
  if not any(r.arm == 'ticket' for r in runs):
    return None
  return early_bird.Tracker(study, store, runs, stacked, first)


def _progress_hook(progress, step: int) -> Hook:
  """Advances ``progress`` whenever training returns to the host, from ``step`` on."""
  shown = [step]

  def advance(step, state, curve: Curve):
    progress.advance(step - shown[0], curve.latest())
    shown[0] = step

  return Hook(advance, always=True, at_end=True)


def _describe(runs: Sequence[RunKey]) -> str:
  if len(runs) == 1:
    r = runs[0]
    return f'level {r.level} seed {r.seed} {r.arm}'
  return f'level {runs[0].level}: {len(runs)} runs'


# ----------------------------------------------------------------------------- results


def finish(
  study,
  store: Store,
  run: RunKey,
  state,
  steps,
  metrics,
  diverged_step: int,
  seconds,
  extra=None,
) -> dict:
  """Saves a trained run's params and records its rows (and its ``extra`` tables' rows);
  returns the summary row."""
  store.trees.save(run.name, {'params': state.params, 'model_state': state.model_state})
  summary = {
    'seed': run.seed,
    'level': run.level,
    'arm': run.arm,
    'weights_remaining': study.plan.fraction_remaining(state.masks),
    **early_stop(steps, metrics),
    'diverged': int(diverged_step >= 0),
    'diverged_step': diverged_step if diverged_step >= 0 else '',
    'collapsed_layers': study.plan.collapsed_layers(state.masks),
    'mask_steps': '',
  }
  arm = registry.get(run.arm)
  if not arm.trains:  # No weight trained: no early stop to speak of (left out of its figures).
    summary['early_stop_step'] = ''
  if arm.mask_steps is not None:
    summary['mask_steps'] = arm.mask_steps(study.context)
  base = {'seed': run.seed, 'level': run.level, 'arm': run.arm}
  curves = [
    {**base, 'step': int(s), **{m: float(v) for m, v in zip(EVAL_METRICS, row, strict=True)}}
    for s, row in zip(steps, metrics, strict=True)
  ]
  layers = [
    {**base, 'layer': layer, 'kept': kept, 'total': total, 'fraction': kept / total}
    for layer, (kept, total) in study.plan.counts(state.masks).items()
  ]
  store.results.record(summary, curves, layers, seconds, extra)
  return summary

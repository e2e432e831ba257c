"""Iterative magnitude pruning: the level loop, composed from the pure pieces.

Level 0 trains the dense network from θ0 and keeps θk (the whole state at the
rewind step k). Level L >= 1 prunes the previous level's trained ticket
(``pruning``), then starts every arm from θk with the new masks (``controls``)
and trains it to the same final iteration. Only the ticket feeds the next level.

Work is organised as *groups*: the runs (seed, arm) of one level trained
together — one run at a time, or all at once under ``jax.vmap``
(``parallel``). Everything a level produces goes through a ``Store``: an
in-memory dict for notebooks, the run directory (``lth_jax.run``) for the
command line, which is what makes runs resumable: a result already in the store
is never recomputed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import controls as controls_lib
from lth_jax import masks as masks_lib
from lth_jax import train as train_lib
from lth_jax.train import EVAL_METRICS, TrainState

SUMMARY_COLUMNS = (
    'seed', 'level', 'arm', 'weights_remaining', 'early_stop_step', 'val_loss_at_early_stop',
    'val_accuracy_at_early_stop', 'test_accuracy_at_early_stop', 'train_accuracy_at_early_stop',
    'final_test_accuracy', 'final_step', 'diverged', 'diverged_step',
)  # fmt: skip
CURVE_COLUMNS = ('seed', 'level', 'arm', 'step', *EVAL_METRICS)
LAYER_COLUMNS = ('seed', 'level', 'arm', 'layer', 'kept', 'total', 'fraction')


class Store(Protocol):
  """Where a study keeps what it has computed (see ``MemoryStore``)."""

  def has(self, name: str) -> bool: ...
  def load(self, name: str, like: Any = None) -> Any: ...
  def save(self, name: str, tree: Any) -> None: ...
  def delete(self, name: str) -> None: ...
  def finished(self) -> dict[tuple[int, int, str], bool]:
    """{(seed, level, arm): diverged} of the runs already recorded."""
    ...

  def record(
    self, summary: dict, curves: list[dict], layers: list[dict], seconds: float
  ) -> None: ...


class MemoryStore:
  """A ``Store`` in memory: results as lists of rows, pytrees in a dict."""

  def __init__(self):
    self.trees: dict[str, Any] = {}
    self.summary: list[dict] = []
    self.curves: list[dict] = []
    self.layers: list[dict] = []

  def has(self, name):
    return name in self.trees

  def load(self, name, like=None):
    del like
    return self.trees[name]

  def save(self, name, tree):
    self.trees[name] = jax.device_get(tree)

  def delete(self, name):
    self.trees.pop(name, None)

  def finished(self):
    return {(r['seed'], r['level'], r['arm']): bool(r['diverged']) for r in self.summary}

  def record(self, summary, curves, layers, seconds):
    del seconds
    self.summary.append(summary)
    self.curves.extend(curves)
    self.layers.extend(layers)


class Progress(Protocol):
  def start(self, description: str, total_steps: int) -> None: ...
  def advance(self, steps: int, metrics: dict[str, float]) -> None: ...
  def close(self) -> None: ...


class SilentProgress:
  def start(self, description, total_steps):
    pass

  def advance(self, steps, metrics):
    pass

  def close(self):
    pass


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a level: a seed and an arm."""

  seed: int
  level: int
  arm: str

  @property
  def name(self) -> str:
    return f'seed_{self.seed}/level_{self.level}/{self.arm}'


@dataclasses.dataclass
class Study:
  """Everything a study needs, built once (see ``lth_jax.experiment.build``).

  Attributes:
    task: model, optimizer, batch size, normalization.
    train: the training split on the device.
    eval_splits: {'train', 'val', 'test'} splits for evaluation.
    input_shape: (H, W, C).
    num_steps: T, the last iteration of every run.
    eval_every: evaluation period in iterations.
    rewind_step: k; 0 rewinds to θ0.
    num_levels: pruning levels after the dense level 0.
    prune: (params, masks) -> masks, one round of pruning.
    arms: arm names; 'ticket' first.
    seeds: the seeds of the study.
    checkpoint_every: mid-level checkpoint period (0: never).
    vmapped: train a level's runs together under vmap.
    group_size: at most this many runs per vmapped call (0: all).
    iterative: prune from the last level (True) or one-shot from level 0.
  """

  task: train_lib.Task
  train: train_lib.DataArrays
  eval_splits: dict[str, train_lib.EvalSplit]
  input_shape: tuple[int, ...]
  num_steps: int
  eval_every: int
  rewind_step: int
  num_levels: int
  prune: Callable[[Any, Any], Any]
  arms: Sequence[str]
  seeds: Sequence[int]
  checkpoint_every: int = 0
  vmapped: bool = False
  group_size: int = 0
  iterative: bool = True
  shard: Callable[[Any], Any] = lambda tree: tree

  def keys(self, seed: int):
    """(init, data order, controls) keys of a seed."""
    init_key, data_key, control_key = jax.random.split(jax.random.key(seed), 3)
    return init_key, data_key, control_key

  def init_params(self, key):
    return train_lib.init_variables(self.task.model, key, self.input_shape)[0]

  def initial_state(self, seed: int) -> TrainState:
    params, model_state = train_lib.init_variables(
      self.task.model, self.keys(seed)[0], self.input_shape
    )
    return train_lib.create_state(self.task, params, model_state)

  def state_like(self) -> TrainState:
    return jax.eval_shape(lambda: self.initial_state(0))

  def controls(self) -> dict[str, controls_lib.Control]:
    return controls_lib.controls_for(self.init_params)


def boundaries(first: int, last: int, *, eval_every: int, extra: Sequence[int] = ()) -> list[int]:
  """Steps after ``first`` where a chunk of training ends: evaluations, extras, the end."""
  points = set(range((first // eval_every + 1) * eval_every, last, eval_every)) | {last}
  points |= {s for s in extra if first < s < last}
  return sorted(points)


def early_stop(steps: np.ndarray, metrics: np.ndarray) -> dict[str, float]:
  """Summary numbers at the evaluation of minimum validation loss.

  ``metrics`` is [evaluations, len(EVAL_METRICS)]; evaluations whose metrics are
  not finite (after a divergence) are ignored.
  """
  col = {name: i for i, name in enumerate(EVAL_METRICS)}
  finite = np.all(np.isfinite(metrics), axis=1)
  val_loss = np.where(finite, metrics[:, col['val_loss']], np.inf)
  best = int(np.argmin(val_loss))  # First minimum: the earliest such iteration.
  last = int(np.max(np.nonzero(finite)[0])) if finite.any() else best
  row = metrics[best]
  return {
    'early_stop_step': int(steps[best]),
    'val_loss_at_early_stop': float(row[col['val_loss']]),
    'val_accuracy_at_early_stop': float(row[col['val_accuracy']]),
    'test_accuracy_at_early_stop': float(row[col['test_accuracy']]),
    'train_accuracy_at_early_stop': float(row[col['train_accuracy']]),
    'final_test_accuracy': float(metrics[last, col['test_accuracy']]),
    'final_step': int(steps[last]),
  }


def to_host(tree):
  """Numpy copies of (possibly sharded, possibly multi-process) arrays."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, n: int):
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


@dataclasses.dataclass
class RunResult:
  run: Run
  state: TrainState  # host arrays
  steps: np.ndarray  # [evaluations]
  metrics: np.ndarray  # [evaluations, len(EVAL_METRICS)]
  diverged_step: int  # -1 when the run stayed finite
  seconds: float


def _progress_name(runs: Sequence[Run]) -> str:
  level = runs[0].level
  return f'progress/level_{level}/' + '+'.join(f'{r.seed}-{r.arm}' for r in runs)


def train_group(
  study: Study,
  runs: Sequence[Run],
  starts: Sequence[TrainState],
  store: Store,
  progress: Progress,
) -> list[RunResult]:
  """Trains ``runs`` from ``starts`` to ``study.num_steps``, resumable.

  With ``study.vmapped`` the runs are stacked on a leading axis and trained by
  one compiled program; otherwise ``runs`` must hold a single run.
  """
  began = time.perf_counter()
  vmapped = study.vmapped
  assert vmapped or len(runs) == 1, 'sequential groups hold one run'
  num_real = len(runs)
  runs, starts = _pad(study, list(runs), list(starts))
  steps_fn, eval_fn = train_lib.compiled(study.task, vmapped=vmapped)
  data_keys = [study.keys(r.seed)[1] for r in runs]
  if vmapped:
    state, data_key = study.shard(_stack(starts)), study.shard(_stack(data_keys))
  else:
    state, data_key = starts[0], data_keys[0]
  name = _progress_name(runs[:num_real])
  first = int(np.asarray(starts[0].step))
  extra = [study.rewind_step] if runs[0].level == 0 else []
  capacity = 1 + len(boundaries(first, study.num_steps, eval_every=study.eval_every))
  record = _Recorder(len(runs), capacity)
  restored = _resume(study, store, name, state, record) if store.has(name) else None
  if restored is None:
    record.add(first, eval_fn(state, study.eval_splits))
  else:
    state = restored
  step = record.last_step
  progress.start(_describe(runs[:num_real]), study.num_steps - step)
  for end in boundaries(step, study.num_steps, eval_every=study.eval_every, extra=extra):
    state, _ = steps_fn(state, study.train, data_key, end - step)
    progress.advance(end - step, record.latest())
    step = end
    if extra and step == study.rewind_step:
      _save_rewind(study, store, runs[:num_real], state)
    if step % study.eval_every and step != study.num_steps:
      continue
    record.add(step, eval_fn(state, study.eval_splits))
    if record.all_diverged():
      break
    if study.checkpoint_every and step % study.checkpoint_every == 0 and step < study.num_steps:
      store.save(name, {'state': state, 'record': record.to_tree()})
  progress.close()
  seconds = (time.perf_counter() - began) / num_real
  finals = _unstack(to_host(state), len(runs)) if vmapped else [to_host(state)]
  return [
    RunResult(run, finals[i], *record.of_run(i), seconds) for i, run in enumerate(runs[:num_real])
  ]


def _pad(study: Study, runs: list[Run], starts: list[TrainState]):
  """Repeats the last run so the group splits evenly over the devices.

  The copies' results are dropped by ``train_group``; nothing is lost silently.
  """
  multiple = getattr(study.shard, 'multiple', 1)
  extra = -len(runs) % multiple if study.vmapped else 0
  return runs + [runs[-1]] * extra, starts + [starts[-1]] * extra


def _describe(runs: Sequence[Run]) -> str:
  if len(runs) == 1:
    r = runs[0]
    return f'level {r.level} seed {r.seed} {r.arm}'
  return f'level {runs[0].level}: {len(runs)} runs'


def _save_rewind(study: Study, store: Store, runs: Sequence[Run], state) -> None:
  host = to_host(state)
  states = _unstack(host, len(runs)) if study.vmapped else [host]
  for run, s in zip(runs, states, strict=False):
    store.save(f'seed_{run.seed}/rewind', s)


def _resume(study: Study, store: Store, name: str, state, record: _Recorder):
  """The group's state from its mid-level checkpoint, filling ``record``; None if unreadable."""
  try:
    saved = store.load(name, like={'state': state, 'record': record.to_tree()})
  except LookupError:  # Every mid-level checkpoint is damaged: start the level over.
    return None
  record.load_tree(saved['record'])
  restored = jax.tree.map(lambda s, x: np.asarray(s, dtype=x.dtype), saved['state'], state)
  return study.shard(restored) if study.vmapped else restored


class _Recorder:
  """The evaluations of a group so far, on the host, in fixed-size arrays.

  Fixed sizes let a mid-level checkpoint be restored into a known structure.
  """

  def __init__(self, num_runs: int, capacity: int):
    self.num_runs, self.capacity = num_runs, capacity
    self.count = 0
    self.steps = np.full((capacity,), -1, np.int64)
    self.metrics = np.full((capacity, num_runs, len(EVAL_METRICS)), np.nan, np.float32)

  def add(self, step: int, metrics: dict) -> None:
    host = jax.device_get(metrics)
    table = np.stack([np.asarray(host[m], np.float32).reshape(-1) for m in EVAL_METRICS], axis=-1)
    self.steps[self.count], self.metrics[self.count] = step, table
    self.count += 1

  @property
  def last_step(self) -> int:
    return int(self.steps[self.count - 1])

  def latest(self) -> dict[str, float]:
    table = self.metrics[self.count - 1]
    finite = np.all(np.isfinite(table), axis=-1)
    if not finite.any():
      return {}
    return {m: float(np.mean(table[finite, i])) for i, m in enumerate(EVAL_METRICS)}

  def _finite(self) -> np.ndarray:  # [evaluations, runs]
    return np.all(np.isfinite(self.metrics[: self.count]), axis=-1)

  def all_diverged(self) -> bool:
    return bool(np.all(~self._finite()[-1]))

  def of_run(self, i: int):
    bad = np.nonzero(~self._finite()[:, i])[0]
    diverged_step = int(self.steps[bad[0]]) if len(bad) else -1
    return self.steps[: self.count].copy(), self.metrics[: self.count, i].copy(), diverged_step

  def to_tree(self):
    return {'count': np.int64(self.count), 'steps': self.steps, 'metrics': self.metrics}

  def load_tree(self, tree) -> None:
    self.count = int(tree['count'])
    self.steps = np.asarray(tree['steps'], np.int64)
    self.metrics = np.asarray(tree['metrics'], np.float32)


def control_key(study: Study, seed: int, level: int, arm: str):
  """The key of an arm's control at a level: fixed by (seed, level, arm) alone."""
  key = jax.random.fold_in(study.keys(seed)[2], level)
  return jax.random.fold_in(key, controls_lib.ARMS.index(arm))


def level_masks(study: Study, store: Store, seed: int, level: int):
  """The ticket's masks at ``level``: pruned from the last level's trained ticket."""
  name = f'seed_{seed}/level_{level}/masks'
  like = study.state_like().masks
  if store.has(name):
    return store.load(name, like=like)
  if level == 0:
    masks = masks_lib.ones_like(like)
  elif study.iterative:
    trained = store.load(f'seed_{seed}/level_{level - 1}/ticket', like=_final_like(study))
    previous = level_masks(study, store, seed, level - 1)
    masks = study.prune(trained['params'], previous, 1)
  else:  # One-shot: prune the dense trained network straight to this level's sparsity.
    trained = store.load(f'seed_{seed}/level_0/ticket', like=_final_like(study))
    masks = study.prune(trained['params'], masks_lib.ones_like(like), level)
  store.save(name, masks)
  return masks


def _final_like(study: Study):
  like = study.state_like()
  return {'params': like.params, 'model_state': like.model_state}


def start_states(study: Study, store: Store, runs: Sequence[Run]) -> list[TrainState]:
  """The state each run of a level starts from (θ0 at level 0, an arm of θk after)."""
  starts = []
  for run in runs:
    if run.level == 0:
      state = study.initial_state(run.seed)
      store.save(
        f'seed_{run.seed}/init', {'params': state.params, 'model_state': state.model_state}
      )
      if study.rewind_step == 0:
        store.save(f'seed_{run.seed}/rewind', state)
    else:
      state_k = store.load(f'seed_{run.seed}/rewind', like=study.state_like())
      masks = level_masks(study, store, run.seed, run.level)
      control = study.controls()[run.arm]
      state = control(state_k, masks, control_key(study, run.seed, run.level, run.arm))
    starts.append(state)
  return starts


def finish(study: Study, store: Store, result: RunResult) -> dict:
  """Saves a trained run's params and records its rows; returns the summary row."""
  run, state = result.run, result.state
  store.save(run.name, {'params': state.params, 'model_state': state.model_state})
  counts = masks_lib.layer_counts(state.masks)
  summary = {
    'seed': run.seed,
    'level': run.level,
    'arm': run.arm,
    'weights_remaining': masks_lib.fraction_remaining(state.masks),
    **early_stop(result.steps, result.metrics),
    'diverged': int(result.diverged_step >= 0),
    'diverged_step': result.diverged_step if result.diverged_step >= 0 else '',
  }
  base = {'seed': run.seed, 'level': run.level, 'arm': run.arm}
  curves = [
    {**base, 'step': int(s), **{m: float(v) for m, v in zip(EVAL_METRICS, row, strict=True)}}
    for s, row in zip(result.steps, result.metrics, strict=True)
  ]
  layers = [
    {**base, 'layer': layer, 'kept': kept, 'total': total, 'fraction': kept / total}
    for layer, (kept, total) in counts.items()
  ]
  store.record(summary, curves, layers, result.seconds)
  return summary


def pending_runs(study: Study, store: Store, level: int) -> list[Run]:
  """The runs of ``level`` not yet finished, in (seed, arm) order."""
  done = store.finished()
  arms = ['ticket'] if level == 0 else list(study.arms)
  runs = []
  for seed in study.seeds:
    if level > 0 and done.get((seed, level - 1, 'ticket'), True):
      continue  # The last ticket diverged or is missing: nothing to prune.
    runs += [Run(seed, level, a) for a in arms if (seed, level, a) not in done]
  return runs


def groups_of(study: Study, runs: Sequence[Run]) -> list[list[Run]]:
  if not study.vmapped:
    return [[r] for r in runs]
  size = study.group_size or max(1, len(runs))
  return [list(runs[i : i + size]) for i in range(0, len(runs), size)]


def run_imp(study: Study, store: Store | None = None, progress: Progress | None = None) -> Store:
  """Runs (or resumes) the whole study: level 0, then ``num_levels`` pruning levels.

  Returns the store, whose ``summary`` holds one row per (seed, level, arm).
  """
  store = MemoryStore() if store is None else store
  progress = progress or SilentProgress()
  for level in range(study.num_levels + 1):
    for group in groups_of(study, pending_runs(study, store, level)):
      starts = start_states(study, store, group)
      for result in train_group(study, group, starts, store, progress):
        finish(study, store, result)
      store.delete(_progress_name(group))
  return store

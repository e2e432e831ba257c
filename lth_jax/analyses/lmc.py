"""Instability of a study's networks: the pair trained from θk and the path between them.

For a seed and a level of an IMP study with rewinding to k (``study.rewind_step``):

    start  = the level's ticket at k: masks_L ⊙ θk with the rest of the state at k
             (``Study.rewound``: the optimizer rule of rewinding), θk read from the
             study's store (``artifacts.rewind``), masks_L from ``starts.level_masks``
    A, B   = start trained to T twice with two data keys folded from the seed's data
             key (``pair_data_keys``): the data order from k on, augmentation and
             dropout differ; everything else is shared. The pair follows the study's
             ``parallel`` as IMP's runs do (``train_copies``): one vmapped call on an
             accelerator, two plain trainings side by side in threads (or one after
             the other) on a CPU, where the vmapped pair is the slower
    path   = test loss and error of θ(α) for α on an even grid (``lth_jax.core.connectivity``)

Level 0 is the dense network (its start is θk itself). Rows go to
``instability.csv`` and ``interpolation.csv`` beside the study's summary.csv;
a (seed, level) whose instability row is there is never recomputed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np

from lth_jax.core import connectivity
from lth_jax.core.train import TrainState
from lth_jax.study import artifacts, programs, results, starts
from lth_jax.study import store as store_lib
from lth_jax.study.definition import Study, seed_keys
from lth_jax.study.store import Store
from lth_jax.training import parallel
from lth_jax.training.fit import Trainer

INSTABILITY = 'instability.csv'
INTERPOLATION = 'interpolation.csv'
INSTABILITY_COLUMNS = (
  'seed', 'level', 'weights_remaining', 'rewind_step', 'error_a', 'error_b',
  'max_path_error', 'instability',
)  # fmt: skip
INTERPOLATION_COLUMNS = ('seed', 'level', 'rewind_step', 'alpha', 'test_loss', 'test_error')
COLUMNS = {INSTABILITY: INSTABILITY_COLUMNS, INTERPOLATION: INTERPOLATION_COLUMNS}

# Folded into a seed's data key: the SGD noise of copy A and of copy B, apart from the
# seed's own data order (that of its IMP runs).
NOISE_A = 0x1A
NOISE_B = 0x1B
BN_SALT = 0xB2  # Folded into the seed's data key: the batches that re-estimate BN statistics.


def pair_data_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """The data keys of the two copies: (data order, augmentation, dropout) of A and of B."""
  data = seed_keys(seed).data
  return jax.random.fold_in(data, NOISE_A), jax.random.fold_in(data, NOISE_B)


def pair_start(study: Study, store: Store, seed: int, level: int) -> TrainState:
  """The state both copies start from: the level's ticket rewound to k, as IMP's runs start."""
  return starts.ticket_at_k(study, store, seed, level)


def pair_trainer(study: Study) -> Trainer:
  """The vmapped trainer of the pair (two networks, the study's task and data)."""
  return study.trainer(vmapped=True)


def train_pair(trainer: Trainer, start: TrainState, data_keys, *, until: int):
  """``start`` trained to ``until`` once per data key, in one vmapped call; host states."""
  if not trainer.vmapped:
    raise ValueError('train_pair needs a vmapped Trainer (Trainer(..., vmapped=True)).')
  stacked = parallel.stack([start] * len(data_keys))
  keys = parallel.stack(list(data_keys))
  trained = trainer.train_steps(stacked, keys, until - int(np.asarray(start.step)))
  return parallel.unstack(parallel.to_host(trained), len(data_keys))


def train_copies(study: Study, start: TrainState, data_keys, *, until: int):
  """``start`` trained to ``until`` once per data key, as the study's execution trains runs:
  vmapped in one call, in threads, or one after the other; host states."""
  if study.execution.vmapped:
    return train_pair(pair_trainer(study), start, data_keys, until=until)
  plain, host = study.trainer(vmapped=False), jax.device_get(start)
  steps = until - int(np.asarray(host.step))

  def one(key):  # A fresh device copy each: the program donates its state.
    return parallel.to_host(plain.train_steps(jax.device_put(host), key, steps))

  if study.execution.threads > 1:
    with ThreadPoolExecutor(min(len(data_keys), study.execution.threads)) as pool:
      return list(pool.map(one, data_keys))
  return [one(key) for key in data_keys]


def path(study: Study, state_a, state_b, *, num_alphas: int, bn_recompute: bool, seed: int):
  """(alphas, test losses, test errors) along the path from ``state_a`` to ``state_b``."""
  grid = connectivity.alphas(num_alphas)
  recompute = bn_recompute and bool(jax.tree.leaves(state_a.model_state))
  bn_key = jax.random.fold_in(seed_keys(seed).data, BN_SALT)
  losses, errors = programs.path_metrics(study.task)(
    state_a, state_b, study.eval_splits['test'], grid,
    bn_data=study.train if recompute else None, bn_key=bn_key,
  )  # fmt: skip
  return np.asarray(grid), np.asarray(losses), np.asarray(errors)


def measure(
  study: Study, store: Store, seed: int, level: int, *, num_alphas: int, bn_recompute: bool
):
  """The instability row and the interpolation rows of (seed, level) of ``study``."""
  start = pair_start(study, store, seed, level)
  state_a, state_b = train_copies(study, start, pair_data_keys(seed), until=study.num_steps)
  grid, losses, errors = path(
    study, state_a, state_b, num_alphas=num_alphas, bn_recompute=bn_recompute, seed=seed
  )
  key = {'seed': seed, 'level': level}
  summary = {
    **key,
    'weights_remaining': study.plan.fraction_remaining(start.masks),
    'rewind_step': study.rewind_step,
    'error_a': float(errors[0]),
    'error_b': float(errors[-1]),
    'max_path_error': float(errors.max()),
    'instability': float(connectivity.instability(errors)),
  }
  curve = [
    {**key, 'rewind_step': study.rewind_step, 'alpha': float(a), 'test_loss': float(lo),
     'test_error': float(e)}
    for a, lo, e in zip(grid, losses, errors, strict=True)
  ]  # fmt: skip
  return summary, curve


def finished(run_dir: Path) -> set[tuple[int, int]]:
  """(seed, level) pairs whose instability row is in ``run_dir``."""
  return {(int(r['seed']), int(r['level'])) for r in results.read_rows(run_dir / INSTABILITY)}


def run_pairs(study: Study, store: Store, run_dir: Path, *, levels, num_alphas: int,
              bn_recompute: bool, log=print) -> None:  # fmt: skip
  """Measures every (seed, level) of ``levels`` not yet in ``run_dir``, writing its rows."""
  _drop_unfinished(run_dir)
  done = finished(run_dir)
  for level in levels:
    for seed in study.seeds:
      if (seed, level) in done:
        continue
      if not store.trees.has(artifacts.trained(seed, level, 'ticket')):
        log(f'no ticket of seed {seed} at level {level} (diverged?): no pair measured')
        continue
      row, curve = measure(
        study, store, seed, level, num_alphas=num_alphas, bn_recompute=bn_recompute
      )
      append(run_dir, INTERPOLATION, curve)
      append(run_dir, INSTABILITY, [row])  # Last: marks (seed, level) finished.
      log(
        f'k={study.rewind_step} level {level} seed {seed}: errors {row["error_a"]:.4f} / '
        f'{row["error_b"]:.4f}, max on the path {row["max_path_error"]:.4f}, '
        f'instability {row["instability"]:.4f}'
      )


def _drop_unfinished(run_dir: Path) -> None:
  """Drops interpolation rows of pairs a kill interrupted before their instability row."""
  done = finished(run_dir)
  rows = results.read_rows(run_dir / INTERPOLATION)
  keep = [r for r in rows if (int(r['seed']), int(r['level'])) in done]
  if len(keep) != len(rows) or _torn(run_dir / INTERPOLATION):
    write(run_dir, INTERPOLATION, keep)
  if _torn(run_dir / INSTABILITY):
    write(run_dir, INSTABILITY, results.read_rows(run_dir / INSTABILITY))


def _torn(path: Path) -> bool:
  return path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b'\n')


def append(run_dir: Path, table: str, rows) -> None:
  store_lib.append_csv(Path(run_dir) / table, COLUMNS[table], rows)


def write(run_dir: Path, table: str, rows) -> None:
  """Replaces a table atomically."""
  store_lib.rewrite_csv(Path(run_dir) / table, COLUMNS[table], rows)

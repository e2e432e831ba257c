"""Every run's start state: θ0 at level 0, an arm's start from θk (or θ0) and the level's masks
after; the masks of each level; and tickets imported from another study.

    level 0:  θ0 of the seed (dense masks, fresh optimizer); θ0 is stored, and θk too when k = 0
    level L:  masks_L = prune(trained ticket of pruning_source(L), masks of that level)
              start   = arm.start(context, rewound θk, masks_L, control_key(seed, L, arm))

Used by the level loop, the linear mode connectivity pairs and ``lth export``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax

import lth_jax.arms as arms
from lth_jax.core import criteria
from lth_jax.core import masks as masks_lib
from lth_jax.core import rewind as rewind_lib
from lth_jax.core.train import TrainState
from lth_jax.data import tickets
from lth_jax.errors import ConfigError, DataError, RunError
from lth_jax.study import artifacts
from lth_jax.study.definition import RunKey, Study, control_key
from lth_jax.study.store import Store


def trained_like(study: Study):
  """The structure of a stored trained network: {'params', 'model_state'}."""
  like = study.state_like()
  return {'params': like.params, 'model_state': like.model_state}


def level_masks(study: Study, store: Store, seed: int, level: int):
  """The ticket's masks at ``level``, pruned from the ticket trained at ``pruning_source``."""
  name = artifacts.masks(seed, level)
  like = study.state_like().masks
  if store.trees.has(name):
    return store.trees.load(name, like=like)
  if level == 0:
    masks = masks_lib.ones_like(like)
  elif level == 1 and study.imported is not None:
    masks = study.imported(seed)[1]  # An imported ticket's masks (config key ticket).
  else:
    source = study.pruning_source(level)
    trained = store.trees.load(artifacts.trained(seed, source, 'ticket'), like=trained_like(study))
    start = (
      level_masks(study, store, seed, source) if study.iterative else masks_lib.ones_like(like)
    )
    init = None
    if study.criterion != criteria.DEFAULT:  # The criterion compares θT with θ0.
      init = store.trees.load(artifacts.init(seed), like=trained_like(study))['params']
    masks = study.prune_level(trained['params'], start, level, init)
  store.trees.save(name, masks)
  return masks


def rewound(study: Study, store: Store, seed: int, level: int = 1) -> TrainState:
  """The state pruned level ``level`` of ``seed`` starts from, before its masks: θk (or θ0)
  with the study's optimizer rule, or an imported ticket's values; with ``retrain`` =
  'lr_rewind' / 'finetune', the trained network it is pruned from at step k, with a fresh
  optimizer whose schedule is at k / held at T (``lth_jax.core.rewind``)."""
  state_k = study.rewound(store.trees.load(artifacts.rewind(seed), like=study.state_like()))
  optimizer = study.task.optimizer
  if study.imported is not None:  # θk's values replaced, with a fresh optimizer.
    params = study.imported(seed)[0]
    return rewind_lib.with_fresh_optimizer(state_k._replace(params=params), optimizer)
  if study.retrain == 'rewind':
    return state_k
  trained = store.trees.load(
    artifacts.trained(seed, study.pruning_source(level), 'ticket'), like=trained_like(study)
  )
  state = state_k._replace(params=trained['params'], model_state=trained['model_state'])
  held = study.num_steps if study.retrain == 'finetune' else None
  return rewind_lib.with_fresh_optimizer(state, optimizer, schedule_step=held)


def ticket_at_k(study: Study, store: Store, seed: int, level: int) -> TrainState:
  """The level's ticket at the rewind step: masks_L ⊙ θk with the rest of the state at k
  (level 0: the dense network at k)."""
  if level == 0:  # The dense network at k.
    start = study.rewound(store.trees.load(artifacts.rewind(seed), like=study.state_like()))
  else:
    start = rewound(study, store, seed, level)
  return rewind_lib.rewind(start, level_masks(study, store, seed, level))


def start_states(study: Study, store: Store, runs: Sequence[RunKey]) -> list[TrainState]:
  """The state each run of a level starts from (θ0 at level 0, an arm's start after)."""
  starts = []
  for run in runs:
    if run.level == 0:
      state = study.initial_state(run.seed)
      store.trees.save(
        artifacts.init(run.seed), {'params': state.params, 'model_state': state.model_state}
      )
      if study.rewind_step == 0:
        store.trees.save(artifacts.rewind(run.seed), state)
    else:
      arm = arms.get(run.arm)
      masks = level_masks(study, store, run.seed, run.level)
      if arm.masks == 'early_bird':
        masks = _early_bird_masks(study, store, run.seed, run.level)
      key = control_key(run.seed, run.level, arm.key_of or run.arm)
      state = study.start(run.arm, rewound(study, store, run.seed, run.level), masks, key)
    starts.append(state)
  return starts


def _early_bird_masks(study: Study, store: Store, seed: int, level: int):
  name = artifacts.early_bird_masks(seed, level)
  if not store.trees.has(name):
    raise RunError(
      f'the early-bird masks of seed {seed} for level {level} ({name}) are missing: they are '
      f"found while level {level - 1}'s ticket trains. Remove that run's row from "
      'summary.csv to train it again.'
    )
  return store.trees.load(name, like=study.state_like().masks)


class Imported:
  """A study's imported ticket (config key ``ticket``): per seed, its params and masks.

  ``path`` may hold ``{seed}``, replaced by each seed of the study, so that seed S
  of a study trains the ticket of seed S of another. Each file is read (bounded,
  every member checked against its header) and checked against the study's
  parameters, leaf by leaf, before it is used.
  """

  def __init__(self, path: str, params_like):
    self.path, self.params_like = path, params_like

  def file(self, seed: int) -> Path:
    return Path(self.path.replace('{seed}', str(seed)))

  def __call__(self, seed: int):
    """(params, masks) of ``seed``'s ticket, with exactly the study's params structure."""
    path = self.file(seed)
    _, params, masks, _ = tickets.read(path)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(self.params_like)
    names = [masks_lib.leaf_name(p) for p, _ in leaves]
    try:
      tickets.check_fits(path, params, {n: x for n, (_, x) in zip(names, leaves, strict=True)})
    except DataError as e:
      raise ConfigError(f'config.ticket={str(path)!r}: {e}') from None
    return treedef.unflatten([params[n] for n in names]), treedef.unflatten(
      [masks[n] for n in names]
    )

  def check(self, seeds) -> None:
    """Reads and checks every seed's ticket file now: a bad file fails before any training."""
    for seed in seeds:
      self(seed)

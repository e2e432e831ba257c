"""A study: everything the level loop needs, built once, and the keys of its runs.

``Study`` holds the task (model, optimizer, batch, normalization), the data on
the device, the schedule (``num_steps``, ``eval_every``, ``rewind_step``,
``num_levels``), how a level's masks are made, the arms, the seeds and how runs
are grouped. ``lth_jax.build.from_config`` makes one from a config.

Randomness is fixed by the seed alone: ``seed_keys(seed)`` splits it into the
init, data-order and control keys, and an arm's control key at a level is
folded from (level, arm) (``control_key``), so adding seeds, levels or arms
never changes the runs already done.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from lth_jax import artifacts
from lth_jax import controls as controls_lib
from lth_jax import train as train_lib
from lth_jax.fit import Trainer
from lth_jax.parallel import Sharder
from lth_jax.train import TrainState


class SeedKeys(NamedTuple):
  init: jax.Array  # θ0 (and, folded, the reinit controls' fresh weights: see control_key)
  data: jax.Array  # the data order (and augmentation, dropout) of every run of the seed
  control: jax.Array  # the controls' randomness


def seed_keys(seed: int) -> SeedKeys:
  return SeedKeys(*jax.random.split(jax.random.key(seed), 3))


def control_key(seed: int, level: int, arm: str):
  """The key of an arm's control at a level: fixed by (seed, level, arm) alone."""
  key = jax.random.fold_in(seed_keys(seed).control, level)
  return jax.random.fold_in(key, controls_lib.arm_id(arm))


@dataclasses.dataclass(frozen=True)
class RunKey:
  """One training run of a study: a seed, a level and an arm."""

  seed: int
  level: int
  arm: str

  @property
  def name(self) -> str:
    """Where its trained params are stored (``lth_jax.artifacts``)."""
    return artifacts.trained(self.seed, self.level, self.arm)


@dataclasses.dataclass(eq=False)
class Study:
  """Everything a study needs (see ``lth_jax.build.from_config``).

  Attributes:
    task: model, optimizer, batch size, normalization.
    train: the training split on the device.
    eval_splits: {'train', 'val', 'test'} splits for evaluation.
    input_shape: one example's shape, e.g. (H, W, C).
    num_steps: T, the last iteration of every run.
    eval_every: evaluation period in iterations.
    rewind_step: k; 0 rewinds to θ0.
    num_levels: pruning levels after the dense level 0.
    prune: ``prune(params, masks, *, rounds) -> masks``: ``rounds`` rounds of pruning
      at once (1 for iterative pruning).
    iterative: prune each level from the last level's ticket (True) or one-shot
      from the dense network (False); see ``pruning_source``.
    arms: arm names, 'ticket' first.
    seeds: the seeds of the study.
    checkpoint_every: mid-level checkpoint period in iterations (0: never).
    vmapped: train a level's runs together under vmap.
    group_size: at most this many runs per vmapped call (0: all).
    sharder: places a stacked group on the devices (vmapped studies).
  """

  task: train_lib.Task
  train: train_lib.DataArrays
  eval_splits: dict[str, train_lib.EvalSplit]
  input_shape: tuple[int, ...]
  num_steps: int
  eval_every: int
  rewind_step: int
  num_levels: int
  prune: Callable[..., Any]
  arms: Sequence[str]
  seeds: Sequence[int]
  iterative: bool = True
  checkpoint_every: int = 0
  vmapped: bool = False
  group_size: int = 0
  sharder: Sharder | None = None

  @functools.cached_property
  def trainer(self) -> Trainer:
    return Trainer(self.task, self.train, self.eval_splits, vmapped=self.vmapped)

  def init_params(self, key):
    return train_lib.init_variables(self.task.model, key, self.input_shape)[0]

  def initial_state(self, seed: int) -> TrainState:
    params, model_state = train_lib.init_variables(
      self.task.model, seed_keys(seed).init, self.input_shape
    )
    return train_lib.create_state(self.task, params, model_state)

  def state_like(self) -> TrainState:
    return jax.eval_shape(lambda: self.initial_state(0))

  def controls(self) -> dict[str, controls_lib.Control]:
    return controls_lib.controls_for(self.init_params)

  def pruning_source(self, level: int) -> int:
    """The level whose trained ticket level ``level``'s masks are pruned from."""
    return level - 1 if self.iterative else 0

  def prune_level(self, trained_params, masks, level: int):
    """The masks of ``level`` from the trained params of ``pruning_source(level)``.

    Iterative: one round from that level's masks. One-shot: ``level`` rounds at
    once from the dense masks (``masks`` is then all-True).
    """
    return self.prune(trained_params, masks, rounds=1 if self.iterative else level)

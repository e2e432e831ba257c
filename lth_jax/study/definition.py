"""A study: what it computes (``Study``), how it runs (``Execution``), and the keys of its runs.

``Study`` holds the task (model, optimizer, batch, normalization), the data on
the device, the schedule (``num_steps``, ``eval_every``, ``rewind_step``,
``num_levels``), how a level's masks are made, the arms and the seeds.
``Execution`` says how its runs are trained (vmapped or in threads, in groups
of how many, sharded how, checkpointed how often): it never changes a result.
``lth_jax.make_study`` builds both; ``lth_jax.study.from_config`` from a config.

Compiled programs are cached by what they compute (``lth_jax.study.programs``),
not held by a study: a study with another rewind step or more levels
(``dataclasses.replace``) reuses every program of the first.

Randomness is fixed by the seed alone: ``seed_keys(seed)`` splits it into the
init, data-order and control keys, and an arm's key at a level is folded from
(level, arm) (``control_key``), so adding seeds, levels or arms never changes
the runs already done.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from lth_jax.arms import at_init as at_init_lib
from lth_jax.arms import registry, sparse
from lth_jax.core import criteria, models
from lth_jax.core import rewind as rewind_lib
from lth_jax.core import train as train_lib
from lth_jax.core.plan import Plan
from lth_jax.core.train import TrainState
from lth_jax.data import inputs as inputs_lib
from lth_jax.data.inputs import Inputs
from lth_jax.study import artifacts, programs
from lth_jax.training.fit import Trainer
from lth_jax.training.parallel import Sharder


class SeedKeys(NamedTuple):
  init: jax.Array  # θ0 (and, folded, the reinit controls' fresh weights: see control_key)
  data: jax.Array  # the data order (and augmentation, dropout) of every run of the seed
  control: jax.Array  # the controls' randomness


def seed_keys(seed: int) -> SeedKeys:
  return SeedKeys(*jax.random.split(jax.random.key(seed), 3))


def control_key(seed: int, level: int, arm: str):
  """The key of an arm's start at a level: fixed by (seed, level, arm) alone."""
  key = jax.random.fold_in(seed_keys(seed).control, level)
  return jax.random.fold_in(key, registry.arm_id(arm))


@dataclasses.dataclass(frozen=True)
class RunKey:
  """One training run of a study: a seed, a level and an arm."""

  seed: int
  level: int
  arm: str

  @property
  def name(self) -> str:
    """Where its trained params are stored (``lth_jax.study.artifacts``)."""
    return artifacts.trained(self.seed, self.level, self.arm)


@dataclasses.dataclass(frozen=True)
class EarlyBird:
  """The ``early_bird.*`` config keys: You et al.'s window of masks and largest distance."""

  window: int = 5
  epsilon: float = 0.1


@dataclasses.dataclass
class Execution:
  """How a study's runs are trained; nothing here changes a result.

  Attributes:
    vmapped: train a level's runs together under vmap.
    group_size: at most this many runs per vmapped call (0: all).
    threads: train up to this many runs at a time, each in its own thread
      (not vmapped; the same numbers as one at a time).
    sharder: places a stacked group on the devices (vmapped studies).
    checkpoint_every: mid-level checkpoint period in iterations (0: none).
    checkpoint_seconds: mid-level checkpoint period in wall-clock seconds (0: none).
  """

  vmapped: bool = False
  group_size: int = 0
  threads: int = 1
  sharder: Sharder | None = None
  checkpoint_every: int = 0
  checkpoint_seconds: float = 0.0

  def describe(self) -> str:
    if self.vmapped:
      return 'vmapped'
    return f'up to {self.threads} runs side by side' if self.threads > 1 else 'one run at a time'


@dataclasses.dataclass(eq=False)
class Study:
  """What a study computes; ``make_study`` builds one (``from_config`` from a config).

  Attributes:
    task: model, optimizer, batch size, normalization.
    inputs: the data on the device (``lth_jax.data.inputs``).
    plan: which weights are pruned, as what, at what rate (``lth_jax.core.plan``).
    num_steps: T, the last iteration of every run.
    eval_every: evaluation period in iterations.
    rewind_step: k; 0 rewinds to θ0.
    num_levels: pruning levels after the dense level 0.
    arms: arm names in the registry's order, 'ticket' first (``lth_jax.arms``).
    seeds: the seeds of the study.
    iterative: prune each level from the last level's ticket (True) or one-shot
      from the dense network (False); see ``pruning_source``.
    init: the weights' initialization scheme (``models.INITS``, or 'default').
    rewind_optimizer: 'restore' the optimizer state at k, or start it 'fresh'
      (``rewind.with_fresh_optimizer``).
    curve_every: the test split and training subset are also evaluated every
      ``curve_every`` iterations, for the curves (0: only where the summary reads
      them: each new validation minimum and the final step).
    criterion: what IMP ranks the weights by (``lth_jax.core.criteria``).
    retrain: how a pruned level retrains, which is also what the next level prunes:
      'rewind' (weights and schedule to k), 'lr_rewind' (the trained weights, the
      schedule replayed from k) or 'finetune' (the trained weights at the final
      learning rate); see ``lth_jax.core.rewind``.
    at_init: the settings of the arms that prune early (``lth_jax.arms.at_init``).
    early_bird: the early-bird search's window and distance (``lth_jax.study.early_bird``).
    dst: how the sparse-from-the-start arms choose and move their masks (``lth_jax.arms.sparse``).
    imported: an imported ticket (``lth_jax.study.starts.Imported``): seed ->
      (params, masks). Level 1's masks are its masks and every pruned level starts
      from its params in place of θk's, with a fresh optimizer.
    execution: how the runs are trained (``Execution``).
  """

  task: train_lib.Task
  inputs: Inputs
  plan: Plan
  num_steps: int
  eval_every: int
  rewind_step: int
  num_levels: int
  arms: Sequence[str]
  seeds: Sequence[int]
  iterative: bool = True
  init: str = models.DEFAULT_INIT
  rewind_optimizer: str = 'restore'
  curve_every: int = 0
  criterion: str = 'large_final'
  retrain: str = 'rewind'
  at_init: at_init_lib.Settings = dataclasses.field(default_factory=at_init_lib.Settings)
  early_bird: EarlyBird = dataclasses.field(default_factory=lambda: EarlyBird())
  dst: sparse.Settings = dataclasses.field(default_factory=lambda: sparse.Settings())
  imported: Callable[[int], tuple[Any, Any]] | None = None
  execution: Execution = dataclasses.field(default_factory=Execution)

  @property
  def input_shape(self) -> tuple[int, ...]:
    return self.inputs.input_shape

  @property
  def train(self) -> train_lib.DataArrays:
    return self.inputs.train

  @property
  def eval_splits(self) -> dict[str, train_lib.EvalSplit]:
    return self.inputs.splits

  def trainer(self, *, vmapped: bool | None = None) -> Trainer:
    """The compiled programs of one network, or of a stacked group (``vmapped``; default:
    as the execution trains)."""
    vmapped = self.execution.vmapped if vmapped is None else vmapped
    return programs.trainer(self.task, self.inputs, vmapped=vmapped, curve_every=self.curve_every)

  @functools.cached_property
  def context(self) -> registry.Context:
    """What the arms read of this study (``lth_jax.arms.registry.Context``)."""
    return registry.Context(
      self.task,
      self.plan,
      self.input_shape,
      self.num_classes,
      self.init,
      self.at_init,
      self.dst,
    )

  @functools.cached_property
  def num_classes(self) -> int:
    like = self.state_like()
    logits = jax.eval_shape(
      lambda params, model_state: self.task.model.apply(
        {'params': params, **model_state},
        jax.numpy.zeros((1, *self.input_shape)),
        **train_lib.call_kwargs(self.task.model, False),
      ),
      like.params,
      like.model_state,
    )
    return int(logits.shape[-1])

  def start(self, arm: str, state_k: TrainState, masks, key) -> TrainState:
    """Arm ``arm``'s start from the rewound state and the level's masks (compiled once)."""
    return programs.arm_start(registry.get(arm), self.context)(state_k, masks, key, self.train)

  def init_params(self, key):
    """θ0 for ``key``: the model's init, with the weights redrawn from ``init`` unless 'default'."""
    return self.context.init_params(key)

  def initial_state(self, seed: int) -> TrainState:
    """θ0 of ``seed`` with dense masks and a fresh optimizer, at step 0."""
    return programs.initial_state(self.context)(seed_keys(seed).init)

  def state_like(self) -> TrainState:
    return jax.eval_shape(
      lambda: train_lib.initial_state(self.task, jax.random.key(0), self.input_shape)
    )

  def rewound(self, state_k: TrainState) -> TrainState:
    """The state a pruned level starts from, before its masks: θk with the optimizer rule."""
    if self.rewind_optimizer == 'fresh':
      return rewind_lib.with_fresh_optimizer(state_k, self.task.optimizer)
    return state_k

  def pruning_source(self, level: int) -> int:
    """The level whose trained ticket level ``level``'s masks are pruned from."""
    return level - 1 if self.iterative else 0

  def prune_level(self, trained_params, masks, level: int, init_params=None):
    """The masks of ``level`` from the trained params of ``pruning_source(level)``.

    Iterative: one round from that level's masks. One-shot: ``level`` rounds at
    once from the dense masks (``masks`` is then all-True). Criteria other than
    ``large_final`` also read θ0 (``init_params``; ``lth_jax.core.criteria``).
    """
    rounds = 1 if self.iterative else level
    prune = programs.pruner(self.plan)
    if self.criterion == criteria.DEFAULT:
      return prune(trained_params, masks, rounds=rounds)
    pools = self.plan.scoring_pools()
    scores = criteria.scores(self.criterion, trained_params, init_params, masks, pools=pools)
    return prune(trained_params, masks, rounds=rounds, scores=scores)

  def identity(self) -> dict:
    """What makes this study's results what they are (less what only adds work: levels,
    seeds, arms). The optimizer's hyperparameters are not visible here."""
    return {
      'model': repr(self.task.model),
      'optimizer_state': repr(jax.tree.structure(self.state_like().opt_state)),
      'batch_size': self.task.batch_size,
      'augment': self.task.augment,
      'normalization': [self.task.divide_by, list(self.task.mean), list(self.task.std)],
      'data': inputs_lib.digest([self.inputs.train.x, self.inputs.train.y])
      + '/' + inputs_lib.digest(jax.tree.leaves(self.inputs.splits)),
      'plan': json.loads(self.plan.to_json()),
      'iterative': self.iterative,
      'num_steps': self.num_steps,
      'eval_every': self.eval_every,
      'rewind_step': self.rewind_step,
      'init': self.init,
      'rewind_optimizer': self.rewind_optimizer,
      **self._added_identity(),
      **({'ticket': self.imported.path} if self.imported else {}),
    }  # fmt: skip

  def _added_identity(self) -> dict:
    """Settings added later, named only when they differ from their defaults (so a
    study.json written before them still matches)."""
    added = {}
    if self.criterion != criteria.DEFAULT:
      added['criterion'] = self.criterion
    if self.retrain != 'rewind':
      added['retrain'] = self.retrain
    if self.at_init != at_init_lib.Settings():
      added['at_init'] = dataclasses.asdict(self.at_init)
    if self.early_bird != EarlyBird():
      added['early_bird'] = dataclasses.asdict(self.early_bird)
    if self.dst != sparse.Settings():
      added['dst'] = dataclasses.asdict(self.dst)
    return added

"""A study: everything the level loop needs, built once, and the keys of its runs.

``Study`` holds the task (model, optimizer, batch, normalization), the data on
the device, the schedule (``num_steps``, ``eval_every``, ``rewind_step``,
``num_levels``), how a level's masks are made, the arms, the seeds and how runs
are grouped. ``lth_jax.study.from_config.from_config`` makes one from a config.

Randomness is fixed by the seed alone: ``seed_keys(seed)`` splits it into the
init, data-order and control keys, and an arm's control key at a level is
folded from (level, arm) (``control_key``), so adding seeds, levels or arms
never changes the runs already done.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from lth_jax.arms import at_init as at_init_lib
from lth_jax.arms import controls as controls_lib
from lth_jax.core import criteria, models
from lth_jax.core import rewind as rewind_lib
from lth_jax.core import train as train_lib
from lth_jax.core.plan import Plan
from lth_jax.core.train import TrainState
from lth_jax.data import inputs as inputs_lib
from lth_jax.data.inputs import Inputs
from lth_jax.study import artifacts
from lth_jax.training.fit import Trainer
from lth_jax.training.parallel import Sharder


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
    """Where its trained params are stored (``lth_jax.study.artifacts``)."""
    return artifacts.trained(self.seed, self.level, self.arm)


@dataclasses.dataclass(eq=False)
class Study:
  """Everything a study needs; ``make_study`` builds one (``build.from_config`` from a config).

  Attributes:
    task: model, optimizer, batch size, normalization.
    inputs: the data on the device (``lth_jax.data.inputs``).
    plan: which weights are pruned, as what, at what rate (``lth_jax.core.plan``).
    num_steps: T, the last iteration of every run.
    eval_every: evaluation period in iterations.
    rewind_step: k; 0 rewinds to θ0.
    num_levels: pruning levels after the dense level 0.
    iterative: prune each level from the last level's ticket (True) or one-shot
      from the dense network (False); see ``pruning_source``.
    arms: arm names in ``controls.ARMS`` order, 'ticket' first.
    seeds: the seeds of the study.
    init: the weights' initialization scheme (``models.INITS``, or 'default').
    rewind_optimizer: 'restore' the optimizer state at k, or start it 'fresh'
      (``rewind.with_fresh_optimizer``).
    checkpoint_every: mid-level checkpoint period in iterations (0: none).
    checkpoint_seconds: mid-level checkpoint period in wall-clock seconds (0: none).
    curve_every: the test split and training subset are also evaluated every
      ``curve_every`` iterations, for the curves (0: only where the summary reads
      them: each new validation minimum and the final step).
    vmapped: train a level's runs together under vmap.
    group_size: at most this many runs per vmapped call (0: all).
    threads: train up to this many runs at a time, each in its own thread
      (not vmapped; the same numbers as one at a time).
    sharder: places a stacked group on the devices (vmapped studies).
    criterion: what IMP ranks the weights by (``lth_jax.core.criteria``).
    at_init: the settings of the arms that prune early (``lth_jax.arms.at_init``).
    imported: an imported ticket (``lth_jax.analyses.ticket.Imported``): seed -> (params,
      masks). Level 1's masks are its masks and every pruned level starts from its
      params in place of θk's, with a fresh optimizer (``imp.start_states``).
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
  checkpoint_every: int = 0
  checkpoint_seconds: float = 0.0
  curve_every: int = 0
  vmapped: bool = False
  group_size: int = 0
  threads: int = 1
  sharder: Sharder | None = None
  criterion: str = 'large_final'
  at_init: at_init_lib.Settings = dataclasses.field(default_factory=at_init_lib.Settings)
  imported: Callable[[int], tuple[Any, Any]] | None = None

  @property
  def input_shape(self) -> tuple[int, ...]:
    return self.inputs.input_shape

  @property
  def train(self) -> train_lib.DataArrays:
    return self.inputs.train

  @property
  def eval_splits(self) -> dict[str, train_lib.EvalSplit]:
    return self.inputs.splits

  @functools.cached_property
  def plain_trainer(self) -> Trainer:
    """The trainer of one network (not vmapped)."""
    if not self.vmapped:
      return self.trainer
    return Trainer(self.task, self.inputs.train, self.inputs.splits, curve_every=self.curve_every)

  @functools.cached_property
  def trainer(self) -> Trainer:
    return Trainer(
      self.task,
      self.inputs.train,
      self.inputs.splits,
      vmapped=self.vmapped,
      curve_every=self.curve_every,
    )

  @functools.cached_property
  def prune(self) -> Callable[..., Any]:
    """``prune(params, masks, *, rounds) -> masks``: the plan, jitted."""
    return jax.jit(self.plan.prune, static_argnames='rounds')

  def init_params(self, key):
    """θ0 for ``key``: the model's init, with the weights redrawn from ``init`` unless 'default'."""
    params = train_lib.init_variables(self.task.model, key, self.input_shape)[0]
    return models.reinitialize(
      params, jax.random.fold_in(key, _INIT_SALT), self.init, self.plan.prunable()
    )

  def initial_state(self, seed: int) -> TrainState:
    """θ0 of ``seed`` with dense masks and a fresh optimizer, at step 0."""
    return self._initial_state(seed_keys(seed).init)

  @functools.cached_property
  def _initial_state(self) -> Callable[[jax.Array], TrainState]:
    def initial_state(key):
      params, model_state = train_lib.init_variables(self.task.model, key, self.input_shape)
      params = models.reinitialize(
        params, jax.random.fold_in(key, _INIT_SALT), self.init, self.plan.prunable()
      )
      return train_lib.create_state(self.task, params, model_state)

    return jax.jit(initial_state)  # One compiled program, not an op-by-op dispatch per seed.

  def state_like(self) -> TrainState:
    return jax.eval_shape(self.initial_state, 0)

  def controls(self) -> dict[str, controls_lib.Control]:
    return controls_lib.controls_for(self.init_params)

  def control(self, arm: str) -> controls_lib.Control:
    """The arm's control, jitted once: ``control(state_k, masks, key) -> start state``."""
    if arm not in self._jitted_controls:
      if arm in at_init_lib.ARMS:  # These read the training split: an argument, not a constant.
        self._jitted_controls[arm] = functools.partial(self._early_arm(arm), train=self.train)
      else:
        self._jitted_controls[arm] = jax.jit(self.controls()[arm])
    return self._jitted_controls[arm]

  def _early_arm(self, arm: str):
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
    ctx = at_init_lib.Context(
      self.task, self.plan, self.input_shape, logits.shape[-1], self.at_init
    )
    return jax.jit(at_init_lib.make_arm(ctx, arm))

  @functools.cached_property
  def _jitted_controls(self) -> dict[str, controls_lib.Control]:
    return {}

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
    if self.criterion == criteria.DEFAULT:
      return self.prune(trained_params, masks, rounds=rounds)
    pools = criteria.pools_for(self.plan)
    scores = criteria.scores(self.criterion, trained_params, init_params, masks, pools=pools)
    return self.prune(trained_params, masks, rounds=rounds, scores=scores)

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
    if self.at_init != at_init_lib.Settings():
      added['at_init'] = dataclasses.asdict(self.at_init)
    return added


_INIT_SALT = (
  0x1417  # Folded into the init key for redrawn weights, apart from the model's own draws.
)

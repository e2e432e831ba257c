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
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from lth_jax import artifacts, models
from lth_jax import controls as controls_lib
from lth_jax import inputs as inputs_lib
from lth_jax import parallel as parallel_lib
from lth_jax import rewind as rewind_lib
from lth_jax import train as train_lib
from lth_jax.errors import ConfigError
from lth_jax.fit import Trainer
from lth_jax.inputs import Inputs
from lth_jax.parallel import Sharder
from lth_jax.plan import Plan, make_plan
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
  """Everything a study needs; ``make_study`` builds one (``build.from_config`` from a config).

  Attributes:
    task: model, optimizer, batch size, normalization.
    inputs: the data on the device (``lth_jax.inputs``).
    plan: which weights are pruned, as what, at what rate (``lth_jax.plan``).
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
      self._jitted_controls[arm] = jax.jit(self.controls()[arm])
    return self._jitted_controls[arm]

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

  def prune_level(self, trained_params, masks, level: int):
    """The masks of ``level`` from the trained params of ``pruning_source(level)``.

    Iterative: one round from that level's masks. One-shot: ``level`` rounds at
    once from the dense masks (``masks`` is then all-True).
    """
    return self.prune(trained_params, masks, rounds=1 if self.iterative else level)

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
    }  # fmt: skip


_INIT_SALT = (
  0x1417  # Folded into the init key for redrawn weights, apart from the model's own draws.
)


PRUNING_DEFAULTS = {
  'strategy': 'layerwise', 'iterative': True, 'rate_conv': 0.1, 'rate_dense': 0.2,
  'rate_output': 0.1, 'rate': 0.2, 'prune_output': False, 'output_layer': 'auto',
}  # fmt: skip
_PLAN_KEYS = (
  'strategy',
  'rate_conv',
  'rate_dense',
  'rate_output',
  'rate',
  'prune_output',
  'output_layer',
  'prunable',
  'kinds',
)


def make_study(
  model,
  *,
  train,
  test,
  optimizer,
  num_steps: int,
  validation=5000,
  eval_every: int = 100,
  batch_size: int = 60,
  num_levels: int = 1,
  rewind_step: int = 0,
  arms: str | Sequence[str] = ('ticket', 'reinit'),
  seeds: int | Sequence[int] = 1,
  pruning: dict | None = None,
  standardize: bool | None = None,
  init: str = models.DEFAULT_INIT,
  rewind_optimizer: str = 'restore',
  augment: bool = False,
  train_eval_size: int = 5000,
  eval_batch_size: int = 1000,
  checkpoint_every: int = 0,
  checkpoint_seconds: float = 0.0,
  curve_every: int = 0,
  parallel: str = 'auto',
  max_parallel_runs: int = 0,
) -> Study:
  """A lottery-ticket study of any Flax module on any data, run by ``lth_jax.run_imp``.

  >>> # study = lth_jax.make_study(MyNet(), train=(x, y), test=(xt, yt), optimizer=optax.adam(1e-3),
  >>> #                            num_steps=2000, num_levels=5, pruning={'output_layer': 'head'})
  >>> # print(study.plan.table()); store = lth_jax.run_imp(study)

  Args:
    model: a ``flax.linen.Module`` mapping a batch of inputs to logits (with or
      without a ``train`` keyword; batch norm in ``batch_stats``, dropout from the
      ``dropout`` rng, as the zoo's models).
    train, test: (x, y) arrays: uint8 images or float inputs, integer labels.
    optimizer: an optax optimizer (its schedule counts iterations from 0).
    num_steps: T, the iterations of every training run.
    validation: the number of LAST training examples held out for early
      stopping, or (x, y) arrays.
    eval_every, batch_size, num_levels, rewind_step, arms, checkpoint_every,
      checkpoint_seconds, curve_every, parallel, max_parallel_runs,
      train_eval_size, eval_batch_size: as the config keys of the same names (README).
    seeds: a number of seeds (0, 1, ...) or the seeds themselves.
    pruning: the ``pruning.*`` config keys (strategy, iterative, rate_conv,
      rate_dense, rate_output, rate, prune_output, output_layer), plus
      ``prunable`` and ``kinds`` (see ``lth_jax.plan.make_plan``).
    standardize: per-channel standardization (None: for uint8 images only).
    init: re-draw the prunable weights from a scheme of ``models.INITS``.
    rewind_optimizer: 'restore' or 'fresh' (``lth_jax.rewind``).
    augment: random crop (pad 4) and flip of image batches.

  Raises:
    ConfigError: a setting, the data or the model's output layer is not usable
      (the message names it and the fix).
  """
  prune = {**PRUNING_DEFAULTS, **(pruning or {})}
  unknown = set(prune) - set(PRUNING_DEFAULTS) - {'prunable', 'kinds'}
  if unknown:
    raise ConfigError(
      f'pruning keys {sorted(unknown)} are unknown; known: {sorted(PRUNING_DEFAULTS)}, prunable, kinds.'
    )
  arms = _arms(arms)
  seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
  _check_schedule(num_steps, eval_every, rewind_step, num_levels, checkpoint_every, seeds)
  if curve_every < 0 or curve_every % eval_every:
    raise ConfigError(
      f'curve_every={curve_every} is not allowed: expected 0 or a multiple of eval_every={eval_every}.'
    )
  _check_choice('init', init, (models.DEFAULT_INIT, *models.INITS))
  _check_choice('rewind_optimizer', rewind_optimizer, rewind_lib.REWIND_OPTIMIZER)
  _check_choice('parallel', str(parallel).lower(), parallel_lib.MODES)
  data = inputs_lib.prepare(
    train, test, validation, standardize=standardize, train_eval_size=train_eval_size,
    eval_batch_size=eval_batch_size,
  )  # fmt: skip
  if not 1 <= batch_size <= data.num_train:
    raise ConfigError(
      f'batch_size={batch_size} must be between 1 and the {data.num_train} training examples.'
    )
  if augment and len(data.input_shape) != 3:
    raise ConfigError(f'augment=True needs images [N, H, W, C]; the inputs are {data.input_shape}.')
  variables = jax.eval_shape(
    lambda: train_lib.init_variables(model, jax.random.key(0), data.input_shape)
  )
  logits = jax.eval_shape(
    lambda v: model.apply(
      {'params': v[0], **v[1]},
      jax.numpy.zeros((1, *data.input_shape)),
      **train_lib.call_kwargs(model, False),
    ),
    variables,
  )
  inputs_lib.labels_fit(logits.shape[-1], data, type(model).__name__)
  plan = make_plan(variables[0], **{k: prune[k] for k in _PLAN_KEYS if k in prune})
  if not any(leaf.rate for leaf in plan.leaves) and num_levels:
    raise ConfigError(
      'the pruning plan prunes nothing (every rate is 0): set a rate, or num_levels=0.'
    )
  task = train_lib.Task(
    model=model, optimizer=optimizer, batch_size=batch_size, mean=data.mean, std=data.std,
    augment=augment, divide_by=data.divide_by,
  )  # fmt: skip
  vmapped, threads = parallel_lib.resolve(str(parallel).lower())
  if max_parallel_runs:
    threads = min(threads, max_parallel_runs)
  study = Study(
    task=task, inputs=data, plan=plan, num_steps=num_steps, eval_every=eval_every,
    rewind_step=rewind_step, num_levels=num_levels, arms=arms, seeds=seeds,
    iterative=bool(prune['iterative']), init=init, rewind_optimizer=rewind_optimizer,
    checkpoint_every=checkpoint_every, checkpoint_seconds=float(checkpoint_seconds),
    curve_every=curve_every, vmapped=vmapped, group_size=max_parallel_runs, threads=threads,
    sharder=parallel_lib.Sharder() if vmapped else None,
  )  # fmt: skip
  if vmapped:
    study.group_size = _runs_per_call(study, max_parallel_runs)
  return study


def _arms(arms) -> list[str]:
  names = [a.strip() for a in arms.split(',')] if isinstance(arms, str) else list(arms)
  unknown = [a for a in names if a not in controls_lib.ARMS]
  if unknown or len(set(names)) != len(names):
    raise ConfigError(f'arms={names} must be distinct arms from {list(controls_lib.ARMS)}.')
  return [a for a in controls_lib.ARMS if a in set(names) | {'ticket'}]


def _check_choice(name, value, options):
  if value not in options:
    raise ConfigError(f'{name}={value!r} is not allowed: expected one of {list(options)}.')


def _check_schedule(num_steps, eval_every, rewind_step, num_levels, checkpoint_every, seeds):
  checks = [
    (num_steps >= 1, 'num_steps', num_steps, 'at least 1'),
    (eval_every >= 1, 'eval_every', eval_every, 'at least 1'),
    (0 <= rewind_step < num_steps, 'rewind_step', rewind_step, f'an iteration before num_steps={num_steps}'),
    (num_levels >= 0, 'num_levels', num_levels, '0 or more'),
    (checkpoint_every >= 0 and checkpoint_every % eval_every == 0, 'checkpoint_every',
     checkpoint_every, f'0 or a multiple of eval_every={eval_every}'),
    (bool(seeds) and len(set(seeds)) == len(seeds) and min(seeds) >= 0, 'seeds', seeds,
     'distinct non-negative integers'),
  ]  # fmt: skip
  for ok, name, value, expected in checks:
    if not ok:
      raise ConfigError(f'{name}={value!r} is not allowed: expected {expected}.')


def _runs_per_call(study: Study, requested: int) -> int:
  """Splits a level into calls that fit in device memory (see ``parallel``)."""
  available = parallel_lib.device_memory_bytes()
  if available is None:
    return requested
  steps, _ = train_lib.compiled(study.task, vmapped=False)
  data_key = jax.eval_shape(lambda: seed_keys(0).data)
  per_run = parallel_lib.bytes_per_run(
    steps, study.state_like(), study.train, data_key, study.eval_every
  )
  return parallel_lib.runs_per_call(per_run, available, study.sharder.multiple, requested)

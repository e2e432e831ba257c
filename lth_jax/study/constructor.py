"""``make_study``: a study from any Flax module, data as arrays and the settings, every one checked.

The settings have the names of the config keys (docs/reference/config.md);
``lth_jax.study.from_config.from_config`` calls this with a config's values, a notebook calls it
directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax

import lth_jax.arms as arms_lib
from lth_jax.arms import at_init as at_init_lib
from lth_jax.arms import sparse
from lth_jax.core import compaction, criteria, models
from lth_jax.core import dst as dst_lib
from lth_jax.core import rewind as rewind_lib
from lth_jax.core import train as train_lib
from lth_jax.core.plan import make_plan
from lth_jax.data import inputs as inputs_lib
from lth_jax.errors import ConfigError
from lth_jax.study import rules
from lth_jax.study.definition import EarlyBird, Execution, Study, seed_keys
from lth_jax.training import parallel as parallel_lib

PRUNING_DEFAULTS = {
  'strategy': 'layerwise', 'iterative': True, 'rate_conv': 0.1, 'rate_dense': 0.2,
  'rate_output': 0.1, 'rate': 0.2, 'prune_output': False, 'output_layer': 'auto',
  'criterion': criteria.DEFAULT, 'granularity': 'weight', 'n_m': '',
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
  'granularity',
  'n_m',
  'links',
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
  retrain: str = 'rewind',
  early_bird: dict | None = None,
  dst: dict | None = None,
  augment: bool = False,
  train_eval_size: int = 5000,
  eval_batch_size: int = 1000,
  checkpoint_every: int = 0,
  checkpoint_seconds: float = 0.0,
  curve_every: int = 0,
  parallel: str = 'auto',
  max_parallel_runs: int = 0,
  at_init: dict | None = None,
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
    eval_every: as the config key of the same name (docs/reference/config.md), as are
      batch_size, num_levels, rewind_step, arms, checkpoint_every, checkpoint_seconds,
      curve_every, parallel, max_parallel_runs, train_eval_size and eval_batch_size.
    seeds: a number of seeds (0, 1, ...) or the seeds themselves.
    pruning: the ``pruning.*`` config keys (strategy, iterative, rate_conv,
      rate_dense, rate_output, rate, prune_output, output_layer, criterion,
      granularity, n_m), plus ``prunable``, ``kinds`` and ``links`` (which layer takes
      which layer's units as inputs, for structured granularities; the zoo's by
      default) (see ``lth_jax.core.plan.make_plan``).
    standardize: per-channel standardization (None: for uint8 images only).
    init: re-draw the prunable weights from a scheme of ``models.INITS``.
    rewind_optimizer: 'restore' or 'fresh' (``lth_jax.core.rewind``).
    retrain: 'rewind', 'lr_rewind' or 'finetune' (``lth_jax.core.rewind``).
    early_bird: the ``early_bird.*`` config keys (window, epsilon) of the early-bird
      search the ``early_bird`` arm starts from (``lth_jax.study.early_bird``).
    dst: the ``dst.*`` config keys (update_every, drop_fraction, end_step,
      distribution) of the arms static, set and rigl (``lth_jax.arms.sparse``).
    augment: random crop (pad 4) and flip of image batches.
    at_init: the ``at_init.*`` config keys (samples_per_class, supermask_steps,
      supermask_lr) of the arms that prune early (``lth_jax.arms.at_init``).

  Raises:
    ConfigError: a setting, the data or the model's output layer is not usable
      (the message names it and the fix).
  """
  prune = {**PRUNING_DEFAULTS, **(pruning or {})}
  unknown = set(prune) - set(PRUNING_DEFAULTS) - {'prunable', 'kinds', 'links'}
  if unknown:
    raise ConfigError(
      f'pruning keys {sorted(unknown)} are unknown; known: {sorted(PRUNING_DEFAULTS)}, prunable, kinds, links.'
    )
  _check_choice('pruning.criterion', prune['criterion'], criteria.CRITERIA)
  settings = _at_init(at_init)
  arms = _arms(arms)
  seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
  rules.check_schedule(
    num_steps=num_steps, eval_every=eval_every, rewind_step=rewind_step, num_levels=num_levels,
    checkpoint_every=checkpoint_every, curve_every=curve_every,
  )  # fmt: skip
  rules.check_seeds(seeds)
  _check_choice('init', init, (models.DEFAULT_INIT, *models.INITS))
  _check_choice('rewind_optimizer', rewind_optimizer, rewind_lib.REWIND_OPTIMIZER)
  _check_choice('retrain', retrain, rewind_lib.RETRAIN)
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
  if prune['granularity'] != 'weight':
    prune['links'] = prune.get('links') or compaction.unit_links(model)  # The zoo's by default.
    compaction.check_residual(model, prune['links'])
  plan = make_plan(variables[0], **{k: prune[k] for k in _PLAN_KEYS if k in prune})
  if not any(leaf.rate for leaf in plan.leaves) and plan.n_m is None and num_levels:
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
  execution = Execution(
    vmapped=vmapped, group_size=max_parallel_runs, threads=threads,
    sharder=parallel_lib.Sharder() if vmapped else None, checkpoint_every=checkpoint_every,
    checkpoint_seconds=float(checkpoint_seconds),
  )  # fmt: skip
  study = Study(
    task=task, inputs=data, plan=plan, num_steps=num_steps, eval_every=eval_every,
    rewind_step=rewind_step, num_levels=num_levels, arms=arms, seeds=seeds,
    iterative=bool(prune['iterative']), init=init, rewind_optimizer=rewind_optimizer,
    retrain=retrain, early_bird=_early_bird(early_bird), dst=_dst(dst, num_steps),
    curve_every=curve_every, criterion=prune['criterion'], at_init=settings, execution=execution,
  )  # fmt: skip
  if vmapped:
    execution.group_size = _runs_per_call(study, max_parallel_runs)
  return study


def _arms(names) -> list[str]:
  names = [a.strip() for a in names.split(',')] if isinstance(names, str) else list(names)
  known = arms_lib.names()
  unknown = [a for a in names if a not in known]
  if unknown or len(set(names)) != len(names):
    raise ConfigError(f'arms={names} must be distinct arms from {list(known)}.')
  return [a for a in known if a in set(names) | {'ticket'}]


def _at_init(at_init) -> at_init_lib.Settings:
  values = {**at_init_lib.AT_INIT_DEFAULTS, **(at_init or {})}
  unknown = set(values) - set(at_init_lib.AT_INIT_DEFAULTS)
  if unknown:
    raise ConfigError(
      f'at_init keys {sorted(unknown)} are unknown; known: {sorted(at_init_lib.AT_INIT_DEFAULTS)}.'
    )
  _check_choice('at_init.bn_mode', values['bn_mode'], at_init_lib.BN_MODES)
  if min(values['samples_per_class'], values['supermask_steps']) < 1 or values['supermask_lr'] <= 0:
    raise ConfigError(
      f'at_init={values} is not allowed: samples_per_class and supermask_steps must be at '
      'least 1 and supermask_lr positive.'
    )
  return at_init_lib.Settings(**values)


def _early_bird(early_bird) -> EarlyBird:
  values = {**dataclasses.asdict(EarlyBird()), **(early_bird or {})}
  if set(values) != {'window', 'epsilon'}:
    raise ConfigError(f'early_bird keys {sorted(values)} are not window and epsilon.')
  if not (
    isinstance(values['window'], int) and values['window'] >= 2 and 0 < values['epsilon'] < 1
  ):
    raise rules.not_allowed('early_bird', values, 'a window of 2 or more masks, epsilon in (0, 1)')
  return EarlyBird(**values)


def _dst(dst, num_steps: int) -> sparse.Settings:
  values = {**sparse.DST_DEFAULTS, **(dst or {})}
  if set(values) != set(sparse.DST_DEFAULTS):
    raise ConfigError(f'dst keys {sorted(values)} are not {sorted(sparse.DST_DEFAULTS)}.')
  _check_choice('dst.distribution', values['distribution'], dst_lib.DISTRIBUTIONS)
  if not (isinstance(values['update_every'], int) and values['update_every'] >= 1):
    raise rules.not_allowed('dst.update_every', values['update_every'], 'an integer >= 1')
  if not 0 < values['drop_fraction'] < 1:
    raise rules.not_allowed('dst.drop_fraction', values['drop_fraction'], 'a number in (0, 1)')
  if not (isinstance(values['end_step'], int) and 0 <= values['end_step'] <= num_steps):
    raise rules.not_allowed(
      'dst.end_step', values['end_step'], f'an iteration in [0, num_steps={num_steps}]'
    )
  return sparse.Settings(**values)


def _check_choice(name, value, options):
  if value not in options:
    raise rules.not_allowed(name, value, f'one of {list(options)}')


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
  return parallel_lib.runs_per_call(per_run, available, study.execution.sharder.multiple, requested)

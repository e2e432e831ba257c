"""From a config to a ``Study``: data on the device, model, optimizer, pruning.

The one place that reads a config (after ``config.validate``); the core
functions take plain keyword arguments. Notebooks can call
``from_config(config)`` and then ``imp.run_imp(study)`` to get exactly what
``lth run`` computes.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax

from lth_jax import config as config_lib
from lth_jax import data as data_lib
from lth_jax import masks as masks_lib
from lth_jax import models, parallel, pruning
from lth_jax import train as train_lib
from lth_jax.study import Study, seed_keys


def learning_rate_schedule(opt) -> optax.Schedule:
  """Linear warmup, then the base rate times decay_factor at each milestone."""
  decay = optax.piecewise_constant_schedule(
    opt.learning_rate, {int(m): opt.decay_factor for m in opt.milestones}
  )
  if not opt.warmup_steps:
    return decay
  warmup = optax.linear_schedule(0.0, opt.learning_rate, opt.warmup_steps)
  return optax.join_schedules([warmup, lambda s: decay(s + opt.warmup_steps)], [opt.warmup_steps])


def make_optimizer(opt) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(opt)
  if opt.name == 'adam':
    tx = optax.adam(schedule)
  else:
    tx = optax.sgd(schedule, momentum=opt.momentum or None)
  if opt.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(opt.weight_decay), tx)
  return tx


def make_prune(config, params_like):
  """``prune(params, masks, *, rounds) -> masks``, jitted, per the config's pruning keys."""
  p = config.pruning
  if p.strategy == 'layerwise':
    rates = pruning.layer_rates(
      params_like, conv=p.rate_conv, dense=p.rate_dense, output=p.rate_output
    )

    @functools.partial(jax.jit, static_argnames='rounds')
    def prune(params, masks, *, rounds):
      compound = jax.tree.map(lambda r: pruning.compound_rate(r, rounds), rates)
      return pruning.prune_layerwise(params, masks, rates=compound)

  else:
    include = masks_lib.prunable(params_like, include_output=p.prune_output)

    @functools.partial(jax.jit, static_argnames='rounds')
    def prune(params, masks, *, rounds):
      rate = pruning.compound_rate(p.rate, rounds)
      return pruning.prune_global(params, masks, rate=rate, include=include)

  return prune


def load_data(config) -> data_lib.Dataset:
  d = config.data
  return data_lib.load(
    d.name,
    validation_size=d.validation_size,
    data_dir=d.data_dir or None,
    manual_dir=d.manual_dir or None,
    download=d.download,
  )


def from_config(
  config, dataset: data_lib.Dataset | None = None, *, validated: bool = False
) -> Study:
  """The ``Study`` a config describes.

  The config is validated first, unless the caller just did (``validated``).
  """
  if not validated:
    config_lib.validate(config)
  dataset = dataset if dataset is not None else load_data(config)
  train_x, train_y = dataset.train_x, dataset.train_y
  if config.data.train_size:
    train_x, train_y = train_x[: config.data.train_size], train_y[: config.data.train_size]
  test_x, test_y = dataset.test_x, dataset.test_y
  if config.data.test_size:
    test_x, test_y = test_x[: config.data.test_size], test_y[: config.data.test_size]
  model_kwargs = {'dropout': config.model.dropout} if config.model.dropout else {}
  model = models.get_model(config.model.name, num_classes=dataset.num_classes, **model_kwargs)
  task = train_lib.Task(
    model=model,
    optimizer=make_optimizer(config.optimizer),
    batch_size=config.batch_size,
    mean=tuple(float(m) for m in dataset.mean),
    std=tuple(float(s) for s in dataset.std),
    augment=config.data.augment,
  )
  eb = config.eval_batch_size
  splits = {
    'train': train_lib.make_eval_split(
      train_x[: config.train_eval_size], train_y[: config.train_eval_size], eb
    ),
    'val': train_lib.make_eval_split(dataset.val_x, dataset.val_y, eb),
    'test': train_lib.make_eval_split(test_x, test_y, eb),
  }
  input_shape = tuple(train_x.shape[1:])
  params_like = jax.eval_shape(
    lambda: train_lib.init_variables(model, jax.random.key(0), input_shape)[0]
  )
  vmapped = parallel.use_vmap(config_lib.parallel_mode(config))
  study = Study(
    task=task,
    train=train_lib.DataArrays(jax.device_put(train_x), jax.device_put(train_y.astype(np.int32))),
    eval_splits=splits,
    input_shape=input_shape,
    num_steps=config.num_steps,
    eval_every=config.eval_every,
    rewind_step=config.rewind_step,
    num_levels=config.num_levels,
    prune=make_prune(config, params_like),
    arms=config_lib.arms_of(config),
    seeds=list(range(config.seed, config.seed + config.num_seeds)),
    checkpoint_every=config.checkpoint_every,
    vmapped=vmapped,
    group_size=config.max_parallel_runs,
    iterative=config.pruning.iterative,
    sharder=parallel.Sharder() if vmapped else None,
  )
  if vmapped:
    study.group_size = _runs_per_call(study, config.max_parallel_runs)
  return study


def _runs_per_call(study: Study, requested: int) -> int:
  """Splits a level into calls that fit in device memory (see ``parallel``)."""
  available = parallel.device_memory_bytes()
  if available is None:
    return requested
  steps, _ = train_lib.compiled(study.task, vmapped=False)
  data_key = jax.eval_shape(lambda: seed_keys(0).data)
  per_run = parallel.bytes_per_run(
    steps, study.state_like(), study.train, data_key, study.eval_every
  )
  return parallel.runs_per_call(per_run, available, study.sharder.multiple, requested)

"""From a config to a ``Study``: the one place that reads a config.

``from_config`` loads the data set, builds the zoo model and the optimizer the
config names and hands everything to ``make_study`` — the same
constructor a notebook calls with its own model and data. Notebooks can call
``from_config(config)`` and then ``lth_jax.run_imp(study)`` to get exactly what
``lth run`` computes.
"""

from __future__ import annotations

import jax
import optax

from lth_jax.core import compaction, models
from lth_jax.core import plan as plan_lib
from lth_jax.core import train as train_lib
from lth_jax.data import datasets as data_lib
from lth_jax.study import config as config_lib
from lth_jax.study import starts
from lth_jax.study.constructor import make_study
from lth_jax.study.definition import Study


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


def load_data(config) -> data_lib.Dataset:
  d = config.data
  return data_lib.load(
    d.name,
    validation_size=d.validation_size,
    data_dir=d.data_dir or None,
    manual_dir=d.manual_dir or None,
    download=d.download,
    verify_checksums=d.verify_checksums,
  )


def make_model(config, num_classes: int):
  kwargs = {'dropout': config.model.dropout} if config.model.dropout else {}
  return models.get_model(config.model.name, num_classes=num_classes, **kwargs)


def pruning_settings(config) -> dict:
  """The config's ``pruning.*`` keys as ``make_study``'s ``pruning`` argument."""
  settings = dict(config.pruning)
  settings['output_layer'] = settings['output_layer'] or None  # '' in a config: no output layer.
  return settings


def make_plan(config, params_like):
  """The pruning plan the config's ``pruning.*`` keys give for ``params_like``."""
  settings = pruning_settings(config)
  settings.pop('iterative')
  settings.pop('criterion', None)  # What ranks the weights, not which are pruned.
  if settings.get('granularity', 'weight') != 'weight':
    settings['links'] = compaction.unit_links(make_model(config, 10))
  return plan_lib.make_plan(params_like, **settings)


INPUT_SHAPES = {'mnist': (28, 28, 1), 'fashion_mnist': (28, 28, 1), 'cifar10': (32, 32, 3)}


def state_like(config):
  """The shapes and dtypes of the train state of ``config``'s model (no data loaded)."""
  model = make_model(config, len(config.data.classes) or 10)
  task = train_lib.Task(model, make_optimizer(config.optimizer), config.batch_size)
  shape = INPUT_SHAPES[config.data.name]
  return jax.eval_shape(lambda: train_lib.initial_state(task, jax.random.key(0), shape))


def from_config(
  config, dataset: data_lib.Dataset | None = None, *, validated: bool = False
) -> Study:
  """The ``Study`` a config describes.

  The config is validated first, unless the caller just did (``validated``).
  """
  if not validated:
    config_lib.validate(config)
  dataset = dataset if dataset is not None else load_data(config)
  c, d = config, config.data
  if d.classes:
    dataset = data_lib.select_classes(dataset, d.classes)
  train_x, train_y = dataset.train_x, dataset.train_y
  if d.train_size:
    train_x, train_y = train_x[: d.train_size], train_y[: d.train_size]
  test_x, test_y = dataset.test_x, dataset.test_y
  if d.test_size:
    test_x, test_y = test_x[: d.test_size], test_y[: d.test_size]
  study = make_study(
    make_model(config, dataset.num_classes),
    train=(train_x, train_y),
    test=(test_x, test_y),
    validation=(dataset.val_x, dataset.val_y),
    optimizer=make_optimizer(c.optimizer),
    num_steps=c.num_steps,
    eval_every=c.eval_every,
    batch_size=c.batch_size,
    num_levels=c.num_levels,
    rewind_step=c.rewind_step,
    arms=c.arms,
    seeds=list(range(c.seed, c.seed + c.num_seeds)),
    pruning=pruning_settings(config),
    standardize=d.standardize,
    init=c.model.init,
    rewind_optimizer=c.rewind_optimizer,
    retrain=c.retrain,
    early_bird=dict(c.early_bird),
    dst=dict(c.dst),
    augment=d.augment,
    train_eval_size=c.train_eval_size,
    eval_batch_size=c.eval_batch_size,
    checkpoint_every=c.checkpoint_every,
    checkpoint_seconds=c.checkpoint_seconds,
    curve_every=c.curve_every,
    parallel=config_lib.parallel_mode(config),
    max_parallel_runs=c.max_parallel_runs,
    at_init=dict(c.at_init),
  )
  if c.ticket:
    study.imported = starts.Imported(c.ticket, study.state_like().params)
    study.imported.check(study.seeds)  # Before any training: a bad file costs seconds.
  return study

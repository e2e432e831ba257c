"""The experiment config: its defaults, its groups of keys, its hash, and its JSON.

Every key is checked before any work starts (``lth_jax.study.schema``: ``validate``,
also reachable here), with one error line naming the key, the value and what is
allowed, so a typo fails in a second rather than after hours of work.
"""

from __future__ import annotations

import hashlib
import json

import ml_collections

import lth_jax.arms as arms_lib
from lth_jax.arms import at_init, sparse
from lth_jax.core import criteria
from lth_jax.errors import ConfigError  # noqa: F401 (what validate raises)
from lth_jax.study.schema import SCHEMA, TEST_SIZES, TRAIN_SIZES, flatten, validate  # noqa: F401

# Keys that change how a study runs but not its results: left out of the hash
# that names the run directory, so a study can be resumed with other settings.
EXECUTION_KEYS = ('parallel', 'max_parallel_runs', 'checkpoint_every', 'checkpoint_seconds')
# Keys that only add work (more levels, seeds or arms) or say where files are:
# also left out, so a finished study grows in place and trains only the new runs.
GROWTH_KEYS = ('num_levels', 'num_seeds', 'arms')
LOCATION_KEYS = ('data.data_dir', 'data.download')
# Keys that only ask for later stages whose tables sit beside the study's own (the pairs of
# linear mode connectivity, the transfer of its tickets): left out too, so asking for them
# reuses the study's finished runs.
STAGE_KEYS = (
  'lmc.pairs', 'lmc.successive', 'transfer.levels', 'transfer.data', 'transfer.classes',
  'transfer.arms',
)  # fmt: skip


def default_config() -> ml_collections.ConfigDict:
  """Every key with its default: LeNet-300-100 on MNIST as in the paper."""
  c = ml_collections.ConfigDict()
  c.name = 'lenet300'
  c.seed = 0
  c.num_seeds = 1
  c.arms = 'ticket,reinit'
  c.parallel = 'auto'
  c.max_parallel_runs = 0
  c.model = ml_collections.ConfigDict({'name': 'lenet300', 'dropout': 0.0, 'init': 'default'})
  c.data = ml_collections.ConfigDict({
      'name': 'mnist', 'validation_size': 5000, 'train_size': 0, 'test_size': 0,
      'data_dir': '', 'manual_dir': '', 'download': True, 'augment': False,
      'standardize': True,
  })  # fmt: skip
  c.data.verify_checksums = True
  c.optimizer = ml_collections.ConfigDict({
      'name': 'adam', 'learning_rate': 1.2e-3, 'momentum': 0.9, 'weight_decay': 0.0,
      'warmup_steps': 0, 'milestones': (), 'decay_factor': 0.1,
  })  # fmt: skip
  c.batch_size = 60
  c.num_steps = 50_000
  c.eval_every = 100
  c.eval_batch_size = 1000
  c.train_eval_size = 5000
  c.curve_every = 1000
  c.rewind_step = 0
  c.rewind_optimizer = 'restore'
  c.num_levels = 16
  c.pruning = ml_collections.ConfigDict({
      'strategy': 'layerwise', 'iterative': True, 'rate_conv': 0.1, 'rate_dense': 0.2,
      'rate_output': 0.1, 'rate': 0.2, 'prune_output': False, 'output_layer': 'auto',
  })  # fmt: skip
  c.pruning.criterion = criteria.DEFAULT
  # Tickets that are really smaller (``lth_jax.core.structured``): what a round removes.
  c.pruning.granularity = 'weight'
  c.pruning.n_m = ''
  c.at_init = ml_collections.ConfigDict(dict(at_init.AT_INIT_DEFAULTS))
  c.checkpoint_every = 0
  c.checkpoint_seconds = 60.0
  c.lmc = lmc_defaults()
  c.transfer = ml_collections.ConfigDict(dict(TRANSFER_DEFAULTS))
  # How a pruned level retrains (``Study.retrain``), and when its ticket appears (early-bird).
  c.retrain = 'rewind'
  c.early_bird = ml_collections.ConfigDict(dict(EARLY_BIRD_DEFAULTS))
  # Sparse from the start (``lth_jax.arms.sparse``): how static, set and rigl masks are drawn
  # and move.
  c.dst = ml_collections.ConfigDict(dict(sparse.DST_DEFAULTS))
  # Tickets that travel (docs/guides/tickets-that-travel.md): a ticket file to start pruned
  # levels from, a class subset.
  c.ticket = ''
  c.data.classes = ()
  return c


# Linear mode connectivity (``lth_jax.analyses.lmc_stage``): ``lmc.pairs`` measures the
# instability of a study's networks at ``lmc.levels``; ``lmc.rewind_steps`` sweeps the rewind
# step: a study per k, each with its pairs.
LMC_DEFAULTS = {
  'rewind_steps': (), 'levels': (0,), 'num_alphas': 31, 'bn_recompute': True, 'pairs': False,
  'successive': False,
}  # fmt: skip
# Early-bird tickets (``lth_jax.arms.early_bird``): You et al.'s window of masks and distance.
EARLY_BIRD_DEFAULTS = {'window': 5, 'epsilon': 0.1}
# Tickets that travel (``lth_jax.analyses.transfer``): the source levels whose tickets are
# trained on a target task, and that task.
TRANSFER_DEFAULTS = {
  'levels': (), 'data': '', 'classes': (), 'arms': 'ticket,reinit,random_prune',
}  # fmt: skip


def lmc_defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(LMC_DEFAULTS))


# Keys added after run directories existed, or that only add behaviour: left out of the hash
# while at these defaults, so the directories of configs that do not use them keep their names;
# any other value is hashed.
DEFAULT_ONLY = {
  'data.verify_checksums': True,
  'retrain': 'rewind',
  **{f'early_bird.{key}': value for key, value in EARLY_BIRD_DEFAULTS.items()},
  **{f'dst.{key}': value for key, value in sparse.DST_DEFAULTS.items()},
  'ticket': '',
  'data.classes': (),
  'pruning.criterion': criteria.DEFAULT,
  'pruning.granularity': 'weight',
  'pruning.n_m': '',
  **{f'at_init.{k}': v for k, v in at_init.AT_INIT_DEFAULTS.items()},
  **{f'lmc.{key}': value for key, value in LMC_DEFAULTS.items()},
  **{f'transfer.{key}': value for key, value in TRANSFER_DEFAULTS.items()},
}


def parallel_mode(config) -> str:
  """'true', 'false' or 'auto' from the config's ``parallel`` value."""
  value = config.parallel
  return str(value).lower() if not isinstance(value, bool) else ('true' if value else 'false')


def arms_of(config) -> list[str]:
  """The arms of a study in the registry's order ('ticket' always runs, first)."""
  names = {a.strip() for a in config.arms.split(',')} | {'ticket'}
  return [a for a in arms_lib.names() if a in names]


# Keys whose values are tuples in the schema (JSON reads them back as lists).
TUPLE_KEYS = (
  'optimizer.milestones', 'lmc.rewind_steps', 'lmc.levels', 'data.classes', 'transfer.levels',
  'transfer.classes',
)  # fmt: skip


def with_new_keys(config):
  """``config`` (e.g. an older run's config.json) with the ``DEFAULT_ONLY`` keys it lacks
  and the schema's tuples where JSON has lists."""
  config = ml_collections.ConfigDict(config)
  add_missing_defaults(config)
  for key in TUPLE_KEYS:
    section, name = key.split('.')
    config[section][name] = tuple(config[section][name])
  return config


def to_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def add_missing_defaults(config) -> None:
  """Gives a config saved before a ``DEFAULT_ONLY`` key existed that key's default, in place."""
  for key, value in DEFAULT_ONLY.items():
    *sections, name = key.split('.')
    node = config
    for section in sections:
      if section not in node:
        node[section] = ml_collections.ConfigDict()
      node = node[section]
    if name not in node:
      node[name] = value


def _at_default(key: str, value) -> bool:
  if key not in DEFAULT_ONLY:
    return False
  default = DEFAULT_ONLY[key]
  return value == (list(default) if isinstance(default, tuple) else default)


def study_hash(config) -> str:
  """Names a study's results: the config less the keys that do not change them."""
  left_out = (*EXECUTION_KEYS, *GROWTH_KEYS, *LOCATION_KEYS, *STAGE_KEYS)
  d = {k: v for k, v in flatten(config.to_dict()).items() if k not in left_out}
  d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
  d = {k: v for k, v in d.items() if not _at_default(k, v)}
  return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

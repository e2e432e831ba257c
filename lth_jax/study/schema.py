"""The config's schema: every key's type and choices, and their relations, checked at once.

``validate(config)`` raises ``ConfigError`` (one line naming the key, the value
and what is allowed) for the first bad key, before any data is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

import lth_jax.arms as arms_lib
from lth_jax.arms import at_init
from lth_jax.core import criteria, models, structured
from lth_jax.data import datasets
from lth_jax.errors import ConfigError
from lth_jax.study import rules

# Training-set sizes before the validation split, to check sizes up front.
TRAIN_SIZES = {'mnist': 60_000, 'fashion_mnist': 60_000, 'cifar10': 50_000}
TEST_SIZES = {'mnist': 10_000, 'fashion_mnist': 10_000, 'cifar10': 10_000}


def _is_int(v):
  return isinstance(v, int) and not isinstance(v, bool)


def _is_n_m(v) -> bool:
  if not isinstance(v, str):
    return False
  try:
    structured.parse_n_m(v)
  except ConfigError:
    return False
  return True


def _is_num(v):
  if _is_int(v):
    return abs(v) < 1e300  # math.isfinite overflows on huge ints.
  return isinstance(v, float) and math.isfinite(v)


def _int(lo=None, hi=None):
  def check(v):
    return _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)

  where = f'an integer >= {lo}' if hi is None else f'an integer in [{lo}, {hi}]'
  return check, where


def _rate():
  return (lambda v: _is_num(v) and 0 <= v < 1), 'a number in [0, 1)'


def _choice(options):
  return (lambda v: isinstance(v, str) and v in options), f'one of {sorted(options)}'


def _arms(v):
  if not isinstance(v, str):
    return False
  names = [a.strip() for a in v.split(',')]
  return all(n in arms_lib.names() for n in names) and len(set(names)) == len(names)


def _arms_allowed() -> str:
  """The registered arms; a control composed with a source (``snip/shuffle``) said once."""
  names = arms_lib.names()
  text = f'distinct arms of {", ".join(n for n in names if "/" not in n)}'
  composed = sorted({n.split('/', 1)[1] for n in names if '/' in n})
  return text + (f', or <source>/{"|".join(composed)}' if composed else '')


def _parallel(v):
  return isinstance(v, bool) or (
    isinstance(v, str) and v.lower() in ('true', 'false', 'auto', 'threads')
  )


def _classes(v):
  return (
    isinstance(v, tuple | list)
    and all(_is_int(c) and 0 <= c < 10 for c in v)
    and len(set(v)) == len(v)
    and len(v) != 1
  )


def _milestones(v):
  return isinstance(v, tuple | list) and all(_is_int(m) and m > 0 for m in v)


def _int_tuple(v):
  return isinstance(v, tuple | list) and all(_is_int(x) and x >= 0 for x in v)


_BOOL = (lambda v: isinstance(v, bool), 'true or false')
_STR = (lambda v: isinstance(v, str), 'a string')

SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    'name': ((lambda v: isinstance(v, str) and v.replace('-', '').replace('_', '').isalnum()),
             'a non-empty name of letters, digits, - and _'),
    'seed': _int(0),
    'num_seeds': _int(1, 10_000),
    'arms': (_arms, lambda: f'a comma-separated list of {_arms_allowed()}'),
    'parallel': (_parallel, "'auto', 'true' (vmap), 'threads' or 'false'"),
    'max_parallel_runs': _int(0),
    'model.name': (lambda v: isinstance(v, str) and v in models.MODELS, lambda: f'one of {sorted(models.MODELS)}'),
  'model.init': _choice({models.DEFAULT_INIT, *models.INITS}),
    'model.dropout': _rate(),
    'data.name': _choice(set(datasets.DATASETS)),
    'data.validation_size': _int(1),
    'data.train_size': _int(0),
    'data.test_size': _int(0),
    'data.data_dir': _STR,
    'data.manual_dir': _STR,
    'data.download': _BOOL,
    'data.augment': _BOOL,
  'data.standardize': _BOOL,
  'data.verify_checksums': _BOOL,
    'optimizer.name': _choice({'adam', 'sgd'}),
    'optimizer.learning_rate': ((lambda v: _is_num(v) and 0 < v <= 10), 'a number in (0, 10]'),
    'optimizer.momentum': _rate(),
    'optimizer.weight_decay': ((lambda v: _is_num(v) and 0 <= v < 1), 'a number in [0, 1)'),
    'optimizer.warmup_steps': _int(0),
    'optimizer.milestones': (_milestones, 'a tuple of positive iteration numbers'),
    'optimizer.decay_factor': ((lambda v: _is_num(v) and 0 < v <= 1), 'a number in (0, 1]'),
    'batch_size': _int(1),
    'num_steps': _int(1),
    'eval_every': _int(1),
    'eval_batch_size': _int(1),
    'train_eval_size': _int(0),
  'curve_every': _int(0),
    'rewind_step': _int(0),
  'rewind_optimizer': _choice({'restore', 'fresh'}),
    'num_levels': _int(0, 200),
    'pruning.strategy': _choice({'layerwise', 'global'}),
    'pruning.iterative': _BOOL,
    'pruning.rate_conv': _rate(),
    'pruning.rate_dense': _rate(),
    'pruning.rate_output': _rate(),
    'pruning.rate': _rate(),
    'pruning.prune_output': _BOOL,
  'pruning.output_layer': (
    lambda v: isinstance(v, str) and (v == '' or v.replace('/', '').replace('_', '').replace('-', '').isalnum()),
    "'auto' (the layer named output), a layer name, or '' (no output layer)",
  ),
    'pruning.criterion': _choice(set(criteria.CRITERIA)),
    'pruning.granularity': _choice(set(structured.GRANULARITIES)),
    'pruning.n_m': (_is_n_m, "'' (none) or N:M with 0 < N < M, e.g. '2:4'"),
    'at_init.samples_per_class': _int(1),
    'at_init.supermask_steps': _int(1),
    'at_init.supermask_lr': ((lambda v: _is_num(v) and 0 < v <= 10), 'a number in (0, 10]'),
    'at_init.bn_mode': _choice(set(at_init.BN_MODES)),
    'retrain': _choice({'rewind', 'lr_rewind', 'finetune'}),
    'lmc.successive': _BOOL,
    'early_bird.window': _int(2, 1000),
    'early_bird.epsilon': ((lambda v: _is_num(v) and 0 < v < 1), 'a number in (0, 1)'),
    'dst.update_every': _int(1),
    'dst.drop_fraction': ((lambda v: _is_num(v) and 0 < v < 1), 'a number in (0, 1)'),
    'dst.end_step': _int(0),
    'dst.distribution': _choice({'ticket', 'erk', 'uniform'}),
    'checkpoint_every': _int(0),
  'lmc.rewind_steps': (lambda v: _int_tuple(v) and len(set(v)) == len(v), 'a tuple of distinct iterations k >= 0'),
  'lmc.levels': (lambda v: _int_tuple(v) and len(v) > 0, 'a non-empty tuple of levels >= 0'),
  'lmc.num_alphas': _int(2, 10_001),
  'lmc.bn_recompute': _BOOL,
  'lmc.pairs': _BOOL,
  'transfer.levels': (lambda v: _int_tuple(v) and all(x > 0 for x in v), 'a tuple of source levels >= 1'),
  'transfer.data': (lambda v: v == '' or v in datasets.DATASETS, lambda: f"'' (the source's) or one of {sorted(datasets.DATASETS)}"),
  'transfer.classes': (lambda v: v == () or v == [] or _classes(v), 'a tuple of at least 2 distinct class numbers in [0, 10), or () for all'),
  'transfer.arms': (_arms, lambda: f'a comma-separated list of {_arms_allowed()}'),
  'checkpoint_seconds': ((lambda v: _is_num(v) and 0 <= v <= 1e6), 'a number of seconds in [0, 1e6] (0: never)'),
  'ticket': (_STR[0], "a ticket file from `lth export` ('{seed}' in it: each seed's), or '' for none"),
  'data.classes': (_classes, 'a tuple of at least 2 distinct class numbers in [0, 10), or () for all'),
}  # fmt: skip


def flatten(tree: Mapping, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping | ml_collections.ConfigDict):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _error(key, value, allowed):
  return rules.not_allowed(f'config.{key}', value, allowed() if callable(allowed) else allowed)


def validate(config) -> None:
  """Raises ``ConfigError`` (one line) for the first bad key of ``config``."""
  if not isinstance(config, Mapping | ml_collections.ConfigDict):
    raise ConfigError(f'the config must be a ConfigDict, got {type(config).__name__}.')
  flat = flatten(config.to_dict() if hasattr(config, 'to_dict') else config)
  for key in flat:
    if key not in SCHEMA:
      name = key if key.isprintable() and len(key) <= 80 else rules.show(key)
      raise ConfigError(f'config.{name} is not a known key; known keys: {", ".join(SCHEMA)}.')
  for key, (check, allowed) in SCHEMA.items():
    if key not in flat:
      raise ConfigError(f'config.{key} is missing: expected {allowed}.')
    if not check(flat[key]):
      raise _error(key, flat[key], allowed)
  _check_relations(flat)


def _check_relations(c: dict[str, Any]) -> None:
  rules.check_schedule(
    num_steps=c['num_steps'], eval_every=c['eval_every'], rewind_step=c['rewind_step'],
    num_levels=c['num_levels'], checkpoint_every=c['checkpoint_every'],
    curve_every=c['curve_every'], prefix='config.',
  )  # fmt: skip
  if c['seed'] + c['num_seeds'] > 2**32:
    raise _error(
      'seed',
      c['seed'],
      f'seed + num_seeds <= 2**32 (num_seeds={c["num_seeds"]}): the seeds random keys tell apart',
    )
  available = c['data.train_size'] or TRAIN_SIZES[c['data.name']]
  if c['data.train_size'] > TRAIN_SIZES[c['data.name']]:
    raise _error(
      'data.train_size',
      c['data.train_size'],
      f'0 (all) or at most {TRAIN_SIZES[c["data.name"]]} for {c["data.name"]}',
    )
  if c['data.validation_size'] >= available:
    raise _error(
      'data.validation_size',
      c['data.validation_size'],
      f'fewer than the {available} training examples',
    )
  if c['data.test_size'] > TEST_SIZES[c['data.name']]:
    raise _error(
      'data.test_size',
      c['data.test_size'],
      f'0 (all) or at most {TEST_SIZES[c["data.name"]]} for {c["data.name"]}',
    )
  train_size = available - c['data.validation_size']
  if c['batch_size'] > train_size:
    raise _error(
      'batch_size',
      c['batch_size'],
      f'at most the {train_size} training examples left after validation',
    )
  _check_lmc(c)
  if c['dst.end_step'] > c['num_steps']:
    raise _error('dst.end_step', c['dst.end_step'], f'an iteration <= num_steps={c["num_steps"]}')
  if c['ticket'] and c['retrain'] != 'rewind':
    raise _error('retrain', c['retrain'], "'rewind' when a ticket is imported (config.ticket)")
  if c['pruning.strategy'] == 'global' and c['pruning.rate'] == 0 and c['num_levels'] > 0:
    raise _error('pruning.rate', 0.0, 'a positive rate for global pruning')  # fmt: skip


def _check_lmc(c: dict[str, Any]) -> None:
  late = [k for k in c['lmc.rewind_steps'] if k >= c['num_steps']]
  if late:
    raise _error(
      'lmc.rewind_steps', c['lmc.rewind_steps'], f'iterations before num_steps={c["num_steps"]}'
    )
  deep = [level for level in c['lmc.levels'] if level > c['num_levels']]
  if (c['lmc.rewind_steps'] or c['lmc.pairs']) and deep:
    raise _error('lmc.levels', c['lmc.levels'], f'levels up to num_levels={c["num_levels"]}')
  deep = [level for level in c['transfer.levels'] if level > c['num_levels']]
  if deep:
    raise _error(
      'transfer.levels', c['transfer.levels'], f'levels up to num_levels={c["num_levels"]}'
    )

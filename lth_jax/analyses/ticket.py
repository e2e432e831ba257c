"""Tickets that travel: one portable file per ticket, readable with numpy alone.

``export(run_dir, level=L, seed=S, arm='ticket')`` reads a finished study's
stored trees (``lth_jax.study.artifacts`` names, through the run directory's store)
and builds the ``Ticket`` that run started from: its masks and its starting
values (θ0 at level 0, θk ⊙ masks after, or an arm's control of them).
``save`` writes it as an ``.npz`` file (no pickles) holding:

    header                    JSON (as uint8 bytes): format, model name and settings,
                              input shape, classes, leaves, provenance
    mask/<leaf>               np.packbits of a pruned leaf's flattened mask
    value/<leaf>              its kept values in C order (only those), or the whole
                              leaf for leaves that are never pruned (biases)
    state/<leaf>              model state (e.g. batch-norm statistics), dense

``load(FILE) -> (model, params, masks)`` gives back the trees bit for bit;
``read(FILE) -> (header, params, masks)`` is the same with numpy arrays only
(``lth_jax.analyses.edge_trainer`` has its own numpy-only reader for devices without JAX).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from lth_jax.analyses.edge_trainer import FORMAT
from lth_jax.errors import DataError, RunError


@dataclasses.dataclass
class Ticket:
  """A ticket: masks and starting values (flat {leaf name: array}) and what it came from."""

  params: dict[str, np.ndarray]
  masks: dict[str, np.ndarray]
  model_state: dict[str, np.ndarray]
  header: dict[str, Any]

  def dense_bytes(self) -> int:
    """Bytes of the dense parameters (every weight stored, float32)."""
    return int(sum(v.nbytes for v in self.params.values()))


# ----------------------------------------------------------------------------- flat trees


def flatten(tree) -> dict[str, np.ndarray]:
  """{'dense_0/kernel': array} of a nested dict of arrays."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict) or hasattr(value, 'items'):
      flat.update({f'{key}/{k}': v for k, v in flatten(value).items()})
    else:
      flat[str(key)] = np.asarray(value)
  return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, value in flat.items():
    *parents, leaf = name.split('/')
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


# ----------------------------------------------------------------------------- the file


def save(ticket: Ticket, path: str | os.PathLike) -> Path:
  """Writes ``ticket`` to ``path`` (.npz); returns the path."""
  path = Path(path)
  arrays, leaves = {}, []
  for name, value in ticket.params.items():
    mask = np.asarray(ticket.masks[name], bool)
    if mask.all():
      arrays[f'value/{name}'] = value
      stored = 'dense'
    else:
      arrays[f'mask/{name}'] = np.packbits(mask.reshape(-1))
      arrays[f'value/{name}'] = value.reshape(-1)[mask.reshape(-1)]
      stored = 'packed'
    leaves.append({
      'name': name, 'shape': list(value.shape), 'dtype': str(value.dtype), 'stored': stored,
      'kept': int(mask.sum()),
    })  # fmt: skip
  for name, value in ticket.model_state.items():
    arrays[f'state/{name}'] = value
  header = {**ticket.header, 'format': FORMAT, 'leaves': leaves, 'state': list(ticket.model_state)}
  arrays['header'] = np.frombuffer(json.dumps(header).encode(), np.uint8)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'wb') as f:
    np.savez_compressed(f, **arrays)
  return path


def read(path: str | os.PathLike):
  """(header, params, masks, model_state) of a ticket file, as flat dicts of numpy arrays.

  Raises:
    DataError: the file is missing, not a ticket file, or damaged.
  """
  from lth_jax.analyses.edge_trainer import read_ticket  # numpy only: the reader a device runs.

  path = Path(path)
  if not path.is_file():
    raise DataError(f'no ticket file at {path}; write one with `lth export RUN_DIR --level L`.')
  try:
    return read_ticket(path)
  except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
    raise DataError(
      f'{path} is not a readable ticket file ({type(e).__name__}: {e}); export it again.'
    ) from e


def load(path: str | os.PathLike):
  """(model, params, masks) of a ticket file: the zoo model and nested dicts of arrays."""
  from lth_jax.core import models

  header, params, masks, _ = read(path)
  model = models.get_model(header['model']['name'], **header['model']['settings'])
  return model, unflatten(params), unflatten(masks)


def file_bytes(path: str | os.PathLike) -> int:
  return Path(path).stat().st_size


def describe_sizes(ticket: Ticket, path: str | os.PathLike) -> str:
  dense, size = ticket.dense_bytes(), file_bytes(path)
  return (
    f'{path}: {size:,} bytes (the dense parameters: {dense:,} bytes, {dense / size:.1f}x larger); '
    f'{ticket.header["weights_remaining"]:.2%} of weights remaining'
  )


# ----------------------------------------------------------------------------- from a run


def export(run_dir: str | os.PathLike, *, level: int, seed: int = 0, arm: str = 'ticket') -> Ticket:
  """The ticket a finished run of ``run_dir`` started from: (seed, level, arm).

  Raises:
    RunError: that run is not finished in ``run_dir`` (the message lists those that are).
  """
  from lth_jax.study import workdir

  run_dir = Path(run_dir)
  config = _config_of(workdir.load_config_json(run_dir))
  row = _summary_row(run_dir, seed, level, arm)
  study_like = _StudyParts(config, run_dir, arm)
  params, masks, model_state = study_like.start(seed, level)
  return Ticket(
    params=flatten(params), masks=flatten(masks), model_state=flatten(model_state),
    header=_header(config, row, seed, level, arm),
  )  # fmt: skip


def _config_of(raw: dict):
  import ml_collections

  config = ml_collections.ConfigDict(raw)
  config.optimizer.milestones = tuple(config.optimizer.milestones)
  if 'classes' in config.data:
    config.data.classes = tuple(config.data.classes)
  return config


def _summary_row(run_dir: Path, seed: int, level: int, arm: str) -> dict:
  from lth_jax.study import results

  rows = results.read_rows(run_dir / results.SUMMARY)
  for r in rows:
    if results.run_key(r) == (seed, level, arm):
      return r
  done = ', '.join(f'seed {s} level {lv} {a}' for s, lv, a in map(results.run_key, rows))
  raise RunError(
    f'{run_dir} has no finished run seed {seed} level {level} {arm}; finished: {done or "none"}.'
  )


def _header(config, row, seed, level, arm) -> dict:
  from lth_jax.study import config as config_lib

  num_classes = len(config.data.get('classes', ())) or 10
  settings = {'num_classes': num_classes}
  if config.model.dropout:
    settings['dropout'] = config.model.dropout
  return {
    'model': {'name': config.model.name, 'settings': settings},
    'input_shape': list(INPUT_SHAPES[config.data.name]),
    'num_classes': num_classes,
    'data': {'name': config.data.name, 'classes': list(config.data.get('classes', ()))},
    'provenance': {
      'config': json.loads(config_lib.to_json(config)),
      'config_hash': config_lib.study_hash(config),
      'seed': seed, 'level': level, 'arm': arm,
      'starts_from': 'theta_0' if level == 0 or config.rewind_step == 0 else 'theta_k',
      'rewind_step': 0 if level == 0 else config.rewind_step,
      'test_accuracy_at_early_stop': float(row['test_accuracy_at_early_stop']),
      'early_stop_step': int(row['early_stop_step']),
    },
    'weights_remaining': float(row['weights_remaining']),
  }  # fmt: skip


INPUT_SHAPES = {'mnist': (28, 28, 1), 'fashion_mnist': (28, 28, 1), 'cifar10': (32, 32, 3)}


class _StudyParts:
  """What a run started from, from the stored trees (no data loaded for the ticket arm)."""

  def __init__(self, config, run_dir: Path, arm: str):
    from lth_jax.study import store as store_lib

    self.config, self.arm = config, arm
    self.store = store_lib.DiskStore(run_dir, log=lambda message: None)

  def state_like(self):
    import jax

    from lth_jax.core import train
    from lth_jax.study import from_config

    model = from_config.make_model(self.config, len(self.config.data.get('classes', ())) or 10)
    task = train.Task(
      model, from_config.make_optimizer(self.config.optimizer), self.config.batch_size
    )
    shape = INPUT_SHAPES[self.config.data.name]

    def initial():
      params, model_state = train.init_variables(model, jax.random.key(0), shape)
      return train.create_state(task, params, model_state)

    return jax.eval_shape(initial)

  def start(self, seed: int, level: int):
    from lth_jax.core import rewind
    from lth_jax.study import artifacts

    like = self.state_like()
    if level == 0:
      init = self.store.trees.load(
        artifacts.init(seed), like={'params': like.params, 'model_state': like.model_state}
      )
      ones = _map(lambda p: np.ones(p.shape, bool), init['params'])
      return init['params'], ones, init['model_state']
    state_k = self.store.trees.load(artifacts.rewind(seed), like=like)
    masks = self.store.trees.load(artifacts.masks(seed, level), like=like.masks)
    if self.arm == 'ticket':
      start = rewind.rewind(state_k, masks)
    else:
      start = self._control(state_k, masks, seed, level)
    return _numpy(start.params), _numpy(start.masks), _numpy(start.model_state)

  def _control(self, state_k, masks, seed, level):
    from lth_jax.study import from_config
    from lth_jax.study.definition import control_key

    study = from_config.from_config(self.config)  # Other arms need the model's init: build it.
    return study.control(self.arm)(
      study.rewound(state_k), masks, control_key(seed, level, self.arm)
    )


def _map(f, tree):
  return {k: _map(f, v) if isinstance(v, dict) else f(v) for k, v in tree.items()}


def _numpy(tree):
  import jax

  return jax.tree.map(np.asarray, jax.device_get(tree))


# ----------------------------------------------------------------------------- into a study


class Imported:
  """A study's imported ticket (config key ``ticket``): per seed, its params and masks.

  ``path`` may hold ``{seed}``, replaced by each seed of the study, so that seed S
  of a study trains the ticket of seed S of another.
  """

  def __init__(self, path: str, params_like):
    self.path, self.params_like = path, params_like

  def file(self, seed: int) -> Path:
    return Path(self.path.replace('{seed}', str(seed)))

  def __call__(self, seed: int):
    """(params, masks) of ``seed``'s ticket, with exactly the study's params structure."""
    import jax

    path = self.file(seed)
    _, params, masks, _ = read(path)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(self.params_like)
    from lth_jax.core.masks import leaf_name

    names = [leaf_name(p) for p, _ in leaves]
    wanted = {
      n: (tuple(x.shape), np.dtype(x.dtype)) for n, (_, x) in zip(names, leaves, strict=True)
    }
    have = {n: (v.shape, v.dtype) for n, v in params.items()}
    if wanted != have:
      from lth_jax.errors import ConfigError

      diff = sorted(set(wanted.items()) ^ set(have.items()))[:4]
      raise ConfigError(
        f'config.ticket={str(path)!r} does not fit the model: leaves differ in {diff}; export '
        'a ticket of the same model and number of classes.'
      )
    return treedef.unflatten([params[n] for n in names]), treedef.unflatten(
      [masks[n] for n in names]
    )

"""Tickets that travel: one portable file per ticket, readable with numpy alone.

``export(run_dir, level=L, seed=S, arm='ticket')`` reads a finished study's
stored trees (``lth_jax.study.artifacts`` names, through the run directory's store)
and builds the ``Ticket`` that run started from: its masks and its starting
values (θ0 at level 0, θk ⊙ masks after, or an arm's control of them).
``save`` writes it as an ``.npz`` file, its layout in ``lth_jax.data.ticket_file``.

``load(FILE) -> (model, params, masks)`` gives back the trees bit for bit;
``read(FILE) -> (header, params, masks)`` is the same with numpy arrays only
(``lth_jax.data.ticket_file``, the numpy-only reader a device runs).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lth_jax.core import compaction, models, rewind
from lth_jax.core import masks as masks_lib
from lth_jax.core import train as train_lib
from lth_jax.data import ticket_file, tickets
from lth_jax.errors import DataError, RunError
from lth_jax.study import artifacts, from_config, results, starts, workdir
from lth_jax.study import config as config_lib
from lth_jax.study import store as store_lib
from lth_jax.study.definition import RunKey


@dataclasses.dataclass
class Ticket:
  """A ticket: masks and starting values (flat {leaf name: array}) and what it came from."""

  params: dict[str, np.ndarray]
  masks: dict[str, np.ndarray]
  model_state: dict[str, np.ndarray]
  header: dict[str, Any]

  def dense_bytes(self) -> int:
    """Bytes of the dense parameters (every weight stored, float32; of the network before
    compaction for a compacted ticket)."""
    return int(self.header.get('dense_bytes') or sum(v.nbytes for v in self.params.values()))


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


def save(ticket: Ticket, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
  """Writes ``ticket`` to ``path`` (.npz), whole or not at all; returns the path.

  Raises:
    RunError: ``path`` exists and ``overwrite`` is False.
  """
  path = Path(path)
  if path.exists() and not overwrite:
    raise RunError(f'{path} exists; choose another --output, or pass --force to replace it.')
  return ticket_file.write(path, ticket.params, ticket.masks, ticket.model_state, ticket.header)


read = tickets.read  # (header, params, masks, model_state); DataError for a bad file.


SETTINGS = {'num_classes': int, 'dropout': float}  # The zoo settings a ticket file may name.


def load(path: str | os.PathLike):
  """(model, params, masks) of a ticket file: the zoo model and nested dicts of arrays.

  Every leaf is checked against the model's own parameters (names, shapes, dtypes).

  Raises:
    DataError: the file is not a usable ticket file, names no zoo model, or does not fit it.
  """
  header, params, masks, _ = read(path)
  model = model_of(path, header)
  shape = header.get('input_shape')
  if not isinstance(shape, list) or not all(isinstance(d, int) and 0 < d < 4096 for d in shape):
    raise DataError(f'{path}: input_shape {shape!r} is not a list of sizes; export it again.')
  like = jax.eval_shape(lambda: train_lib.init_variables(model, jax.random.key(0), shape)[0])
  leaves = jax.tree_util.tree_flatten_with_path(like)[0]
  tickets.check_fits(path, params, {masks_lib.leaf_name(p): x for p, x in leaves})
  return model, unflatten(params), unflatten(masks)


def model_of(path, header: dict):
  """The zoo model a ticket header names (compacted: with its widths); DataError if none."""
  spec = header.get('model')
  name = spec.get('name') if isinstance(spec, dict) else None
  settings = spec.get('settings') if isinstance(spec, dict) else None
  if name not in models.MODELS or not isinstance(settings, dict):
    raise DataError(f'{path} names no zoo model ({spec!r:.80}); export it again.')
  for key, value in settings.items():
    kind = SETTINGS.get(key)
    if kind is None or not isinstance(value, kind) or isinstance(value, bool):
      raise DataError(f'{path}: model setting {key}={value!r:.40} is not allowed; export it again.')
  if not 2 <= settings.get('num_classes', 10) <= 100_000:
    raise DataError(f'{path}: num_classes={settings["num_classes"]} is out of range.')
  model = models.get_model(name, **settings)
  widths = spec.get('widths')
  if widths is None:
    return model
  producers = {a for a, _ in compaction.unit_links(model)}
  if not isinstance(widths, dict) or not all(
    k in producers and isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100_000
    for k, v in widths.items()
  ):
    raise DataError(f'{path}: compacted widths {widths!r:.80} do not fit {name}; export it again.')
  return compaction.resized(model, widths)


def file_bytes(path: str | os.PathLike) -> int:
  return Path(path).stat().st_size


def describe_sizes(ticket: Ticket, path: str | os.PathLike) -> str:
  dense, size = ticket.dense_bytes(), file_bytes(path)
  return (
    f'{path}: {size:,} bytes (the dense parameters: {dense:,} bytes, {dense / size:.1f}x larger); '
    f'{ticket.header["weights_remaining"]:.2%} of weights remaining'
  )


# ----------------------------------------------------------------------------- from a run


def export(
  run_dir: str | os.PathLike, *, level: int, seed: int = 0, arm: str = 'ticket',
  compact: bool = False,
) -> Ticket:  # fmt: skip
  """The ticket a finished run of ``run_dir`` started from: (seed, level, arm).

  The ticket arm is read from the stored trees alone (no data set is loaded);
  other arms are rebuilt by the study's own starts (``lth_jax.study.starts``).
  ``compact``: without its removed units and channels (``lth_jax.core.compaction``),
  a smaller model of the same family; its widths are in the header.

  Raises:
    RunError: that run is not finished in ``run_dir`` (the message lists those that are).
  """
  run_dir = Path(run_dir)
  config = workdir.load_config(run_dir)
  row = _summary_row(run_dir, seed, level, arm)
  params, masks, model_state = _start(config, run_dir, seed, level, arm)
  header = _header(config, row, seed, level, arm)
  if compact:
    model = from_config.make_model(config, header['num_classes'])
    links = from_config.make_plan(config, params).links or compaction.unit_links(model)
    small = compaction.compact(model, params, masks, model_state, links=links)
    header['dense_bytes'] = int(sum(np.asarray(v).nbytes for v in jax.tree.leaves(params)))
    params, masks, model_state = small.params, small.masks, small.model_state
    header['model']['widths'] = small.widths()
  return Ticket(
    params=flatten(params), masks=flatten(masks), model_state=flatten(model_state),
    header=header,
  )  # fmt: skip


def _start(config, run_dir: Path, seed: int, level: int, arm: str):
  """(params, masks, model_state) the run (seed, level, arm) started from, as numpy arrays."""
  store = store_lib.DiskStore(run_dir, log=lambda message: None)
  if arm != 'ticket':  # A control's start needs the model's init and, for some, the data.
    start = starts.start_states(from_config.from_config(config), store, [RunKey(seed, level, arm)])
    parts = (start[0].params, start[0].masks, start[0].model_state)
  elif level == 0:
    like = from_config.state_like(config)
    trained_like = {'params': like.params, 'model_state': like.model_state}
    init = store.trees.load(artifacts.init(seed), like=trained_like)
    parts = (init['params'], masks_lib.ones_like(init['params']), init['model_state'])
  else:
    like = from_config.state_like(config)
    state_k = store.trees.load(artifacts.rewind(seed), like=like)
    ticket = rewind.rewind(state_k, store.trees.load(artifacts.masks(seed, level), like=like.masks))
    parts = (ticket.params, ticket.masks, ticket.model_state)
  return jax.tree.map(np.asarray, jax.device_get(parts))


def _summary_row(run_dir: Path, seed: int, level: int, arm: str) -> dict:
  rows = results.read_rows(run_dir / results.SUMMARY)
  for r in rows:
    if results.run_key(r) == (seed, level, arm):
      return r
  done = ', '.join(f'seed {s} level {lv} {a}' for s, lv, a in map(results.run_key, rows))
  raise RunError(
    f'{run_dir} has no finished run seed {seed} level {level} {arm}; finished: {done or "none"}.'
  )


def _header(config, row, seed, level, arm) -> dict:
  num_classes = len(config.data.classes) or 10
  settings = {'num_classes': num_classes}
  if config.model.dropout:
    settings['dropout'] = config.model.dropout
  return {
    'model': {'name': config.model.name, 'settings': settings},
    'input_shape': list(from_config.INPUT_SHAPES[config.data.name]),
    'num_classes': num_classes,
    'data': {'name': config.data.name, 'classes': list(config.data.classes)},
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

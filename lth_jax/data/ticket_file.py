"""The ticket file: one portable ``.npz`` per ticket, written and read with numpy alone.

This module imports only numpy and the standard library, so it runs on a small
device beside ``lth_jax.analyses.edge_trainer``. Layout::

    header                    JSON (as uint8 bytes): format, model name and settings,
                              input shape, classes, leaves, provenance
    mask/<leaf>               np.packbits of a pruned leaf's flattened mask
    value/<leaf>              its kept values in C order (only those), or the whole
                              leaf for leaves that are never pruned (biases)
    state/<leaf>              model state (e.g. batch-norm statistics), dense
"""

from __future__ import annotations

import json
import os

import numpy as np

FORMAT = 'lth_jax.ticket/1'


def write(path, params: dict, masks: dict, model_state: dict, header: dict):
  """Writes a ticket (flat {leaf name: array} dicts and its header) to ``path``, atomically:
  a temporary file beside it, renamed over it once complete. Returns ``path``."""
  arrays, leaves = {}, []
  for name, value in params.items():
    value = np.asarray(value)
    mask = np.asarray(masks[name], bool)
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
  for name, value in model_state.items():
    arrays[f'state/{name}'] = np.asarray(value)
  full = {**header, 'format': FORMAT, 'leaves': leaves, 'state': list(model_state)}
  arrays['header'] = np.frombuffer(json.dumps(full).encode(), np.uint8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.partial'
  with open(tmp, 'wb') as f:
    np.savez_compressed(f, **arrays)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  return path


def read(path: str | os.PathLike):
  """(header, params, masks, model_state) of a ticket file: flat dicts of numpy arrays.

  Raises ValueError for a file that is not a readable ticket (OSError if missing).
  """
  with np.load(path, allow_pickle=False) as z:
    arrays = {k: z[k] for k in z.files}
  header = json.loads(arrays.pop('header').tobytes().decode())
  if header.get('format') != FORMAT:
    raise ValueError(f'format {header.get("format")!r}, expected {FORMAT!r}')
  params, masks = {}, {}
  for leaf in header['leaves']:
    params[leaf['name']], masks[leaf['name']] = _unpack(leaf, arrays)
  state = {name: arrays[f'state/{name}'] for name in header['state']}
  return header, params, masks, state


def _unpack(leaf, arrays):
  name, shape, dtype = leaf['name'], tuple(leaf['shape']), np.dtype(leaf['dtype'])
  if leaf['stored'] == 'dense':
    value = arrays[f'value/{name}']
    if value.shape != shape or value.dtype != dtype:
      raise ValueError(f'{name} is {value.shape} {value.dtype}, expected {shape} {dtype}')
    return value, np.ones(shape, bool)
  mask = np.unpackbits(arrays[f'mask/{name}'], count=int(np.prod(shape))).astype(bool)
  kept = arrays[f'value/{name}']
  if kept.shape != (int(mask.sum()),) or kept.shape[0] != leaf['kept'] or kept.dtype != dtype:
    raise ValueError(f'{name} holds {kept.shape[0]} kept values, its mask {int(mask.sum())}')
  value = np.zeros(mask.size, dtype)
  value[mask] = kept
  return value.reshape(shape), mask.reshape(shape)

"""The ticket file: one portable ``.npz`` per ticket, written and read with numpy alone.

This module imports only numpy and the standard library, so it runs on a small
device beside ``lth_jax.analyses.edge_trainer``. Layout::

    header                    JSON (as uint8 bytes): format, model name and settings,
                              input shape, classes, leaves (name, shape, dtype, how stored,
                              kept count), model state (name, shape, dtype), provenance
    mask/<leaf>               np.packbits of a pruned leaf's flattened mask
    value/<leaf>              its kept values in C order (only those), or the whole
                              leaf for leaves that are never pruned (biases)
    state/<leaf>              model state (e.g. batch-norm statistics), dense

A file comes from someone else's machine, so ``read`` trusts nothing in it: the
header is parsed through its schema, only the members the header declares are
read, and each is checked against the header (dtype, shape, exact packed
length, kept values = the mask's popcount) from its own npy header before its
data is decoded; the sizes the header declares must fit what the file can hold.
Anything else is a ``TicketFileError`` naming what is wrong. Memory use is
bounded by the declared sizes.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
import zlib

import numpy as np

FORMAT = 'lth_jax.ticket/1'
DTYPES = ('float16', 'float32', 'float64', 'int8', 'int16', 'int32', 'int64', 'uint8')
MAX_HEADER_BYTES = 1 << 22  # 4 MiB of JSON: thousands of leaves.
MAX_RATIO = 1024  # Declared bytes per byte of the file: what deflate can reach on zeros.
MAX_DIMS = 8
_NAME = re.compile(r'[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*')


class TicketFileError(ValueError):
  """A ticket file that is not one, or is damaged; the message says what is wrong."""


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
  state = []
  for name, value in model_state.items():
    value = np.asarray(value)
    arrays[f'state/{name}'] = value
    state.append({'name': name, 'shape': list(value.shape), 'dtype': str(value.dtype)})
  full = {**header, 'format': FORMAT, 'leaves': leaves, 'state': state}
  arrays['header'] = np.frombuffer(json.dumps(full).encode(), np.uint8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.partial'
  try:
    with open(tmp, 'wb') as f:
      np.savez_compressed(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def read(path):
  """(header, params, masks, model_state) of a ticket file: flat dicts of numpy arrays.

  Raises:
    TicketFileError: the file is not a ticket file, or is damaged (the message says how).
    OSError: the file cannot be opened.
  """
  file_bytes = os.path.getsize(path)
  try:
    with zipfile.ZipFile(path) as z:
      members = {info.filename: info for info in z.infolist()}
      raw = _read_member(z, members, 'header', 'uint8', None, limit=MAX_HEADER_BYTES)
      header = _parse_header(raw.tobytes())
      expected = _expected(header)
      budget = MAX_RATIO * max(file_bytes, 1) + (1 << 20)  # What the file can hold.
      declared = sum(_nbytes(dtype, shape) for dtype, shape in expected.values())
      if declared > budget:
        raise TicketFileError(
          f'its header declares {declared:,} bytes of arrays, more than a {file_bytes:,}-byte '
          'file can hold'
        )
      arrays = {
        name: _read_member(z, members, name, *spec, limit=budget) for name, spec in expected.items()
      }
  except zipfile.BadZipFile as e:
    raise TicketFileError(f'not a readable .npz (zip) file: {e}') from None
  except (zlib.error, EOFError) as e:
    raise TicketFileError(f'a member is damaged ({type(e).__name__}: {e})') from None
  params, masks = {}, {}
  for leaf in header['leaves']:
    params[leaf['name']], masks[leaf['name']] = _unpack(leaf, arrays)
  state = {s['name']: arrays[f'state/{s["name"]}'] for s in header['state']}
  return header, params, masks, state


# ----------------------------------------------------------------------------- the header


def _parse_header(raw: bytes) -> dict:
  try:
    header = json.loads(raw.decode('utf-8'))
  except (UnicodeDecodeError, ValueError) as e:
    raise TicketFileError(f'its header is not JSON ({e})') from None
  if not isinstance(header, dict):
    raise TicketFileError('its header is not a JSON object')
  if header.get('format') != FORMAT:
    raise TicketFileError(f'format {_short(header.get("format"))}, expected {FORMAT!r}')
  leaves, state = header.get('leaves'), header.get('state', [])
  if not isinstance(leaves, list) or not leaves:
    raise TicketFileError('its header lists no leaves')
  if not isinstance(state, list):
    raise TicketFileError('its header\'s "state" is not a list')
  for leaf in leaves:
    _check_leaf(leaf)
  header['state'] = [_state_entry(s) for s in state]
  names = [leaf['name'] for leaf in leaves] + [f'state/{s["name"]}' for s in header['state']]
  if len(set(names)) != len(names):
    raise TicketFileError('its header names a leaf twice')
  return header


def _check_leaf(leaf) -> None:
  if not isinstance(leaf, dict):
    raise TicketFileError(f'a leaf of its header is {_short(leaf)}, not an object')
  name = leaf.get('name')
  _check_name(name)
  _check_array_spec(name, leaf.get('dtype'), leaf.get('shape'))
  if leaf.get('stored') not in ('dense', 'packed'):
    raise TicketFileError(f'leaf {name}: stored {_short(leaf.get("stored"))}, not dense or packed')
  kept, size = leaf.get('kept'), int(np.prod(leaf['shape'], dtype=np.int64))
  if not _is_int(kept) or not 0 <= kept <= size:
    raise TicketFileError(f'leaf {name}: kept {_short(kept)}, not a count in [0, {size}]')
  if leaf['stored'] == 'dense' and kept != size:
    raise TicketFileError(f'leaf {name}: stored dense but keeps {kept} of {size} values')


def _state_entry(entry) -> dict:
  if isinstance(entry, str):  # Files written before the state's shapes were declared.
    _check_name(entry)
    return {'name': entry, 'shape': None, 'dtype': None}
  if not isinstance(entry, dict):
    raise TicketFileError(f'a state entry of its header is {_short(entry)}, not an object')
  _check_name(entry.get('name'))
  _check_array_spec(entry['name'], entry.get('dtype'), entry.get('shape'))
  return {'name': entry['name'], 'shape': list(entry['shape']), 'dtype': entry['dtype']}


def _check_name(name) -> None:
  if not isinstance(name, str) or len(name) > 256 or not _NAME.fullmatch(name):
    raise TicketFileError(f'a leaf is named {_short(name)}, not a path of letters, digits, _.-')


def _check_array_spec(name, dtype, shape) -> None:
  if dtype not in DTYPES:
    raise TicketFileError(f'leaf {name}: dtype {_short(dtype)} is not one of {", ".join(DTYPES)}')
  if (
    not isinstance(shape, list)
    or len(shape) > MAX_DIMS
    or not all(_is_int(d) and 0 <= d < 2**40 for d in shape)
  ):
    raise TicketFileError(f'leaf {name}: shape {_short(shape)} is not a list of sizes')


def _expected(header: dict) -> dict:
  """{member: (dtype, shape)} of every member the header declares (shape None: its own)."""
  expected = {}
  for leaf in header['leaves']:
    name, shape, size = leaf['name'], tuple(leaf['shape']), int(np.prod(leaf['shape']))
    if leaf['stored'] == 'dense':
      expected[f'value/{name}'] = (leaf['dtype'], shape)
    else:
      expected[f'mask/{name}'] = ('uint8', (-(-size // 8),))
      expected[f'value/{name}'] = (leaf['dtype'], (leaf['kept'],))
  for s in header['state']:
    expected[f'state/{s["name"]}'] = (s['dtype'], None if s['shape'] is None else tuple(s['shape']))
  return expected


# ----------------------------------------------------------------------------- the members


def _read_member(z: zipfile.ZipFile, members: dict, name, dtype, shape, *, limit) -> np.ndarray:
  """The array of member ``name``, checked against (dtype, shape) from its npy header before
  its data is read (shape None: any shape of at most ``limit`` bytes that the entry holds)."""
  info = members.get(f'{name}.npy')
  if info is None:
    raise TicketFileError(f'member {name} is missing')
  with z.open(info) as f:
    try:
      version = np.lib.format.read_magic(f)
      if version == (1, 0):
        got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(f)
      elif version == (2, 0):
        got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(f)
      else:
        raise ValueError(f'npy version {version}')
    except (ValueError, SyntaxError, TypeError) as e:
      raise TicketFileError(f'member {name} is not an npy array ({e})') from None
    if got_dtype.hasobject or fortran:
      raise TicketFileError(f'member {name} holds objects or a Fortran-order array')
    want = np.dtype(dtype) if dtype is not None else got_dtype
    if got_dtype != want or (shape is not None and tuple(got_shape) != tuple(shape)):
      raise TicketFileError(
        f'member {name} is {got_dtype} {tuple(got_shape)}, its header says {want} {shape}'
      )
    nbytes = _nbytes(got_dtype, got_shape)
    if nbytes > info.file_size or nbytes > limit:
      raise TicketFileError(f'member {name} declares {nbytes:,} bytes it does not hold')
    data = f.read(nbytes)
  if len(data) != nbytes:
    raise TicketFileError(f'member {name} is truncated')
  return np.frombuffer(data, got_dtype).reshape(got_shape)


def _unpack(leaf: dict, arrays: dict):
  name, shape, dtype = leaf['name'], tuple(leaf['shape']), np.dtype(leaf['dtype'])
  if leaf['stored'] == 'dense':
    value = arrays[f'value/{name}']
    return value.copy(), np.ones(shape, bool)
  size = int(np.prod(shape))
  packed = arrays[f'mask/{name}']
  mask = np.unpackbits(packed, count=size).astype(bool)
  if int(np.unpackbits(packed).sum()) != int(mask.sum()):
    raise TicketFileError(f'leaf {name}: its packed mask has bits set past its {size} weights')
  if int(mask.sum()) != leaf['kept']:
    raise TicketFileError(
      f'leaf {name}: its mask keeps {int(mask.sum())}, its header {leaf["kept"]}'
    )
  value = np.zeros(size, dtype)
  value[mask] = arrays[f'value/{name}']
  return value.reshape(shape), mask.reshape(shape)


def _nbytes(dtype, shape) -> int:
  if shape is None:
    return 0
  return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _short(value, limit: int = 60) -> str:
  text = repr(value)
  return text if len(text) <= limit else text[: limit - 3] + '...'

"""The raw files of MNIST, Fashion-MNIST and CIFAR-10: their names and readers.

IDX files (MNIST's format, gzipped) and CIFAR-10's python batches (pickles,
read with an unpickler that rebuilds numpy arrays only) become uint8 images and
int64 labels; anything damaged or of the wrong kind is a ``DataError`` naming
the file. No tfds here: the builders in ``lth_jax.data.tfds_builders`` call these.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zlib

import numpy as np

from lth_jax.errors import DataError

NUM_CLASSES = 10

IDX_FILES = {
  'train_images': 'train-images-idx3-ubyte.gz',
  'train_labels': 'train-labels-idx1-ubyte.gz',
  'test_images': 't10k-images-idx3-ubyte.gz',
  'test_labels': 't10k-labels-idx1-ubyte.gz',
}
_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

CIFAR10_ARCHIVE = 'cifar-10-python.tar.gz'
CIFAR10_DIR = 'cifar-10-batches-py'
CIFAR10_TRAIN_BATCHES = tuple(f'data_batch_{i}' for i in range(1, 6))
CIFAR10_TEST_BATCH = 'test_batch'


def read_idx(path: str | os.PathLike, *, magic: int) -> np.ndarray:
  """Reads a gzipped IDX file of unsigned bytes into a uint8 array.

  Args:
    path: the ``*-ubyte.gz`` file.
    magic: the expected magic number (2051 for images, 2049 for labels).

  Returns:
    uint8 array with the dimensions stored in the header.

  Raises:
    DataError: the file is not gzip, is truncated, or has the wrong header.
  """
  fix = 'replace it with an intact copy of the original file'
  try:
    with gzip.open(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f'{path}: not a readable gzip file ({e}); {fix}.') from e
  if len(raw) < 4:
    raise DataError(f'{path}: too short for an IDX header; {fix}.')
  (found,) = struct.unpack('>I', raw[:4])
  if found != magic:
    raise DataError(f'{path}: IDX magic number {found}, expected {magic}; {fix}.')
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f'{path}: truncated IDX header; {fix}.')
  dims = struct.unpack(f'>{ndim}I', raw[4:header])
  expected = int(np.prod(dims))
  if len(raw) - header != expected:
    raise DataError(
      f'{path}: IDX header promises {expected} bytes {dims}, file holds {len(raw) - header}; {fix}.'
    )
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_idx_pair(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
  """Reads matching IDX image/label files into ([N, 28, 28, 1] uint8, [N] int64)."""
  images = read_idx(images_path, magic=_IDX_IMAGES_MAGIC)
  labels = read_idx(labels_path, magic=_IDX_LABELS_MAGIC)
  if len(images) != len(labels):
    raise DataError(
      f'{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; '
      'the files are from different datasets or damaged.'
    )
  _check_labels(labels, labels_path)
  return images[..., None], labels.astype(np.int64)


def _check_labels(labels: np.ndarray, where) -> None:
  if labels.size and int(labels.max()) >= NUM_CLASSES:
    raise DataError(f'{where}: label {int(labels.max())} is outside 0..{NUM_CLASSES - 1}.')


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Unpickler that only rebuilds numpy arrays: a CIFAR batch needs nothing else.

  Pickles can run arbitrary code; refusing every other global keeps a
  tampered manual_dir from doing so.
  """

  _ALLOWED = {
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, 'latin1').
    ('_codecs', 'encode'),
  }

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f'global {module}.{name} is not allowed in a CIFAR batch')
    return super().find_class(module, name)


def parse_cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
  """Parses one CIFAR-10 python batch into ([N, 32, 32, 3] uint8, [N] int64).

  Args:
    raw: the pickled batch (dict with b'data' uint8 [N, 3072] and b'labels').
    where: the file name, for error messages.
  """
  fix = 'replace it with the file from the original cifar-10-python.tar.gz'
  try:
    batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding='bytes').load()
    data = np.asarray(batch[b'data'], dtype=np.uint8)
    labels = np.asarray(batch[b'labels'], dtype=np.int64)
  except Exception as e:  # A damaged pickle can fail in many ways; all mean the same.
    raise DataError(f'{where}: not a CIFAR-10 python batch ({e!r}); {fix}.') from e
  if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
    raise DataError(
      f'{where}: data {data.shape} / labels {labels.shape}, expected [N, 3072] / [N]; {fix}.'
    )
  _check_labels(labels, where)
  # Rows are channel-major (1024 red, 1024 green, 1024 blue), each row-major 32x32.
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels


def read_cifar10(source: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads CIFAR-10 from the python archive or its extracted ``cifar-10-batches-py`` dir.

  Returns:
    {'train': (images, labels), 'test': (images, labels)}; train is batches 1..5 in order.
  """
  names = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
  if os.path.isdir(source):
    raw = {}
    for n in names:
      with open(os.path.join(source, n), 'rb') as f:
        raw[n] = f.read()
  else:
    raw = _read_cifar_archive(source, names)
  parsed = {n: parse_cifar_batch(raw[n], os.path.join(source, n)) for n in names}
  train = [parsed[n] for n in CIFAR10_TRAIN_BATCHES]
  return {
    'train': (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
    'test': parsed[CIFAR10_TEST_BATCH],
  }


def _read_cifar_archive(path, names) -> dict[str, bytes]:
  # Members are read straight from the tar stream: no 180 MB extraction on disk.
  wanted = {f'{CIFAR10_DIR}/{n}': n for n in names}
  raw = {}
  try:
    with tarfile.open(path, 'r:gz') as tar:
      for member in tar:
        if member.name in wanted and member.isfile():
          raw[wanted[member.name]] = tar.extractfile(member).read()
  except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
    raise DataError(f'{path}: not a readable tar.gz archive ({e}); replace it.') from e
  missing = [f'{CIFAR10_DIR}/{n}' for n in names if n not in raw]
  if missing:
    raise DataError(f'{path} lacks {missing}; it is not the CIFAR-10 python archive.')
  return raw

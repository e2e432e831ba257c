"""The known checksums of the raw data files, and checking local files against them.

MNIST's and Fashion-MNIST's sha256 digests and sizes are read from the checksum
files that tensorflow-datasets installs (``url_checksums/<name>.txt``), not
typed here. tfds checks CIFAR-10's binary archive; we read the python one, whose
sha256 is the one Keras' ``cifar10.load_data`` verifies, and its extracted
batches are checked against the md5 digests torchvision's ``CIFAR10`` verifies.

Debian's ``dataset-fashion-mnist`` ships the canonical Fashion-MNIST files with
their gzip header normalised by strip-nondeterminism: the stored file name is
dropped and the time stamp set to the package's date; the compressed data are
untouched. ``GZIP_MTIMES`` holds the original time stamps (found by searching for
the value that makes each Debian file hash to tfds' digest): with the header put
back, such a file is checked against the same canonical digest.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from typing import NamedTuple

import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import checksums as tfds_checksums

from lth_jax.errors import DataError

OVERRIDE = (
  'for a deliberately modified copy turn the check off with '
  '--config.data.verify_checksums=false (load(..., verify_checksums=False))'
)


class Known(NamedTuple):
  """A file's known digest: its size in bytes (None when not published) and hex digest."""

  size: int | None
  digest: str
  algorithm: str = 'sha256'


# Keras' cifar10.load_data (file_hash of cifar-10-python.tar.gz).
_CIFAR10_ARCHIVE = {
  'cifar-10-python.tar.gz': Known(
    170498071, '6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce'
  ),
}
# torchvision.datasets.CIFAR10's train_list / test_list.
_CIFAR10_BATCHES = {
  name: Known(None, md5, 'md5')
  for name, md5 in (
    ('data_batch_1', 'c99cafc152244af753f735de768cd75f'),
    ('data_batch_2', 'd4bba439e000b95fd0a9bffe97cbabec'),
    ('data_batch_3', '54ebc095f3ab1f0389bbae665268c751'),
    ('data_batch_4', '634d18415352ddfa80567beed471001a'),
    ('data_batch_5', '482c414d41f54cd18b22e5b47cb7c3cb'),
    ('test_batch', '40351d587109b95175f43aff81a1287e'),
  )
}

# The gzip time stamps of the canonical files, for headers normalised by Debian.
GZIP_MTIMES = {
  'fashion_mnist': {
    'train-images-idx3-ubyte.gz': 1504176606,
    'train-labels-idx1-ubyte.gz': 1504176606,
    't10k-images-idx3-ubyte.gz': 1504176627,
    't10k-labels-idx1-ubyte.gz': 1504176627,
  },
}
DATASETS = ('mnist', 'fashion_mnist', 'cifar10')
_GZIP_MAGIC, _FNAME = b'\x1f\x8b\x08', 0x08


@functools.cache
def download_checksums(name: str) -> dict[str, Known]:
  """{file name: Known} of the files ``name``'s builder downloads (sha256 and size)."""
  if name == 'cifar10':
    return dict(_CIFAR10_ARCHIVE)
  root = os.path.dirname(tfds.__file__)
  candidates = (
    os.path.join(root, 'url_checksums', f'{name}.txt'),
    os.path.join(root, 'datasets', name, 'checksums.tsv'),
  )
  for path in candidates:
    if os.path.isfile(path):
      infos = tfds_checksums.load_url_infos(path).items()
      return {
        info.filename or url.rsplit('/', 1)[-1]: Known(int(info.size), info.checksum)
        for url, info in infos
      }
  raise DataError(
    f'tensorflow-datasets {tfds.__version__} ships no checksums for {name} (looked for '
    f'{list(candidates)}); install one that does (4.9.10 does).'
  )


def known_checksums(name: str) -> dict[str, Known]:
  """{file name: Known} of every raw file of ``name`` that can be checked."""
  if name == 'cifar10':
    return {**_CIFAR10_ARCHIVE, **_CIFAR10_BATCHES}
  return dict(download_checksums(name))


def verify(path: str | os.PathLike, *, dataset: str, filename: str) -> None:
  """Raises ``DataError`` unless the file at ``path`` is ``dataset``'s file ``filename``.

  The error names the file, the expected and the actual digest, what the file is
  when it is another data set's known file, and how to turn the check off.
  """
  known = known_checksums(dataset)[filename]
  as_is, restored, size = _digests(path, known.algorithm, filename)
  if known.digest in (as_is, *restored):
    return
  found = _identify({as_is, *restored}, filename)
  what = f'; it is {found}' if found else ''
  expected_size = '' if known.size is None else f', {known.size} bytes'
  raise DataError(
    f'{path} is not the original {dataset} file {filename}{what}: its {known.algorithm} is '
    f'{as_is} ({size} bytes), expected {known.digest}{expected_size}. Fix: put the original '
    f'file there, or {OVERRIDE}.'
  )


def _digests(path, algorithm: str, filename: str) -> tuple[str, list[str], int]:
  """The file's digest, its digests with each known original gzip header put back, its size."""
  mtimes = sorted({m[filename] for m in GZIP_MTIMES.values() if filename in m})
  with open(path, 'rb') as f:
    head = f.read(10)
    as_is = hashlib.new(algorithm, head)
    restored = [hashlib.new(algorithm, h) for h in _original_headers(head, filename, mtimes)]
    size = len(head)
    for chunk in iter(lambda: f.read(1 << 22), b''):
      size += len(chunk)
      for h in (as_is, *restored):
        h.update(chunk)
  return as_is.hexdigest(), [h.hexdigest() for h in restored], size


def _original_headers(head: bytes, filename: str, mtimes) -> list[bytes]:
  """gzip headers with the stored file name and a time stamp put back (RFC 1952)."""
  if len(head) < 10 or head[:3] != _GZIP_MAGIC or head[3] != 0:
    return []  # Not a gzip header stripped of every optional field.
  name = filename.removesuffix('.gz').encode() + b'\0'
  return [head[:3] + bytes([_FNAME]) + struct.pack('<I', m) + head[8:10] + name for m in mtimes]


def _identify(digests: set[str], filename: str) -> str | None:
  for name in DATASETS:
    known = known_checksums(name).get(filename)
    if known is not None and known.digest in digests:
      return f"{name}'s {filename}"
  return None

"""tensorflow-datasets builders for MNIST, Fashion-MNIST and CIFAR-10 that need no TensorFlow.

tfds' own ``mnist``/``cifar10`` builders decode through ``tfds.features.Image``,
which needs TensorFlow. These builders store images as ``tfds.features.Tensor``
(raw bytes) in ``array_record`` files and are read back with
``builder.as_data_source()``, so the whole pipeline runs on numpy alone.

Raw files (read by ``lth_jax.raw_files``) come either from ``manual_dir`` (offline) or from the canonical URLs
that tfds itself uses, verified against hardcoded sha256 checksums. Once a
dataset is prepared under ``data_dir`` the raw files are never needed again.

Builder names are prefixed with ``lth_`` (``lth_mnist``, ``lth_fashion_mnist``,
``lth_cifar10``) so they never collide with tfds' own registered builders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import checksums as tfds_checksums
from tensorflow_datasets.proto import tf_example_pb2

from lth_jax.errors import DataError
from lth_jax.raw_files import (
  CIFAR10_ARCHIVE,
  CIFAR10_DIR,
  CIFAR10_TEST_BATCH,
  CIFAR10_TRAIN_BATCHES,
  IDX_FILES,
  NUM_CLASSES,
  read_cifar10,
  read_idx_pair,
)

# Examples decoded per `__getitems__` call: big enough to amortise the call,
# small enough not to hold every serialized record in memory at once.
_READ_CHUNK = 8192

# --------------------------------------------------------------------------- builders


def _url_infos(base: str, checksums: Mapping[str, tuple[int, str]]):
  return {
    base + fname: tfds_checksums.UrlInfo(size=size, checksum=sha, filename=fname)
    for fname, (size, sha) in checksums.items()
  }


class _LthBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared plumbing: features, example generation, and finding the raw files.

  Raw files are looked for in ``dl_manager.manual_dir`` (the ``manual_dir`` of
  the ``DownloadConfig``, else ``<data_dir>/downloads/manual``), then in
  ``DEFAULT_MANUAL_DIRS``, and only then downloaded (if allowed).
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Tensor features in array_record files, readable without TF.'}
  IMAGE_SHAPE: tuple[int, int, int]
  URL_BASE: str
  # filename -> (size in bytes, sha256) of the canonical downloads.
  CHECKSUMS: Mapping[str, tuple[int, str]]
  # Directories searched after dl_manager.manual_dir, e.g. a Debian package's.
  DEFAULT_MANUAL_DIRS: tuple[str, ...] = ()
  HOMEPAGE: str = ''

  def __init__(self, *, allow_download: bool = True, **kwargs):
    """Creates the builder.

    Args:
      allow_download: fetch raw files missing locally from the canonical URLs.
      **kwargs: passed to ``tfds.core.GeneratorBasedBuilder`` (``data_dir``, ...).
    """
    self._allow_download = allow_download
    super().__init__(**kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def url_infos(cls):
    # tfds' DownloadManager verifies downloads against these: no checksums.tsv needed.
    return _url_infos(cls.URL_BASE, cls.CHECKSUMS)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.__doc__,
      features=tfds.features.FeaturesDict(
        {
          # Raw bytes: no int64 upcast on disk and no TF image decoding on read.
          'image': tfds.features.Tensor(
            shape=self.IMAGE_SHAPE, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
          ),
          'label': tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }
      ),
      supervised_keys=('image', 'label'),
      homepage=self.HOMEPAGE,
      # Keep the original order: the validation split is the tail of train.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    arrays = self._read_raw(dl_manager)
    return {split: self._generate_examples(*xy) for split, xy in arrays.items()}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
      yield i, {'image': image, 'label': int(label)}

  def _read_raw(self, dl_manager) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raise NotImplementedError

  # ------------------------------------------------------------------ source resolution

  def _manual_dirs(self, dl_manager) -> list[str]:
    # dl_manager.manual_dir raises when the directory is missing or empty. That
    # only means "nothing there"; the private path is kept to name it in errors.
    try:
      dirs = [os.fspath(dl_manager.manual_dir)]
    except AssertionError:
      dirs = [os.fspath(dl_manager._manual_dir)]
    return dirs + [d for d in self.DEFAULT_MANUAL_DIRS if d not in dirs]

  def _download(self, dl_manager, filenames: list[str], searched: list[str]) -> dict[str, str]:
    if not self._allow_download:
      raise DataError(self._missing_message(searched, downloading=False))
    urls = {f: self.URL_BASE + f for f in filenames}
    try:
      paths = dl_manager.download(urls)
    except Exception as e:  # Network, HTTP and checksum errors all need the same fix.
      raise DataError(
        f'Downloading {sorted(urls.values())} failed: {e}\n'
        + self._missing_message(searched, downloading=True)
      ) from e
    return {f: os.fspath(p) for f, p in paths.items()}

  def _missing_message(self, searched: list[str], *, downloading: bool) -> str:
    raise NotImplementedError


class _IdxBuilder(_LthBuilder, skip_registration=True):
  """MNIST-format datasets: four gzipped IDX files."""

  IMAGE_SHAPE = (28, 28, 1)
  APT_HINT = ''

  def _read_raw(self, dl_manager):
    paths = self._find_idx_files(dl_manager)
    return {
      'train': read_idx_pair(paths['train_images'], paths['train_labels']),
      'test': read_idx_pair(paths['test_images'], paths['test_labels']),
    }

  def _find_idx_files(self, dl_manager) -> dict[str, str]:
    searched = self._manual_dirs(dl_manager)
    for d in searched:
      present = [f for f in IDX_FILES.values() if os.path.isfile(os.path.join(d, f))]
      if len(present) == len(IDX_FILES):
        return {k: os.path.join(d, f) for k, f in IDX_FILES.items()}
      if present:  # A half-filled directory is a mistake worth reporting, not skipping.
        missing = sorted(set(IDX_FILES.values()) - set(present))
        raise DataError(f'{d} has {sorted(present)} but lacks {missing}; add them there.')
    downloaded = self._download(dl_manager, list(IDX_FILES.values()), searched)
    return {k: downloaded[f] for k, f in IDX_FILES.items()}

  def _missing_message(self, searched, *, downloading):
    lines = [
      f'{self.name}: the raw files {sorted(IDX_FILES.values())} were not found in any of '
      f'{searched}.',
      'Fix: put all four files in one directory and pass it as manual_dir'
      + ('' if downloading else ', or call load(..., download=True) to fetch them')
      + '.',
    ]
    if self.APT_HINT:
      lines.append(self.APT_HINT)
    return '\n'.join(lines)


class LthMnist(_IdxBuilder):
  """MNIST handwritten digits, 28x28x1 uint8, stored as raw tensors (no TensorFlow needed)."""

  HOMEPAGE = 'http://yann.lecun.com/exdb/mnist/'
  # The CVDF mirror and checksums from tfds' url_checksums/mnist.txt.
  URL_BASE = 'https://storage.googleapis.com/cvdf-datasets/mnist/'
  CHECKSUMS = {
    'train-images-idx3-ubyte.gz': (
      9912422,
      '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
    ),
    'train-labels-idx1-ubyte.gz': (
      28881,
      '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
    ),
    't10k-images-idx3-ubyte.gz': (
      1648877,
      '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
    ),
    't10k-labels-idx1-ubyte.gz': (
      4542,
      'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
    ),
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f'Put the four MNIST files {sorted(IDX_FILES.values())} in the manual directory.'
  )


class LthFashionMnist(_IdxBuilder):
  """Fashion-MNIST (Zalando), 28x28x1 uint8, stored as raw tensors (no TensorFlow needed)."""

  HOMEPAGE = 'https://github.com/zalandoresearch/fashion-mnist'
  # Source and checksums from tfds' url_checksums/fashion_mnist.txt.
  URL_BASE = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
  CHECKSUMS = {
    'train-images-idx3-ubyte.gz': (
      26421880,
      '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84',
    ),
    'train-labels-idx1-ubyte.gz': (
      29515,
      'a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845',
    ),
    't10k-images-idx3-ubyte.gz': (
      4422102,
      '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073',
    ),
    't10k-labels-idx1-ubyte.gz': (
      5148,
      '67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5',
    ),
  }
  # Debian's dataset-fashion-mnist. Its .gz files are recompressed (different
  # sha256 from the download) but hold the same IDX bytes, checked by parsing.
  DEFAULT_MANUAL_DIRS = ('/usr/share/datasets/fashion-mnist',)
  APT_HINT = (
    'On Debian/Ubuntu, `apt-get install dataset-fashion-mnist` provides them in '
    '/usr/share/datasets/fashion-mnist, which is searched by default.'
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f'Put the four Fashion-MNIST files {sorted(IDX_FILES.values())} in the manual directory, '
    'or `apt-get install dataset-fashion-mnist`.'
  )


class LthCifar10(_LthBuilder):
  """CIFAR-10, 32x32x3 uint8 from the python-pickle archive (no TensorFlow needed)."""

  IMAGE_SHAPE = (32, 32, 3)
  HOMEPAGE = 'https://www.cs.toronto.edu/~kriz/cifar.html'
  URL_BASE = 'https://www.cs.toronto.edu/~kriz/'
  # tfds itself uses the binary archive; this sha256 of the python archive is the
  # one Keras' cifar10 loader verifies (its md5 c58f30108f718f92721af3b95e74349a
  # is the one published with torchvision).
  CHECKSUMS = {
    CIFAR10_ARCHIVE: (
      170498071,
      '6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce',
    ),
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f'Put {CIFAR10_ARCHIVE}, or the extracted {CIFAR10_DIR}/ directory, in the manual directory.'
  )

  def _read_raw(self, dl_manager):
    return read_cifar10(self._find_source(dl_manager))

  def _find_source(self, dl_manager) -> str:
    searched = self._manual_dirs(dl_manager)
    for d in searched:
      extracted = os.path.join(d, CIFAR10_DIR)
      for candidate in (extracted, d):  # manual_dir may itself be the extracted directory.
        if all(os.path.isfile(os.path.join(candidate, n)) for n in CIFAR10_TRAIN_BATCHES):
          return candidate
      if os.path.isfile(os.path.join(d, CIFAR10_ARCHIVE)):
        return os.path.join(d, CIFAR10_ARCHIVE)
    return self._download(dl_manager, [CIFAR10_ARCHIVE], searched)[CIFAR10_ARCHIVE]

  def _missing_message(self, searched, *, downloading):
    return (
      f'{self.name}: neither {CIFAR10_ARCHIVE} nor an extracted {CIFAR10_DIR}/ '
      f'({", ".join((*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH))}) was found in any of '
      f'{searched}.\nFix: put one of them in a directory and pass it as manual_dir'
      + ('' if downloading else ', or call load(..., download=True) to fetch the archive')
      + '.'
    )


BUILDERS: dict[str, type[_LthBuilder]] = {
  'mnist': LthMnist,
  'fashion_mnist': LthFashionMnist,
  'cifar10': LthCifar10,
}


# --------------------------------------------------------------------------- reading


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads a whole prepared split into (images uint8 [N, H, W, C], labels int32 [N]).

  tfds' per-example decoding costs ~60 us an example in Python. Our records
  are tf.Example protos whose image is one raw bytes value, so the protos are
  fetched undecoded in chunks, parsed with the C protobuf parser and their
  image bytes copied straight into one preallocated array (~15x faster).
  """
  source = builder.as_data_source(
    split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
  )
  n = len(source)
  shape = tuple(builder.info.features['image'].shape)
  images = np.empty((n, *shape), np.uint8)
  labels = np.empty((n,), np.int32)
  for start in range(0, n, _READ_CHUNK):
    stop = min(start + _READ_CHUNK, n)
    chunk_images, chunk_labels = _parse_records(source.__getitems__(range(start, stop)))
    images[start:stop] = np.frombuffer(chunk_images, np.uint8).reshape(-1, *shape)
    labels[start:stop] = chunk_labels
  return images, labels


def _parse_records(records) -> tuple[bytes, list[int]]:
  parse = tf_example_pb2.Example.FromString
  images, labels = [], []
  for record in records:
    feature = parse(record).features.feature
    images.append(feature['image'].bytes_list.value[0])
    labels.append(feature['label'].int64_list.value[0])
  return b''.join(images), labels

"""tensorflow-datasets builders for MNIST, Fashion-MNIST and CIFAR-10 that need no TensorFlow.

tfds' own ``mnist``/``cifar10`` builders decode through ``tfds.features.Image``,
which needs TensorFlow. These builders store images as ``tfds.features.Tensor``
(raw bytes) in ``array_record`` files and are read back with
``builder.as_data_source()``, so the whole pipeline runs on numpy alone.

Raw files (read by ``lth_jax.data.raw_files``) come either from ``manual_dir``
(offline) or from the canonical URLs that tfds itself uses; both are checked
against the known checksums of ``lth_jax.data.checksums``. Without a network the
download fails at once (``lth_jax.data.download_probe``), not after tfds' retries. Once a
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

from lth_jax.data import checksums, download_probe
from lth_jax.data.raw_files import (
  CIFAR10_ARCHIVE,
  CIFAR10_DIR,
  CIFAR10_TEST_BATCH,
  CIFAR10_TRAIN_BATCHES,
  IDX_FILES,
  NUM_CLASSES,
  read_cifar10,
  read_idx_pair,
)
from lth_jax.errors import DataError

# Examples decoded per `__getitems__` call: big enough to amortise the call,
# small enough not to hold every serialized record in memory at once.
_READ_CHUNK = 8192

# --------------------------------------------------------------------------- builders


def _url_infos(base: str, known: Mapping[str, checksums.Known]):
  return {
    base + fname: tfds_checksums.UrlInfo(size=k.size, checksum=k.digest, filename=fname)
    for fname, k in known.items()
  }


class _LthBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared plumbing: features, example generation, and finding and checking the raw files.

  Raw files are looked for in the manual directory (the ``manual_dir`` of the
  ``DownloadConfig``, else ``<data_dir>/downloads/manual``), then in
  ``DEFAULT_MANUAL_DIRS``, checked against their known checksums, and only
  then downloaded (if allowed and the download host answers).
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Tensor features in array_record files, readable without TF.'}
  DATASET: str  # The name in lth_jax.data.datasets.DATASETS.
  IMAGE_SHAPE: tuple[int, int, int]
  URL_BASE: str
  # filename -> Known(size, sha256) of the canonical downloads.
  CHECKSUMS: Mapping[str, checksums.Known]
  # Directories searched after the manual directory, e.g. a Debian package's.
  DEFAULT_MANUAL_DIRS: tuple[str, ...] = ()
  HOMEPAGE: str = ''
  RAW_FILES: str  # The raw files in words, for messages.

  def __init__(self, *, allow_download: bool = True, verify_checksums: bool = True, **kwargs):
    """Creates the builder.

    Args:
      allow_download: fetch raw files missing locally from the canonical URLs.
      verify_checksums: refuse local raw files whose digest is not the known one.
      **kwargs: passed to ``tfds.core.GeneratorBasedBuilder`` (``data_dir``, ...).
    """
    self._allow_download = allow_download
    self._verify_checksums = verify_checksums
    self._located: dict[str, str] | None = None
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
    paths = self._located or self.locate(os.fspath(dl_manager._manual_dir))
    if paths is None:
      paths = self._download(dl_manager)
    return {split: self._generate_examples(*xy) for split, xy in self._parse(paths).items()}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
      yield i, {'image': image, 'label': int(label)}

  # ------------------------------------------------------------------ source resolution

  def locate(self, manual_dir: str | None = None, *, local_only: bool = False):
    """The local raw files, checked, as {file name: path}; None when they are to be downloaded
    (or, with ``local_only``, when there are none here).

    Args:
      manual_dir: the manual directory; defaults to ``<data_dir>/downloads/manual``.
      local_only: look for local files only (no download, no probe of the network).

    Raises:
      DataError: a file fails its checksum, files are missing and downloading is
        off, or the download host cannot be reached.
    """
    manual_dir = manual_dir or os.fspath(self.data_dir_root / 'downloads' / 'manual')
    searched = [manual_dir] + [d for d in self.DEFAULT_MANUAL_DIRS if d != manual_dir]
    for d in searched:
      found = self._find(d)
      if found:
        if self._verify_checksums:
          for filename, path in sorted(found.items(), key=lambda kv: os.path.getsize(kv[1])):
            checksums.verify(path, dataset=self.DATASET, filename=filename)  # Smallest first.
        self._located = found
        return found
    if local_only:
      return None
    if not self._allow_download:
      raise DataError(self._missing_message(searched, downloading=False))
    reason = download_probe.unreachable(self.URL_BASE + next(iter(self.CHECKSUMS)))
    if reason:
      raise DataError(
        f'{self.DATASET}: cannot download its raw files: {reason}; this machine seems to be '
        f'offline. Fix: put {self.RAW_FILES} in a directory and pass it as manual_dir '
        '(lth run: --config.data.manual_dir=DIR), or run where there is internet.'
      )
    return None

  def _download(self, dl_manager) -> dict[str, str]:
    urls = {f: self.URL_BASE + f for f in self.CHECKSUMS}
    try:
      paths = dl_manager.download(urls)
    except Exception as e:  # Network, HTTP and checksum errors all need the same fix.
      searched = [os.fspath(dl_manager._manual_dir), *self.DEFAULT_MANUAL_DIRS]
      raise DataError(
        f'Downloading {sorted(urls.values())} failed: {e}\n'
        + self._missing_message(searched, downloading=True)
      ) from e
    return {f: os.fspath(p) for f, p in paths.items()}

  def _find(self, directory: str) -> dict[str, str] | None:
    raise NotImplementedError

  def _parse(self, paths: dict[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raise NotImplementedError

  def parse(self, paths: dict[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images uint8, labels int32)} read from located raw files, as prepared."""
    return {split: (x, y.astype(np.int32)) for split, (x, y) in self._parse(paths).items()}

  def _missing_message(self, searched: list[str], *, downloading: bool) -> str:
    raise NotImplementedError


class _IdxBuilder(_LthBuilder, skip_registration=True):
  """MNIST-format datasets: four gzipped IDX files."""

  IMAGE_SHAPE = (28, 28, 1)
  APT_HINT = ''
  RAW_FILES = f'the four files {sorted(IDX_FILES.values())}'

  def _parse(self, paths):
    p = {k: paths[f] for k, f in IDX_FILES.items()}
    return {
      'train': read_idx_pair(p['train_images'], p['train_labels']),
      'test': read_idx_pair(p['test_images'], p['test_labels']),
    }

  def _find(self, directory):
    present = [f for f in IDX_FILES.values() if os.path.isfile(os.path.join(directory, f))]
    if present and len(present) < len(IDX_FILES):  # A mistake worth reporting, not skipping.
      missing = sorted(set(IDX_FILES.values()) - set(present))
      raise DataError(f'{directory} has {sorted(present)} but lacks {missing}; add them there.')
    return {f: os.path.join(directory, f) for f in present} or None

  def _missing_message(self, searched, *, downloading):
    lines = [
      f'{self.name}: the raw files {sorted(IDX_FILES.values())} were not found in any of '
      f'{searched}.',
      'Fix: put all four files in one directory and pass it as --config.data.manual_dir=DIR '
      '(lth run) or manual_dir (lth_jax.data.datasets.load)'
      + (
        ''
        if downloading
        else '; or allow downloading them: --config.data.download=true '
        '(lth run) or download=True (lth_jax.data.datasets.load)'
      )
      + '.',
    ]
    if self.APT_HINT:
      lines.append(self.APT_HINT)
    return '\n'.join(lines)


class LthMnist(_IdxBuilder):
  """MNIST handwritten digits, 28x28x1 uint8, stored as raw tensors (no TensorFlow needed)."""

  DATASET = 'mnist'
  HOMEPAGE = 'http://yann.lecun.com/exdb/mnist/'
  # The CVDF mirror tfds uses; checksums from tfds' url_checksums/mnist.txt.
  URL_BASE = 'https://storage.googleapis.com/cvdf-datasets/mnist/'
  CHECKSUMS = checksums.download_checksums('mnist')
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f'Put the four MNIST files {sorted(IDX_FILES.values())} in the manual directory.'
  )


class LthFashionMnist(_IdxBuilder):
  """Fashion-MNIST (Zalando), 28x28x1 uint8, stored as raw tensors (no TensorFlow needed)."""

  DATASET = 'fashion_mnist'
  HOMEPAGE = 'https://github.com/zalandoresearch/fashion-mnist'
  # The source tfds uses; checksums from tfds' url_checksums/fashion_mnist.txt.
  URL_BASE = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
  CHECKSUMS = checksums.download_checksums('fashion_mnist')
  # Debian's dataset-fashion-mnist: the canonical files with a normalised gzip
  # header, which lth_jax.data.checksums puts back before comparing digests.
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

  DATASET = 'cifar10'
  IMAGE_SHAPE = (32, 32, 3)
  HOMEPAGE = 'https://www.cs.toronto.edu/~kriz/cifar.html'
  URL_BASE = 'https://www.cs.toronto.edu/~kriz/'
  CHECKSUMS = checksums.download_checksums('cifar10')
  RAW_FILES = f'{CIFAR10_ARCHIVE} (or the extracted {CIFAR10_DIR}/)'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f'Put {CIFAR10_ARCHIVE}, or the extracted {CIFAR10_DIR}/ directory, in the manual directory.'
  )

  def _parse(self, paths):
    if CIFAR10_ARCHIVE in paths:
      return read_cifar10(paths[CIFAR10_ARCHIVE])
    return read_cifar10(os.path.dirname(paths[CIFAR10_TEST_BATCH]))

  def _find(self, directory):
    batches = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
    # The manual directory may hold the extracted directory or be it.
    for candidate in (os.path.join(directory, CIFAR10_DIR), directory):
      if all(os.path.isfile(os.path.join(candidate, n)) for n in batches):
        return {n: os.path.join(candidate, n) for n in batches}
    archive = os.path.join(directory, CIFAR10_ARCHIVE)
    return {CIFAR10_ARCHIVE: archive} if os.path.isfile(archive) else None

  def _missing_message(self, searched, *, downloading):
    return (
      f'{self.name}: neither {CIFAR10_ARCHIVE} nor an extracted {CIFAR10_DIR}/ '
      f'({", ".join((*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH))}) was found in any of '
      f'{searched}.\nFix: put one of them in a directory and pass it as '
      '--config.data.manual_dir=DIR (lth run) or manual_dir (lth_jax.data.datasets.load)'
      + (
        ''
        if downloading
        else '; or allow downloading the archive: --config.data.download=true '
        '(lth run) or download=True (lth_jax.data.datasets.load)'
      )
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

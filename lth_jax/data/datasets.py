"""Datasets as numpy arrays: MNIST, Fashion-MNIST and CIFAR-10, prepared with tfds, no TensorFlow.

``load`` prepares a dataset once with the builders in ``lth_jax.data.tfds_builders``
(array_record files under ``data_dir``) and then reads it back into memory.

The validation split is held out of the original training set
deterministically: it is the LAST ``validation_size`` training examples in the
original file order, and ``train_x`` is everything before them. (The LTH paper
holds out 5,000 of MNIST's 60,000 training images.) The test split is the
original test set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import tensorflow_datasets as tfds

from lth_jax.data import tfds_builders
from lth_jax.errors import DataError

DATASETS = ('mnist', 'fashion_mnist', 'cifar10')


# eq=False: a generated __eq__/__hash__ over numpy arrays would raise, not compare.
@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A dataset held in memory.

  Attributes:
    name: one of ``DATASETS``.
    train_x: uint8 [N, H, W, C] training images (without the validation tail).
    train_y: int32 [N] labels.
    val_x: uint8 [V, H, W, C]: the last V images of the original training set.
    val_y: int32 [V].
    test_x: uint8 [T, H, W, C]: the original test set.
    test_y: int32 [T].
    mean: float32 [C]: per-channel mean of ``train_x / 255``.
    std: float32 [C]: per-channel standard deviation of ``train_x / 255``.
    num_classes: number of classes (10 for every dataset here).
    notes: what a user should hear of the loading (a ``manual_dir`` that was not used).
  """

  name: str
  train_x: np.ndarray
  train_y: np.ndarray
  val_x: np.ndarray
  val_y: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  num_classes: int
  notes: tuple[str, ...] = ()  # What the user should know, e.g. a manual_dir that was not used.


def load(
  name: str,
  *,
  validation_size: int,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  download: bool = True,
  verify_checksums: bool = True,
) -> Dataset:
  """Loads a dataset into numpy arrays, preparing it with tfds on first use.

  Args:
    name: one of ``DATASETS``.
    validation_size: number of examples held out as validation: the LAST
      ``validation_size`` examples of the original training set. 0 gives an
      empty validation split; it must leave at least one training example.
    data_dir: where prepared datasets live; defaults to tfds' default
      (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    manual_dir: directory holding the raw files (the four IDX ``.gz`` files, or
      ``cifar-10-python.tar.gz`` / ``cifar-10-batches-py/``); defaults to
      ``<data_dir>/downloads/manual``. Fashion-MNIST then also looks in
      ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).
      Only read while preparing.
    download: if the raw files are not found locally, download them from the
      canonical sources (sha256 verified) into ``<data_dir>/downloads``. Only
      matters while preparing. When the download host cannot be reached, fails
      at once (``DataError``) instead of retrying.
    verify_checksums: check raw files found locally against the data set's
      known checksums (``lth_jax.data.checksums``) and refuse any other file; turn
      off only for a deliberately modified copy. Only matters while preparing.

  Returns:
    The ``Dataset``.

  Raises:
    DataError: unknown name, bad ``validation_size``, or raw files missing,
      corrupt, not the original ones or not downloadable.
  """
  if name not in DATASETS:
    raise DataError(f'Unknown dataset {name!r}; choose one of {DATASETS}.')
  if isinstance(validation_size, bool) or not isinstance(validation_size, int | np.integer):
    raise DataError(f'validation_size must be an int, got {validation_size!r}.')
  if validation_size < 0:
    raise DataError(f'validation_size must be >= 0, got {validation_size}.')
  validation_size = int(validation_size)

  train_x, train_y, test_x, test_y, notes = _read_prepared(
    name, data_dir, manual_dir, download=download, verify_checksums=verify_checksums
  )
  if validation_size >= len(train_x):
    raise DataError(
      f'validation_size={validation_size} leaves no training data: {name} has only '
      f'{len(train_x)} training examples; use 0 <= validation_size < {len(train_x)}.'
    )
  cut = len(train_x) - validation_size
  train_x, val_x = train_x[:cut], train_x[cut:]
  train_y, val_y = train_y[:cut], train_y[cut:]
  mean, std = channel_stats(train_x)
  return Dataset(
    name=name,
    train_x=train_x,
    train_y=train_y,
    val_x=val_x,
    val_y=val_y,
    test_x=test_x,
    test_y=test_y,
    mean=mean,
    std=std,
    num_classes=10,
    notes=tuple(notes),
  )


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel float32 mean and std of ``images / 255`` for uint8 [N, H, W, C]."""
  channels = images.shape[-1]
  planes = np.moveaxis(images.reshape(-1, channels), -1, 0)
  count = max(planes.shape[1], 1)
  total, squares = np.zeros(channels), np.zeros(channels)
  # float64 chunks: exact sums without a float copy of the whole training set.
  step = 1 << 22
  for c in range(channels):
    for start in range(0, planes.shape[1], step):
      chunk = planes[c, start : start + step].astype(np.float64)
      total[c] += chunk.sum()
      squares[c] += chunk @ chunk
  mean = total / count
  std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
  return (mean / 255).astype(np.float32), (std / 255).astype(np.float32)


FINGERPRINT = 'lth_fingerprint.json'  # Beside tfds' dataset_info.json of a prepared data set.


def _read_prepared(name, data_dir, manual_dir, *, download, verify_checksums):
  """(train_x, train_y, test_x, test_y, notes) of the prepared data set, checked against its
  fingerprint: what was verified when it was prepared, and a digest of its arrays."""
  builder = tfds_builders.BUILDERS[name](
    data_dir=data_dir, allow_download=download, verify_checksums=verify_checksums
  )
  fresh = prepare(builder, manual_dir=manual_dir)
  where = builder.data_dir
  try:
    train_x, train_y = tfds_builders.read_split(builder, 'train')
    test_x, test_y = tfds_builders.read_split(builder, 'test')
  except Exception as e:  # tfds and array_record raise many types for damaged files.
    raise DataError(
      f'the prepared {name} in {where} cannot be read ({type(e).__name__}: {e}); delete that '
      'directory to prepare it again.'
    ) from e
  digest = arrays_digest([train_x, train_y, test_x, test_y])
  path = os.path.join(where, FINGERPRINT)
  notes = []
  if fresh:
    record = {'verified': bool(verify_checksums), 'arrays': digest}
    _write_json(path, record)
  else:
    record = _read_json(path) or _fingerprint_now(builder, manual_dir, digest, path)
    if manual_dir is not None:
      notes.append(
        f'data.manual_dir={manual_dir} was not used: {name} was already prepared in {where}; '
        'delete that directory to prepare it from the files there.'
      )
  if record.get('arrays') != digest:
    raise DataError(
      f'the prepared {name} in {where} changed after it was prepared (its arrays no longer '
      f'match {FINGERPRINT}); delete that directory to prepare it again.'
    )
  if verify_checksums and not record.get('verified'):
    raise DataError(
      f'the prepared {name} in {where} was not checked against the original files '
      '(prepared with verify_checksums=false, or before checks were recorded and without the '
      'raw files at hand); delete that directory to prepare it again from checked files, or '
      'pass --config.data.verify_checksums=false (a study of its own).'
    )
  return train_x, train_y, test_x, test_y, notes


def _fingerprint_now(builder, manual_dir, digest: str, path: str) -> dict:
  """The fingerprint of data prepared before fingerprints were recorded: their raw files,
  when they are at hand, are checked and compared with the prepared arrays."""
  located = builder.locate(os.fspath(manual_dir) if manual_dir else None, local_only=True)
  if located is None:
    record = {'verified': False, 'arrays': digest}
  else:
    parsed = builder.parse(located)
    raw = arrays_digest([*parsed['train'], *parsed['test']])
    if raw != digest:
      raise DataError(
        f'the prepared {builder.DATASET} in {builder.data_dir} is not what its raw files give '
        '(damaged after it was prepared?); delete that directory to prepare it again.'
      )
    record = {'verified': bool(builder._verify_checksums), 'arrays': digest}
  _write_json(path, record)
  return record


def arrays_digest(arrays) -> str:
  """A content digest of arrays (dtype, shape and bytes), in milliseconds per megabyte."""
  h = hashlib.blake2b(digest_size=16)
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(f'{a.dtype}{a.shape}'.encode())
    h.update(memoryview(a).cast('B'))
  return h.hexdigest()


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  return record if isinstance(record, dict) else None


def _write_json(path: str, record: dict) -> None:
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(record, f)
  os.replace(tmp, path)


def prepare(builder, *, manual_dir: str | None = None) -> bool:
  """Runs ``builder.download_and_prepare`` as array_record, once; later calls are no-ops.

  The raw files are found and checked (or the download host probed) first, so a
  bad file or a missing network fails before tfds starts any work. Returns whether
  the data set was prepared now.
  """
  # Without its dataset_info.json a version folder is not prepared; asking tfds
  # then logs a warning, a second line on a failed command's output.
  info = os.path.join(builder.data_dir, 'dataset_info.json')
  if os.path.isfile(info) and builder.is_prepared():
    return False
  builder.locate(os.fspath(manual_dir) if manual_dir is not None else None)
  config = tfds.download.DownloadConfig(
    manual_dir=os.fspath(manual_dir) if manual_dir is not None else None,
    # Otherwise tfds asks GCS whether a prepared copy exists: a network call.
    try_download_gcs=False,
  )
  shown = getattr(tfds.core.utils.tqdm_utils, '_active', True)
  tfds.display_progress_bar(False)  # Our own progress says what happens; tfds' bars add to it.
  try:
    builder.download_and_prepare(download_config=config, file_format='array_record')
  finally:
    tfds.display_progress_bar(shown)
  return True


def select_classes(dataset: Dataset, classes) -> Dataset:
  """``dataset`` restricted to ``classes``, relabelled 0..n-1 in the order given.

  Every split keeps its examples of those classes in their original order; the
  channel statistics are those of the selected training images.
  """
  classes = [int(c) for c in classes]
  if len(classes) < 2 or len(set(classes)) != len(classes):
    raise DataError(f'classes={classes} must be at least 2 distinct class numbers.')
  if not all(0 <= c < dataset.num_classes for c in classes):
    raise DataError(f'classes={classes}: {dataset.name} has classes 0..{dataset.num_classes - 1}.')
  relabel = np.full(dataset.num_classes, -1, np.int32)
  relabel[classes] = np.arange(len(classes), dtype=np.int32)

  def split(x, y):
    keep = relabel[y] >= 0
    return x[keep], relabel[y[keep]]

  train_x, train_y = split(dataset.train_x, dataset.train_y)
  val_x, val_y = split(dataset.val_x, dataset.val_y)
  test_x, test_y = split(dataset.test_x, dataset.test_y)
  mean, std = channel_stats(train_x)
  return dataclasses.replace(
    dataset, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, test_x=test_x,
    test_y=test_y, mean=mean, std=std, num_classes=len(classes),
  )  # fmt: skip

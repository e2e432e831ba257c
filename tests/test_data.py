"""Data layer: tfds builders prepared from small real-format files, and ``data.load``."""

from __future__ import annotations

import gzip
import os
import shutil

import fake_data
import numpy as np
import pytest

from lth_jax import data
from lth_jax.data import raw_files

FASHION_DIR = '/usr/share/datasets/fashion-mnist'


@pytest.fixture(scope='module')
def builders():
  # Imported lazily so collecting this module does not pay for tfds.
  from lth_jax.data import tfds_builders

  return tfds_builders


@pytest.fixture
def no_default_manual_dirs(builders, monkeypatch):
  """Hides Debian's Fashion-MNIST so 'files missing' paths are reachable."""
  monkeypatch.setattr(builders.LthFashionMnist, 'DEFAULT_MANUAL_DIRS', ())


def _assert_split(ds: data.Dataset, written: dict, validation_size: int):
  train_x, train_y = written['train']
  cut = len(train_x) - validation_size
  for got, want in (
    (ds.train_x, train_x[:cut]),
    (ds.train_y, train_y[:cut]),
    (ds.val_x, train_x[cut:]),
    (ds.val_y, train_y[cut:]),
    (ds.test_x, written['test'][0]),
    (ds.test_y, written['test'][1]),
  ):
    np.testing.assert_array_equal(got, want)
  assert ds.train_x.dtype == ds.val_x.dtype == ds.test_x.dtype == np.uint8
  assert ds.train_y.dtype == ds.val_y.dtype == ds.test_y.dtype == np.int32
  assert ds.num_classes == 10


@pytest.mark.parametrize('name', ['mnist', 'fashion_mnist'])
def test_idx_roundtrip(name, tmp_path):
  written = fake_data.write_idx_dataset(tmp_path / 'raw', num_train=50, num_test=20, seed=3)
  ds = data.load(
    name,
    validation_size=7,
    data_dir=str(tmp_path / 'tfds'),
    manual_dir=str(tmp_path / 'raw'),
    download=False,
    verify_checksums=False,
  )
  assert ds.name == name
  assert ds.train_x.shape == (43, 28, 28, 1)
  _assert_split(ds, written, validation_size=7)
  pixels = ds.train_x.astype(np.float64) / 255
  np.testing.assert_allclose(ds.mean, pixels.mean(axis=(0, 1, 2)), rtol=1e-5)
  np.testing.assert_allclose(ds.std, pixels.std(axis=(0, 1, 2)), rtol=1e-5)
  assert ds.mean.dtype == ds.std.dtype == np.float32 and ds.mean.shape == (1,)


def test_prepared_data_needs_no_raw_files(tmp_path):
  raw, tfds_dir = tmp_path / 'raw', str(tmp_path / 'tfds')
  written = fake_data.write_idx_dataset(raw, num_train=30, num_test=10)
  data.load('mnist', validation_size=5, data_dir=tfds_dir, manual_dir=str(raw), download=False,
            verify_checksums=False)  # fmt: skip
  shutil.rmtree(raw)
  # A different validation_size on the cached data re-splits the same order.
  ds = data.load(
    'mnist', validation_size=10, data_dir=tfds_dir, download=False, verify_checksums=False
  )
  _assert_split(ds, written, validation_size=10)
  # Prepared unchecked, they never serve a load that asks for checked data.
  with pytest.raises(data.DataError, match='was not checked against the original files'):
    data.load('mnist', validation_size=10, data_dir=tfds_dir, download=False)


def test_validation_size_zero(tmp_path):
  written = fake_data.write_idx_dataset(tmp_path / 'raw', num_train=12, num_test=4)
  ds = data.load(
    'mnist',
    validation_size=0,
    data_dir=str(tmp_path / 'tfds'),
    manual_dir=str(tmp_path / 'raw'),
    download=False,
    verify_checksums=False,
  )
  assert ds.val_x.shape == (0, 28, 28, 1) and ds.val_y.shape == (0,)
  _assert_split(ds, written, validation_size=0)


@pytest.mark.parametrize('as_archive', [True, False], ids=['archive', 'extracted'])
def test_cifar10_roundtrip(as_archive, tmp_path):
  written = fake_data.write_cifar10(
    tmp_path / 'raw', num_train_per_batch=6, num_test=5, as_archive=as_archive
  )
  ds = data.load(
    'cifar10',
    validation_size=4,
    data_dir=str(tmp_path / 'tfds'),
    manual_dir=str(tmp_path / 'raw'),
    download=False,
    verify_checksums=False,
  )
  assert ds.train_x.shape == (26, 32, 32, 3) and ds.test_x.shape == (5, 32, 32, 3)
  _assert_split(ds, written, validation_size=4)
  assert ds.mean.shape == ds.std.shape == (3,)


def test_cifar10_manual_dir_may_be_the_extracted_dir(tmp_path):
  written = fake_data.write_cifar10(tmp_path, num_train_per_batch=2, num_test=3, as_archive=False)
  ds = data.load(
    'cifar10',
    validation_size=1,
    data_dir=str(tmp_path / 'tfds'),
    manual_dir=str(tmp_path / 'cifar-10-batches-py'),
    download=False,
    verify_checksums=False,
  )
  _assert_split(ds, written, validation_size=1)


def test_cifar_channels_are_hwc():
  # Row layout is 1024 R, 1024 G, 1024 B: a batch whose planes are constant 1, 2, 3.
  import pickle

  row = np.repeat(np.array([1, 2, 3], np.uint8), 1024)[None]
  raw = pickle.dumps({b'data': row, b'labels': [4]}, protocol=2)
  images, labels = raw_files.parse_cifar_batch(raw, 'batch')
  assert images.shape == (1, 32, 32, 3)
  np.testing.assert_array_equal(images[0, 5, 7], [1, 2, 3])
  assert labels.tolist() == [4]


def test_cifar_pickle_with_foreign_globals_is_refused():
  import pickle

  raw = pickle.dumps({b'data': os.getcwd, b'labels': []})
  with pytest.raises(data.DataError, match='evil_batch.*not a CIFAR-10 python batch'):
    raw_files.parse_cifar_batch(raw, 'evil_batch')


def test_missing_files_error_explains_the_fix(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(data.DataError) as err:
    data.load(
      'mnist',
      validation_size=5,
      data_dir=str(tmp_path / 'tfds'),
      manual_dir=str(empty),
      download=False,
      verify_checksums=False,
    )
  msg = str(err.value)
  assert str(empty) in msg and 'train-images-idx3-ubyte.gz' in msg
  assert 't10k-labels-idx1-ubyte.gz' in msg and 'manual_dir' in msg and 'download=True' in msg


def test_missing_fashion_mnist_points_to_apt(tmp_path, no_default_manual_dirs):
  with pytest.raises(data.DataError, match='apt-get install dataset-fashion-mnist'):
    data.load('fashion_mnist', validation_size=5, data_dir=str(tmp_path), download=False)


def test_missing_cifar_names_archive_and_dir(tmp_path):
  with pytest.raises(data.DataError, match='cifar-10-python.tar.gz.*cifar-10-batches-py'):
    data.load('cifar10', validation_size=5, data_dir=str(tmp_path), download=False)


def test_partial_manual_dir_names_missing_files(tmp_path):
  raw = tmp_path / 'raw'
  fake_data.write_idx_dataset(raw, num_train=5, num_test=5)
  os.remove(raw / 't10k-images-idx3-ubyte.gz')
  with pytest.raises(data.DataError, match=r"lacks \['t10k-images-idx3-ubyte.gz'\]"):
    data.load('mnist', validation_size=1, data_dir=str(tmp_path / 'tfds'), manual_dir=str(raw))


def test_failed_prepare_leaves_nothing_behind(tmp_path):
  with pytest.raises(data.DataError):
    data.load('mnist', validation_size=1, data_dir=str(tmp_path), download=False)
  # A later call with the files must prepare from scratch, not trip on leftovers.
  written = fake_data.write_idx_dataset(tmp_path / 'raw', num_train=5, num_test=5)
  ds = data.load(
    'mnist',
    validation_size=1,
    data_dir=str(tmp_path),
    manual_dir=str(tmp_path / 'raw'),
    download=False,
    verify_checksums=False,
  )
  _assert_split(ds, written, validation_size=1)


def _truncate(path, keep: int):
  with open(path, 'rb') as f:
    raw = f.read()
  with open(path, 'wb') as f:
    f.write(raw[:keep])


def _rewrite_idx(path, payload: bytes):
  with gzip.open(path, 'wb') as f:
    f.write(payload)


@pytest.mark.parametrize(
  'damage, match',
  [
    (lambda p: _truncate(p, 100), 'not a readable gzip file'),
    (lambda p: _rewrite_idx(p, b'not an idx file at all'), 'magic number'),
    (lambda p: _rewrite_idx(p, fake_data.idx_bytes(np.zeros((3, 28, 28)))[:-5]), 'promises'),
  ],
  ids=['truncated-gzip', 'bad-magic', 'short-payload'],
)
def test_corrupt_idx_names_the_file(damage, match, tmp_path):
  raw = tmp_path / 'raw'
  fake_data.write_idx_dataset(raw, num_train=20, num_test=5)
  damage(raw / 'train-images-idx3-ubyte.gz')
  with pytest.raises(data.DataError, match=match) as err:
    data.load(
      'mnist',
      validation_size=1,
      data_dir=str(tmp_path / 'tfds'),
      manual_dir=str(raw),
      download=False,
      verify_checksums=False,
    )
  assert 'train-images-idx3-ubyte.gz' in str(err.value)


def test_corrupt_cifar_archive_names_the_file(tmp_path):
  fake_data.write_cifar10(tmp_path / 'raw', num_train_per_batch=2, num_test=2, as_archive=True)
  _truncate(tmp_path / 'raw' / 'cifar-10-python.tar.gz', 200)
  with pytest.raises(data.DataError, match='cifar-10-python.tar.gz'):
    data.load(
      'cifar10',
      validation_size=1,
      data_dir=str(tmp_path / 'tfds'),
      manual_dir=str(tmp_path / 'raw'),
      download=False,
      verify_checksums=False,
    )


def test_unknown_name_lists_datasets(tmp_path):
  with pytest.raises(data.DataError, match="'imagenet'.*'mnist', 'fashion_mnist', 'cifar10'"):
    data.load('imagenet', validation_size=0, data_dir=str(tmp_path))


@pytest.mark.parametrize('size, match', [(-1, '>= 0'), (2.5, 'int'), (True, 'int')])
def test_bad_validation_size_is_refused_before_any_work(size, match, tmp_path):
  with pytest.raises(data.DataError, match=match):
    data.load('mnist', validation_size=size, data_dir=str(tmp_path))
  assert not os.listdir(tmp_path)


def test_validation_size_must_leave_training_data(tmp_path):
  fake_data.write_idx_dataset(tmp_path / 'raw', num_train=10, num_test=2)
  with pytest.raises(data.DataError, match='validation_size=10.*only 10 training'):
    data.load(
      'mnist',
      validation_size=10,
      data_dir=str(tmp_path / 'tfds'),
      manual_dir=str(tmp_path / 'raw'),
      download=False,
      verify_checksums=False,
    )


def test_checksums_are_registered_for_download(builders):
  for builder in builders.BUILDERS.values():
    infos = builder.url_infos
    assert len(infos) == len(builder.CHECKSUMS)
    for url, info in infos.items():
      assert url.startswith(builder.URL_BASE)
      assert len(info.checksum) == 64 and info.size > 0


def test_mock_data_without_tensorflow(builders, tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(
    num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE, data_dir=str(tmp_path)
  ):
    builder = builders.LthMnist(data_dir=str(tmp_path))
    source = builder.as_data_source(split='train')
    example = source[0]
  assert len(source) == 6
  assert example['image'].shape == (28, 28, 1) and example['image'].dtype == np.uint8
  assert 0 <= int(example['label']) < 10


@pytest.mark.skipif(
  not os.path.isdir(FASHION_DIR),
  reason=f'{FASHION_DIR} absent: `apt-get install dataset-fashion-mnist` provides it',
)
def test_real_fashion_mnist(tmp_path):
  ds = data.load('fashion_mnist', validation_size=5000, data_dir=str(tmp_path), download=False)
  assert ds.train_x.shape == (55000, 28, 28, 1)
  assert ds.val_x.shape == (5000, 28, 28, 1)
  assert ds.test_x.shape == (10000, 28, 28, 1)
  assert set(np.unique(ds.train_y)) == set(range(10))
  # Fashion-MNIST's published statistics: mean ~0.286, std ~0.353.
  np.testing.assert_allclose(ds.mean, [0.286], atol=2e-3)
  np.testing.assert_allclose(ds.std, [0.353], atol=2e-3)


@pytest.fixture
def local_mirror(tmp_path):
  """Serves tmp_path/'mirror' over HTTP on the loopback interface, for the download path."""
  import functools
  import http.server
  import threading

  root = tmp_path / 'mirror'
  root.mkdir()

  class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      pass

  handler = functools.partial(QuietHandler, directory=str(root))
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield root, f'http://127.0.0.1:{server.server_address[1]}/'
  server.shutdown()
  server.server_close()
  thread.join()


def _point_mnist_at(builders, monkeypatch, url: str, root, *, corrupt_checksum=False):
  import hashlib

  from lth_jax.data.checksums import Known

  checksums = {}
  for name in builders.IDX_FILES.values():
    raw = (root / name).read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    checksums[name] = Known(len(raw), '0' * 64 if corrupt_checksum else sha)
  monkeypatch.setattr(builders.LthMnist, 'URL_BASE', url)
  monkeypatch.setattr(builders.LthMnist, 'CHECKSUMS', checksums)


def test_download_verifies_checksums(builders, local_mirror, monkeypatch, tmp_path):
  root, url = local_mirror
  written = fake_data.write_idx_dataset(root, num_train=9, num_test=4)
  _point_mnist_at(builders, monkeypatch, url, root)
  ds = data.load('mnist', validation_size=2, data_dir=str(tmp_path / 'tfds'))
  _assert_split(ds, written, validation_size=2)


def test_download_with_wrong_checksum_is_refused(builders, local_mirror, monkeypatch, tmp_path):
  root, url = local_mirror
  fake_data.write_idx_dataset(root, num_train=9, num_test=4)
  _point_mnist_at(builders, monkeypatch, url, root, corrupt_checksum=True)
  with pytest.raises(data.DataError, match='(?s)Downloading.*failed.*checksum.*manual_dir'):
    data.load('mnist', validation_size=2, data_dir=str(tmp_path / 'tfds'))

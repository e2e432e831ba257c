"""Data that is what it says: raw files checked against known checksums; offline fails at once."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import re
import socket
import struct
import threading
import time
from pathlib import Path

import fake_data
import ml_collections
import pytest

from experiments import lenet300
from lth_jax import cli, data
from lth_jax.data import checksums, datasets, download_probe
from lth_jax.study import config as config_lib
from lth_jax.study import from_config

# ml_collections loads --config files with the deprecated importlib API.
FASHION_DIR = '/usr/share/datasets/fashion-mnist'
needs_fashion = pytest.mark.skipif(
  not os.path.isdir(FASHION_DIR),
  reason=f'{FASHION_DIR} absent (apt-get install dataset-fashion-mnist)',
)


def _tfds_sha256(name: str) -> dict[str, tuple[int, str]]:
  """{file: (size, sha256)} read straight from tfds' installed url_checksums/<name>.txt."""
  import tensorflow_datasets as tfds

  path = os.path.join(os.path.dirname(tfds.__file__), 'url_checksums', f'{name}.txt')
  table = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        _, size, sha, filename = line.rstrip('\n').split('\t')
        table[filename] = (int(size), sha)
  return table


def _sha256(path) -> str:
  return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def closed_port():
  s = socket.socket()
  s.bind(('127.0.0.1', 0))
  port = s.getsockname()[1]
  s.close()  # Nothing listens there now: a connection is refused at once.
  return port


@pytest.fixture
def offline(monkeypatch, closed_port):
  """No network, as requests would see it: every proxy is a closed local port."""
  for var in ('NO_PROXY', 'no_proxy'):
    monkeypatch.delenv(var, raising=False)
  for var in ('HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'):
    monkeypatch.setenv(var, f'http://127.0.0.1:{closed_port}')


def test_known_checksums_are_tfds_own():
  for name in ('mnist', 'fashion_mnist'):
    assert {f: (k.size, k.digest) for f, k in checksums.known_checksums(name).items()} == (
      _tfds_sha256(name)
    )


@needs_fashion
def test_debian_fashion_mnist_is_tfds_download_with_its_gzip_header_restored():
  expected = _tfds_sha256('fashion_mnist')
  for filename, (size, sha) in expected.items():
    raw = Path(FASHION_DIR, filename).read_bytes()
    # RFC 1952 by hand: FLG.FNAME set, the original MTIME, Debian's XFL and OS, the file name.
    header = b'\x1f\x8b\x08\x08' + struct.pack(
      '<I', checksums.GZIP_MTIMES['fashion_mnist'][filename]
    )
    restored = header + raw[8:10] + filename.removesuffix('.gz').encode() + b'\0' + raw[10:]
    assert (len(restored), hashlib.sha256(restored).hexdigest()) == (size, sha)
    assert hashlib.sha256(raw).hexdigest() != sha  # Debian's own bytes differ: the path is used.
    checksums.verify(
      os.path.join(FASHION_DIR, filename), dataset='fashion_mnist', filename=filename
    )


@needs_fashion
def test_fashion_mnist_given_as_mnist_is_refused_quickly(tmp_path):
  start = time.monotonic()
  with pytest.raises(data.DataError) as err:
    data.load('mnist', validation_size=10, data_dir=str(tmp_path), manual_dir=FASHION_DIR)
  seconds = time.monotonic() - start
  message = str(err.value)
  filename = 't10k-labels-idx1-ubyte.gz'  # The smallest file is checked first.
  path = os.path.join(FASHION_DIR, filename)
  assert f'{path} is not the original mnist file' in message
  assert f"it is fashion_mnist's {filename}" in message
  assert _tfds_sha256('mnist')[filename][1] in message and _sha256(path) in message
  assert '--config.data.verify_checksums=false' in message
  assert seconds < 5, seconds
  assert not (tmp_path / 'lth_mnist').exists() or not any((tmp_path / 'lth_mnist').rglob('*.json'))


def test_modified_copy_is_refused_unless_checks_are_off(tmp_path):
  written = fake_data.write_idx_dataset(tmp_path / 'raw', num_train=12, num_test=4)
  labels = tmp_path / 'raw' / 't10k-labels-idx1-ubyte.gz'
  with pytest.raises(data.DataError) as err:
    data.load(
      'mnist', validation_size=2, data_dir=str(tmp_path / 'a'), manual_dir=str(tmp_path / 'raw')
    )
  message = str(err.value)
  assert str(labels) in message and _sha256(labels) in message
  assert _tfds_sha256('mnist')['t10k-labels-idx1-ubyte.gz'][1] in message
  assert 'it is' not in message  # Not any data set's known file.
  ds = data.load('mnist', validation_size=2, data_dir=str(tmp_path / 'b'),
                 manual_dir=str(tmp_path / 'raw'), verify_checksums=False)  # fmt: skip
  assert (ds.test_y == written['test'][1]).all()


def test_cifar_batches_are_checked_against_their_md5(tmp_path):
  fake_data.write_cifar10(tmp_path, num_train_per_batch=2, num_test=2, as_archive=False)
  with pytest.raises(data.DataError) as err:
    data.load('cifar10', validation_size=1, data_dir=str(tmp_path / 'tfds'),
              manual_dir=str(tmp_path / 'cifar-10-batches-py'))  # fmt: skip
  found = re.search(
    r'/(\w+) is not the original cifar10 file \1: its md5 is ([0-9a-f]{32})', str(err.value)
  )
  batch, actual = found.groups()
  assert (
    actual == hashlib.md5(Path(tmp_path, 'cifar-10-batches-py', batch).read_bytes()).hexdigest()
  )
  assert f'expected {checksums.known_checksums("cifar10")[batch].digest}.' in str(err.value)


def test_an_archive_is_checked_too(tmp_path):
  fake_data.write_cifar10(tmp_path, num_train_per_batch=2, num_test=2, as_archive=True)
  with pytest.raises(data.DataError, match='cifar-10-python.tar.gz.*6d958be07457'):
    data.load(
      'cifar10', validation_size=1, data_dir=str(tmp_path / 'tfds'), manual_dir=str(tmp_path)
    )


# --------------------------------------------------------------------------- offline


@pytest.fixture
def http_server():
  """Starts local HTTP servers answering HEAD with a given status; yields a factory of them."""
  servers, seen = [], []

  def start(status: int) -> str:
    class Handler(http.server.BaseHTTPRequestHandler):
      def do_HEAD(self):
        seen.append(self.path)
        self.send_response(status)
        self.end_headers()

      def log_message(self, *args):
        pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return f'127.0.0.1:{server.server_address[1]}'

  start.seen = seen
  yield start
  for server in servers:
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_proxy_env(monkeypatch):
  for var in ('HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY'):
    monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(var.lower(), raising=False)


def test_probe_answers_for_a_server_and_names_a_closed_port(http_server, closed_port, no_proxy_env):
  assert download_probe.unreachable(f'http://{http_server(404)}/x') is None  # An answer: reachable.
  reason = download_probe.unreachable(f'http://127.0.0.1:{closed_port}/x', timeout=2)
  assert reason == f'127.0.0.1:{closed_port} cannot be reached (Connection refused)'
  gateway = http_server(502)  # A proxy whose upstream is gone answers 5xx: not reachable.
  assert (
    download_probe.unreachable(f'http://{gateway}/x')
    == f'{gateway} cannot be reached (HTTP 502 Bad Gateway)'
  )


def test_probe_goes_through_the_proxy_unless_bypassed(
  http_server, closed_port, no_proxy_env, monkeypatch
):
  proxy = http_server(404)
  monkeypatch.setenv('HTTP_PROXY', f'http://{proxy}')
  # A name that cannot resolve: reachable all the same, the proxy answers for it.
  assert download_probe.unreachable('http://host.invalid/file') is None
  assert http_server.seen == ['http://host.invalid/file']
  monkeypatch.setenv('HTTP_PROXY', f'http://127.0.0.1:{closed_port}')
  reason = download_probe.unreachable('http://host.invalid/file')
  assert (
    reason
    == f'127.0.0.1:{closed_port} (the proxy for host.invalid) cannot be reached (Connection refused)'
  )
  monkeypatch.setenv('NO_PROXY', 'host.invalid')
  assert download_probe.unreachable('http://host.invalid/file').startswith(
    'host.invalid:80 cannot be reached'
  )


def test_probe_gives_up_after_its_timeout(monkeypatch):
  # A host that never answers (a stalled name lookup or connection): the probe stops waiting.
  def stalled(url, timeout):
    time.sleep(3)
    return 'too late'

  monkeypatch.setattr(download_probe, '_head', stalled)
  start = time.monotonic()
  reason = download_probe.unreachable('http://slow.example/x', timeout=0.3)
  assert reason == 'slow.example:80 did not answer within 0.3 s'
  assert time.monotonic() - start < 1


@pytest.mark.parametrize('name', ['mnist', 'cifar10'])
def test_offline_download_fails_within_seconds(name, offline, tmp_path):
  empty = tmp_path / 'raw'
  empty.mkdir()
  start = time.monotonic()
  with pytest.raises(data.DataError) as err:
    data.load(name, validation_size=10, data_dir=str(tmp_path / 'tfds'), manual_dir=str(empty))
  assert time.monotonic() - start < 5
  message = str(err.value)
  assert 'seems to be offline' in message and '--config.data.manual_dir=DIR' in message
  assert 'proxy for' in message and '\n' not in message


def test_lth_run_offline_is_one_line_and_leaves_no_run_directory(offline, tmp_path, capsys):
  args = ['--config=experiments/lenet300.py:smoke', '--config.data.name=mnist',
          f'--config.data.data_dir={tmp_path / "tfds"}', f'--workdir={tmp_path / "work"}']  # fmt: skip
  start = time.monotonic()
  with pytest.raises(SystemExit) as exit_:
    cli.main(['lth', 'run', *args])
  assert exit_.value.code == 1 and time.monotonic() - start < 10
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('lth: error: mnist: cannot download'), err
  assert 'offline' in err[0] and 't10k-images-idx3-ubyte.gz' in err[0]
  assert not (tmp_path / 'work').exists() or not os.listdir(tmp_path / 'work')


# --------------------------------------------------------------------------- config


def test_verify_checksums_key_keeps_old_run_directories():
  config = lenet300.get_config('smoke')
  saved = config.to_dict()
  del saved['data']['verify_checksums']  # A config.json written before the key existed.
  old = ml_collections.ConfigDict(saved)
  assert config_lib.study_hash(old) == config_lib.study_hash(config)
  config_lib.add_missing_defaults(old)
  config_lib.validate(old)
  assert old.data.verify_checksums is True
  config.data.verify_checksums = False  # A modified copy's results get their own directory.
  assert config_lib.study_hash(config) != config_lib.study_hash(old)


def test_verify_checksums_reaches_the_loader(monkeypatch):
  seen = {}
  monkeypatch.setattr(datasets, 'load', lambda name, **kwargs: seen.update(kwargs))
  config = lenet300.get_config('smoke')
  config.data.verify_checksums = False
  from_config.load_data(config)
  assert seen['verify_checksums'] is False


def test_gzip_header_restoring_leaves_other_files_alone(tmp_path):
  # A gzip with its file name kept is not a normalised header: nothing to put back.
  path = tmp_path / 'x.gz'
  with gzip.GzipFile(path, 'wb', mtime=1) as f:  # GzipFile stores the name: FLG.FNAME set.
    f.write(b'abc')
  _, restored, size = checksums._digests(path, 'sha256', 'train-images-idx3-ubyte.gz')
  assert restored == [] and size == os.path.getsize(path)

"""Fake data for tests: small datasets in the real raw formats, and arrays on the device.

The writers (gzipped IDX, CIFAR-10 python pickles) return the arrays they wrote,
so tests can compare what ``load`` reads back pixel for pixel. ``fake_data`` and
``make_task`` give random MNIST-shaped arrays and a LeNet task for the core.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

import lth_jax
from lth_jax.core import models
from lth_jax.core import train as train_lib
from lth_jax.core.plan import make_plan

IDX_NAMES = {
  'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
  'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}


def idx_bytes(array: np.ndarray) -> bytes:
  """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, data."""
  array = np.ascontiguousarray(array, dtype=np.uint8)
  header = struct.pack('>I', 0x0800 | array.ndim) + struct.pack(f'>{array.ndim}I', *array.shape)
  return header + array.tobytes()


def write_idx_dataset(directory, *, num_train: int, num_test: int, seed: int = 0) -> dict:
  """Writes the four MNIST-format ``*-ubyte.gz`` files (28x28 images) into ``directory``.

  Returns:
    {'train': (images [N, 28, 28, 1] uint8, labels [N] int), 'test': (...)}.
  """
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  written = {}
  for split, n in (('train', num_train), ('test', num_test)):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    images_name, labels_name = IDX_NAMES[split]
    for name, array in ((images_name, images), (labels_name, labels)):
      with gzip.open(os.path.join(directory, name), 'wb') as f:
        f.write(idx_bytes(array))
    written[split] = (images[..., None], labels.astype(np.int64))
  return written


def _cifar_batch(rng, n: int) -> tuple[dict, np.ndarray, np.ndarray]:
  images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, size=(n,)).tolist()
  # The real layout: each row is 1024 red, then 1024 green, then 1024 blue bytes.
  data = images.transpose(0, 3, 1, 2).reshape(n, 3072)
  batch = {b'batch_label': b'fake', b'labels': labels, b'data': data, b'filenames': []}
  return batch, images, np.asarray(labels, np.int64)


def write_cifar10(
  directory, *, num_train_per_batch: int, num_test: int, as_archive: bool, seed: int = 0
) -> dict:
  """Writes CIFAR-10 python batches: ``directory/cifar-10-batches-py/`` or its ``.tar.gz``.

  Returns:
    {'train': (images [5 * num_train_per_batch, 32, 32, 3] uint8, labels), 'test': (...)}.
  """
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  files, train = {}, []
  for i in range(1, 6):
    batch, images, labels = _cifar_batch(rng, num_train_per_batch)
    files[f'data_batch_{i}'] = pickle.dumps(batch, protocol=2)
    train.append((images, labels))
  batch, test_images, test_labels = _cifar_batch(rng, num_test)
  files['test_batch'] = pickle.dumps(batch, protocol=2)
  files['batches.meta'] = pickle.dumps({b'label_names': [b'c%d' % i for i in range(10)]})

  if as_archive:
    with tarfile.open(os.path.join(directory, 'cifar-10-python.tar.gz'), 'w:gz') as tar:
      for name, raw in files.items():
        info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
  else:
    batches_dir = os.path.join(directory, 'cifar-10-batches-py')
    os.makedirs(batches_dir, exist_ok=True)
    for name, raw in files.items():
      with open(os.path.join(batches_dir, name), 'wb') as f:
        f.write(raw)
  return {
    'train': (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
    'test': (test_images, test_labels),
  }


def layer_counts(masks) -> dict[str, tuple[int, int]]:
  """{layer: (kept, total)} of masks, counted by their plan (the one counter of weights)."""
  return make_plan(masks).counts(masks)


def fraction_remaining(masks) -> float:
  return make_plan(masks).fraction_remaining(masks)


def layer_fractions(masks) -> dict[str, float]:
  return {layer: kept / total for layer, (kept, total) in layer_counts(masks).items()}


def make_task(optimizer=None, mean=(0.5,), std=(0.25,)):
  return train_lib.Task(
    model=models.get_model('lenet300', num_classes=10),
    optimizer=optimizer or optax.adam(1.2e-3),
    batch_size=60,
    mean=mean,
    std=std,
  )


def fake_data(n=600, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)
  y = rng.integers(0, 10, size=(n,)).astype(np.int32)
  return train_lib.DataArrays(jnp.asarray(x), jnp.asarray(y))


class Tiny(nn.Module):
  """No ``train`` keyword, and a head that is not named 'output'."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(16, name='hidden')(x))
    return nn.Dense(3, name='head')(x)


def float_task(n=360, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(2.0, 3.0, size=(n, 8)).astype(np.float32)
  y = np.argmax(x @ rng.normal(size=(8, 3)), axis=1).astype(np.int32)
  return (x[:300], y[:300]), (x[300:], y[300:])


def tiny_study(**overrides):
  train, test = float_task()
  settings = dict(
    train=train, test=test, validation=60, optimizer=optax.adam(1e-2), num_steps=40,
    eval_every=20, batch_size=20, num_levels=2, train_eval_size=0, arms='ticket,reinit',
    pruning={'output_layer': 'head', 'rate_dense': 0.5, 'rate_output': 0.25},
  )  # fmt: skip
  return lth_jax.make_study(Tiny(), **{**settings, **overrides})

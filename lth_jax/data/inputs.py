"""A study's data on the device: the splits, their normalization and the evaluation batches.

Data comes as arrays: uint8 images ``[N, H, W, C]`` (divided by 255, then
optionally standardized per channel with the training split's mean and std —
``standardize``) or float features ``[N, ...]`` (used as given unless
``standardize``; then per last-axis feature). The validation split is held out
of the training arrays by size (their LAST examples, as the paper holds out
5,000 of MNIST's training images) or given as arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import jax
import numpy as np

from lth_jax.core import train as train_lib
from lth_jax.data.datasets import channel_stats
from lth_jax.errors import ConfigError

Split = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True, eq=False)
class Inputs:
  """The arrays a study trains and evaluates on.

  Attributes:
    train: the training split on the device (raw: uint8 or float).
    splits: 'val', 'test' and (when ``train_eval_size``) 'train' evaluation splits.
    input_shape: one example's shape.
    divide_by, mean, std: the normalization ``(x / divide_by - mean) / std``.
  """

  train: train_lib.DataArrays
  splits: dict[str, train_lib.EvalSplit]
  input_shape: tuple[int, ...]
  divide_by: float
  mean: tuple[float, ...]
  std: tuple[float, ...]
  max_label: int

  @property
  def num_train(self) -> int:
    return int(self.train.x.shape[0])

  def describe(self) -> str:
    kind = 'uint8 images / 255' if self.divide_by == 255.0 else 'float inputs'
    how = 'as given' if set(self.mean) == {0.0} and set(self.std) == {1.0} else 'standardized'
    return f'{self.num_train} training examples of shape {self.input_shape} ({kind}, {how})'


def _arrays(name: str, split) -> Split:
  try:
    x, y = split
  except (TypeError, ValueError):
    raise ConfigError(
      f'{name} must be a pair (x, y) of arrays, got {type(split).__name__}.'
    ) from None
  x, y = np.asarray(x), np.asarray(y)
  if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
    raise ConfigError(f'{name} inputs are {x.dtype}: give uint8 images or float features.')
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(x):
    raise ConfigError(
      f'{name} labels must be {len(x)} integers (one per example), got {y.dtype} {y.shape}.'
    )
  if len(y) and y.min() < 0:
    raise ConfigError(f'{name} labels must be >= 0 (class indices), got {int(y.min())}.')
  return x, y.astype(np.int32)


def _stats(x: np.ndarray, standardize: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
  if not standardize:
    return (0.0,), (1.0,)
  if x.dtype == np.uint8:
    mean, std = channel_stats(x if x.ndim > 1 else x[:, None])
  else:
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
  std = np.where(std > 0, std, 1.0)  # A constant feature is centred, not divided by zero.
  return tuple(float(m) for m in np.asarray(mean, np.float32)), tuple(
    float(s) for s in np.asarray(std, np.float32)
  )


def prepare(
  train: Split,
  test: Split,
  validation: int | Split,
  *,
  standardize: bool | None = None,
  train_eval_size: int = 5000,
  eval_batch_size: int = 1000,
) -> Inputs:
  """Checks and places a study's data (see the module docstring).

  Args:
    train: (x, y) training arrays.
    test: (x, y) test arrays.
    validation: how many LAST training examples to hold out, or (x, y).
    standardize: per-channel standardization with the training split's
      statistics; None: True for uint8 images, False for float inputs.
    train_eval_size: training examples evaluated (the first ones; 0: none).
    eval_batch_size: batch size of evaluation.
  """
  x, y = _arrays('train', train)
  if isinstance(validation, int | np.integer) and not isinstance(validation, bool):
    if not 0 < validation < len(x):
      raise ConfigError(
        f'validation={validation} must leave training data: between 1 and {len(x) - 1} of '
        f'the {len(x)} training examples.'
      )
    x, y, val = x[:-validation], y[:-validation], (x[-validation:], y[-validation:])
  else:
    val = _arrays('validation', validation)
  test = _arrays('test', test)
  for name, (vx, _) in (('validation', val), ('test', test)):
    if vx.shape[1:] != x.shape[1:] or vx.dtype != x.dtype:
      raise ConfigError(
        f'{name} inputs are {vx.dtype} {vx.shape[1:]} but training inputs {x.dtype} {x.shape[1:]}.'
      )
  standardize = x.dtype == np.uint8 if standardize is None else standardize
  mean, std = _stats(x, standardize)
  splits = {
    'val': train_lib.make_eval_split(*val, eval_batch_size),
    'test': train_lib.make_eval_split(*test, eval_batch_size),
  }
  if train_eval_size:
    splits['train'] = train_lib.make_eval_split(
      x[:train_eval_size], y[:train_eval_size], eval_batch_size
    )
  return Inputs(
    train=train_lib.DataArrays(jax.device_put(x), jax.device_put(y)),
    splits=splits,
    input_shape=tuple(x.shape[1:]),
    divide_by=255.0 if x.dtype == np.uint8 else 1.0,
    mean=mean,
    std=std,
    max_label=int(max(y.max(), val[1].max(), test[1].max())),
  )


def labels_fit(num_logits: int, inputs: Inputs, model_name: str) -> None:
  """Raises when the labels go beyond the model's logits."""
  if inputs.max_label >= num_logits:
    raise ConfigError(
      f'the labels go up to {inputs.max_label} but {model_name} outputs {num_logits} logits; '
      f'give the model at least {inputs.max_label + 1} outputs (e.g. num_classes).'
    )


def digest(arrays: Sequence[np.ndarray]) -> str:
  """A short content hash of arrays (for a study's identity)."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(np.asarray(a))
    h.update(f'{a.dtype}{a.shape}'.encode())
    h.update(a.data)
  return h.hexdigest()[:16]

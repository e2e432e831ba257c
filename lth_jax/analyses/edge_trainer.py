"""Training a ticket on a small device: numpy (and scipy.sparse) only, no JAX, no XLA.

This file and ``lth_jax/data/ticket_file.py`` (its reader) import nothing from
JAX or Flax, only numpy and scipy: copy both to the device beside a ticket
file from ``lth export`` and train there on local data::

    trainer = DeviceTrainer.from_file('ticket.npz')
    for x, y in local_batches:            # uint8 images [B, 28, 28, 1], int labels [B]
      loss = trainer.step(x, y)
    logits = trainer.logits(x)

Only the kept weights are stored, trained and updated: each layer is a CSR
matrix whose data array is the vector of kept values, with its own Adam (or
SGD) state of the same length. Hidden units with no kept outgoing weight (and
input pixels with none) are dropped: they do not change the outputs and, in the
framework too, their weights get exactly zero gradients. Units with no kept
incoming weight stay: their bias still trains.

The optimizer is the recipe's, all of it: Adam (optax.adam's update) or SGD
with momentum, the learning-rate schedule (linear warmup, step decay at the
milestones) and weight decay (added to the gradient before the optimizer, as
the recipes chain ``optax.add_decayed_weights``), started fresh at step 0: this
is the framework's ticket at level 0 or after rewinding to θ0, and it equals the
framework's masked training step by step on the same batches to float
tolerance (tests/test_device.py). Inputs are normalized as the framework's
``(x / 255 - mean) / std``; give the training data's ``mean`` and ``std``.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

if __package__:  # In the package.
  from lth_jax.data.ticket_file import read as read_ticket
else:  # On a device: ticket_file.py copied beside this file.
  from ticket_file import read as read_ticket


def dense_layers(params: dict) -> list[str]:
  """The MLP's layers in order: dense_0, dense_1, ..., output."""
  names = [n.rsplit('/', 1)[0] for n in params if n.endswith('/kernel')]
  if any(params[f'{n}/kernel'].ndim != 2 for n in names):
    raise ValueError('the device trainer handles MLPs (dense kernels) only, not conv layers')
  return sorted(
    names, key=lambda n: (n == 'output', int(n.rsplit('_', 1)[-1]) if n[-1].isdigit() else 0)
  )


def live_units(masks: list[np.ndarray]) -> list[np.ndarray]:
  """Per layer input (pixels, then hidden units): which have a path to the outputs."""
  alive = [np.ones(m.shape[0], bool) for m in masks] + [np.ones(masks[-1].shape[1], bool)]
  for i in range(len(masks) - 1, -1, -1):  # Backwards: a unit lives if it feeds a live unit.
    alive[i] = masks[i][:, alive[i + 1]].any(axis=1)
  return alive[:-1]


class DeviceTrainer:
  """Forward, backward and optimizer over the kept weights of a ticket MLP."""

  def __init__(self, params: dict, masks: dict, *, optimizer: dict, mean=0.0, std=1.0):
    self.names = dense_layers(params)
    ms = [np.asarray(masks[f'{n}/kernel'], bool) for n in self.names]
    self.alive = [*live_units(ms), np.ones(ms[-1].shape[1], bool)]
    self.inputs = np.flatnonzero(self.alive[0])  # Pixels that reach the outputs.
    self.start = {k: np.where(masks[k], v, 0).astype(v.dtype) for k, v in params.items()}
    self.layers, self.biases, self.kept_masks = [], [], []
    for i, name in enumerate(self.names):
      rows, cols = self.alive[i], self.alive[i + 1]
      w, m = params[f'{name}/kernel'][rows][:, cols], ms[i][rows][:, cols]
      # CSR of Wᵀ (out x in): its data array is the vector of kept values.
      w_t = sp.csr_matrix((w.T[m.T].astype(np.float32), np.nonzero(m.T)), shape=m.T.shape)
      self.layers.append(w_t)
      self.kept_masks.append(m)
      self.biases.append(np.array(params[f'{name}/bias'][cols], np.float32))
    self.columns = [_column_of(layer) for layer in self.layers]
    self.products = [None] * len(
      self.layers
    )  # Weight-gradient product per layer, chosen by timing.
    self.mean, self.std = np.float32(mean), np.float32(std)
    self.opt = dict(optimizer)
    self.t = 0
    self.slots = [np.zeros_like(v) for v in self._values()] if self.opt['name'] == 'adam' else []
    self.slots2 = [np.zeros_like(v) for v in self._values()]

  @classmethod
  def from_file(cls, path, *, mean=0.0, std=1.0) -> DeviceTrainer:
    """A trainer for a ticket file, with the optimizer of the config it came from."""
    header, params, masks, _ = read_ticket(path)
    opt = header['provenance']['config']['optimizer']
    return cls(params, masks, optimizer=opt, mean=mean, std=std)

  def _values(self) -> list[np.ndarray]:
    return [v for layer, b in zip(self.layers, self.biases, strict=True) for v in (layer.data, b)]

  def kept(self) -> int:
    return int(sum(layer.nnz for layer in self.layers))

  def normalize(self, x_raw) -> np.ndarray:
    x = np.asarray(x_raw, np.float32).reshape(len(x_raw), -1) / np.float32(255.0)
    return ((x - self.mean) / self.std)[:, self.inputs]

  def forward(self, x) -> list[np.ndarray]:
    """Activations [input, hidden..., logits] for normalized inputs (live pixels only)."""
    hs = [x]
    for i, (w_t, b) in enumerate(zip(self.layers, self.biases, strict=True)):
      z = np.asarray(w_t @ hs[-1].T).T + b
      hs.append(np.maximum(z, 0) if i + 1 < len(self.layers) else z)
    return hs

  def logits(self, x_raw) -> np.ndarray:
    return self.forward(self.normalize(x_raw))[-1]

  def gradients(self, x, y) -> tuple[float, list[np.ndarray]]:
    """Mean softmax cross-entropy and its gradient for every kept value and bias."""
    hs = self.forward(x)
    z = hs[-1] - hs[-1].max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.mean(np.log(p[np.arange(n), y])))
    delta = p
    delta[np.arange(n), y] -= 1
    delta /= n
    grads = []
    for i in range(len(self.layers) - 1, -1, -1):
      w_t, h = self.layers[i], hs[i]
      rows, cols = self.columns[i]
      if self.products[i] is None:
        self.products[i] = _faster(delta, h, rows, cols)
      grads[:0] = [self.products[i](delta, h, rows, cols), delta.sum(axis=0)]
      if i:
        delta = np.asarray(w_t.T @ delta.T).T * (hs[i] > 0)
    return loss, grads

  def step(self, x_raw, y) -> float:
    """One optimizer step on a batch of raw images and labels; returns the loss before it."""
    loss, grads = self.gradients(self.normalize(x_raw), np.asarray(y))
    lr = np.float32(learning_rate(self.opt, self.t))  # The schedule counts updates from 0.
    self.t += 1
    decay = np.float32(self.opt.get('weight_decay') or 0.0)
    for j, (value, g) in enumerate(zip(self._values(), grads, strict=True)):
      g = g.astype(np.float32)
      if decay:  # optax.add_decayed_weights before the optimizer, as the recipes chain it.
        g = g + decay * value
      value -= self._update(j, g, lr)
    return loss

  def _update(self, j, g, lr):
    o = self.opt
    if o['name'] == 'adam':
      b1, b2, eps = np.float32(0.9), np.float32(0.999), np.float32(1e-8)
      self.slots[j] = b1 * self.slots[j] + (1 - b1) * g
      self.slots2[j] = b2 * self.slots2[j] + (1 - b2) * g * g
      m_hat = self.slots[j] / (1 - b1**self.t)
      v_hat = self.slots2[j] / (1 - b2**self.t)
      return lr * m_hat / (np.sqrt(v_hat) + eps)
    if o.get('momentum'):
      self.slots2[j] = np.float32(o['momentum']) * self.slots2[j] + g
      return lr * self.slots2[j]
    return lr * g

  def dense_params(self) -> dict:
    """The trained ticket in the full shapes (flat dict like the file's params).

    Dropped units keep their starting values: their gradients are exactly zero (with weight
    decay the framework shrinks them, and they still reach no output).
    """
    out = {k: v.copy() for k, v in self.start.items()}
    for i, name in enumerate(self.names):
      rows, cols = np.flatnonzero(self.alive[i]), np.flatnonzero(self.alive[i + 1])
      kept = self.layers[i].T.tocsr()  # in x out
      block = np.where(self.kept_masks[i], np.asarray(kept.todense()), 0).astype(np.float32)
      out[f'{name}/kernel'][np.ix_(rows, cols)] = block
      out[f'{name}/bias'][cols] = self.biases[i]
    return out


def learning_rate(optimizer: dict, count: int) -> float:
  """The recipes' schedule at update ``count`` (from 0): a linear warmup from 0 over
  ``warmup_steps``, then the base rate times ``decay_factor`` at each milestone reached
  (``lth_jax.study.from_config.learning_rate_schedule``, in numpy)."""
  rate = float(optimizer['learning_rate'])
  warmup = int(optimizer.get('warmup_steps') or 0)
  if warmup and count < warmup:
    return rate * count / warmup
  for milestone in sorted(optimizer.get('milestones') or ()):
    if count >= milestone:
      rate *= float(optimizer.get('decay_factor', 0.1))
  return rate


def sampled_product(delta, h, rows, cols) -> np.ndarray:
  """The kept entries of (δᵀ·h), computed only there."""
  return np.einsum('bk,bk->k', delta[:, rows], h[:, cols])


def dense_product(delta, h, rows, cols) -> np.ndarray:
  """The kept entries of (δᵀ·h): one BLAS product, then a gather."""
  return (delta.T @ h)[rows, cols]


def _faster(delta, h, rows, cols):
  """Whichever of the two products is faster for this layer on this machine (timed once)."""
  times = []
  for product in (sampled_product, dense_product):
    began = time.perf_counter()
    product(delta, h, rows, cols)
    times.append((time.perf_counter() - began, product))
  return min(times, key=lambda t: t[0])[1]


def _column_of(w_t) -> tuple[np.ndarray, np.ndarray]:
  """(row, column) of every stored entry of a CSR matrix, in its data order."""
  rows = np.repeat(np.arange(w_t.shape[0]), np.diff(w_t.indptr))
  return rows, w_t.indices.copy()

"""Training a ticket on a small device: numpy (and scipy.sparse) only, no JAX, no XLA.

This file and ``lth_jax/data/ticket_file.py`` (its reader) import nothing from
JAX or Flax, only numpy and scipy: copy both to the device beside a ticket
file from ``lth export`` and train there on local data::

    trainer = DeviceTrainer.from_file('ticket.npz')
    for x, y in local_batches:            # uint8 images [B, 28, 28, 1], int labels [B]
      loss = trainer.step(x, y)
    logits = trainer.logits(x)

Hidden units with no kept outgoing weight (and input pixels with none) are
dropped: they do not change the outputs and, in the framework too, their
weights get exactly zero gradients. Units with no kept incoming weight stay:
their bias still trains. Each remaining layer runs in one of two modes, chosen
once per layer on the first step by timing that layer's three products (the
forward h·W, the input gradient δ·Wᵀ, the weight gradient hᵀ·δ) both ways, or
forced with ``modes=``:

* ``sparse``: a CSR matrix whose data array is the vector of kept values, with
  its own Adam (or SGD) state of the same length; only the kept weights are
  stored, trained and updated (the weight gradient computed only at the kept
  entries or by one BLAS product and a gather, whichever is faster).
* ``dense``: a dense float32 matrix with zeros at the pruned weights and dense
  optimizer state: the dense-masked step, BLAS products and the gradient
  multiplied by the mask, so every update at a pruned weight is exactly zero.

So a step is never slower than ``DenseMaskedTrainer``'s (the same network as
plain dense numpy with the masks multiplied in) by more than the timing's noise.

The optimizer is the recipe's, all of it: Adam (optax.adam's update) or SGD
with momentum, the learning-rate schedule (linear warmup, step decay at the
milestones) and weight decay (added to the gradient before the optimizer, as
the recipes chain ``optax.add_decayed_weights``), started fresh at step 0: this
is the framework's ticket at level 0 or after rewinding to θ0, and it equals the
framework's masked training step by step on the same batches to float
tolerance, in either mode (tests/test_device.py). Inputs are normalized as the
framework's ``(x / 255 - mean) / std``; give the training data's ``mean`` and ``std``.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

if __package__:  # In the package.
  from lth_jax.data.ticket_file import read as read_ticket
else:  # On a device: ticket_file.py copied beside this file.
  from ticket_file import read as read_ticket

MODES = ('dense', 'sparse')


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


class _Trainer:
  """The recipe's optimizer over a trainer's arrays (updated in place) and the step itself."""

  def __init__(self, optimizer: dict, mean, std):
    self.mean, self.std = np.float32(mean), np.float32(std)
    self.opt = dict(optimizer)
    self.t = 0
    self.slots, self.slots2 = {}, {}  # Per array, made at its first update.

  @classmethod
  def from_file(cls, path, *, mean=0.0, std=1.0, **kwargs):
    """A trainer for a ticket file, with the optimizer of the config it came from."""
    header, params, masks, _ = read_ticket(path)
    opt = header['provenance']['config']['optimizer']
    return cls(params, masks, optimizer=opt, mean=mean, std=std, **kwargs)

  def normalize(self, x_raw) -> np.ndarray:
    x = np.asarray(x_raw).reshape(len(x_raw), -1)
    if len(self.inputs) < x.shape[1]:  # Only the pixels that reach the outputs.
      x = x[:, self.inputs]
    return (x.astype(np.float32) / np.float32(255.0) - self.mean) / self.std

  def logits(self, x_raw) -> np.ndarray:
    return self.forward(self.normalize(x_raw))[-1]

  def step(self, x_raw, y) -> float:
    """One optimizer step on a batch of raw images and labels; returns the loss before it."""
    loss, grads = self.gradients(self.normalize(x_raw), np.asarray(y))
    lr = np.float32(learning_rate(self.opt, self.t))  # The schedule counts updates from 0.
    self.t += 1
    decay = np.float32(self.opt.get('weight_decay') or 0.0)
    for j, (value, g) in enumerate(zip(self._values(), grads, strict=True)):
      g = g.astype(np.float32, copy=False)
      if decay:  # optax.add_decayed_weights before the optimizer, as the recipes chain it.
        g = g + decay * value
      value -= self._update(j, g, lr)
    return loss

  def _update(self, j, g, lr):
    o = self.opt
    if j not in self.slots2:
      self.slots[j], self.slots2[j] = np.zeros_like(g), np.zeros_like(g)
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


class DeviceTrainer(_Trainer):
  """Forward, backward and optimizer of a ticket MLP, each layer dense-masked or sparse."""

  def __init__(self, params: dict, masks: dict, *, optimizer: dict, mean=0.0, std=1.0, modes=None):
    """``modes``: None (each layer's timed on the first step), 'dense', 'sparse' or one per layer."""
    super().__init__(optimizer, mean, std)
    self.names = dense_layers(params)
    ms = [np.asarray(masks[f'{n}/kernel'], bool) for n in self.names]
    self.alive = [*live_units(ms), np.ones(ms[-1].shape[1], bool)]
    self.inputs = np.flatnonzero(self.alive[0])  # Pixels that reach the outputs.
    self.start = {k: np.where(masks[k], v, 0).astype(v.dtype) for k, v in params.items()}
    self.layers, self.biases, self.kept_masks = [], [], []
    for i, name in enumerate(self.names):
      rows, cols = self.alive[i], self.alive[i + 1]
      w, m = params[f'{name}/kernel'][rows][:, cols], np.ascontiguousarray(ms[i][rows][:, cols])
      # CSR of Wᵀ (out x in): its data array is the vector of kept values.
      w_t = sp.csr_matrix((w.T[m.T].astype(np.float32), np.nonzero(m.T)), shape=m.T.shape)
      self.layers.append(w_t)
      self.kept_masks.append(m)
      self.biases.append(np.array(params[f'{name}/bias'][cols], np.float32))
    self.columns = [_column_of(layer) for layer in self.layers]
    modes = [modes] * len(self.layers) if modes is None or isinstance(modes, str) else list(modes)
    if len(modes) != len(self.layers) or not set(modes) <= {None, *MODES}:
      raise ValueError(f'modes: one of {MODES} or None per layer ({len(self.layers)}), not {modes}')
    self.modes = modes
    # A dense layer's values live here (its CSR matrix keeps only the structure and θ0).
    self.kernels = [self._dense_kernel(i) if m == 'dense' else None for i, m in enumerate(modes)]
    self.products = [None] * len(self.layers)  # Weight-gradient product per sparse layer, timed.
    self.timed = 0  # How many times the modes were chosen by timing: once, on the first step.

  def _dense_kernel(self, i) -> np.ndarray:
    """Layer ``i``'s kept values as a dense float32 matrix (in x out), zeros at pruned weights."""
    return np.ascontiguousarray(self.layers[i].T.toarray(), np.float32)

  def _values(self) -> list[np.ndarray]:
    """Every trained array in order (per layer: its kernel's values, its bias), updated in place."""
    kernels = [
      k if k is not None else w.data for k, w in zip(self.kernels, self.layers, strict=True)
    ]
    return [v for k, b in zip(kernels, self.biases, strict=True) for v in (k, b)]

  def kept(self) -> int:
    return int(sum(layer.nnz for layer in self.layers))

  def forward(self, x) -> list[np.ndarray]:
    """Activations [input, hidden..., logits] for normalized inputs (live pixels only)."""
    hs = [x]
    for i, b in enumerate(self.biases):
      z = self._forward(i, self.modes[i], hs[-1]) + b
      hs.append(np.maximum(z, 0) if i + 1 < len(self.layers) else z)
    return hs

  def gradients(self, x, y) -> tuple[float, list[np.ndarray]]:
    """Mean softmax cross-entropy and its gradient for every trained array."""
    if None in self.modes:
      self._choose_modes(x)
    hs = self.forward(x)
    loss, delta = softmax_cross_entropy(hs[-1], y)
    grads = []
    for i in range(len(self.layers) - 1, -1, -1):
      mode = self.modes[i]
      grads[:0] = [self._weight_gradient(i, mode, delta, hs[i]), delta.sum(axis=0)]
      if i:
        delta = self._input_gradient(i, mode, delta) * (hs[i] > 0)
    return loss, grads

  def _forward(self, i, mode, h):
    if mode == 'dense':
      return h @ self.kernels[i]
    return np.asarray(self.layers[i] @ h.T).T

  def _input_gradient(self, i, mode, delta):
    if mode == 'dense':
      return delta @ self.kernels[i].T
    return np.asarray(self.layers[i].T @ delta.T).T

  def _weight_gradient(self, i, mode, delta, h):
    if mode == 'dense':
      g = h.T @ delta
      g *= self.kept_masks[i]  # The masked gradient: exactly zero at every pruned weight.
      return g
    rows, cols = self.columns[i]
    if self.products[i] is None:
      self.products[i] = _faster(delta, h, rows, cols)
    return self.products[i](delta, h, rows, cols)

  def _choose_modes(self, x) -> None:
    """Each undecided layer's mode: its three products timed both ways on this batch, once."""
    self.timed += 1
    hs = self.forward(x)  # Undecided layers compute through their CSR matrix: still exact.
    for i, mode in enumerate(self.modes):
      if mode is not None:
        continue
      h, delta = hs[i], np.full((len(x), self.layers[i].shape[0]), 1e-3, np.float32)
      self.kernels[i] = self._dense_kernel(i)
      self._weight_gradient(i, 'sparse', delta, h)  # Picks the sparse weight-gradient product.

      def layer_pass(mode, i=i, h=h, delta=delta):
        self._forward(i, mode, h)
        self._weight_gradient(i, mode, delta, h)
        if i:  # The first layer needs no input gradient.
          self._input_gradient(i, mode, delta)

      self.modes[i] = _fastest({m: (lambda m=m: layer_pass(m)) for m in MODES})
      if self.modes[i] == 'sparse':
        self.kernels[i] = None

  def dense_params(self) -> dict:
    """The trained ticket in the full shapes (flat dict like the file's params).

    Dropped units keep their starting values: their gradients are exactly zero (with weight
    decay the framework shrinks them, and they still reach no output).
    """
    out = {k: v.copy() for k, v in self.start.items()}
    for i, name in enumerate(self.names):
      rows, cols = np.flatnonzero(self.alive[i]), np.flatnonzero(self.alive[i + 1])
      block = self.kernels[i]  # Dense mode: as trained, its zeros included.
      if block is None:
        block = np.where(self.kept_masks[i], self._dense_kernel(i), 0).astype(np.float32)
      out[f'{name}/kernel'][np.ix_(rows, cols)] = block
      out[f'{name}/bias'][cols] = self.biases[i]
    return out


class DenseMaskedTrainer(_Trainer):
  """The same MLP and optimizer as plain dense numpy with the masks multiplied in: the baseline.

  Full shapes, every weight stored; the weight gradient is multiplied by the mask, so the
  pruned weights (zero from the start) get zero updates; the optimizer runs over whole arrays.
  """

  def __init__(self, params: dict, masks: dict, *, optimizer: dict, mean=0.0, std=1.0):
    super().__init__(optimizer, mean, std)
    self.names = dense_layers(params)
    self.masks = [np.asarray(masks[f'{n}/kernel'], bool) for n in self.names]
    self.kernels = [
      np.where(m, params[f'{n}/kernel'], 0).astype(np.float32)
      for n, m in zip(self.names, self.masks, strict=True)
    ]
    self.biases = [np.array(params[f'{n}/bias'], np.float32) for n in self.names]
    self.inputs = np.arange(self.kernels[0].shape[0])

  def _values(self) -> list[np.ndarray]:
    return [v for w, b in zip(self.kernels, self.biases, strict=True) for v in (w, b)]

  def forward(self, x) -> list[np.ndarray]:
    hs = [x]
    for i, (w, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
      z = hs[-1] @ w + b
      hs.append(np.maximum(z, 0) if i + 1 < len(self.kernels) else z)
    return hs

  def gradients(self, x, y) -> tuple[float, list[np.ndarray]]:
    hs = self.forward(x)
    loss, delta = softmax_cross_entropy(hs[-1], y)
    grads = []
    for i in range(len(self.kernels) - 1, -1, -1):
      g = hs[i].T @ delta
      g *= self.masks[i]
      grads[:0] = [g, delta.sum(axis=0)]
      if i:
        delta = (delta @ self.kernels[i].T) * (hs[i] > 0)
    return loss, grads

  def dense_params(self) -> dict:
    return {
      f'{n}/{kind}': v.copy()
      for n, w, b in zip(self.names, self.kernels, self.biases, strict=True)
      for kind, v in (('kernel', w), ('bias', b))
    }


def softmax_cross_entropy(logits, y) -> tuple[float, np.ndarray]:
  """The mean softmax cross-entropy of integer labels and its gradient for the logits."""
  z = logits - logits.max(axis=1, keepdims=True)
  p = np.exp(z)
  p /= p.sum(axis=1, keepdims=True)
  n = len(y)
  loss = float(-np.mean(np.log(p[np.arange(n), y])))
  p[np.arange(n), y] -= 1
  p /= n
  return loss, p


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
  products = (sampled_product, dense_product)
  return _fastest({p: (lambda p=p: p(delta, h, rows, cols)) for p in products})


def _fastest(ways: dict, repeats: int = 3):
  """The key of the fastest of ``ways`` (callables): each timed ``repeats`` times in turns, the
  best of each (one slow run on a busy machine does not decide)."""
  best = dict.fromkeys(ways, float('inf'))
  for _ in range(repeats):
    for key, go in ways.items():
      began = time.perf_counter()
      go()
      best[key] = min(best[key], time.perf_counter() - began)
  return min(best, key=best.get)


def _column_of(w_t) -> tuple[np.ndarray, np.ndarray]:
  """(row, column) of every stored entry of a CSR matrix, in its data order."""
  rows = np.repeat(np.arange(w_t.shape[0]), np.diff(w_t.indptr))
  return rows, w_t.indices.copy()

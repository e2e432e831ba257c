"""Pruned weights removed for real: a smaller dense MLP with the same outputs, and sparse layers.

``compact(params, masks)`` removes dead units of an MLP (LeNet-300-100 and any
chain of ``dense_i`` layers ending in ``output``, ReLU between them):

* a hidden unit with every outgoing weight pruned does not reach the outputs:
  removed, with its incoming weights;
* a hidden unit with every incoming weight pruned outputs the constant
  relu(bias): its contribution relu(bias) · (its outgoing weights) is folded into
  the next layer's bias and the unit is removed;
* an input pixel with every outgoing weight pruned is dropped (``inputs`` lists
  the pixels kept).

Removing a unit can kill others, so the rules repeat until nothing changes.
The result computes the same logits as the dense-masked network (to float
rounding: sums are taken in another order). Conv channels are not compacted:
``compact`` refuses conv kernels with a ``ConfigError``.

``CompactMLP.sparse()`` keeps the remaining weights as ``scipy.sparse`` CSR
matrices, for products that stay sparse after the dead units are gone.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from lth_jax.analyses.edge_trainer import dense_layers
from lth_jax.analyses.ticket import flatten
from lth_jax.errors import ConfigError


@dataclasses.dataclass
class CompactMLP:
  """An MLP on the live pixels ``inputs``, with masked kernels of the live units only."""

  inputs: np.ndarray
  kernels: list[np.ndarray]
  biases: list[np.ndarray]
  masks: list[np.ndarray]

  @property
  def shapes(self) -> list[tuple[int, int]]:
    return [k.shape for k in self.kernels]

  def params(self) -> dict:
    """{'layer_i': {'kernel', 'bias'}}: a pytree for ``forward``."""
    return {
      f'layer_{i}': {'kernel': jnp.asarray(k), 'bias': jnp.asarray(b)}
      for i, (k, b) in enumerate(zip(self.kernels, self.biases, strict=True))
    }

  def __call__(self, x):
    """Logits of float inputs [B, ...] normalized as the model's (jnp)."""
    return forward(self.params(), select(x, self.inputs))

  def sparse(self) -> SparseMLP:
    return SparseMLP(
      self.inputs,
      [sp.csr_matrix(np.where(m, k, 0).T) for k, m in zip(self.kernels, self.masks, strict=True)],
      [np.asarray(b) for b in self.biases],
    )


def select(x, inputs):
  return jnp.reshape(x, (x.shape[0], -1))[:, inputs]


def forward(params: dict, x):
  """The compact MLP: x @ W + b, ReLU between layers; a pure function to jit or grad."""
  layers = [params[f'layer_{i}'] for i in range(len(params))]
  for i, layer in enumerate(layers):
    x = x @ layer['kernel'] + layer['bias'][None, :]
    if i + 1 < len(layers):
      x = jax.nn.relu(x)
  return x


@dataclasses.dataclass
class SparseMLP:
  """The compact MLP with CSR layers (stored transposed: out x in)."""

  inputs: np.ndarray
  layers: list[sp.csr_matrix]
  biases: list[np.ndarray]

  def __call__(self, x) -> np.ndarray:
    h = np.asarray(x, np.float32).reshape(len(x), -1)[:, self.inputs]
    for i, (w_t, b) in enumerate(zip(self.layers, self.biases, strict=True)):
      h = np.asarray(w_t @ h.T).T + b
      if i + 1 < len(self.layers):
        h = np.maximum(h, 0)
    return h

  def nbytes(self) -> int:
    return int(
      sum(w.data.nbytes + w.indices.nbytes + w.indptr.nbytes for w in self.layers)
      + sum(b.nbytes for b in self.biases)
      + self.inputs.nbytes
    )


def compact(params, masks, *, fold: bool = True) -> CompactMLP:
  """The MLP of ``params ⊙ masks`` without its dead units (same logits).

  ``fold=False`` keeps the units without incoming weights (their bias and
  outgoing weights still train) and removes only units and pixels that reach no
  output: the shapes for training the same ticket (``lth_jax.analyses.edge_trainer``).

  Raises:
    ConfigError: the network has conv kernels (only dense layers are compacted).
  """
  flat_p, flat_m = flatten(params), flatten(masks)
  if any(v.ndim == 4 for k, v in flat_p.items() if k.endswith('/kernel')):
    raise ConfigError(
      'compact removes dead units of MLPs (dense layers) only; conv channels are not '
      'compacted. Use a LeNet-style model, or keep the dense-masked network.'
    )
  names = dense_layers(flat_p)
  ms = [np.asarray(flat_m[f'{n}/kernel'], bool) for n in names]
  ws = [np.where(m, flat_p[f'{n}/kernel'], 0).astype(np.float32) for n, m in zip(names, ms)]
  bs = [np.asarray(flat_p[f'{n}/bias'], np.float32).copy() for n in names]
  alive = [np.ones(m.shape[0], bool) for m in ms] + [np.ones(ms[-1].shape[1], bool)]
  while _sweep(ws, ms, bs, alive, fold):
    pass
  keep = [np.flatnonzero(a) for a in alive]
  return CompactMLP(
    inputs=keep[0],
    kernels=[w[np.ix_(keep[i], keep[i + 1])] for i, w in enumerate(ws)],
    biases=[b[keep[i + 1]] for i, b in enumerate(bs)],
    masks=[m[np.ix_(keep[i], keep[i + 1])] for i, m in enumerate(ms)],
  )


def _sweep(ws, ms, bs, alive, fold: bool) -> bool:
  """One pass of the rules over every layer (forwards); True when a unit was removed."""
  changed = False
  for i in range(len(ms)):  # alive[i]: the inputs of layer i (pixels or hidden units).
    feeds = ms[i][:, alive[i + 1]].any(axis=1)
    dead = alive[i] & ~feeds
    if i > 0 and fold:
      fed = ms[i - 1][alive[i - 1]].any(axis=0)
      constant = alive[i] & feeds & ~fed
      if constant.any():  # relu(bias) · outgoing weights, into the next bias.
        value = np.maximum(bs[i - 1][constant], 0)
        bs[i] = bs[i] + value @ ws[i][constant]
        dead |= constant
    if dead.any():
      alive[i] &= ~dead
      changed = True
  return changed

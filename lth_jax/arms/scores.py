"""Scores that choose a mask before training, as pure functions over pytrees.

Each score is a function of (params, masks, batch or None, key) and returns a
pytree like ``params`` (every leaf scored; ``select`` ignores the leaves that
are not pruned). ``apply_fn(params, x) -> logits`` is the network in eval mode:
batch-norm models use their running statistics and no dropout, so a score is a
deterministic function of its arguments. Masked entries are zero in the forward
pass.

* ``snip`` (Lee et al. 2019): |∂L/∂θ ⊙ θ|, the sensitivity of the loss to each
  connection, on a batch. Kept: the largest.
* ``grasp`` (Wang et al. 2020): S(−θ) = −θ ⊙ Hg, with g = ∂L/∂θ and H the
  Hessian of L with respect to the prunable weights (the others held fixed), on a
  batch whose logits are divided by ``temperature`` (200 in the authors' code). The paper removes the weights of LARGEST S(−θ) (their
  removal reduces the gradient flow least), so the kept ones have the smallest.
* ``synflow`` (Tanaka et al. 2020): data-free. With |θ| as the weights and an
  all-ones input, R = Σ outputs; the score is ∂R/∂θ ⊙ θ (θ = |θ| here).
  ``synflow_masks`` prunes iteratively: ``rounds`` rounds whose kept counts
  follow an exponential schedule down to the target.
* ``magnitude``: |θ| (at initialization: "magnitude at init").

``core.pools.select`` turns scores into masks: within each pool of leaves (a
global ranking) it keeps exactly the given number of highest scores among the
surviving weights.

>>> import jax.numpy as jnp
>>> params = {'a': jnp.array([3.0, -1.0]), 'b': jnp.array([2.0, 0.5])}
>>> masks = {'a': jnp.array([True, True]), 'b': jnp.array([True, True])}
>>> pools_lib.select(magnitude(params, masks), masks, pools={'a': 0, 'b': 0}, counts={0: 2})['b']
Array([ True, False], dtype=bool)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lth_jax.core import masks as masks_lib
from lth_jax.core import pools as pools_lib


def _loss(apply_fn, params, masks, batch, temperature: float = 1.0):
  x, y = batch
  logits = apply_fn(masks_lib.apply(params, masks), x) / temperature
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def snip(params, masks, batch, key=None, *, apply_fn):
  """|∂L/∂θ ⊙ θ| on ``batch`` = (x, y): SNIP's connection sensitivity."""
  del key
  grads = jax.grad(lambda p: _loss(apply_fn, p, masks, batch))(params)
  return jax.tree.map(lambda g, w: jnp.abs(g * w), grads, params)


def grasp(params, masks, batch, key=None, *, apply_fn, weights, temperature: float = 200.0):
  """GraSP's S(−θ) = −θ ⊙ Hg on ``batch``; the weights of largest S are the ones removed.

  g and H are the gradient and the Hessian of the loss with respect to the prunable
  weights alone (``weights``: Python bools like params, e.g. ``Plan.prunable()``),
  every other parameter (biases, batch-norm scale and shift) held fixed, as the
  authors' code (the conv/linear ``.weight``s only). Hg is the directional
  derivative of that gradient along g (``jax.jvp`` of ``jax.grad``): no Hessian
  is formed. Leaves that are not weights score 0.
  """
  del key
  leaves, treedef = jax.tree.flatten(params)
  chosen = [bool(w) for w in treedef.flatten_up_to(weights)]

  def merged(w):  # The chosen leaves from ``w``, the others as they are.
    it = iter(w)
    return treedef.unflatten([next(it) if c else x for x, c in zip(leaves, chosen, strict=True)])

  w0 = [x for x, c in zip(leaves, chosen, strict=True) if c]
  grad_fn = jax.grad(lambda w: _loss(apply_fn, merged(w), masks, batch, temperature))
  grads = grad_fn(w0)
  _, hg = jax.jvp(grad_fn, (w0,), (grads,))
  scored = iter([-w * h for w, h in zip(w0, hg, strict=True)])
  return treedef.unflatten(
    [next(scored) if c else jnp.zeros_like(x) for x, c in zip(leaves, chosen, strict=True)]
  )


def synflow(params, masks, batch=None, key=None, *, apply_fn, input_shape):
  """SynFlow's ∂R/∂θ ⊙ θ with every parameter replaced by its absolute value.

  R is the sum of the outputs for one all-ones input. ``batch`` is unused
  (data-free). Biases and batch-norm parameters are made positive too, as in
  the authors' code; with no biases R is a product of the layers and every
  layer's scores sum to R (conservation).
  """
  del batch, key
  positive = jax.tree.map(jnp.abs, masks_lib.apply(params, masks))
  ones = jnp.ones((1, *input_shape), jnp.float32)
  grads = jax.grad(lambda p: jnp.sum(apply_fn(p, ones)))(positive)
  return jax.tree.map(lambda g, w: g * w, grads, positive)


def magnitude(params, masks=None, batch=None, key=None):
  """|θ|: magnitude pruning (at initialization when ``params`` is θ0)."""
  del masks, batch, key
  return jax.tree.map(jnp.abs, params)


def exponential_counts(alive, target, round_, rounds: int):
  """Kept count after round ``round_`` (1..rounds): alive·(target/alive)^(round/rounds).

  The last round keeps exactly ``target``.
  """
  alive_f = jnp.maximum(alive, 1).astype(jnp.float32)
  density = target.astype(jnp.float32) / alive_f
  count = jnp.round(alive_f * density ** (round_ / rounds)).astype(jnp.int32)
  return jnp.where(round_ >= rounds, target, jnp.clip(count, target, alive))


def synflow_masks(params, masks, *, apply_fn, input_shape, pools, counts, rounds: int = 100):
  """SynFlow's iterative pruning: ``rounds`` rescorings down to ``counts`` per pool."""
  alive = pools_lib.alive_counts(masks, pools)

  def one_round(i, current):
    targets = {
      p: exponential_counts(alive[p], jnp.asarray(counts[p]), i + 1, rounds) for p in counts
    }
    scores = synflow(params, current, apply_fn=apply_fn, input_shape=input_shape)
    return pools_lib.select(scores, current, pools=pools, counts=targets)

  return jax.lax.fori_loop(0, rounds, one_round, masks)

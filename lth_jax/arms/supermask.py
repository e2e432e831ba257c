"""Supermasks: a mask learned over frozen weights, with no weight trained.

The edge-popup variant (Ramanujan et al. 2020, "What's Hidden in a Randomly
Weighted Neural Network?"): every prunable weight has a real score s; the
forward pass uses the weights θ ⊙ m with m keeping the top-k |s| of each pool
(by a bisected threshold while learning, exactly k at the end: ``core.pools``), and the backward pass treats the top-k as the
identity (straight-through), so ∂L/∂s = ∂L/∂(θ ⊙ m) ⊙ θ. Scores start from
U(-1, 1)·σ_layer (edge-popup's Kaiming-uniform scores, up to a per-layer scale
that the ranking ignores) and are trained with Adam.

Chosen over Zhou et al.'s Bernoulli sampling because the top-k gives exactly
the ticket's counts at every step (Bernoulli masks only reach a sparsity in
expectation, through a penalty) and the learned mask is deterministic, so the
evaluated network is the trained one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lth_jax.core import pools as pools_lib
from lth_jax.core import train as train_lib


def straight_through(mask, score):
  """``mask`` as floats in the forward pass; the identity for ``score``'s gradient."""
  return mask.astype(score.dtype) + score - jax.lax.stop_gradient(score)


def learn_masks(
  params, masks, key, train, *, loss_fn, pools, counts, steps, learning_rate, batch_size
):
  """Masks over the frozen ``params`` keeping ``counts`` per pool, learned for ``steps``.

  Args:
    params: the frozen weights (θ0 or θk).
    masks: the starting masks (survivors that may be chosen).
    key: draws the initial scores and the batch order.
    train: ``DataArrays`` of the training split.
    loss_fn: ``loss_fn(effective_params, x_raw, y) -> loss``.
    pools, counts: as ``core.pools.select``.
  """
  init_key, order_key = jax.random.split(key)
  leaves, treedef = jax.tree.flatten(params)
  keys = treedef.unflatten(list(jax.random.split(init_key, len(leaves))))
  s = jax.tree.map(
    lambda k, p: jax.random.uniform(k, p.shape, minval=-1.0, maxval=1.0) * (jnp.std(p) + 1e-12),
    keys,
    params,
  )
  tx = optax.adam(learning_rate)
  n = train.x.shape[0]

  def hard(s):
    return pools_lib.select_by_threshold(
      jax.tree.map(jnp.abs, s), masks, pools=pools, counts=counts
    )

  def loss(s, x, y):
    m = jax.tree.map(straight_through, hard(jax.lax.stop_gradient(s)), jax.tree.map(jnp.abs, s))
    return loss_fn(jax.tree.map(lambda p, w: p * w, params, m), x, y)

  def step(carry, i):
    s, opt_state, orders = carry
    orders, idx = train_lib.next_batch(
      orders, lambda e: train_lib.epoch_order(order_key, e, n), i, num_examples=n,
      batch_size=batch_size,
    )  # fmt: skip
    grads = jax.grad(loss)(s, train.x[idx], train.y[idx])
    updates, opt_state = tx.update(grads, opt_state, s)
    return (optax.apply_updates(s, updates), opt_state, orders), None

  start = (s, tx.init(s), train_lib.no_order(n))
  (s, _, _), _ = jax.lax.scan(step, start, jnp.arange(steps))
  return pools_lib.select(jax.tree.map(jnp.abs, s), masks, pools=pools, counts=counts)

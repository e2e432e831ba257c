"""Supermasks: a mask learned over frozen weights, with no weight trained.

The edge-popup variant (Ramanujan et al. 2020, "What's Hidden in a Randomly
Weighted Neural Network?"): every prunable weight has a real score s; the
forward pass uses the weights θ ⊙ m with m keeping the top-k |s| of each pool
(by a bisected threshold while learning, exactly k at the end: ``scores.select``), and the backward pass treats the top-k as the
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

from lth_jax.arms import scores as scores_lib
from lth_jax.core import train as train_lib


def top_k_fast(scores, masks, *, pools, counts, iterations: int = 40):
  """About ``counts[pool]`` highest survivors per pool, by bisection on a threshold.

  Sorting every pool at every step costs more than the step itself on a CPU;
  ``iterations`` halvings of [min, max] find the cut with a few counting
  passes. Exact for distinct scores (to float resolution); the learned mask is
  made exact at the end by ``scores.select``.
  """
  leaves_s, treedef = jax.tree.flatten(scores)
  leaves_m = treedef.flatten_up_to(masks)
  leaves_p = treedef.flatten_up_to(pools)
  out = list(leaves_m)
  for pool in sorted({p for p in leaves_p if p != scores_lib.FIXED}):
    chosen = [i for i, p in enumerate(leaves_p) if p == pool]
    values = jnp.concatenate(
      [jnp.where(leaves_m[i], leaves_s[i], -jnp.inf).reshape(-1) for i in chosen]
    )
    finite = jnp.where(jnp.isfinite(values), values, jnp.inf)
    lo, hi = jnp.min(finite), jnp.max(values)

    def halve(_, bounds, values=values, count=counts[pool]):
      lo, hi = bounds
      mid = (lo + hi) / 2
      enough = jnp.sum(values >= mid) >= count
      return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iterations, halve, (lo, hi))
    for i in chosen:
      out[i] = (leaves_s[i] >= lo) & leaves_m[i] & (counts[pool] > 0)
  return treedef.unflatten(out)


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
    pools, counts: as ``scores.select``.
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
  idx = train_lib.batch_indices(
    order_key, 0, steps, num_examples=train.x.shape[0], batch_size=batch_size
  )

  def hard(s):
    return top_k_fast(jax.tree.map(jnp.abs, s), masks, pools=pools, counts=counts)

  def loss(s, x, y):
    m = jax.tree.map(straight_through, hard(jax.lax.stop_gradient(s)), jax.tree.map(jnp.abs, s))
    return loss_fn(jax.tree.map(lambda p, w: p * w, params, m), x, y)

  def step(carry, batch_idx):
    s, opt_state = carry
    grads = jax.grad(loss)(s, train.x[batch_idx], train.y[batch_idx])
    updates, opt_state = tx.update(grads, opt_state, s)
    return (optax.apply_updates(s, updates), opt_state), None

  (s, _), _ = jax.lax.scan(step, (s, tx.init(s)), idx)
  return scores_lib.select(jax.tree.map(jnp.abs, s), masks, pools=pools, counts=counts)

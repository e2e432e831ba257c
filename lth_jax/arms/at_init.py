"""Arms that choose their mask early, at the ticket's sparsity.

At level L >= 1 each arm starts from the rewound state (θ0, or θk when the study
rewinds late) and prunes it ONE-SHOT to the same number of prunable weights as
the ticket of level L, then trains like every arm (``lth_jax.study.levels``):

* ``snip``, ``grasp``, ``synflow``, ``magnitude_init``: the scores of
  ``lth_jax.arms.scores`` on the rewound weights, ranked globally over the pruned
  layers (each method's own definition). The output layer follows the study's
  plan: when the plan prunes it apart (layer-wise pruning) or not at all (global
  pruning without ``prune_output``) it keeps exactly the ticket's count, chosen
  by the same score within the layer; otherwise it is ranked with the rest
  (``Plan.at_init_pools``). SNIP and GraSP score one class-balanced batch of
  ``samples_per_class`` training examples per class (drawn with the arm's key);
  SynFlow is data-free (100 rounds, exponential schedule). SNIP and GraSP
  score with batch norm in train mode (``at_init.bn_mode='train'``, the default:
  the batch's own statistics, as Frankle et al. 2021 score) or in eval mode
  (``'eval'``: the running statistics, at θ0 the initial 0 and 1); SynFlow in
  eval mode; never with dropout. GraSP's gradient and Hessian are taken over the
  prunable weights only (``scores.grasp``).
* ``signed_constant`` (Zhou et al. 2019): the ticket's mask; every kept weight
  is sign(θ)·σ, σ the standard deviation of the rewound layer's values (all of
  the dense layer: an estimate of the initializer's σ that Zhou et al. use,
  within sampling error, for any init scheme).
* ``supermask``: a mask with the ticket's per-layer counts learned over the
  frozen rewound weights (``lth_jax.arms.supermask``); its network is evaluated
  without training any weight (``trains=False``).

Each is an arm of the registry (``lth_jax.arms.registry``): ``start(context,
state_k, masks, key)``, the training split read from ``context.train``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lth_jax.arms import scores as scores_lib
from lth_jax.arms import supermask as supermask_lib
from lth_jax.arms.registry import Arm, Context, register
from lth_jax.core import pools as pools_lib
from lth_jax.core import train as train_lib
from lth_jax.core.rewind import rewind

AT_INIT_DEFAULTS = {
  'samples_per_class': 10, 'supermask_steps': 2000, 'supermask_lr': 0.01, 'bn_mode': 'train',
}  # fmt: skip
BN_MODES = ('train', 'eval')
SYNFLOW_ROUNDS = 100


@dataclasses.dataclass(frozen=True)
class Settings:
  """The ``at_init.*`` config keys."""

  samples_per_class: int = AT_INIT_DEFAULTS['samples_per_class']
  supermask_steps: int = AT_INIT_DEFAULTS['supermask_steps']
  supermask_lr: float = AT_INIT_DEFAULTS['supermask_lr']
  bn_mode: str = AT_INIT_DEFAULTS['bn_mode']  # SNIP's and GraSP's batch norm: 'train' or 'eval'.


def balanced_batch(key, train: train_lib.DataArrays, *, per_class: int, num_classes: int):
  """``per_class`` random training examples of each class (x raw, y), jittable.

  A class with fewer examples is topped up with examples of other classes.
  """
  u = jax.random.uniform(key, train.y.shape)
  idx = jnp.concatenate(
    [jnp.argsort(jnp.where(train.y == c, u, 2.0 + u))[:per_class] for c in range(num_classes)]
  )
  return train.x[idx], train.y[idx]


def scored_masks(ctx: Context, name: str, state_k, masks, key):
  """The masks arm ``name`` (a scored arm) prunes ``state_k`` to, with the ticket's counts."""
  pools = ctx.plan.at_init_pools()
  counts = pools_lib.alive_counts(masks, pools)
  start, params = state_k.masks, state_k.params
  apply_fn = ctx.apply_fn(state_k.model_state)  # SynFlow: eval mode.
  if name == 'magnitude_init':
    scores = scores_lib.magnitude(params)
  elif name == 'synflow':
    return scores_lib.synflow_masks(
      params, start, apply_fn=apply_fn, input_shape=ctx.input_shape, pools=pools,
      counts=counts, rounds=SYNFLOW_ROUNDS,
    )  # fmt: skip
  else:
    x, y = balanced_batch(
      key, ctx.train, per_class=ctx.settings.samples_per_class, num_classes=ctx.num_classes
    )
    batch = (ctx.task.normalize(x), y)
    scoring = ctx.apply_fn(state_k.model_state, batch_statistics=ctx.settings.bn_mode == 'train')
    if name == 'snip':
      scores = scores_lib.snip(params, start, batch, apply_fn=scoring)
    else:  # GraSP removes the largest S(-θ): the kept ones rank by -S.
      grasp = scores_lib.grasp(params, start, batch, apply_fn=scoring, weights=ctx.plan.prunable())
      scores = jax.tree.map(jnp.negative, grasp)
  return pools_lib.select(scores, start, pools=pools, counts=counts)


def _scored(name: str):
  def start(context: Context, state_k, masks, key):
    return rewind(state_k, scored_masks(context, name, state_k, masks, key))

  start.__name__ = name
  return start


def signed_constant(context: Context, state_k, masks, key):
  """The ticket's mask with every kept weight sign(θ)·σ of its (dense, rewound) layer."""
  del key
  prunable = context.plan.prunable()
  params = jax.tree.map(
    lambda p, chosen: jnp.sign(p) * jnp.std(p) if chosen else p, state_k.params, prunable
  )
  return rewind(state_k._replace(params=params), masks)


def supermask(context: Context, state_k, masks, key):
  """θ (frozen) under a mask learned with the ticket's per-layer counts."""
  pools = context.plan.layer_pools()
  model_state, kwargs = state_k.model_state, train_lib.call_kwargs(context.task.model, False)

  def loss_fn(params, x_raw, y):
    logits = train_lib.apply_model(
      context.task, {'params': params, **model_state}, context.task.normalize(x_raw), **kwargs
    )
    return train_lib.cross_entropy(logits, y)

  settings = context.settings
  learned = supermask_lib.learn_masks(
    state_k.params, state_k.masks, key, context.train, loss_fn=loss_fn, pools=pools,
    counts=pools_lib.alive_counts(masks, pools), steps=settings.supermask_steps,
    learning_rate=settings.supermask_lr, batch_size=context.task.batch_size,
  )  # fmt: skip
  return rewind(state_k, learned)


register(Arm('snip', 'SNIP at init', _scored('snip')))
register(Arm('grasp', 'GraSP at init', _scored('grasp')))
register(Arm('synflow', 'SynFlow at init', _scored('synflow')))
register(Arm('magnitude_init', 'magnitude at init', _scored('magnitude_init')))
register(Arm('signed_constant', 'signed constant (ticket mask)', signed_constant))
register(
  Arm(
    'supermask', 'supermask (no weight trained)', supermask, trains=False,
    mask_steps=lambda context: context.settings.supermask_steps,
  )
)  # fmt: skip

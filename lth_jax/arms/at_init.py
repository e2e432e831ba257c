"""Arms that choose their mask early, at the ticket's sparsity.

At level L >= 1 each arm starts from the rewound state (θ0, or θk when the study
rewinds late) and prunes it ONE-SHOT to the same number of prunable weights as
the ticket of level L, then trains like every arm (``lth_jax.study.imp``):

* ``snip``, ``grasp``, ``synflow``, ``magnitude_init``: the scores of
  ``lth_jax.arms.scores`` on the rewound weights, ranked globally over the pruned
  layers (each method's own definition). The output layer follows the study's
  plan: when the plan prunes it apart (layer-wise pruning) or not at all (global
  pruning without ``prune_output``) it keeps exactly the ticket's count, chosen
  by the same score within the layer; otherwise it is ranked with the rest.
  SNIP and GraSP score one class-balanced batch of ``samples_per_class``
  training examples per class (drawn with the arm's key); SynFlow is data-free
  (100 rounds, exponential schedule). Scores are computed in eval mode
  (batch norm with its running statistics, no dropout).
* ``signed_constant`` (Zhou et al. 2019): the ticket's mask; every kept weight
  is sign(θ)·σ, σ the standard deviation of the rewound layer's values (all of
  the dense layer: an estimate of the initializer's σ that Zhou et al. use,
  within sampling error, for any init scheme).
* ``supermask``: a mask with the ticket's per-layer counts learned over the
  frozen rewound weights (``lth_jax.arms.supermask``); its network is evaluated
  without training any weight (``UNTRAINED``).

Every arm is a pure function ``arm(state_k, masks, key, train) -> TrainState``
(``masks``: the ticket's; ``train``: the training split on the device), jitted
once per study by ``Study.control``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from lth_jax.arms import scores as scores_lib
from lth_jax.arms import supermask as supermask_lib
from lth_jax.core import train as train_lib
from lth_jax.core.plan import Plan
from lth_jax.core.rewind import rewind

SCORED = ('snip', 'grasp', 'synflow', 'magnitude_init')
ARMS = (*SCORED, 'signed_constant', 'supermask')
UNTRAINED = ('supermask',)  # Evaluated as they start: no weight is trained.

AT_INIT_DEFAULTS = {'samples_per_class': 10, 'supermask_steps': 2000, 'supermask_lr': 0.01}
SYNFLOW_ROUNDS = 100
POOLED, OUTPUT = 0, 1


@dataclasses.dataclass(frozen=True)
class Settings:
  """The ``at_init.*`` config keys."""

  samples_per_class: int = AT_INIT_DEFAULTS['samples_per_class']
  supermask_steps: int = AT_INIT_DEFAULTS['supermask_steps']
  supermask_lr: float = AT_INIT_DEFAULTS['supermask_lr']


def pools_of(plan: Plan):
  """Python ints like params: how the scored arms rank each leaf (``scores.select``).

  The pruned leaves pool into one global ranking; the output layer is ranked
  alone when the plan prunes it apart (layer-wise) or keeps it whole (global
  without prune_output); unpruned leaves keep their masks.
  """

  def pool(leaf):
    if not leaf.kind:
      return scores_lib.FIXED
    if leaf.kind == 'output' and (plan.strategy == 'layerwise' or leaf.rate == 0):
      return OUTPUT
    return POOLED if leaf.rate > 0 else scores_lib.FIXED

  return plan._tree(pool(leaf) for leaf in plan.leaves)


def layer_pools(plan: Plan):
  """Every counted leaf its own pool: the ticket's per-layer counts (supermask)."""
  return plan._tree(i if leaf.kind else scores_lib.FIXED for i, leaf in enumerate(plan.leaves))


def balanced_batch(key, train: train_lib.DataArrays, *, per_class: int, num_classes: int):
  """``per_class`` random training examples of each class (x raw, y), jittable.

  A class with fewer examples is topped up with examples of other classes.
  """
  u = jax.random.uniform(key, train.y.shape)
  idx = jnp.concatenate(
    [jnp.argsort(jnp.where(train.y == c, u, 2.0 + u))[:per_class] for c in range(num_classes)]
  )
  return train.x[idx], train.y[idx]


@dataclasses.dataclass(frozen=True)
class Context:
  """What the early arms need of a study: its task, plan, input shape and settings."""

  task: train_lib.Task
  plan: Plan
  input_shape: tuple[int, ...]
  num_classes: int
  settings: Settings

  def apply_fn(self, model_state):
    """``apply(params, x) -> logits`` in eval mode with ``model_state``'s statistics."""
    kwargs = train_lib.call_kwargs(self.task.model, False)
    return lambda p, x: self.task.model.apply({'params': p, **model_state}, x, **kwargs)


def scored_masks(ctx: Context, name: str, state_k, masks, key, train):
  """The masks arm ``name`` of ``SCORED`` prunes ``state_k`` to, with the ticket's counts."""
  pools = pools_of(ctx.plan)
  counts = scores_lib.pool_counts(masks, pools)
  start, params = state_k.masks, state_k.params
  apply_fn = ctx.apply_fn(state_k.model_state)
  if name == 'magnitude_init':
    scores = scores_lib.magnitude(params)
  elif name == 'synflow':
    return scores_lib.synflow_masks(
      params, start, apply_fn=apply_fn, input_shape=ctx.input_shape, pools=pools,
      counts=counts, rounds=SYNFLOW_ROUNDS,
    )  # fmt: skip
  else:
    x, y = balanced_batch(
      key, train, per_class=ctx.settings.samples_per_class, num_classes=ctx.num_classes
    )
    batch = (ctx.task.normalize(x), y)
    if name == 'snip':
      scores = scores_lib.snip(params, start, batch, apply_fn=apply_fn)
    else:  # GraSP removes the largest S(-θ): the kept ones rank by -S.
      scores = jax.tree.map(jnp.negative, scores_lib.grasp(params, start, batch, apply_fn=apply_fn))
  return scores_lib.select(scores, start, pools=pools, counts=counts)


def signed_constant(ctx: Context, state_k, masks):
  """The ticket's mask with every kept weight sign(θ)·σ of its (dense, rewound) layer."""
  prunable = ctx.plan.prunable()
  params = jax.tree.map(
    lambda p, chosen: jnp.sign(p) * jnp.std(p) if chosen else p, state_k.params, prunable
  )
  return rewind(state_k._replace(params=params), masks)


def supermask(ctx: Context, state_k, masks, key, train):
  """θ (frozen) under a mask learned with the ticket's per-layer counts."""
  pools = layer_pools(ctx.plan)
  model_state, kwargs = state_k.model_state, train_lib.call_kwargs(ctx.task.model, False)

  def loss_fn(params, x_raw, y):
    logits = ctx.task.model.apply(
      {'params': params, **model_state}, ctx.task.normalize(x_raw), **kwargs
    )
    return train_lib.cross_entropy(logits, y)

  learned = supermask_lib.learn_masks(
    state_k.params, state_k.masks, key, train, loss_fn=loss_fn, pools=pools,
    counts=scores_lib.pool_counts(masks, pools), steps=ctx.settings.supermask_steps,
    learning_rate=ctx.settings.supermask_lr, batch_size=ctx.task.batch_size,
  )  # fmt: skip
  return rewind(state_k, learned)


def make_arm(ctx: Context, name: str):
  """``arm(state_k, masks, key, train) -> TrainState`` for an arm of ``ARMS``."""
  if name in SCORED:

    def scored(state_k, masks, key, train):
      return rewind(state_k, scored_masks(ctx, name, state_k, masks, key, train))

    return scored
  if name == 'signed_constant':
    return lambda state_k, masks, key, train: signed_constant(ctx, state_k, masks)
  if name == 'supermask':
    return functools.partial(supermask, ctx)
  raise ValueError(f'{name!r} is not an early arm; choose one of {ARMS}.')


def collapsed_layers(counts: dict[str, tuple[int, int]]) -> str:
  """'dense_0;dense_1': the layers left with no weight (layer collapse), '' for none."""
  return ';'.join(layer for layer, (kept, _) in counts.items() if kept == 0)

"""Rewinding: a pruned network restarted from θ0 or θk.

The rule (the same for every arm, so controls differ from the ticket only in
what they claim to test): a level starts from the *whole* training state saved
at the rewind step k of the dense run — weights θk, the step counter k (so the
learning-rate schedule resumes where it was and training runs to the same final
iteration T) and the optimizer state at k (Adam's moments, SGD momentum). With
k = 0 that is θ0 with a fresh optimizer. Only params and masks change; pruned
entries of the params are set to exactly zero. The optimizer moments of pruned
entries are kept but inert: gradients and updates are masked in ``train_step``.
Batch-norm statistics (model state) are rewound with the weights.

``rewind_optimizer='fresh'`` (OpenLTH's rule) instead restarts the optimizer's
moments at k while the learning-rate schedule continues: ``with_fresh_optimizer``.

How a pruned level retrains (``Study.retrain``, Renda, Frankle & Carbin 2020):
``rewind`` restarts from θk as above; ``lr_rewind`` keeps the trained weights θT
and replays the learning-rate schedule from k (a fresh optimizer, its schedule
at k); ``finetune`` keeps θT and trains at the final learning rate (a fresh
optimizer, its schedule held at T). Every mode trains from step k to T, on the
same data order.
"""

from __future__ import annotations

import jax
import optax

from lth_jax.core import masks as masks_lib
from lth_jax.core.train import TrainState


def rewind(state_k: TrainState, masks) -> TrainState:
  """The ticket: ``masks ⊙ θk`` with the rest of the state at step k."""
  return state_k._replace(params=masks_lib.apply(state_k.params, masks), masks=masks)


REWIND_OPTIMIZER = ('restore', 'fresh')
RETRAIN = ('rewind', 'lr_rewind', 'finetune')
_INJECTED = tuple(
  t
  for t in (optax.InjectHyperparamsState, getattr(optax, 'InjectStatefulHyperparamsState', None))
  if t
)


def with_fresh_optimizer(
  state_k: TrainState, optimizer: optax.GradientTransformation, *, schedule_step=None
) -> TrainState:
  """``state_k`` with a fresh optimizer state whose learning-rate schedule stays at step k.

  OpenLTH's rule (``rewind_optimizer='fresh'``): weights and step are rewound,
  Adam's moments and SGD's momentum start again from zero (and so does Adam's
  bias correction, which counts its own steps), while the learning-rate
  schedule continues from iteration k. optax schedules read their step from
  their own state (``ScaleByScheduleState.count``, ``InjectHyperparamsState``),
  so those counters are carried over from ``state_k`` and everything else is
  ``optimizer.init``'s. ``schedule_step``: the schedule's counters set to that step
  instead (fine-tuning holds the schedule at its final value T).
  """
  fresh = optimizer.init(state_k.params)

  def at(count):
    return count if schedule_step is None else jax.numpy.full_like(count, schedule_step)

  def keep_schedule(new, old):
    if isinstance(new, optax.ScaleByScheduleState):
      return old._replace(count=at(old.count))
    if isinstance(new, _INJECTED):  # Hyperparameter schedules: all but the inner state.
      return old._replace(inner_state=new.inner_state, count=at(old.count))
    return new

  schedule_states = (optax.ScaleByScheduleState, *_INJECTED)
  opt_state = jax.tree.map(
    keep_schedule, fresh, state_k.opt_state, is_leaf=lambda x: isinstance(x, schedule_states)
  )
  return state_k._replace(opt_state=opt_state)

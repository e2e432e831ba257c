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
"""

from __future__ import annotations

from lth_jax import masks as masks_lib
from lth_jax.train import TrainState


def rewind(state_k: TrainState, masks) -> TrainState:
  """The ticket: ``masks ⊙ θk`` with the rest of the state at step k."""
  return state_k._replace(params=masks_lib.apply(state_k.params, masks), masks=masks)

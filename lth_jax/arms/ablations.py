"""Which part of a mask matters: the controls applied to masks chosen at initialization.

Frankle, Dziugaite, Roy & Carbin, "Pruning Neural Networks at Initialization:
Why Are We Missing the Mark?" (ICLR 2021): shuffling a pruning-at-init mask within
each layer, or reinitializing its weights, leaves SNIP, GraSP, SynFlow and
magnitude-at-init accuracy unchanged, while IMP's ticket loses accuracy. Each arm
``<source>/<control>`` starts as the source arm does (the same mask: it is given
the source's own key, so the two are paired) and then applies the control:

* ``<source>/shuffle``: the mask shuffled within each layer, as the paper does: the
  layer's count of kept weights at random positions, the weights those of the
  rewound network there (θ0, or θk). For the ticket this is the ``random_prune``
  arm;
* ``<source>/reinit``: the same mask, fresh initial weights (the ticket's: ``reinit``).
"""

from __future__ import annotations

import jax

from lth_jax.arms import at_init, controls  # noqa: F401 (registered first: the arms composed)
from lth_jax.arms.registry import Arm, Context, get, register
from lth_jax.core import pruning
from lth_jax.core.rewind import rewind

SOURCES = ('snip', 'grasp', 'synflow', 'magnitude_init')
CONTROLS = ('shuffle', 'reinit')
_CONTROL_SALT = 0xAB1  # Folded into the source's key: the control's own randomness.


def shuffle_mask(context: Context, state, masks, key):
  """``masks`` shuffled within each layer (the per-layer counts kept) on ``state``'s weights."""
  del context
  return rewind(state, pruning.random_masks(key, masks))


def compose(source: Arm, control):
  """The start of ``control`` applied to ``source``'s start (with the source's mask)."""

  def start(context: Context, state_k, masks, key):
    chosen = source.start(context, state_k, masks, key)
    # The control sees the rewound weights whole (not zeroed outside the source's mask).
    unmasked = chosen._replace(params=state_k.params)
    return control(context, unmasked, chosen.masks, jax.random.fold_in(key, _CONTROL_SALT))

  start.__name__ = f'{source.name}_then_control'
  return start


def register_ablations() -> None:
  for source in SOURCES:
    for name, control, label in (
      ('shuffle', shuffle_mask, 'mask shuffled within each layer'),
      ('reinit', get('reinit').start, 'weights reinitialized'),
    ):
      arm = get(source)
      register(
        Arm(f'{source}/{name}', f'{arm.label}, {label}', compose(arm, control), key_of=source)
      )


register_ablations()

"""What IMP ranks the surviving weights by: the mask criteria of Zhou et al. (2019).

"Deconstructing Lottery Tickets: Zeros, Signs, and the Supermask" (Zhou, Lan,
Liu, Yosinski, NeurIPS 2019), Section 2 and Figure 2, with θ0 the initial and θT
the trained weights; the highest scores are kept:

* ``large_final``: |θT| (Frankle & Carbin; the default, computed exactly as before).
* ``magnitude_increase``: |θT| − |θ0|.
* ``movement``: |θT − θ0|.
* ``large_init_large_final``: weights large at init AND at the end: the upper-right
  quadrant of (|θ0|, |θT|), cut at the same percentile of both. The authors'
  code (``bsearch_quadrant_threshold`` in get_weight_init.py) searches that
  common percentile; equivalently the score is min(rank |θ0|, rank |θT|), the
  ranks taken over the surviving weights of what is ranked together (a layer,
  or the pooled layers of global pruning), which keeps an exact count.

Each applies layer-wise or globally as the study's plan says (``lth_jax.core.plan``).

>>> import jax.numpy as jnp
>>> final, init = {'w': jnp.array([1.0, -2.0, 0.5])}, {'w': jnp.array([0.5, -2.5, 0.1])}
>>> masks = {'w': jnp.array([True, True, True])}
>>> scores('magnitude_increase', final, init, masks, pools={'w': 0})['w']
Array([ 0.5, -0.5,  0.4], dtype=float32)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lth_jax.core import pools as pools_lib

CRITERIA = ('large_final', 'magnitude_increase', 'movement', 'large_init_large_final')
DEFAULT = 'large_final'


def scores(criterion: str, final, init, masks, *, pools):
  """The criterion's scores of ``final`` (θT) given ``init`` (θ0); None for ``large_final``.

  None leaves today's magnitude pruning untouched (bit for bit).
  """
  if criterion == 'large_final':
    return None
  if criterion == 'magnitude_increase':
    return jax.tree.map(lambda t, i: jnp.abs(t) - jnp.abs(i), final, init)
  if criterion == 'movement':
    return jax.tree.map(lambda t, i: jnp.abs(t - i), final, init)
  if criterion == 'large_init_large_final':
    rank_init = pools_lib.ranks(jax.tree.map(jnp.abs, init), masks, pools=pools)
    rank_final = pools_lib.ranks(jax.tree.map(jnp.abs, final), masks, pools=pools)
    return jax.tree.map(jnp.minimum, rank_init, rank_final)
  raise ValueError(f'criterion {criterion!r} is not one of {CRITERIA}.')

"""Arms: what a pruned level's run starts from; one registry, one signature.

``registry`` (``Arm``, ``Context``, ``register``, ``get``, ``names``) · ``controls``
(the ticket and its controls) · ``at_init`` (masks chosen early) · ``scores`` (the
scores that choose them) · ``supermask`` · ``sparse`` (static, SET, RigL). Importing this package registers the
built-in arms.
"""

from lth_jax.arms import ablations, at_init, controls, sparse  # noqa: F401 (registers the built-in arms)
from lth_jax.arms.registry import BUILT_IN, Arm, Context, arm_id, get, label, names, register

__all__ = ['BUILT_IN', 'Arm', 'Context', 'arm_id', 'get', 'label', 'names', 'register']

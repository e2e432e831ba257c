"""lth_jax: lottery-ticket studies as pure, jitted, vmapped JAX/Flax functions.

    import lth_jax
    study = lth_jax.make_study(model, train=(x, y), test=(xt, yt), optimizer=optax.adam(1e-3),
                               num_steps=2000, num_levels=5)
    print(study.plan.table())        # which weights are pruned, as what, at what rate
    store = lth_jax.run_imp(study)   # or run_imp(study, run_dir='runs/mine'): resumable
    store.summary                    # one row per (seed, level, arm)

The pieces (``masks``, ``pruning``, ``rewind``, ``controls``, ``train``, ``fit``)
are pure functions over pytrees, usable one by one.
"""

import time as _time

STARTED = _time.time()  # When the package was imported: "seconds after start" in logs.

from lth_jax.core.plan import Plan, make_plan  # noqa: E402
from lth_jax.errors import ConfigError, DataError, LthError, RunError  # noqa: E402
from lth_jax.study.constructor import make_study  # noqa: E402
from lth_jax.study.definition import Study  # noqa: E402
from lth_jax.study.runner import run_imp  # noqa: E402
from lth_jax.study.store import DiskStore, MemoryStore, Store  # noqa: E402

__all__ = [
  'ConfigError', 'DataError', 'DiskStore', 'LthError', 'MemoryStore', 'Plan', 'RunError', 'Store',
  'Study', 'make_plan', 'make_study', 'run_imp',
]  # fmt: skip

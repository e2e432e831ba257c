"""lth_jax: lottery-ticket studies as pure, jitted, vmapped JAX/Flax functions.

    import lth_jax
    study = lth_jax.make_study(model, train=(x, y), test=(xt, yt), optimizer=optax.adam(1e-3),
                               num_steps=2000, num_levels=5)
    print(study.plan.table())        # which weights are pruned, as what, at what rate
    store = lth_jax.run_imp(study)   # or run_imp(study, run_dir='runs/mine'): resumable
    store.summary                    # one row per (seed, level, arm)

The layers, each importing only those below it:

    core/       the pure functions of one network (masks, pools, plan, pruning, criteria,
                rewind, train, models, im2col, augment, connectivity)
    data/       data sets, a study's data on the device, ticket files
    arms/       the registry of arms (``lth_jax.arms.register``) and the built-in ones
    training/   the one training loop (``fit``), vmapped groups, several processes
    study/      a study, its directory and its pipeline of stages (``study.stages``)
    report/     reports and comparisons
    analyses/   stages after IMP: linear mode connectivity, tickets that travel
    commands, cli   the ``lth`` command
"""

import time as _time

STARTED = _time.time()  # When the package was imported: "seconds after start" in logs.

import lth_jax.analyses  # noqa: E402, F401 (registers the analyses' stages)
from lth_jax.core.plan import Plan, make_plan  # noqa: E402
from lth_jax.errors import ConfigError, DataError, LthError, RunError  # noqa: E402
from lth_jax.study.constructor import make_study  # noqa: E402
from lth_jax.study.definition import Execution, Study  # noqa: E402
from lth_jax.study.imp import run_imp  # noqa: E402
from lth_jax.study.store import DiskStore, MemoryStore, Store  # noqa: E402

__all__ = [
  'ConfigError', 'DataError', 'DiskStore', 'Execution', 'LthError', 'MemoryStore', 'Plan',
  'RunError', 'STARTED', 'Store', 'Study', 'make_plan', 'make_study', 'run_imp',
]  # fmt: skip

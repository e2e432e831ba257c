"""Names of every pytree a study stores: the one place that spells them.

A study's trees live in a ``TreeStore`` under these names (on disk:
``<run_dir>/checkpoints/<name>``)::

    seed_S/init                  θ0: {'params', 'model_state'}
    seed_S/rewind                the whole train state at the rewind step k (θk)
    seed_S/level_L/masks         the ticket's masks at level L
    seed_S/level_L/<arm>         an arm's trained {'params', 'model_state'}
    progress/level_L/<runs>      mid-level state of a group of runs (resumable)
"""

from __future__ import annotations

from collections.abc import Sequence

CHECKPOINTS = 'checkpoints'  # The directory of a run directory holding the trees.
PROGRESS = 'progress'


def init(seed: int) -> str:
  return f'seed_{seed}/init'


def rewind(seed: int) -> str:
  return f'seed_{seed}/rewind'


def masks(seed: int, level: int) -> str:
  return f'seed_{seed}/level_{level}/masks'


def trained(seed: int, level: int, arm: str) -> str:
  return f'seed_{seed}/level_{level}/{arm}'


def progress(level: int, runs: Sequence[tuple[int, str]]) -> str:
  """Mid-level state of the group of ``runs`` ((seed, arm) pairs) at ``level``."""
  return f'{PROGRESS}/level_{level}/' + '+'.join(f'{seed}-{arm}' for seed, arm in runs)


def progress_of_level(level: int) -> str:
  return f'{PROGRESS}/level_{level}'


# Glob patterns of the per-seed inputs that finished runs depend on.
SEED_INPUT_PATTERNS = ('seed_*/init', 'seed_*/rewind', 'seed_*/level_*/masks')

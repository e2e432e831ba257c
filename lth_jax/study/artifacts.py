"""Names of every pytree a study stores: the one place that spells them.

Names are built from a seed, a level and an arm only, each checked (non-negative
integers; an arm name of letters, digits, _ and /), so no name reaches outside
the study's ``checkpoints/``.

A study's trees live in a ``TreeStore`` under these names (on disk:
``<run_dir>/checkpoints/<name>``)::

    seed_S/init                  θ0: {'params', 'model_state'}
    seed_S/rewind                the whole train state at the rewind step k (θk)
    seed_S/level_L/masks         the ticket's masks at level L
    seed_S/level_L/early_bird_masks   the masks of level L-1's early-bird search
    seed_S/level_L/<arm>         an arm's trained {'params', 'model_state'} ('/' in the arm's name: '~')
    progress/level_L/<runs>      mid-level state of a group of runs (resumable)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

CHECKPOINTS = 'checkpoints'  # The directory of a run directory holding the trees.
PROGRESS = 'progress'


_ARM = re.compile(r'[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*')


def _index(value) -> int:
  """A seed or level as it enters a path: a non-negative int, nothing else."""
  if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
    raise ValueError(f'{value!r} is not a seed or level (a non-negative integer)')
  return int(value)


def _arm(arm) -> str:
  if not isinstance(arm, str) or len(arm) > 128 or not _ARM.fullmatch(arm):
    raise ValueError(f'{arm!r} is not an arm name (letters, digits, _ and /)')
  return arm


def init(seed: int) -> str:
  return f'seed_{_index(seed)}/init'


def rewind(seed: int) -> str:
  return f'seed_{_index(seed)}/rewind'


def masks(seed: int, level: int) -> str:
  return f'seed_{_index(seed)}/level_{_index(level)}/masks'


def trained(seed: int, level: int, arm: str) -> str:
  # An arm named '<source>/<control>' is one directory: '<source>~<control>'.
  return f'seed_{_index(seed)}/level_{_index(level)}/{_arm(arm).replace("/", "~")}'


def early_bird_masks(seed: int, level: int) -> str:
  """The masks the early-bird search of level - 1's ticket found, for level's early_bird arm."""
  return f'seed_{_index(seed)}/level_{_index(level)}/early_bird_masks'


def progress(level: int, runs: Sequence[tuple[int, str]]) -> str:
  """Mid-level state of the group of ``runs`` ((seed, arm) pairs) at ``level``."""
  group = '+'.join(f'{_index(seed)}-{_arm(arm).replace("/", "~")}' for seed, arm in runs)
  return f'{PROGRESS}/level_{_index(level)}/{group}'


def progress_of_level(level: int) -> str:
  return f'{PROGRESS}/level_{_index(level)}'


# Glob patterns of the per-seed inputs that finished runs depend on.
SEED_INPUT_PATTERNS = ('seed_*/init', 'seed_*/rewind', 'seed_*/level_*/masks')

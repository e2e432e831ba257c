"""What watches or changes a group's runs while they train, beside the training itself.

A tracker is a hook of the group's ``fit`` (``hook()``), sees the start (``begin``),
keeps its state in fixed-size arrays that ride in the mid-level checkpoints
(``to_tree`` / ``load_tree``: a resumed run goes on as if never stopped), and gives
the rows of its own table at the end (``finish``). The level loop
(``lth_jax.study.levels``) treats them all alike: the early-bird search
(``study.early_bird``) and the moving masks of SET and RigL (``study.moving``).
"""

from __future__ import annotations

import jax
import numpy as np

from lth_jax.training.fit import Hook


class Tracker:
  name: str  # Its key in the checkpoints.
  table: str  # The table its rows go to (``results.TABLES``).
  state: dict  # Fixed-size arrays.

  def begin(self, step: int, state) -> None:
    """The group's state before training (or nothing to see)."""

  def hook(self) -> Hook:
    raise NotImplementedError

  def finish(self) -> list[dict]:
    raise NotImplementedError

  def to_tree(self) -> dict:
    return self.state

  def load_tree(self, tree: dict) -> None:
    self.state = jax.tree.map(np.asarray, tree)

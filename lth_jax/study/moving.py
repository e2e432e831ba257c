"""Masks that move while they train: the updates of the ``set`` and ``rigl`` arms.

Every ``dst.update_every`` iterations before ``dst.end_step`` (``arms.sparse.Settings``),
each moving run of a group drops the fraction ``core.dst.drop_fraction(step)`` of its
kept weights with the smallest magnitude, layer by layer, and grows as many:

- ``set``: at random (uniform scores from the run's key folded with the step);
- ``rigl``: where the magnitude of the dense gradient (``core.train.dense_gradients``)
  of one batch is largest. The batch is drawn from the training split (uniformly,
  with replacement) with the run's key and the step: a batch like the training
  ones, not the very batch of that step (statistically the same, and independent
  of the data order's state).

The update is one compiled program over the group (vmapped when the group is):
the other runs of the group go through it with a fraction of zero, unchanged.
Each update's share of changed weights and the overlap of the mask with the
level's ticket go to ``dst.csv`` (``results.DST``); the rows so far ride in the
mid-level checkpoints, so a resumed run writes the same ones.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax.arms import registry
from lth_jax.core import dst
from lth_jax.core import train as train_lib
from lth_jax.study import results, starts
from lth_jax.study.definition import control_key
from lth_jax.training import parallel
from lth_jax.training.curve import evaluation_steps
from lth_jax.training.fit import Hook

MODES = {None: 0, 'set': 1, 'rigl': 2}
_GROW_SALT = 0xD57  # Folded into a run's key: the randomness of its updates.


@functools.cache
def _program(task: train_lib.Task, counted_leaves: tuple[bool, ...], vmapped: bool):
  """``update(state, train, keys, fractions, modes) -> state`` of one run, or vmapped."""

  def one(state, train, key, fraction, mode):
    batch_key, dropout_key, grow_key = jax.random.split(key, 3)
    idx = jax.random.randint(batch_key, (task.batch_size,), 0, train.x.shape[0])
    grads = train_lib.dense_gradients(task, state, train.x[idx], train.y[idx], dropout_key)
    leaves, treedef = jax.tree.flatten(state.params)
    noise = treedef.unflatten([
      jax.random.uniform(k, x.shape) for k, x in zip(jax.random.split(grow_key, len(leaves)),
                                                     leaves, strict=True)
    ])  # fmt: skip
    scores = jax.tree.map(lambda g, u: jnp.where(mode == 2, jnp.abs(g), u), grads, noise)
    counted = treedef.unflatten(list(counted_leaves))
    masks, params = dst.update(state.masks, state.params, scores, fraction, counted)
    return state._replace(masks=masks, params=params)

  run = jax.vmap(one, in_axes=(0, None, 0, 0, 0)) if vmapped else one
  return jax.jit(run, donate_argnums=0)


class Mover:
  """The mask updates of a group's moving runs (a hook of their ``fit``), and their rows."""

  name, table = 'dst', results.DST

  def __init__(self, study, store, runs, stacked: bool, first: int):
    self.study, self.stacked, self.runs = study, stacked, list(runs)
    self.settings = study.dst
    self.end = self.settings.end(study.num_steps)
    self.counted = study.plan.prunable()
    self.modes = [MODES[registry.get(r.arm).moves] for r in runs]
    self.keys = [jax.random.fold_in(control_key(r.seed, r.level, r.arm), _GROW_SALT) for r in runs]
    self.ticket = [starts.level_masks(study, store, r.seed, r.level) for r in runs]
    updates = len(evaluation_steps(first, self.end, eval_every=self.settings.update_every))
    self.state = {'rows': np.full((updates + 1, len(runs), 4), np.nan), 'count': np.int64(0)}

  def begin(self, step: int, state) -> None:
    del step, state  # Nothing moves before training.

  def hook(self) -> Hook:
    every = self.settings.update_every
    return Hook(self.update, every=every)

  def update(self, step: int, state, curve=None):
    """The update at ``step`` (a multiple of ``update_every``); returns the new state."""
    if step <= 0 or step >= self.end:
      return None
    fraction = float(
      dst.drop_fraction(step, initial=self.settings.drop_fraction, end_step=self.end)
    )
    fractions = [fraction if m else 0.0 for m in self.modes]
    keys = [jax.random.fold_in(k, step) for k in self.keys]
    leaves = tuple(bool(c) for c in jax.tree.leaves(self.counted))
    program = _program(self.study.task, leaves, self.stacked)
    before = parallel.to_host(state.masks)
    if self.stacked:
      pad = int(np.shape(state.step)[0]) - len(self.runs)
      keys = jnp.stack(keys + keys[:1] * pad)
      new = program(state, self.study.train, keys, jnp.array(fractions + [0.0] * pad),
                    jnp.array(self.modes + [0] * pad))  # fmt: skip
    else:
      new = program(state, self.study.train, keys[0], jnp.float32(fractions[0]), self.modes[0])
    after = parallel.to_host(new.masks)
    self._record(step, fraction, before, after)
    return new

  def _record(self, step, fraction, before, after) -> None:
    count = int(self.state['count'])
    for i, mode in enumerate(self.modes):
      if not mode:
        continue
      old = jax.tree.map(lambda x, i=i: x[i], before) if self.stacked else before
      new = jax.tree.map(lambda x, i=i: x[i], after) if self.stacked else after
      overlap = 1.0 - dst.changed_fraction(self.ticket[i], new, self.counted)
      self.state['rows'][count, i] = (step, fraction, dst.changed_fraction(old, new, self.counted),
                                      overlap)  # fmt: skip
    self.state['count'] = np.int64(count + 1)

  def finish(self) -> list[dict]:
    rows = []
    for i, run in enumerate(self.runs):
      if not self.modes[i]:
        continue
      for step, fraction, changed, overlap in self.state['rows'][: int(self.state['count']), i]:
        rows.append({
          'seed': run.seed, 'level': run.level, 'arm': run.arm, 'step': int(step),
          'drop_fraction': float(fraction), 'changed': float(changed),
          'overlap_with_ticket': float(overlap),
        })  # fmt: skip
    return rows

  def to_tree(self) -> dict:
    return self.state

  def load_tree(self, tree: dict) -> None:
    self.state = jax.tree.map(np.asarray, tree)


def mover(study, store, runs, stacked: bool, first: int) -> Mover | None:
  """The mask updates of a group, when it holds a moving arm (else None)."""
  if not any(registry.get(r.arm).moves for r in runs):
    return None
  return Mover(study, store, runs, stacked, first)

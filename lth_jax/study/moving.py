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
from lth_jax.study import results, starts, tracking
from lth_jax.study.definition import control_key
from lth_jax.training import parallel
from lth_jax.training.curve import evaluation_steps
from lth_jax.training.fit import Hook

MODES = {None: 0, 'set': 1, 'rigl': 2}
_GROW_SALT = 0xD57  # Folded into a run's key: the randomness of its updates.


@functools.cache
def _program(task: train_lib.Task, counted_leaves: tuple[bool, ...], vmapped: bool):
  """``update(state, train, keys, fractions, modes, ticket) -> (state, stats)`` of one run, or
  vmapped; ``stats`` = (share of the mask changed, overlap with the ticket's mask), computed
  where the masks are. Unstacked, the mode is static: SET computes no gradient."""

  def one(state, train, key, fraction, mode, ticket):
    batch_key, dropout_key, grow_key = jax.random.split(key, 3)
    leaves, treedef = jax.tree.flatten(state.params)
    scores = treedef.unflatten([
      jax.random.uniform(k, x.shape) for k, x in zip(jax.random.split(grow_key, len(leaves)),
                                                     leaves, strict=True)
    ])  # fmt: skip
    if not isinstance(mode, int) or mode == MODES['rigl']:
      idx = jax.random.randint(batch_key, (task.batch_size,), 0, train.x.shape[0])
      grads = train_lib.dense_gradients(task, state, train.x[idx], train.y[idx], dropout_key)
      rigl = mode == MODES['rigl']
      scores = jax.tree.map(lambda g, u: jnp.where(rigl, jnp.abs(g), u), grads, scores)
    counted = treedef.unflatten(list(counted_leaves))
    masks, params = dst.update(state.masks, state.params, scores, fraction, counted)
    stats = jnp.stack([
      dst.changed_fraction(state.masks, masks, counted),
      1.0 - dst.changed_fraction(ticket, masks, counted),
    ])  # fmt: skip
    return state._replace(masks=masks, params=params), stats

  if vmapped:
    return jax.jit(jax.vmap(one, in_axes=(0, None, 0, 0, 0, 0)), donate_argnums=0)
  return jax.jit(one, static_argnums=4, donate_argnums=0)


class Mover(tracking.Tracker):
  """The mask updates of a group's moving runs (a hook of their ``fit``), and their rows."""

  name, table = 'dst', results.DST

  def __init__(self, study, store, runs, stacked: bool, first: int):
    self.study, self.stacked, self.runs = study, stacked, list(runs)
    self.settings = study.dst
    self.end = self.settings.end(study.num_steps)
    self.counted = study.plan.prunable()
    self.modes = [MODES[registry.get(r.arm).moves] for r in runs]
    self.keys = [jax.random.fold_in(control_key(r.seed, r.level, r.arm), _GROW_SALT) for r in runs]
    ticket = [starts.level_masks(study, store, r.seed, r.level) for r in runs]
    if stacked:  # Padded like the group's states (the copies' rows are never written).
      pad = parallel.pad(ticket, study.execution.sharder.multiple)
      self.ticket = parallel.stack(pad)
    else:
      self.ticket = ticket[0]
    leaves = tuple(bool(c) for c in jax.tree.leaves(self.counted))
    self.program = _program(study.task, leaves, stacked)
    updates = len(evaluation_steps(first, self.end, eval_every=self.settings.update_every))
    self.state = {'rows': np.full((updates + 1, len(runs), 4), np.nan), 'count': np.int64(0)}

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
    keys = [jax.random.fold_in(k, step) for k in self.keys]
    if self.stacked:
      pad = int(np.shape(state.step)[0]) - len(self.runs)
      fractions = [fraction if m else 0.0 for m in self.modes] + [0.0] * pad
      new, stats = self.program(
        state, self.study.train, jnp.stack(keys + keys[:1] * pad), jnp.array(fractions),
        jnp.array(self.modes + [0] * pad), self.ticket,
      )  # fmt: skip
    else:
      new, stats = self.program(state, self.study.train, keys[0], jnp.float32(fraction),
                                self.modes[0], self.ticket)  # fmt: skip
    stats = np.asarray(parallel.to_host(stats)).reshape(-1, 2)
    count = int(self.state['count'])
    for i, mode in enumerate(self.modes):
      if mode:
        self.state['rows'][count, i] = (step, fraction, *stats[i])
    self.state['count'] = np.int64(count + 1)
    return new

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


def mover(study, store, runs, stacked: bool, first: int) -> Mover | None:
  """The mask updates of a group, when it holds a moving arm (else None)."""
  if not any(registry.get(r.arm).moves for r in runs):
    return None
  return Mover(study, store, runs, stacked, first)

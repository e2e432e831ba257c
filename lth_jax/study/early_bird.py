"""When the ticket appears: early-bird tickets (You et al., ICLR 2020), tracked while a level trains.

At every evaluation of a level's ticket run, the masks that level's pruning
would give from the current weights are computed (``Study.prune_level``: the
next level's masks, from this level's) and compared with the masks of the last
evaluations: the normalised Hamming distance (the fraction of the counted
weights whose kept/pruned state differs). As in the authors' code, the window
holds the last ``window`` masks (5) and the early-bird step is the first
evaluation where the newest mask is within ``epsilon`` (0.1) of every other mask
in the window. The masks found there are stored for the next level
(``artifacts.early_bird_masks``) and its ``early_bird`` arm starts from them on
the rewound weights; a run whose masks never settle stores its final ones (those
of the ticket) and says so (``found`` 0).

``early_bird.csv``: one row per (seed, level, evaluation step) with the distance
to the previous mask, the largest distance in the window, and, on the early-bird
step, ``early_bird`` 1. The window is kept in the mid-level checkpoints, so a
resumed run finds the same step.
"""

from __future__ import annotations

import jax
import numpy as np

from lth_jax.study import artifacts, results, starts, tracking
from lth_jax.training import parallel
from lth_jax.training.curve import evaluation_steps
from lth_jax.training.fit import Hook

EARLY_BIRD, COLUMNS = results.EARLY_BIRD, results.EARLY_BIRD_COLUMNS


def distance(a, b, counted) -> float:
  """The normalised Hamming distance of two masks over the counted leaves."""
  differ = total = 0
  for x, y, c in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(counted), strict=True):
    if c:
      differ += int(np.sum(np.asarray(x) != np.asarray(y)))
      total += int(np.size(x))
  return differ / max(total, 1)


class Tracker(tracking.Tracker):
  """The early-bird search of the ticket runs of one group (a hook of their ``fit``).

  Its state is fixed-size arrays (a checkpoint restores into the same structure):
  per ticket run, the window of masks stacked [window, ...], how many it holds, the
  step found (-1: none yet) and the rows so far [evaluations, 4].
  """

  def __init__(self, study, store, runs, stacked: bool, first: int):
    self.study, self.store, self.stacked = study, store, stacked
    self.runs = [(i, r) for i, r in enumerate(runs) if r.arm == 'ticket']
    self.counted = study.plan.prunable()
    like = study.state_like().masks
    size = study.early_bird.window
    capacity = 1 + len(evaluation_steps(first, study.num_steps, eval_every=study.eval_every))
    self.state = {
      str(r.seed): {
        'window': jax.tree.map(lambda m: np.zeros((size, *m.shape), bool), like),
        'filled': np.int64(0), 'found': np.int64(-1), 'count': np.int64(0),
        'rows': np.full((capacity, 4), np.nan),
      }
      for _, r in self.runs
    }  # fmt: skip
    self.level_masks = {
      r.seed: starts.level_masks(study, store, r.seed, r.level) for _, r in self.runs
    }

  def observe(self, step: int, state, curve=None) -> None:
    """One evaluation: the next level's masks from the current weights, their distances."""
    host = parallel.to_host(state.params)
    settings = self.study.early_bird
    for i, run in self.runs:
      params = jax.tree.map(lambda x, i=i: x[i], host) if self.stacked else host
      masks = jax.device_get(
        self.study.prune_level(params, self.level_masks[run.seed], run.level + 1)
      )
      s = self.state[str(run.seed)]
      held = [jax.tree.map(lambda w, j=j: w[j], s['window']) for j in range(int(s['filled']))]
      near = distance(masks, held[-1], self.counted) if held else np.nan
      held = (held + [masks])[-settings.window :]
      spread = max((distance(masks, m, self.counted) for m in held[:-1]), default=np.nan)
      emerged = int(s['found']) < 0 and len(held) == settings.window and spread <= settings.epsilon
      if emerged:
        s['found'] = np.int64(step)
        self.store.trees.save(artifacts.early_bird_masks(run.seed, run.level + 1), masks)
      s['window'] = jax.tree.map(
        lambda *ms: np.stack(ms + (np.zeros_like(ms[0]),) * (settings.window - len(ms))), *held
      )
      s['filled'] = np.int64(len(held))
      s['rows'][int(s['count'])] = (step, near, spread, float(emerged))
      s['count'] = np.int64(int(s['count']) + 1)

  name, table = 'early_bird', EARLY_BIRD

  def begin(self, step: int, state) -> None:
    self.observe(step, state)  # The start, as an evaluation.

  def hook(self) -> Hook:
    """At every evaluation and the last step."""
    return Hook(self.observe, every=self.study.eval_every, at=(self.study.num_steps,), at_end=True)

  def finish(self) -> list[dict]:
    """After the last step: runs whose masks never settled store their final ones. The rows."""
    rows = []
    for _, run in self.runs:
      s = self.state[str(run.seed)]
      found = int(s['found']) >= 0
      if not found and int(s['filled']):
        last = jax.tree.map(lambda w: w[int(s['filled']) - 1], s['window'])
        self.store.trees.save(artifacts.early_bird_masks(run.seed, run.level + 1), last)
      for step, near, spread, emerged in s['rows'][: int(s['count'])].tolist():
        rows.append({
          'seed': run.seed, 'level': run.level, 'arm': run.arm, 'step': int(step),
          'distance': _text(near),
          'window_distance': _text(spread), 'early_bird': int(emerged), 'found': int(found),
        })  # fmt: skip
    return rows


def _text(value):
  return '' if np.isnan(value) else value

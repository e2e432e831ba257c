"""A study's compiled programs, cached by what they compute.

A program is compiled once per (task, data, schedule, plan, arm) and shared by
every study that computes the same thing: the studies of a sweep over the
rewind step, a study grown with more levels, a study reopened in a notebook.
The caches hold the programs only (the data is weakly referenced through the
``Inputs`` it belongs to).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import weakref

import jax

from lth_jax.arms.registry import Arm, Context
from lth_jax.core import connectivity
from lth_jax.core import train as train_lib
from lth_jax.core.plan import Plan
from lth_jax.data.inputs import Inputs
from lth_jax.training import fit
from lth_jax.training.fit import Trainer

_TRAINERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def trainer(task: train_lib.Task, inputs: Inputs, *, vmapped: bool, curve_every: int) -> Trainer:
  """The ``Trainer`` of ``task`` on ``inputs`` (one per data set, task and mode)."""
  with _LOCK:
    per_inputs = _TRAINERS.setdefault(inputs, {})
    key = (task, vmapped, curve_every)
    if key not in per_inputs:
      per_inputs[key] = Trainer(
        task, inputs.train, inputs.splits, vmapped=vmapped, curve_every=curve_every
      )
    return per_inputs[key]


@functools.cache
def pruner(plan: Plan):
  """``prune(params, masks, *, rounds, scores=None) -> masks``: the plan, jitted."""
  return jax.jit(plan.prune, static_argnames='rounds')


@functools.cache
def arm_start(arm: Arm, context: Context):
  """``start(state_k, masks, key, train) -> TrainState`` of ``arm``, jitted; the training
  split is an argument, never a constant folded into the program."""

  def start(state_k, masks, key, train):
    return arm.start(dataclasses.replace(context, train=train), state_k, masks, key)

  return jax.jit(start)


@functools.cache
def path_metrics(task: train_lib.Task):
  """``connectivity.path_metrics`` of ``task``, jitted (the path between two networks)."""
  return jax.jit(functools.partial(connectivity.path_metrics, task))


@functools.cache
def initial_state(context: Context):
  """``initial_state(init_key) -> TrainState``: θ0 with dense masks, one compiled program."""
  prunable = context.plan.prunable()

  def initial(key):
    return train_lib.initial_state(
      context.task, key, context.input_shape, scheme=context.init, weights=prunable
    )

  return jax.jit(initial)


def clear() -> None:
  """Forgets every compiled program (this module's, the training loop's and JAX's own caches).

  A long session that builds many different studies (a notebook, a test suite) keeps
  each study's programs alive, and each holds mapped code: call this between them.
  """
  for cached in (pruner, arm_start, initial_state, path_metrics, train_lib.compiled, fit.programs):
    cached.cache_clear()
  with _LOCK:
    _TRAINERS.clear()
  jax.clear_caches()

"""The arms of a study: one ordered, append-only registry with one signature.

An arm says what a pruned level's run starts from. Every arm is a pure function

    start(context, state_k, masks, key) -> TrainState

of the study's ``Context`` (its task, pruning plan, initializer, the at-init
settings and the training split), the rewound state at k (θk, or θ0, with the
optimizer state the rewind rule gives), the ticket's masks at the level, and the
arm's own random key. It changes only params and masks. Adding an arm is one
function and one line::

    from lth_jax import arms

    def negated(context, state_k, masks, key):
      return rewind(state_k._replace(params=jax.tree.map(jnp.negative, state_k.params)), masks)

    arms.register(arms.Arm('negated', 'ticket with its signs flipped', negated))
    # then arms='ticket,negated' in make_study or --config.arms=ticket,negated

An arm that trains no weight (a supermask) says so (``trains=False``): its
network is evaluated as it starts.

The registry's order is the order of every table and figure, and an arm's
position in it is folded into its random key (``Study.control_key``). Positions
are fixed: the built-in arms have the ones of ``BUILT_IN``, and added arms take
the next free ones in the order they are registered, so adding an arm never
changes another's numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from lth_jax.core import train as train_lib
from lth_jax.core.plan import Plan
from lth_jax.core.train import DataArrays, Task, TrainState
from lth_jax.errors import ConfigError

# The built-in arms in their fixed order (their positions are part of their random keys).
BUILT_IN = (
  'ticket', 'reinit', 'random_prune', 'shuffle', 'sign_reinit',
  'snip', 'grasp', 'synflow', 'magnitude_init', 'signed_constant', 'supermask',
  # A control applied to a mask chosen at init (``lth_jax.arms.ablations``).
  'snip/shuffle', 'snip/reinit', 'grasp/shuffle', 'grasp/reinit', 'synflow/shuffle',
  'synflow/reinit', 'magnitude_init/shuffle', 'magnitude_init/reinit',
  'early_bird',
  # Sparse from the start (``lth_jax.arms.sparse``).
  'static', 'set', 'rigl',
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Context:
  """What an arm may read of its study.

  Everything but ``train`` is static (hashable: one compiled start per arm and
  study); ``train``, the training split on the device, is given at each call.
  """

  task: Task
  plan: Plan
  input_shape: tuple[int, ...]
  num_classes: int
  init: str = 'default'  # The scheme of the prunable weights (``core.models.INITS``).
  settings: Any = None  # ``arms.at_init.Settings``: the at_init.* config keys.
  dst: Any = None  # ``arms.sparse.Settings``: the dst.* config keys.
  train: DataArrays | None = dataclasses.field(default=None, compare=False, hash=False)

  def init_params(self, key):
    """Fresh initial weights for ``key``, drawn as the study draws θ0."""
    return train_lib.init_params(
      self.task.model, key, self.input_shape, scheme=self.init, weights=self.plan.prunable()
    )

  def apply_fn(self, model_state, *, batch_statistics: bool = False):
    """``apply(params, x) -> logits``: in eval mode with ``model_state``'s statistics, or with
    ``batch_statistics`` batch norm normalizing by the batch's own (train mode; the updated
    running statistics are dropped, and dropout stays off)."""
    task = self.task
    if not (batch_statistics and model_state):
      kwargs = train_lib.call_kwargs(task.model, False)
      return lambda p, x: train_lib.apply_model(task, {'params': p, **model_state}, x, **kwargs)
    kwargs = train_lib.call_kwargs(task.model, True)
    rngs = {'dropout': jax.random.key(0)}  # Unused by the zoo's batch-norm nets (no dropout).

    def apply(p, x):
      logits, _ = train_lib.apply_model(
        task, {'params': p, **model_state}, x, mutable=list(model_state), rngs=rngs, **kwargs
      )
      return logits

    return apply


Start = Callable[[Context, TrainState, Any, Any], TrainState]


@dataclasses.dataclass(frozen=True)
class Arm:
  """An arm: its name, its label in reports, and what its run starts from."""

  name: str
  label: str
  start: Start
  trains: bool = True  # False: evaluated as it starts (no weight is trained).
  # The iterations spent choosing the mask (a learned mask's), recorded in its rows.
  mask_steps: Callable[[Context], int] | None = None
  # The arm whose key this one is given (a composite's source: the same mask, paired).
  key_of: str | None = None
  # Stored masks it starts from in place of the level's ticket masks ('early_bird': those the
  # early-bird search of the level before found; ``lth_jax.study.early_bird``).
  masks: str | None = None
  # How its mask moves while it trains ('set', 'rigl': ``lth_jax.study.moving``); None: fixed.
  moves: str | None = None


_ARMS: dict[str, Arm] = {}


def register(arm: Arm) -> Arm:
  """Adds ``arm`` at the end of the registry (a name is registered once); returns it."""
  if not arm.name.replace('_', '').replace('/', '').isalnum():
    raise ConfigError(f'arm name {arm.name!r}: use letters, digits, _ and / only.')
  if arm.name in _ARMS:
    if _ARMS[arm.name] == arm:
      return arm  # A module imported twice registers the same arm twice.
    raise ConfigError(f'an arm named {arm.name!r} is already registered.')
  _ARMS[arm.name] = arm
  return arm


def get(name: str) -> Arm:
  if name not in _ARMS:
    raise ConfigError(f'{name!r} is not an arm; arms: {", ".join(names())}.')
  return _ARMS[name]


def names() -> tuple[str, ...]:
  """Every registered arm, in the registry's order."""
  return tuple(sorted(_ARMS, key=arm_id))


def arm_id(name: str) -> int:
  """The arm's fixed position: built-in arms first, then added arms in their order."""
  if name in BUILT_IN:
    return BUILT_IN.index(name)
  added = [n for n in _ARMS if n not in BUILT_IN]
  if name not in added:
    raise ConfigError(f'{name!r} is not an arm; arms: {", ".join(names())}.')
  return len(BUILT_IN) + added.index(name)


def label(name: str) -> str:
  """The arm's label in reports (its name when it is not registered)."""
  return _ARMS[name].label if name in _ARMS else name


def trains(name: str) -> bool:
  return get(name).trains

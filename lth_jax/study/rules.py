"""The relations between a study's settings: one rule set, checked where each setting enters.

``make_study`` checks them on its keywords; ``config.validate`` checks the same
rules on a config's values (named ``config.<key>``) before any data is loaded,
so a bad value fails in a second, not after a download.
"""

from __future__ import annotations

from collections.abc import Sequence

from lth_jax.errors import ConfigError


def show(value, limit: int = 80) -> str:
  """A value's repr on one short line (huge ints and long strings included)."""
  try:
    text = repr(value)
  except Exception:  # repr of an int beyond Python's digit limit raises ValueError.
    text = f'<{type(value).__name__}>'
  text = ' '.join(text.split())
  return text if len(text) <= limit else text[: limit - 3] + '...'


def not_allowed(name: str, value, expected: str) -> ConfigError:
  return ConfigError(f'{name}={show(value)} is not allowed: expected {expected}.')


def check_schedule(
  *, num_steps: int, eval_every: int, rewind_step: int, num_levels: int, checkpoint_every: int,
  curve_every: int, prefix: str = '',
) -> None:  # fmt: skip
  """Raises ``ConfigError`` (one line, the setting named with ``prefix``) for the first rule
  the schedule breaks."""
  rules = [
    (num_steps >= 1, 'num_steps', num_steps, 'at least 1'),
    (eval_every >= 1, 'eval_every', eval_every, 'at least 1'),
    (0 <= rewind_step < num_steps, 'rewind_step', rewind_step,
     f'an iteration before num_steps={num_steps}'),
    (num_levels >= 0, 'num_levels', num_levels, '0 or more'),
    (checkpoint_every >= 0 and checkpoint_every % max(eval_every, 1) == 0, 'checkpoint_every',
     checkpoint_every, f'0 or a multiple of eval_every={eval_every}'),
    (curve_every >= 0 and curve_every % max(eval_every, 1) == 0, 'curve_every', curve_every,
     f'0 or a multiple of eval_every={eval_every}'),
  ]  # fmt: skip
  for ok, name, value, expected in rules:
    if not ok:
      raise not_allowed(prefix + name, value, expected)


def check_seeds(seeds: Sequence[int], *, prefix: str = '') -> None:
  """Seeds are distinct and within the range the random keys tell apart ([0, 2**32))."""
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) >= 2**32:
    raise not_allowed(
      prefix + 'seeds', seeds, 'distinct integers in [0, 2**32) (the range random keys tell apart)'
    )

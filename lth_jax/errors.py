"""The errors a user can meet, each with a message that names the problem and the fix.

They live in one module that imports nothing of the package, so any module can
raise them without import cycles. The command line prints any ``LthError`` as
one ``lth: error:`` line.
"""

from __future__ import annotations


class LthError(Exception):
  """Base of the package's user-facing errors."""


class ConfigError(LthError, ValueError):
  """A config value (or study setting) is not allowed. The message is one line naming the key."""


class DataError(LthError, RuntimeError):
  """A dataset cannot be loaded; the message says what is wrong and how to fix it."""


class RunError(LthError, RuntimeError):
  """A run directory cannot be used; the message says why and what to do."""


class CheckpointError(LthError, RuntimeError):
  """A checkpoint is missing, partial or corrupt."""


class DeviceMemoryError(LthError, MemoryError):
  """Not even one run fits in device memory; the message says how much one run needs."""


def one_line(error: BaseException, limit: int = 300) -> str:
  """An error's message on one line, at most ``limit`` characters."""
  text = ' '.join(str(error).split()) or type(error).__name__
  return text if len(text) <= limit else text[: limit - 3] + '...'

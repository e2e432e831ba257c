"""The one-writer lock of a study directory (file ``lock``).

A process that writes a study directory holds its lock; a second process is
refused with a message naming the owner; a lock left by a dead process on this
host is taken over.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from lth_jax.errors import RunError


class Lock:
  """An exclusive claim on a run directory by this process (file ``lock``)."""

  def __init__(self, run_dir: Path, log=None):
    self.path = Path(run_dir) / 'lock'
    self.log = log or (lambda message: None)

  def acquire(self) -> None:
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      except FileExistsError:
        owner = self._read()
        if self.held():
          raise RunError(
            f'{self.path.parent} is in use by {_describe_owner(owner)} (lock file '
            f'{self.path}). Wait for it to finish or stop it; delete the lock file only if '
            'that process is gone.'
          ) from None
        self.path.unlink(missing_ok=True)  # A stale lock from a dead process: take it over.
        self.log(f'took over the stale lock {self.path} of {_describe_owner(owner)}, which is gone')
        continue
      with os.fdopen(fd, 'w') as f:
        f.write(f'{os.getpid()} {socket.gethostname()}\n')
      return
    raise RunError(f'could not take the lock {self.path}.')

  def release(self) -> None:
    if self._read().split()[:1] == [str(os.getpid())]:
      self.path.unlink(missing_ok=True)

  def _read(self) -> str:
    try:
      return self.path.read_text().strip()
    except OSError:
      return ''

  def held(self) -> bool:
    """True when the lock file exists and its owner may still be alive."""
    if not self.path.exists():
      return False
    parts = self._read().split()
    if len(parts) != 2 or not parts[0].isdigit():
      return _just_created(self.path)  # Its owner may not have written its pid yet.
    pid, host = int(parts[0]), parts[1]
    if host != socket.gethostname():
      return True  # Another machine's process: we cannot tell, so do not steal it.
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return False
    except PermissionError:
      return True
    return True

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()


def _describe_owner(owner: str) -> str:
  parts = owner.split()
  if len(parts) == 2 and parts[0].isdigit():
    return f'process {parts[0]} on {parts[1]}'
  return f'an unknown process (lock file content {owner!r})'


def _just_created(path: Path, seconds: float = 10.0) -> bool:
  try:
    return time.time() - path.stat().st_mtime < seconds
  except OSError:
    return False

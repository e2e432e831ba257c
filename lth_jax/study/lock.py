"""The one-writer lock of a study directory (file ``lock``).

The lock is the operating system's: an exclusive ``flock`` on ``<dir>/lock``,
held for as long as the process writes there and released by the kernel when
the process ends, however it ends. There is no stale lock to take over and no
check-then-delete: two processes can never both hold it, whatever their host
names. The file names its holder (process id, host name and boot id) for the
message a second process gets.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from lth_jax.errors import RunError


def _boot_id() -> str:
  """This machine's current boot (Linux), so that two containers named alike are told apart."""
  try:
    return Path('/proc/sys/kernel/random/boot_id').read_text().strip()[:8]
  except OSError:
    return '-'


class Lock:
  """An exclusive claim on a study directory by this process."""

  def __init__(self, run_dir: Path, log=None):
    self.path = Path(run_dir) / 'lock'
    self.log = log or (lambda message: None)
    self._fd: int | None = None

  def acquire(self) -> None:
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      os.close(fd)
      raise RunError(
        f'{self.path.parent} is in use by {_describe(self._read())} (lock file {self.path}). '
        'Wait for it to finish or stop it.'
      ) from None
    before = os.pread(fd, 4096, 0).decode(errors='replace').strip()
    if before:  # Its holder ended without a word (killed, crashed): the kernel let it go.
      self.log(f'took over the stale lock {self.path} of {_describe(before)}, which is gone')
    me = f'{os.getpid()} {socket.gethostname()} {_boot_id()}\n'.encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, me, 0)
    self._fd = fd

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.ftruncate(self._fd, 0)  # An empty lock file: nobody to take it over from.
    finally:
      os.close(self._fd)  # Closing releases the flock.
      self._fd = None

  def _read(self) -> str:
    try:
      return self.path.read_text().strip()
    except OSError:
      return ''

  def held(self) -> bool:
    """True when another open file (this process's or another's) holds the lock."""
    if self._fd is not None:
      return True
    try:
      fd = os.open(self.path, os.O_RDONLY)
    except OSError:
      return False
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      return True
    finally:
      os.close(fd)  # Also releases the probe's lock, when it got one.
    return False

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()


def _describe(owner: str) -> str:
  parts = owner.split()
  if len(parts) >= 2 and parts[0].isdigit():
    boot = f', boot {parts[2]}' if len(parts) > 2 else ''
    return f'process {parts[0]} on {parts[1]}{boot}'
  return f'an unknown process (lock file content {owner[:80]!r})'

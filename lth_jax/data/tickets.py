"""Ticket files read inside the package: ``ticket_file``'s reader, its errors as ``DataError``."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from lth_jax.data import ticket_file
from lth_jax.errors import DataError


def read(path: str | os.PathLike):
  """(header, params, masks, model_state) of a ticket file, as flat dicts of numpy arrays.

  Raises:
    DataError: the file is missing, not a ticket file, or damaged.
  """
  path = Path(path)
  if not path.is_file():
    raise DataError(f'no ticket file at {path}; write one with `lth export RUN_DIR --level L`.')
  try:
    return ticket_file.read(path)
  except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
    raise DataError(
      f'{path} is not a readable ticket file ({type(e).__name__}: {e}); export it again.'
    ) from e

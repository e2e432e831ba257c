"""Ticket files read inside the package: ``ticket_file``'s reader, its errors as ``DataError``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

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
  except ticket_file.TicketFileError as e:
    raise DataError(f'{path} is not a readable ticket file: {e}. Export it again.') from None
  except OSError as e:
    raise DataError(f'{path} cannot be read ({e.strerror or e}).') from None


def check_fits(path, params: dict, like: dict) -> None:
  """Raises ``DataError`` unless the flat ``params`` of a ticket file have exactly the leaves,
  shapes and dtypes of ``like`` (flat {leaf name: array or shape struct}: the model's own)."""
  have = {n: (tuple(v.shape), str(v.dtype)) for n, v in params.items()}
  want = {n: (tuple(x.shape), str(np.dtype(x.dtype))) for n, x in like.items()}
  if have != want:
    diff = sorted(set(have.items()) ^ set(want.items()))[:4]
    raise DataError(
      f'{path} does not fit the model: leaves differ in {diff} (file ^ model); export a ticket '
      'of the same model and number of classes.'
    )

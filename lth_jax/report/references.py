"""The paper's numbers for a study: passed by its recipe, kept in the study directory.

A recipe module (``experiments/*.py``) may define ``PAPER``, a dict with
``title``, ``model`` and ``data`` (parts of the config's ``model.name`` and
``data.name`` it applies to), ``findings`` (lines of text), optionally
``curve_remaining`` (weights remaining worth a training curve) and ``notes``
({part of ``data.name``: note}). ``lth run`` writes it into the study directory
(``reference.json``) when it fits the study's model and data; the report shows it.
"""

from __future__ import annotations

import json
from pathlib import Path

from lth_jax.report.analysis import config_value

REFERENCE_JSON = 'reference.json'


def fits(paper: dict, config: dict) -> bool:
  """Whether ``paper`` is about ``config``'s model and data (e.g. a LeNet on (Fashion-)MNIST)."""
  model = str(config_value(config, 'model.name', '')).lower()
  data = str(config_value(config, 'data.name', '')).lower()
  return paper['model'] in model and paper['data'] in data


def paper_reference(run_dir: str | Path) -> dict | None:
  """The paper's numbers kept in ``run_dir`` (its ``reference.json``), or None."""
  path = Path(run_dir) / REFERENCE_JSON
  try:
    paper = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return paper if isinstance(paper, dict) and isinstance(paper.get('findings'), list) else None

"""The paper's numbers for a run, read from the recipe they belong to (``experiments/*.py``).

A recipe module may define ``PAPER``, a dict with ``title``, ``model`` and
``data`` (parts of the config's ``model.name`` and ``data.name`` it applies to),
``findings`` (lines of text), optionally ``curve_remaining`` (weights remaining
worth a training curve) and ``notes`` ({part of ``data.name``: note}).
"""

from __future__ import annotations

import importlib
import pkgutil

from lth_jax.report.analysis import config_value


def _papers() -> list[dict]:
  try:
    import experiments
  except ImportError:  # An installation without the recipes.
    return []
  modules = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__))
  found = [getattr(importlib.import_module(f'experiments.{m}'), 'PAPER', None) for m in modules]
  return [paper for paper in found if paper]


def paper_reference(config: dict) -> dict | None:
  """The ``PAPER`` dict of the recipe that ``config`` (a run's config.json) runs, or None."""
  model = str(config_value(config, 'model.name', '')).lower()
  data = str(config_value(config, 'data.name', '')).lower()
  for paper in _papers():
    if paper['model'] in model and paper['data'] in data:
      return paper
  return None

"""The stages of a study: IMP, then every analysis the config asks for, in one pipeline.

A stage is one module and one line (``register``)::

    def run(ctx):                       # ctx: a ``StageContext``
      done = results.read_rows(ctx.path / 'mine.csv')
      ...                               # compute what is not in mine.csv yet, from ctx.store
      results.append(ctx.path, 'mine.csv', rows)

    stages.register(Stage('mine', wanted=lambda config: config.mine.on, run=run,
                          tables={'mine.csv': ('seed', 'level', 'value')}))

``run_stages`` opens a study directory (``workdir.open_study``: lock, identity,
config.json, repair) and runs, in registration order, every stage its config
wants; each stage reads the stored trees and the tables of the stages before
it, writes its own tables, and skips what is already there, so a killed
pipeline resumes where it stopped. A stage may run further studies of its own
(``StageContext.run_child``: the same pipeline in another directory), as the
linear mode connectivity sweep does for each rewind step and transfer does for
each target.

Each stage can also say, for a study directory: a summary for the terminal
(``summary``), its state in ``lth ls`` (``status``), and its report sections
(``sections``, drawn by ``lth_jax.report``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lth_jax.errors import ConfigError
from lth_jax.study import from_config, workdir
from lth_jax.study.definition import Study
from lth_jax.study.store import Store


@dataclasses.dataclass
class StageContext:
  """What a stage works with: the opened study directory, its study and where messages go.

  ``study`` is built on first use (a stage that needs no data never loads any).
  """

  path: Path
  store: Store
  config: Any
  log: Callable[[str], None]
  progress: bool | None
  make_study: Callable[[], Study]
  dataset: Any = None  # The config's data set, when loaded (stages that run studies reuse it).
  _study: Study | None = None

  @property
  def study(self) -> Study:
    if self._study is None:
      self._study = self.make_study()
    return self._study

  def run_child(self, path: str | os.PathLike, config, *, study: Study | None = None,
                dataset=None) -> Path:  # fmt: skip
    """Runs the pipeline of ``config`` in ``path`` (a study of this stage's own)."""
    return run_stages(
      config, Path(path), study=study, dataset=dataset, log=self.log, progress=self.progress
    )


@dataclasses.dataclass(frozen=True)
class Stage:
  """A stage of the pipeline.

  Attributes:
    name: its name (in messages, ``lth ls`` and the report).
    wanted: whether a config asks for it.
    after: the stages whose results it reads: it runs after them when they run too
      (by default IMP's; the pipeline's order does not depend on import order).
    run: computes what is missing in the study directory (``StageContext``).
    needs_study: its directory holds one study (whose identity is checked); False
      for stages that only run studies of their own in subdirectories.
    tables: the CSV tables it writes: {file name: columns}.
    summary: the text printed after ``lth run`` (None: nothing).
    status: its state for ``lth ls`` (None: not shown).
    sections: report sections, (name, fn(run, doc)) as ``lth_jax.report``'s.
  """

  name: str
  wanted: Callable[[Any], bool]
  run: Callable[[StageContext], None]
  after: Sequence[str] = ('imp',)
  needs_study: bool = True
  tables: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
  summary: Callable[[Path, Any], str] | None = None
  status: Callable[[Path, Any], str] | None = None
  sections: Sequence[tuple[str, Callable]] = ()


_STAGES: list[Stage] = []


def register(stage: Stage) -> Stage:
  """Appends ``stage`` to the pipeline (a name is registered once); returns it."""
  if any(s.name == stage.name and s != stage for s in _STAGES):
    raise ConfigError(f'a stage named {stage.name!r} is already registered.')
  if stage not in _STAGES:
    _STAGES.append(stage)
  return stage


def all_stages() -> tuple[Stage, ...]:
  return tuple(_STAGES)


def wanted(config) -> list[Stage]:
  """The stages ``config`` asks for, each after the stages it reads (else in registration
  order)."""
  pending = [s for s in _STAGES if s.wanted(config)]
  ordered: list[Stage] = []
  while pending:
    names = {s.name for s in pending}
    ready = next((s for s in pending if not names & set(s.after)), None)
    if ready is None:
      raise ConfigError(f'stages {sorted(names)} wait for each other; check their `after`.')
    ordered.append(ready)
    pending.remove(ready)
  return ordered


def tables() -> dict[str, Sequence[str]]:
  """Every stage's tables: {file name: columns}."""
  return {name: columns for s in _STAGES for name, columns in s.tables.items()}


def run_stages(
  config, path: Path, *, study: Study | None = None, dataset=None, log=print, progress=None
) -> Path:
  """Runs (or resumes, or grows) every stage ``config`` wants in the study directory ``path``.

  ``study``: the config's study when the caller has it already; ``dataset``: its
  data set when loaded (else loaded when a stage first needs the study).
  """
  chosen = wanted(config)
  one_study = any(s.needs_study for s in chosen)
  if one_study and study is None:
    study = from_config.from_config(config, dataset, validated=True)
  identity = study.identity() if one_study else None
  with workdir.open_study(path, identity=identity, config=config, log=log) as opened:
    context = StageContext(
      opened.path, opened.store, config, log, progress,
      make_study=lambda: from_config.from_config(config, dataset, validated=True),
      dataset=dataset, _study=study,
    )  # fmt: skip
    for stage in chosen:
      stage.run(context)
  return path


def unregister(stage: Stage) -> None:
  """Takes ``stage`` out of the pipeline (a notebook's experiment, a test's stage)."""
  if stage in _STAGES:
    _STAGES.remove(stage)

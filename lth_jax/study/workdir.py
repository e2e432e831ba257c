"""Study directories: their names, and the one way to open one.

A study made from a config lives in ``<workdir>/<name>-<hash>``, the hash taken
over the resolved config less the keys that do not change results
(``config.study_hash``): the same config always maps to the same directory, a
changed one never reuses old results. A study made in Python (``run_imp(study,
run_dir=...)``) lives where it is told. Inside either::

    study.json       what the study computes (``Study.identity``): checked at every open
    config.json      the resolved config (studies made from a config; ``lth resume`` reads it)
    plan.json        the pruning plan
    lock             the process writing here (``lth_jax.study.lock``)
    summary.csv, curves.csv, layers.csv, timings.csv   (``lth_jax.study.results``)
    checkpoints/     the study's pytrees (``lth_jax.study.artifacts``)
    ...              the tables of later stages (``lth_jax.study.stages``)

``open_study`` is the one way in, for ``lth run``, ``lth resume``, ``run_imp``
and every stage that opens a study of its own: it creates the directory (or
checks that it can write there), takes the lock, checks the identity, writes
config.json and repairs what a crash left, then yields the directory's store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lth_jax.errors import ConfigError, RunError
from lth_jax.study import config as config_lib
from lth_jax.study import repair as repair_lib
from lth_jax.study.lock import Lock
from lth_jax.study.store import DiskStore, Secondary, Store
from lth_jax.training import distributed

STUDY_JSON = 'study.json'
CONFIG_JSON = 'config.json'


def run_dir_for(workdir: str | os.PathLike, config) -> Path:
  """The directory of ``config``'s study under ``workdir``: ``<name>-<hash>``."""
  return Path(workdir) / f'{config.name}-{config_lib.study_hash(config)}'


def load_config(run_dir: Path):
  """The config of a study directory (its config.json, with keys added since it was written),
  checked like any config.

  Raises:
    RunError: config.json is missing, not JSON, or not a valid config (one line saying which).
  """
  raw = load_config_json(run_dir)
  where = Path(run_dir) / CONFIG_JSON
  if not isinstance(raw, dict):
    raise RunError(f'{where} is not a config (a JSON object of config keys); restore it.')
  try:
    config = config_lib.with_new_keys(raw)
    config_lib.validate(config)
  except ConfigError as e:
    raise RunError(f'{where}: {e} Restore the file, or run the config again.') from None
  except Exception as e:  # Sections of the wrong type: the schema's error types vary.
    raise RunError(f'{where} is not a config ({type(e).__name__}: {e}); restore it.') from None
  return config


def load_config_json(run_dir: Path) -> dict:
  try:
    return json.loads((Path(run_dir) / CONFIG_JSON).read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise RunError(f'{run_dir} has no readable config.json ({e}); is it a run directory?') from e


@dataclasses.dataclass
class StudyDir:
  """An opened study directory: where it is, its store, and its config (None: made in Python)."""

  path: Path
  store: Store
  config: Any = None
  log: Callable[[str], None] = print


@contextlib.contextmanager
def open_study(
  path: str | os.PathLike, *, identity: dict | None = None, config=None, log=print
) -> Iterator[StudyDir]:
  """Opens (creating if needed) the study directory ``path`` for this process to write.

  Args:
    path: the directory.
    identity: what the study computes (``Study.identity()``): written to study.json,
      or compared with it; a directory of another study is refused. None: a
      directory whose studies live in subdirectories (a sweep).
    config: the study's config, written to config.json (None: a study made in Python).
    log: where messages go.

  With several processes (``lth_jax.training.distributed``) the primary one
  locks, repairs and writes; the others read what it repaired and keep their
  own results in memory.
  """
  path = Path(path)
  if not distributed.is_primary():
    distributed.barrier('lth: study directory repaired')
    distributed.check_same_directory(path)
    yield StudyDir(path, Secondary(path), config, log)
    return
  _make_writable(path)
  with Lock(path, log=log):
    if identity is not None:
      _claim(path, identity, has_config=config is not None)
    if config is not None:
      _write_atomically(path / CONFIG_JSON, config_lib.to_json(config) + '\n')
    store = DiskStore(path, log=log)
    for note in repair_lib.repair(store):
      log(f'repaired: {note}')
    distributed.barrier('lth: study directory repaired')
    distributed.check_same_directory(path)
    yield StudyDir(path, store, config, log)


def _make_writable(path: Path) -> None:
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / '.write_test'
    probe.write_text('ok')
    probe.unlink()
  except OSError as e:
    raise RunError(
      f'cannot write to {path}: {e.strerror or e}. Choose a writable --workdir (or run_dir).'
    ) from e


def _claim(path: Path, identity: dict, *, has_config: bool) -> None:
  """Writes study.json, or checks that the directory holds this study's results."""
  identity = json.loads(json.dumps(identity))
  study_json = path / STUDY_JSON
  if study_json.exists():
    try:
      saved = json.loads(study_json.read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise RunError(
        f'{study_json} is not readable ({e}); restore it or use a new directory.'
      ) from e
    if not isinstance(saved, dict):
      raise RunError(f'{study_json} is not a study identity; restore it or use a new directory.')
    changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    if changed:
      raise RunError(
        f'{path} holds another study (it differs in {", ".join(changed)}); use a new directory, '
        'or delete that one to start over.'
      )
    return
  legacy = has_config and (path / CONFIG_JSON).exists()  # Made before config dirs had study.json.
  if any(p.name not in ('lock', '.write_test') for p in path.iterdir()) and not legacy:
    raise RunError(f'{path} is not empty and has no {STUDY_JSON}; use a new or empty directory.')
  _write_atomically(study_json, json.dumps(identity, indent=1) + '\n')


def _write_atomically(path: Path, text: str) -> None:
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_text(text)
  os.replace(tmp, path)

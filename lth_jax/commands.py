"""What the ``lth`` commands do: run, resume, report, ls, export, compare.

``lth_jax.cli`` parses the command line and calls these; a notebook or a
script can call them directly (``run(config, 'runs')`` is ``lth run``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import jax

import lth_jax.analyses  # noqa: F401 (registers the analyses' stages)
from lth_jax import report as report_lib
from lth_jax.analyses import ticket
from lth_jax.errors import RunError
from lth_jax.report import compare as compare_lib
from lth_jax.report import references
from lth_jax.study import config as config_lib
from lth_jax.study import from_config, stages, workdir
from lth_jax.training import distributed

REFERENCE_JSON = 'reference.json'


def run(config, workdir_path, *, log=print, progress: bool | None = None, reference=None) -> Path:
  """Runs, resumes or grows the study of ``config`` under ``workdir_path``: every stage it
  wants (IMP, then its analyses), a summary per stage, and the report. Returns its directory.

  ``progress``: None shows bars only on a terminal; False never. ``reference``: the
  paper's numbers for the report (a recipe's ``PAPER``), kept in the directory.
  """
  config_lib.validate(config)
  primary = distributed.is_primary()
  if not primary:  # Several processes: the primary one writes and speaks.
    log, progress = (lambda message: None), False
  log(f'loading {config.data.name} ...')
  # Before the directory exists: bad data or no network leaves no empty directory behind.
  dataset = from_config.load_data(config)
  for note in dataset.notes:
    log(f'note: {note}')
  path = workdir.run_dir_for(workdir_path, config)
  stages.run_stages(config, path, dataset=dataset, log=log, progress=progress)
  for stage in stages.wanted(config):
    if stage.summary is not None:
      log('\n' + stage.summary(path, config))
  if primary:
    if reference is not None:
      (path / REFERENCE_JSON).write_text(json.dumps(reference, indent=1) + '\n')
    write_report(path, log)
  tables = [
    name for stage in stages.wanted(config) for name in stage.tables if (path / name).exists()
  ]
  log(f'\nresults: {path}/{", ".join(tables)}; report: {path}/report/')
  return path


def recipe_reference(recipe_path: str | None, config) -> dict | None:
  """The paper's numbers (``PAPER``) of the recipe file ``recipe_path`` (``--config``'s
  module) when they are about ``config``'s model and data; None otherwise."""
  file = re.match(r'(.*?\.py)(:[^/\\]*)?$', recipe_path or '')  # 'recipe.py:variant'
  if file is None:
    return None
  spec = importlib.util.spec_from_file_location('lth_recipe', file.group(1))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # ml_collections just loaded the same file: it loads.
  paper = getattr(module, 'PAPER', None)
  if not isinstance(paper, dict) or not references.fits(paper, config.to_dict()):
    return None
  return paper


def write_report(path: Path, log) -> None:
  """Draws a study's report; a failure is a warning, never the cost of the results."""
  try:
    log(f'report: {report_lib.write_report(path)}')
  except Exception as e:  # A figure must never cost the results.
    log(f'warning: the report could not be written ({type(e).__name__}: {e})')


def resume(run_dir: Path, log=print) -> Path:
  """Continues the study of ``run_dir`` with the config saved in its config.json."""
  config = workdir.load_config(run_dir)
  expected = workdir.run_dir_for(run_dir.parent, config)
  if expected.resolve() != run_dir.resolve() and not (run_dir / workdir.STUDY_JSON).exists():
    raise RunError(
      f'{run_dir} does not match its config.json (expected the name {expected.name}); '
      'was it renamed or its config edited?'
    )
  log(f'loading {config.data.name} ...')
  dataset = from_config.load_data(config)
  stages.run_stages(config, run_dir, dataset=dataset, log=log)
  for stage in stages.wanted(config):
    if stage.summary is not None:
      log('\n' + stage.summary(run_dir, config))
  write_report(run_dir, log)
  return run_dir


def list_runs(root: Path) -> str:
  """A line per study directory under ``root``: its name, config name and state (the first
  of its stages that says one: IMP's pruning levels done of those configured, or a sweep's)."""
  lines = [f'{"run":<40} {"config":<24} {"pruned":>9}  state']
  for run_dir in sorted(p for p in root.iterdir() if (p / workdir.CONFIG_JSON).exists()):
    try:
      config = workdir.load_config(run_dir)
      config_lib.validate(config)
      said = [s.status(run_dir, config) for s in stages.wanted(config) if s.status]
    except Exception as e:  # One broken directory must not hide the others.
      said, config = [f'{"":>9}  broken: {" ".join(str(e).split())}'], None
    name = config.name if config is not None else '?'
    lines.append(f'{run_dir.name:<40} {name:<24} {said[0] if said else ""}')
  return '\n'.join(lines)


def export(run_dir: Path, *, level: int, seed: int, arm: str, output: Path, force: bool,
           compact: bool = False, log=print) -> Path:  # fmt: skip
  """``lth export``: the ticket of (seed, level, arm) of ``run_dir`` into ``output``."""
  exported = ticket.export(run_dir, level=level, seed=seed, arm=arm, compact=compact)
  path = ticket.save(exported, output, overwrite=force)
  log(ticket.describe_sizes(exported, path))
  return path


def compare(run_dirs, *, output, labels=None) -> Path:
  return compare_lib.write_comparison(run_dirs, output=output, labels=labels)


def use_compilation_cache(log=None) -> None:
  """Keeps compiled programs across `lth` processes (a rerun or resume starts in seconds).

  $JAX_COMPILATION_CACHE_DIR wins; otherwise ~/.cache/lth_jax/jax ($LTH_CACHE_DIR/jax),
  created private (0700). LTH_COMPILATION_CACHE=0 turns it off. The cache holds programs
  that are loaded and run: a directory that other users can write to is not used (with one
  line saying so).
  """
  log = log or (lambda message: print(message, file=sys.stderr))
  if os.environ.get('LTH_COMPILATION_CACHE', '1') == '0':
    jax.config.update('jax_enable_compilation_cache', False)
    return
  chosen = os.environ.get('JAX_COMPILATION_CACHE_DIR') or jax.config.jax_compilation_cache_dir
  if not chosen:
    root = os.environ.get('LTH_CACHE_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'lth_jax'
    )
    chosen = os.path.join(root, 'jax')
    try:
      os.makedirs(chosen, mode=0o700, exist_ok=True)
    except OSError as e:
      log(f'warning: no compilation cache ({chosen}: {e.strerror or e}); programs compile anew.')
      return
  why = unsafe_directory(chosen)
  if why:
    jax.config.update('jax_enable_compilation_cache', False)
    log(f'warning: not using the compilation cache {chosen}: {why} (the programs in it are run); '
        'make it private (chmod 700) or set LTH_CACHE_DIR to a directory of your own.')  # fmt: skip
    return
  jax.config.update('jax_compilation_cache_dir', chosen)
  # Cache even quick compilations: on a CPU a study's programs take ~0.2-2 s each.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.1)


def unsafe_directory(path: str) -> str | None:
  """Why others could change what is in ``path`` (and its parents up to the home or /), or None."""
  try:
    st = os.stat(path)
  except OSError:
    return None  # Not there yet: JAX creates it (its parents are checked by the same rule).
  if st.st_uid not in (os.getuid(), 0):
    return f'it belongs to user {st.st_uid}'
  if st.st_mode & 0o022:
    return 'others can write to it'
  return None

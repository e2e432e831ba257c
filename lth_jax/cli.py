"""The ``lth`` command: parsing and dispatch (what each command does: ``lth_jax.commands``).

usage:
    lth run --config=experiments/lenet300.py[:variant] --workdir=DIR [--config.key=value ...]
    lth resume RUN_DIR
    lth report RUN_DIR
    lth compare RUN_DIR RUN_DIR ... [--labels=a,b,...] --output=DIR
    lth ls [WORKDIR]
    lth export RUN_DIR --level L [--seed S] [--arm ticket] --output FILE [--compact] [--force]

Run `lth COMMAND --help` for what a command does and its options.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from pathlib import Path

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from lth_jax import commands
from lth_jax.errors import ConfigError, LthError, RunError
from lth_jax.help import COMMANDS, HELP_FLAGS
from lth_jax.study import config as config_lib
from lth_jax.training import distributed

USAGE = __doc__
FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config: path/to/module.py[:variant].')
flags.DEFINE_string('workdir', 'runs', 'Directory holding run directories.')
flags.DEFINE_bool('distributed', False, 'One of several processes: jax.distributed.initialize().')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (implies --distributed).')
flags.DEFINE_integer('num_processes', None, 'How many processes take part.')
flags.DEFINE_integer('process_id', None, 'This process: 0 .. num_processes - 1.')
flags.DEFINE_string('output', None, 'lth compare: the directory to write the comparison into.')
flags.DEFINE_list('labels', None, 'lth compare: one label per run directory, comma-separated.')
# OSError: a disk that fills up or a directory that vanishes, outside a checkpoint.
ERRORS = (LthError, OSError)


def _usage_error(message: str, command: str | None = None):
  """Exits with status 2 after a one-line error and the usage (no traceback)."""
  print(f'lth: error: {message}\n\n{COMMANDS.get(command, USAGE)}', file=sys.stderr)
  sys.exit(2)


def _help_text(args: list[str]) -> str | None:
  """The usage ``args`` (argv less the program) ask for, or None when they ask for none."""
  if args[:1] == ['help']:
    topic = args[1] if len(args) > 1 else None
    if topic is not None and topic not in COMMANDS:
      _usage_error(f'no help for unknown command {topic!r}; commands: {", ".join(COMMANDS)}')
    return COMMANDS.get(topic, USAGE)
  if not any(a in HELP_FLAGS for a in args):
    return None
  return COMMANDS.get(next((a for a in args if a in COMMANDS), None), USAGE)


def export_ticket(args: list[str], log=print) -> Path:
  """``lth export``: its arguments (after the command) to a ticket file; returns its path."""
  parser = argparse.ArgumentParser(prog='lth export', add_help=False)
  parser.error = lambda message: _usage_error(message, 'export')
  parser.add_argument('run_dir', type=Path)
  parser.add_argument('--level', type=int, required=True)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--arm', default='ticket')
  parser.add_argument('--output', type=Path, required=True)
  parser.add_argument('--compact', action='store_true')
  parser.add_argument('--force', action='store_true')
  a = parser.parse_args(args)
  return commands.export(
    a.run_dir, level=a.level, seed=a.seed, arm=a.arm, output=a.output, force=a.force,
    compact=a.compact, log=log,
  )  # fmt: skip


def _main(argv):
  logging.set_verbosity(logging.WARNING)  # Orbax reports every save at INFO.
  if len(argv) < 2:
    _usage_error('no command given')
  command, args = argv[1], argv[2:]
  if command not in COMMANDS:
    _usage_error(f'unknown command {command!r}; commands: {", ".join(COMMANDS)}')
  if command in ('run', 'resume') and (FLAGS.distributed or FLAGS.coordinator_address):
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if command == 'run':
    if FLAGS.config is None:
      _usage_error('lth run needs --config=experiments/<module>.py[:variant]', 'run')
    if args:
      _usage_error(f'lth run takes no arguments besides flags, got {" ".join(args)}', 'run')
    commands.run(_loaded_config(), FLAGS.workdir, reference=_recipe_reference())
  elif command == 'compare':
    if len(args) < 2:
      _usage_error(f'lth compare needs at least 2 RUN_DIRs, got {len(args)}', 'compare')
    if not FLAGS.output:
      _usage_error('lth compare needs --output=DIR (where to write the comparison)', 'compare')
    print(commands.compare(args, output=FLAGS.output, labels=FLAGS.labels))
  elif command == 'resume' and len(args) == 1:
    commands.resume(Path(args[0]))
  elif command == 'report' and len(args) == 1:
    print(commands.report_lib.write_report(Path(args[0])))
  elif command == 'ls' and len(args) <= 1:
    root = Path(args[0] if args else FLAGS.workdir)
    if not root.is_dir():
      raise RunError(f'{root} is not a directory; pass the --workdir of `lth run`.')
    print(commands.list_runs(root))
  else:
    wanted = 'at most one WORKDIR' if command == 'ls' else 'one RUN_DIR'
    _usage_error(f'lth {command} takes {wanted}, got {len(args)} arguments', command)


def _loaded_config() -> ml_collections.ConfigDict:
  """--config, or a ConfigError when its file could not be loaded (absl defers that error)."""
  config = FLAGS.config
  if isinstance(config, ml_collections.ConfigDict):
    return config
  try:
    config.name  # ml_collections' placeholder raises the loading error on any access.
  except Exception as e:
    raise ConfigError(f'cannot load --config: {_last_line(e)}') from None
  raise ConfigError(f'--config gave a {type(config).__name__}, not a ConfigDict.')


def _recipe_reference() -> dict | None:
  """The paper's numbers the recipe file of --config passes on (its ``PAPER``), if they fit."""
  return commands.recipe_reference(config_flags.get_config_filename(FLAGS['config']), FLAGS.config)


def main(argv=None):
  argv = list(sys.argv if argv is None else argv)
  text = _help_text(argv[1:])
  if text is not None:  # Before absl, whose --help shows only its own flags and exits 1.
    print(text)
    return
  commands.use_compilation_cache()
  if argv[1:2] == ['export']:  # Plain arguments: parsed apart from absl's global flags.
    _guarded(lambda: export_ticket(argv[2:]))
    return
  saved_argv, sys.argv = sys.argv, argv  # ml_collections reads --config.KEY from sys.argv.
  try:
    _guarded(lambda: app.run(_main, argv=argv, flags_parser=_parse_flags))
  finally:
    sys.argv = saved_argv


def _guarded(fn) -> None:
  """Runs ``fn``; any error becomes one ``lth: error:`` line and exit status 1. An error of
  ours says what is wrong and the fix; any other names its type, and where its traceback is."""
  try:
    fn()
  except ERRORS as e:
    print(f'lth: error: {_one_line(e)}', file=sys.stderr)
    sys.exit(1)
  except Exception as e:  # Unforeseen: one line, and the full traceback in a file.
    fd, path = tempfile.mkstemp(prefix='lth-error-', suffix='.txt')
    with os.fdopen(fd, 'w') as f:
      traceback.print_exc(file=f)
    print(f'lth: error: {type(e).__name__}: {_one_line(e)} (traceback: {path})', file=sys.stderr)
    sys.exit(1)


def _one_line(error: BaseException) -> str:
  return ' '.join(line.strip() for line in str(error).splitlines() if line.strip())


def _parse_flags(argv):
  for name in [n for n in FLAGS if n.startswith('config.')]:
    delattr(FLAGS, name)  # Overrides of an earlier main() in this process: defined again below.
  for name in ('output', 'labels'):  # Nor may an earlier main()'s compare flags stay set.
    FLAGS[name].unparse()
  try:
    return FLAGS(argv)
  except Exception as e:  # ml_collections raises more than flags.Error for bad overrides.
    bad_config = [a for a in argv[1:] if a.startswith('--config')]
    if not bad_config or isinstance(e, flags.UnrecognizedFlagError):
      _usage_error(_last_line(e))
    print(f'lth: error: {_override_error(bad_config, e)}', file=sys.stderr)
    sys.exit(1)


def _override_error(args: list[str], error: Exception) -> str:
  """One line for a --config or --config.KEY=VALUE flag that could not be applied."""
  for arg in args:
    key = arg.removeprefix('--').split('=', 1)[0]
    if key != 'config' and key.removeprefix('config.') not in config_lib.SCHEMA:
      return f'{key} is not a known key; known keys: {", ".join(config_lib.SCHEMA)}.'
  if str(error).startswith('flag --config='):  # The config file itself failed to load.
    loaded = [a for a in args if a.startswith('--config=')][-1:] or args  # The last one wins.
    return f'cannot load {loaded[0]}: {_last_line(error)}'
  return _last_line(error)


def _last_line(error: Exception) -> str:
  """The last non-empty line of an error: the cause, when the message holds a traceback."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__

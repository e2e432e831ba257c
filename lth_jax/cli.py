"""The ``lth`` command: run, resume, report and list lottery-ticket studies.

usage:
    lth run --config=experiments/lenet300.py[:variant] --workdir=DIR [--config.key=value ...]
    lth resume RUN_DIR
    lth report RUN_DIR
    lth compare RUN_DIR RUN_DIR ... [--labels=a,b,...] --output=DIR
    lth ls [WORKDIR]
    lth export RUN_DIR --level L [--seed S] [--arm ticket] --output FILE

Run `lth COMMAND --help` for what a command does and its options.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from lth_jax.errors import ConfigError, LthError, RunError
from lth_jax.study import config as config_lib
from lth_jax.study import progress as progress_lib
from lth_jax.study import results, workdir

USAGE = __doc__

COMMANDS = {
  'run': """usage: lth run --config=PATH.py[:VARIANT] [--workdir=DIR] [--config.KEY=VALUE ...]

Runs a study: the dense network (level 0), then each pruning level with every arm,
and prints a table per level. Results go to WORKDIR/<name>-<hash>/ (summary.csv,
curves.csv, layers.csv, checkpoints/, report/). Running the same config again
resumes it: finished runs are never recomputed.

options:
  --config=PATH.py[:VARIANT]  experiment config file and its variant,
                              e.g. experiments/lenet300.py:smoke
  --config.KEY=VALUE          override one config key, e.g. --config.num_seeds=3
                              or --config.data.data_dir=/path/to/tfds
  --workdir=DIR               directory holding run directories (default: runs)

several processes (GPU clusters, TPU pods; start the same command in each):
  --distributed               jax.distributed.initialize() finds the cluster itself
  --coordinator_address=HOST:PORT --num_processes=N --process_id=I
                              or name it; process 0 writes, all of them train
""",
  'resume': """usage: lth resume RUN_DIR

Continues an interrupted study from its run directory, with the config saved in
RUN_DIR/config.json. Finished runs are kept; a half-trained run restarts from its
last mid-level checkpoint.
""",
  'report': """usage: lth report RUN_DIR

Writes RUN_DIR/report/index.html and report.md with their figures (accuracy and
early-stopping iteration vs weights remaining, training curves, weights per
layer, initial weights). Works on unfinished runs too. Prints the path of
index.html.
""",
  'compare': """usage: lth compare RUN_DIR RUN_DIR ... [--labels=a,b,...] --output=DIR

Writes one report of two or more run directories into DIR (index.html,
report.md, PNG figures and CSV tables): test accuracy and early-stopping
iteration at early stop against weights remaining, one line per run and arm,
error bars over seeds (sample std), and the table behind each figure.

options:
  --labels=a,b,...  one legend label per RUN_DIR (default: the directory names)
  --output=DIR      where to write the comparison (created if missing)
""",
  'ls': """usage: lth ls [WORKDIR]

Lists the run directories under WORKDIR (default: --workdir, i.e. runs): config
name, levels done/total and state (running, finished, stopped, diverged).
""",
  'export': """usage: lth export RUN_DIR --level L [--seed S] [--arm ticket] --output FILE

Writes the ticket a finished run of RUN_DIR started from (its masks and starting
values θ0 or θk, only the kept weights, with the model, input shape, classes and
provenance) to FILE, an .npz that numpy alone reads; lth_jax.analyses.ticket.load(FILE)
gives back (model, params, masks). Prints its size next to the dense parameters'.
""",
}
HELP_FLAGS = ('-h', '-help', '--help', '--helpshort')


def run_study(config, workdir_path, *, log=print, progress: bool | None = None) -> Path:
  """Runs, resumes or grows the study of ``config`` under ``workdir``; returns its run directory.

  ``progress``: None shows bars only on a terminal; False never.
  """
  from lth_jax.study import from_config, runner, tables
  from lth_jax.training import distributed

  config_lib.validate(config)
  if config.lmc.rewind_steps:  # Linear mode connectivity: IMP per rewind step, then the pairs.
    from lth_jax.analyses import lmc_study

    return lmc_study.run_lmc(config, workdir_path, log=log, progress=progress)
  primary = distributed.is_primary()
  if not primary:  # Several processes: the primary one writes and speaks.
    log, progress = (lambda message: None), False
  log(f'loading {config.data.name} ...')
  # Before the run directory exists: bad data or no network leaves no empty directory behind.
  study = from_config.from_config(config, validated=True)
  run_dir = (
    workdir.prepare(workdir_path, config) if primary else workdir.run_dir_for(workdir_path, config)
  )
  with runner.opened(run_dir, log) as store:
    finished = store.results.finished()
    if finished:
      log(f'resuming {run_dir}: {len(finished)} runs already finished')
    log(f'{config.name}: {imp_describe(study)}; results in {run_dir}')
    runner.run_in(study, store, log=log, progress=progress, run_dir=run_dir)
    rows = store.summary
  log('\n' + tables.level_table(rows))
  for line in divergence_notes(rows, config):
    log(line)
  if primary:
    _write_report(run_dir, log)
  log(f'\nresults: {run_dir}/summary.csv, curves.csv, layers.csv; report: {run_dir}/report/')
  return run_dir


def imp_describe(study) -> str:
  from lth_jax.study import levels

  return levels.describe(study)


def divergence_notes(rows, config) -> list[str]:
  """One line per diverged run, saying what was left out and what was not run."""
  notes = []
  for r in rows:
    if not results.is_diverged(r):
      continue
    level, seed = int(r['level']), r['seed']
    note = (f'diverged: seed {seed} level {level} {r["arm"]} (non-finite loss at step '
            f'{r["diverged_step"]}); left out of the means above')  # fmt: skip
    if r['arm'] == 'ticket' and level < config.num_levels:
      note += (
        f'; levels {level + 1}-{config.num_levels} of seed {seed} were not run (no ticket to prune)'
      )
    notes.append(note + '.')
  return notes


def _write_report(run_dir: Path, log) -> None:
  progress_lib.write_figures(log, 'report', 'lth_jax.report', 'write_report', run_dir)


def resume(run_dir: Path, log=print) -> Path:
  cfg = config_lib.with_new_keys(workdir.load_config_json(run_dir))
  expected = workdir.run_dir_for(run_dir.parent, cfg)
  if expected.resolve() != run_dir.resolve():
    raise RunError(
      f'{run_dir} does not match its config.json (expected the name {expected.name}); '
      'was it renamed or its config edited?'
    )
  return run_study(cfg, run_dir.parent, log=log)


def list_runs(root: Path) -> str:
  """A line per run directory: name, config, pruning levels done of those configured, state."""
  lines = [f'{"run":<40} {"config":<24} {"pruned":>9}  state']
  for run_dir in sorted(p for p in root.iterdir() if (p / 'config.json').exists()):
    cfg = workdir.load_config_json(run_dir)
    if cfg.get('lmc', {}).get('rewind_steps'):  # Its IMP runs are in rewind_<k>/.
      state = f'LMC study (IMP per k in {run_dir.name}/rewind_<k>/)'
      lines.append(f'{run_dir.name:<40} {cfg["name"]:<24} {"":>9}  {state}')
      continue
    rows = results.read_rows(run_dir / results.SUMMARY)
    seeds, arms = cfg['num_seeds'], len(config_lib.arms_of(ml_collections.ConfigDict(cfg)))
    complete = [
      level for level in range(cfg['num_levels'] + 1)
      if sum(int(r['level']) == level for r in rows) >= seeds * (1 if level == 0 else arms)
    ]  # fmt: skip
    done, total = len([level for level in complete if level > 0]), cfg['num_levels']
    finished = len(complete) == total + 1
    lines.append(
      f'{run_dir.name:<40} {cfg["name"]:<24} {done:>4}/{total:<4}  {_state(run_dir, rows, finished)}'
    )
  return '\n'.join(lines)


def _state(run_dir: Path, rows, complete: bool) -> str:
  if workdir.Lock(run_dir).held():
    return 'running'
  if any(results.is_diverged(r) for r in rows):
    return 'diverged' if complete else 'failed (diverged runs)'
  return 'finished' if complete else 'stopped (resume with lth resume)'


FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config: path/to/module.py[:variant].')
flags.DEFINE_string('workdir', 'runs', 'Directory holding run directories.')
flags.DEFINE_bool('distributed', False, 'One of several processes: jax.distributed.initialize().')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (implies --distributed).')
flags.DEFINE_integer(
  'num_processes', None, 'How many processes take part (with --coordinator_address).'
)
flags.DEFINE_integer('process_id', None, 'This process: 0 .. num_processes - 1.')
flags.DEFINE_string('output', None, 'lth compare: the directory to write the comparison into.')
flags.DEFINE_list('labels', None, 'lth compare: one label per run directory, comma-separated.')


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
  """``lth export``: its arguments (after the command) to a ticket file."""
  import argparse

  from lth_jax.analyses import ticket

  parser = argparse.ArgumentParser(prog='lth export', add_help=False)
  parser.error = lambda message: _usage_error(message, 'export')
  parser.add_argument('run_dir', type=Path)
  parser.add_argument('--level', type=int, required=True)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--arm', default='ticket')
  parser.add_argument('--output', type=Path, required=True)
  a = parser.parse_args(args)
  exported = ticket.export(a.run_dir, level=a.level, seed=a.seed, arm=a.arm)
  path = ticket.save(exported, a.output)
  log(ticket.describe_sizes(exported, path))
  return path


def _main(argv):
  logging.set_verbosity(logging.WARNING)  # Orbax reports every save at INFO.
  if len(argv) < 2:
    _usage_error('no command given')
  command, args = argv[1], argv[2:]
  if command not in COMMANDS:
    _usage_error(f'unknown command {command!r}; commands: {", ".join(COMMANDS)}')
  if command in ('run', 'resume') and (FLAGS.distributed or FLAGS.coordinator_address):
    from lth_jax.training import distributed

    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if command == 'run':
    if FLAGS.config is None:
      _usage_error('lth run needs --config=experiments/<module>.py[:variant]', 'run')
    if args:
      _usage_error(f'lth run takes no arguments besides flags, got {" ".join(args)}', 'run')
    run_study(_loaded_config(), FLAGS.workdir)
  elif command == 'resume' and len(args) == 1:
    resume(Path(args[0]))
  elif command == 'report' and len(args) == 1:
    from lth_jax import report
    from lth_jax.analyses import lmc_study

    if lmc_study.is_lmc_dir(Path(args[0])):  # An LMC study: its own figures.
      print(lmc_study.write_figures(Path(args[0])))
    else:
      print(report.write_report(Path(args[0])))
  elif command == 'compare':
    compare(args)
  elif command == 'ls' and len(args) <= 1:
    root = Path(args[0] if args else FLAGS.workdir)
    if not root.is_dir():
      raise RunError(f'{root} is not a directory; pass the --workdir of `lth run`.')
    print(list_runs(root))
  else:
    wanted = 'at most one WORKDIR' if command == 'ls' else 'one RUN_DIR'
    _usage_error(f'lth {command} takes {wanted}, got {len(args)} arguments', command)


def compare(args: list[str]) -> None:
  """lth compare: the run directories in ``args``, --labels and --output from the flags."""
  if len(args) < 2:
    _usage_error(f'lth compare needs at least 2 RUN_DIRs, got {len(args)}', 'compare')
  if not FLAGS.output:
    _usage_error('lth compare needs --output=DIR (where to write the comparison)', 'compare')
  from lth_jax.report import compare as compare_lib

  print(compare_lib.write_comparison(args, output=FLAGS.output, labels=FLAGS.labels))


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


# OSError: a disk that fills up or a directory that vanishes, outside a checkpoint.
ERRORS = (LthError, OSError)


def use_compilation_cache() -> None:
  """Keeps compiled programs across `lth` processes (a rerun or resume starts in seconds).

  $JAX_COMPILATION_CACHE_DIR wins; otherwise ~/.cache/lth_jax/jax ($LTH_CACHE_DIR/jax).
  LTH_COMPILATION_CACHE=0 turns it off.
  """
  import jax

  if os.environ.get('LTH_COMPILATION_CACHE', '1') == '0':
    return
  if os.environ.get('JAX_COMPILATION_CACHE_DIR') or jax.config.jax_compilation_cache_dir:
    return
  root = os.environ.get('LTH_CACHE_DIR') or os.path.join(
    os.path.expanduser('~'), '.cache', 'lth_jax'
  )
  jax.config.update('jax_compilation_cache_dir', os.path.join(root, 'jax'))
  # Cache even quick compilations: on a CPU a study's programs take ~0.2-2 s each.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.1)


def main(argv=None):
  argv = list(sys.argv if argv is None else argv)
  text = _help_text(argv[1:])
  if text is not None:  # Before absl, whose --help shows only its own flags and exits 1.
    print(text)
    return
  use_compilation_cache()
  if argv[1:2] == ['export']:  # Plain arguments: parsed apart from absl's global flags.
    try:
      export_ticket(argv[2:])
    except ERRORS as e:
      print(f'lth: error: {" ".join(str(e).split())}', file=sys.stderr)
      sys.exit(1)
    return
  saved_argv, sys.argv = sys.argv, argv  # ml_collections reads --config.KEY from sys.argv.
  try:
    app.run(_main, argv=argv, flags_parser=_parse_flags)
  except ERRORS as e:
    message = ' '.join(line.strip() for line in str(e).splitlines() if line.strip())
    print(f'lth: error: {message}', file=sys.stderr)  # One line, whatever the error.
    sys.exit(1)
  finally:
    sys.argv = saved_argv


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

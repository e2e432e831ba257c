"""The help texts of the ``lth`` commands (``lth COMMAND --help``)."""

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
  'export': """usage: lth export RUN_DIR --level L [--seed S] [--arm ticket] --output FILE [--compact] [--force]

Writes the ticket a finished run of RUN_DIR started from (its masks and starting
values θ0 or θk, only the kept weights, with the model, input shape, classes and
provenance) to FILE, an .npz that numpy alone reads; lth_jax.analyses.ticket.load(FILE)
gives back (model, params, masks). Prints its size next to the dense parameters'.
With --compact the removed units and channels are gone: the file holds a smaller
model of the same family (its widths in the header) with the same logits.
An existing FILE is kept unless --force; the file is written whole or not at all.
""",
}
HELP_FLAGS = ('-h', '-help', '--help', '--helpshort')

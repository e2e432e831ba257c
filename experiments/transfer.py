"""Do tickets transfer? A ticket found on one task, trained on another (Morcos et al. 2019).

Run (from the repository root; every stage resumes):

    python -m experiments.transfer fmnist_04_to_59 --workdir=runs/transfer
    python -m experiments.transfer smoke --workdir=/tmp/transfer

It runs three stages and prints a table of paired differences:

1. The source study (``get_config(VARIANT)``): IMP with the ticket arm on the
   source task, down to the last of the variant's ``LEVELS``.
2. For each of those levels and each seed, ``lth export`` of the ticket
   (masks and starting values) to ``WORKDIR/tickets/VARIANT/level_L/seed_S.npz``.
3. A target study per level (``get_config(VARIANT + '/target')`` with
   ``ticket`` = those files, one level): on the target task, level 0 is the dense
   network from the target's own θ0 and level 1 trains, from the imported
   ticket's masks (config key ``ticket``), the arms
   ticket (the transferred θ and masks), reinit (the same masks, fresh init) and
   random_prune (a random mask with the same per-layer counts on the
   transferred θ). Seed S of the target trains the ticket of seed S.

The table reports, per level, test accuracy at early stop of each arm and the
paired-by-seed differences ticket − reinit, ticket − random_prune and
ticket − dense in percentage points, mean ± sample std over seeds.

Variants:
  fmnist_04_to_59, fmnist_59_to_04: Fashion-MNIST classes 0–4 → 5–9 (both
    relabelled 0..4) and the reverse; LeNet-300-100, Adam 1.2e-3, batch 60,
    4,000 iterations, evaluation every 200, 3 seeds, tickets at levels 5 and 10
    (32.8% and 10.7% of the weights). ≈ 10–15 min per variant on 2 CPU cores.
  mnist_to_fmnist, fmnist_to_mnist: MNIST ↔ Fashion-MNIST, all 10 classes,
    the paper's LeNet recipe (needs the internet for MNIST).
  cifar10_04_to_59_conv2, cifar10_59_to_04_conv2: CIFAR-10 class halves with the
    Conv-2 recipe (needs the internet, and a GPU to be quick).
  smoke: a few hundred examples and iterations, for tests.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from lth_jax.study.config import default_config

HALVES = {'04': (0, 1, 2, 3, 4), '59': (5, 6, 7, 8, 9)}
# Source levels whose tickets are transferred, per variant.
LEVELS = {
  'fmnist_04_to_59': (5, 10), 'fmnist_59_to_04': (5, 10), 'mnist_to_fmnist': (5, 10),
  'fmnist_to_mnist': (5, 10), 'cifar10_04_to_59_conv2': (5, 11),
  'cifar10_59_to_04_conv2': (5, 11), 'smoke': (1,),
}  # fmt: skip
TARGET_ARMS = 'ticket,reinit,random_prune'


def _tasks(variant: str):
  """((source data name, classes), (target data name, classes)) of a variant."""
  if variant.startswith(('fmnist_0', 'fmnist_5', 'cifar10_')):
    name = 'cifar10' if variant.startswith('cifar10') else 'fashion_mnist'
    src, dst = variant.split('_')[1], variant.split('_')[3]
    return (name, HALVES[src]), (name, HALVES[dst])
  if variant == 'mnist_to_fmnist':
    return ('mnist', ()), ('fashion_mnist', ())
  if variant == 'fmnist_to_mnist':
    return ('fashion_mnist', ()), ('mnist', ())
  return ('fashion_mnist', HALVES['04']), ('fashion_mnist', HALVES['59'])  # smoke


def _recipe(variant: str):
  if variant.endswith('conv2'):
    from experiments import conv

    config = conv.paper('conv2', dropout=0.0)
    config.num_seeds = 3
    return config
  config = default_config()
  config.arms = 'ticket'
  if variant == 'smoke':
    config.data.train_size = 600
    config.data.validation_size = 500  # ~250 of them in the chosen classes.
    config.data.test_size = 1000
    config.train_eval_size = 200
    config.num_steps = 40
    config.eval_every = 20
    config.eval_batch_size = 250
    config.rewind_step = 20  # Tickets from θk, and a control to export, for the tests.
    config.arms = 'ticket,reinit'
  elif variant.startswith('fmnist_'):
    config.num_steps = 4000
    config.eval_every = 200
    config.num_seeds = 3
  else:
    config.num_seeds = 3
  config.checkpoint_seconds = 0.0
  return config


def get_config(variant: str = 'fmnist_04_to_59'):
  """The source study of ``variant``, or with '/target' its target study (set ``ticket``)."""
  name, _, role = variant.partition('/')
  if name not in LEVELS or role not in ('', 'target'):
    raise ValueError(
      f'unknown variant {variant!r} of transfer: use one of {", ".join(LEVELS)}, '
      'optionally followed by /target.'
    )
  config = _recipe(name)
  (src_data, src_classes), (dst_data, dst_classes) = _tasks(name)
  if role == 'target':
    config.name = f'transfer-{name}-target'
    config.data.name, config.data.classes = dst_data, dst_classes
    config.num_levels, config.arms, config.rewind_step = 1, TARGET_ARMS, 0
  else:
    config.name = f'transfer-{name}-source'
    config.data.name, config.data.classes = src_data, src_classes
    config.num_levels = max(LEVELS[name])
  return config


def run_transfer(variant: str, workdir, *, data_dir: str = '', log=print) -> list[dict]:
  """Runs (or resumes) the three stages; returns the table's rows (also in transfer.csv)."""
  from lth_jax.analyses import ticket

  workdir = Path(workdir)
  source = get_config(variant)
  source.data.data_dir = data_dir
  source_dir = _run(source, workdir, log)
  rows = []
  for level in LEVELS[variant]:
    tickets = workdir / 'tickets' / variant / f'level_{level}'
    for seed in range(source.seed, source.seed + source.num_seeds):
      path = tickets / f'seed_{seed}.npz'
      if not path.exists():
        ticket.save(ticket.export(source_dir, level=level, seed=seed), path)
    target = get_config(f'{variant}/target')
    target.data.data_dir = data_dir
    target.name = f'transfer-{variant}-level{level}'
    target.ticket = str(tickets / 'seed_{seed}.npz')
    rows.append(paired_differences(_run(target, workdir, log), level))
  _write(workdir / f'transfer-{variant}.csv', rows)
  log(table(rows))
  return rows


def _run(config, workdir: Path, log) -> Path:
  from lth_jax.study import from_config, runner
  from lth_jax.study import workdir as workdir_lib
  from lth_jax.study.store import DiskStore

  run_dir = workdir_lib.prepare(workdir, config)
  log(f'{config.name}: {run_dir}')
  with workdir_lib.Lock(run_dir):
    store = DiskStore(run_dir, log=log)
    study = from_config.from_config(config)
    runner.run_in(study, store, log=lambda message: None, progress=False, run_dir=run_dir)
  return run_dir


ARMS = ('ticket', 'reinit', 'random_prune', 'dense')


def paired_differences(run_dir: Path, source_level: int) -> dict:
  """Accuracies per arm and ticket − other arm, paired by seed, in percentage points."""
  from lth_jax.study import results

  acc: dict[str, dict[int, float]] = {arm: {} for arm in ARMS}
  remaining = []
  for r in results.read_rows(run_dir / results.SUMMARY):
    seed, level, arm = results.run_key(r)
    arm = 'dense' if level == 0 else arm
    acc[arm][seed] = 100 * float(r['test_accuracy_at_early_stop'])
    if level == 1 and arm == 'ticket':
      remaining.append(float(r['weights_remaining']))
  row = {'source_level': source_level, 'weights_remaining': sum(remaining) / len(remaining)}
  seeds = sorted(acc['ticket'])
  for arm in ARMS:
    row[arm], row[f'{arm}_std'] = results.mean_std(acc[arm][s] for s in seeds)
  for other in ARMS[1:]:
    diffs = [acc['ticket'][s] - acc[other][s] for s in seeds]
    row[f'ticket_minus_{other}'], row[f'ticket_minus_{other}_std'] = results.mean_std(diffs)
  row['seeds'] = len(seeds)
  return row


def table(rows: list[dict]) -> str:
  lines = [
    '| remaining | ticket % | reinit % | random % | dense % | ticket−reinit pp | '
    'ticket−random pp | ticket−dense pp | seeds |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    cells = [f'{r[a]:.2f} ± {r[a + "_std"]:.2f}' for a in ARMS]
    cells += [f'{r[k]:+.2f} ± {r[k + "_std"]:.2f}' for k in _DIFFS]
    lines.append(f'| {r["weights_remaining"]:.1%} | ' + ' | '.join(cells) + f' | {r["seeds"]} |')
  return '\n'.join(lines)


_DIFFS = ('ticket_minus_reinit', 'ticket_minus_random_prune', 'ticket_minus_dense')


def _write(path: Path, rows: list[dict]) -> None:
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('variant', choices=sorted(LEVELS))
  parser.add_argument('--workdir', default='runs/transfer')
  parser.add_argument('--data_dir', default='')
  args = parser.parse_args(argv)
  run_transfer(args.variant, args.workdir, data_dir=args.data_dir)


if __name__ == '__main__':
  main()

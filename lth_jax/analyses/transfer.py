"""Do tickets transfer? A ticket found on one task, trained on another (Morcos et al. 2019).

A stage of the source study (``transfer.levels`` = the source levels whose
tickets travel). For each of those levels and each seed it exports the ticket
(masks and starting values, ``lth_jax.analyses.ticket``) to
``<source dir>/tickets/level_<L>/seed_<S>.npz``, then runs a target study beside
the source (``<workdir>/<source name>-level<L>-<hash>``): on the target task
(``transfer.data``, ``transfer.classes``), level 0 is the dense network from the
target's own θ0 and level 1 trains, from the imported ticket's masks (config key
``ticket``), the arms of ``transfer.arms``: ticket (the transferred θ and
masks), reinit (the same masks, fresh init) and random_prune (a random mask with
the same per-layer counts on the transferred θ). Seed S of the target trains the
ticket of seed S.

``transfer.csv`` in the source directory reports, per level, test accuracy at
early stop of each arm and the paired-by-seed differences ticket − reinit,
ticket − random_prune and ticket − dense in percentage points, mean ± sample std
over seeds.
"""

from __future__ import annotations

from pathlib import Path

from lth_jax.analyses import ticket as ticket_lib
from lth_jax.study import from_config, results, stages, store, workdir

TRANSFER = 'transfer.csv'
ARMS = ('ticket', 'reinit', 'random_prune', 'dense')
DIFFS = ('ticket_minus_reinit', 'ticket_minus_random_prune', 'ticket_minus_dense')
COLUMNS = (
  'source_level', 'weights_remaining',
  *(c for arm in ARMS for c in (arm, f'{arm}_std')),
  *(c for diff in DIFFS for c in (diff, f'{diff}_std')),
  'seeds',
)  # fmt: skip


def ticket_file(source_dir: Path, level: int, seed) -> Path:
  return Path(source_dir) / 'tickets' / f'level_{level}' / f'seed_{seed}.npz'


def target_config(config, source_dir: Path, level: int):
  """The target study of ``level``: the target task, one level, the tickets of the source."""
  c = config.copy_and_resolve_references()
  c.name = f'{config.name}-level{level}'
  c.data.name = config.transfer.data or config.data.name
  c.data.classes = tuple(config.transfer.classes)
  c.num_levels, c.arms, c.rewind_step = 1, config.transfer.arms, 0
  c.ticket = str(ticket_file(source_dir, level, '{seed}'))
  c.transfer.levels = ()
  return c


def _run(ctx: stages.StageContext) -> None:
  config = ctx.config
  seeds = range(config.seed, config.seed + config.num_seeds)
  target_data = None
  rows = []
  for level in config.transfer.levels:
    for seed in seeds:
      path = ticket_file(ctx.path, level, seed)
      if not path.exists():
        ticket_lib.save(ticket_lib.export(ctx.path, level=level, seed=seed), path)
    target = target_config(config, ctx.path, level)
    if target_data is None:
      target_data = from_config.load_data(target)
    target_dir = workdir.run_dir_for(ctx.path.parent, target)
    ctx.log(f'transfer of level {level}: the target study in {target_dir}')
    ctx.run_child(target_dir, target, dataset=target_data)
    rows.append(paired_differences(target_dir, level))
  store.rewrite_csv(ctx.path / TRANSFER, COLUMNS, rows)


def paired_differences(target_dir: Path, source_level: int) -> dict:
  """Accuracies per arm and ticket − other arm, paired by seed, in percentage points."""
  acc: dict[str, dict[int, float]] = {arm: {} for arm in ARMS}
  remaining = []
  for r in results.read_rows(target_dir / results.SUMMARY):
    seed, level, arm = results.run_key(r)
    arm = 'dense' if level == 0 else arm
    acc.setdefault(arm, {})[seed] = 100 * float(r['test_accuracy_at_early_stop'])
    if level == 1 and arm == 'ticket':
      remaining.append(float(r['weights_remaining']))
  row = {'source_level': source_level, 'weights_remaining': sum(remaining) / len(remaining)}
  seeds = sorted(acc['ticket'])
  for arm in ARMS:
    row[arm], row[f'{arm}_std'] = results.mean_std(acc[arm][s] for s in seeds if s in acc[arm])
  for other in ARMS[1:]:
    diffs = [acc['ticket'][s] - acc[other][s] for s in seeds if s in acc[other]]
    row[f'ticket_minus_{other}'], row[f'ticket_minus_{other}_std'] = results.mean_std(diffs)
  row['seeds'] = len(seeds)
  return row


def table(rows) -> str:
  """transfer.csv as a Markdown table."""
  lines = [
    '| remaining | ticket % | reinit % | random % | dense % | ticket−reinit pp | '
    'ticket−random pp | ticket−dense pp | seeds |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    cells = [f'{float(r[a]):.2f} ± {float(r[a + "_std"]):.2f}' for a in ARMS]
    cells += [f'{float(r[k]):+.2f} ± {float(r[k + "_std"]):.2f}' for k in DIFFS]
    lines.append(
      f'| {float(r["weights_remaining"]):.1%} | ' + ' | '.join(cells) + f' | {r["seeds"]} |'
    )
  return '\n'.join(lines)


def _summary(path: Path, config) -> str:
  return table(results.read_rows(path / TRANSFER))


STAGE = stages.register(
  stages.Stage(
    'transfer', wanted=lambda config: bool(config.transfer.levels), run=_run,
    tables={TRANSFER: COLUMNS}, summary=_summary,
  )
)  # fmt: skip

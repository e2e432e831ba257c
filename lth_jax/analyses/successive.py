"""Linear mode connectivity between consecutive levels (Paul et al., ICLR 2023).

For each seed and level L of an IMP study (``lmc.successive=true``): the straight
path between the trained network of level L projected on level L+1's mask
(θ_L ⊙ m_{L+1}, the network IMP prunes) and the trained network of level L+1,
and its test error along α. Paul et al. find the two linearly connected while
IMP still produces matching tickets, and a barrier once it stops.

    successive.csv        seed, level (L+1), weights_remaining (of L+1), error_a
                          (θ_L ⊙ m_{L+1}), error_b (θ_{L+1}), max_path_error, instability
    successive_path.csv   seed, level, alpha, test_loss, test_error

Networks are the stored trained ones (the final iteration, not the early stop).
Batch-norm statistics are re-estimated along the path as for the LMC pairs
(``lmc.bn_recompute``). A (seed, level) already in successive.csv is never
measured again.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from lth_jax.analyses import lmc
from lth_jax.core import connectivity
from lth_jax.core import masks as masks_lib
from lth_jax.report import figures
from lth_jax.report.analysis import Run
from lth_jax.report.document import Doc, pct_label, pm
from lth_jax.study import artifacts, results, stages, starts
from lth_jax.study import store as store_lib

SUCCESSIVE = 'successive.csv'
SUCCESSIVE_PATH = 'successive_path.csv'
COLUMNS = {
  SUCCESSIVE: (
    'seed', 'level', 'weights_remaining', 'error_a', 'error_b', 'max_path_error', 'instability',
  ),
  SUCCESSIVE_PATH: ('seed', 'level', 'alpha', 'test_loss', 'test_error'),
}  # fmt: skip


def endpoints(study, store, seed: int, level: int):
  """(θ_{level-1} ⊙ m_level, θ_level): the trained states at both ends, on level's masks."""
  like = study.state_like()
  trained_like = starts.trained_like(study)
  masks = store.trees.load(artifacts.masks(seed, level), like=like.masks)
  ends = []
  for source in (level - 1, level):
    trained = store.trees.load(artifacts.trained(seed, source, 'ticket'), like=trained_like)
    params = masks_lib.apply(trained['params'], masks)
    ends.append(like._replace(params=params, masks=masks, model_state=trained['model_state']))
  return ends


def measure(study, store, seed: int, level: int, *, num_alphas: int, bn_recompute: bool):
  """The row and the path rows of (seed, level): level - 1 projected to level's mask, to level."""
  state_a, state_b = endpoints(study, store, seed, level)
  grid, losses, errors = lmc.path(
    study, state_a, state_b, num_alphas=num_alphas, bn_recompute=bn_recompute, seed=seed
  )
  key = {'seed': seed, 'level': level}
  row = {
    **key, 'weights_remaining': study.plan.fraction_remaining(state_b.masks),
    'error_a': float(errors[0]), 'error_b': float(errors[-1]),
    'max_path_error': float(errors.max()), 'instability': float(connectivity.instability(errors)),
  }  # fmt: skip
  path = [
    {**key, 'alpha': float(a), 'test_loss': float(lo), 'test_error': float(e)}
    for a, lo, e in zip(grid, losses, errors, strict=True)
  ]
  return row, path


def _run(ctx: stages.StageContext) -> None:
  settings, study, path = ctx.config.lmc, ctx.study, ctx.path
  done = {(int(r['seed']), int(r['level'])) for r in results.read_rows(path / SUCCESSIVE)}
  kept = [
    r
    for r in results.read_rows(path / SUCCESSIVE_PATH)
    if (int(r['seed']), int(r['level'])) in done
  ]
  store_lib.rewrite_csv(path / SUCCESSIVE_PATH, COLUMNS[SUCCESSIVE_PATH], kept)  # A kill's rest.
  for level in range(1, study.num_levels + 1):
    for seed in study.seeds:
      names = [artifacts.trained(seed, source, 'ticket') for source in (level - 1, level)]
      if (seed, level) in done or not all(ctx.store.trees.has(n) for n in names):
        continue
      row, rows = measure(
        study, ctx.store, seed, level, num_alphas=settings.num_alphas,
        bn_recompute=settings.bn_recompute,
      )  # fmt: skip
      store_lib.append_csv(path / SUCCESSIVE_PATH, COLUMNS[SUCCESSIVE_PATH], rows)
      store_lib.append_csv(path / SUCCESSIVE, COLUMNS[SUCCESSIVE], [row])  # Last: finished.
      ctx.log(
        f'levels {level - 1}->{level} seed {seed}: errors {row["error_a"]:.4f} / '
        f'{row["error_b"]:.4f}, instability {row["instability"]:.4f}'
      )


def table(rows) -> str:
  """Mean ± sample std over seeds per level: the ends' errors and the instability."""
  groups: dict[int, list] = {}
  for r in rows:
    groups.setdefault(int(r['level']), []).append(r)
  lines = [
    f'{"levels":>7} {"weights %":>9} {"seeds":>5} {"error L-1 %":>12} {"error L %":>10} {"instability %":>14}'
  ]
  for level, group in sorted(groups.items()):
    cells = [
      results.mean_std(float(r[c]) for r in group) for c in ('error_a', 'error_b', 'instability')
    ]
    shown = [f'{100 * m:.2f}' + (f'±{100 * s:.2f}' if len(group) > 1 else '') for m, s in cells]
    lines.append(
      f'{f"{level - 1}->{level}":>7} {100 * float(group[0]["weights_remaining"]):>9.1f} '
      f'{len(group):>5} {shown[0]:>12} {shown[1]:>10} {shown[2]:>14}'
    )
  return '\n'.join(lines)


def _summary(path: Path, config) -> str:
  return table(results.read_rows(path / SUCCESSIVE))


def section_successive(run: Run, doc: Doc) -> None:
  """Instability between consecutive levels against weights remaining, and a few paths."""
  doc.heading('Consecutive levels: linear mode connectivity')
  rows = results.read_rows(run.run_dir / SUCCESSIVE)
  if not rows:
    doc.note(f'{SUCCESSIVE} is missing or empty: no pair of levels measured yet.')
    return
  by_level: dict[int, list] = defaultdict(list)
  for r in rows:
    by_level[int(r['level'])].append(r)
  levels = sorted(by_level)
  shares = [float(by_level[level][0]['weights_remaining']) for level in levels]
  fig, axes = figures.new_figure(ncols=2, size=(11, 4))
  left, right = axes[0]
  for column, label in (('instability', 'instability'), ('error_a', 'error of L-1 ⊙ m_L'),
                        ('error_b', 'error of L (retrained)')):  # fmt: skip
    stats = [results.mean_std(100 * float(r[column]) for r in by_level[level]) for level in levels]
    left.errorbar(shares, [m for m, _ in stats], yerr=[s for _, s in stats], marker='o', capsize=3,
                  label=label)  # fmt: skip
  figures.remaining_axis(left, shares)
  left.set_ylabel('test error / instability (%)')
  left.legend(fontsize=8)
  paths: dict[int, dict[float, list]] = defaultdict(lambda: defaultdict(list))
  for r in results.read_rows(run.run_dir / SUCCESSIVE_PATH):
    paths[int(r['level'])][float(r['alpha'])].append(100 * float(r['test_error']))
  shown = levels[:: max(1, len(levels) // 5)]
  for level in shown:
    alphas = sorted(paths[level])
    means = [results.mean_std(paths[level][a])[0] for a in alphas]
    right.plot(
      alphas,
      means,
      marker='.',
      label=f'{level - 1}→{level} ({pct_label(shares[levels.index(level)])}%)',
    )
  right.set(
    xlabel="interpolation α (0: level L-1 on L's mask, 1: level L)", ylabel='test error (%)'
  )
  right.legend(fontsize=8)
  doc.image(
    figures.save(fig, run.out_dir / 'successive.png'),
    'Figure. Left: the instability between consecutive levels (the highest error on the path '
    "above the mean of its ends) and the ends' errors, mean ± std over seeds. Right: the "
    'error along the path for a few pairs of levels (mean over seeds).',
  )
  doc.table(
    ['Levels', 'Remaining (%)', 'Seeds', 'Instability (pp)'],
    [
      [
        f'{level - 1}→{level}',
        pct_label(shares[i]),
        len(by_level[level]),
        pm(
          results.mean_std(float(r['instability']) for r in by_level[level]),
          len(by_level[level]),
          100,
        ),
      ]
      for i, level in enumerate(levels)
    ],  # fmt: skip
    f'Table. Instability between consecutive levels (every point in {SUCCESSIVE}).',
  )


STAGE = stages.register(
  stages.Stage(
    'lmc successive', wanted=lambda config: bool(config.lmc.successive), run=_run,
    tables=COLUMNS, summary=_summary, sections=(('consecutive levels', section_successive),),
  )
)  # fmt: skip

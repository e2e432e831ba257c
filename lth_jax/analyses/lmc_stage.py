"""Linear mode connectivity as stages: the pairs of a study, and a sweep over the rewind step.

* ``lmc`` (``lmc.pairs=true``): after IMP, at each level of ``lmc.levels`` and for
  each seed, two copies of the level's ticket at k trained to T with different
  SGD noise and the error along the path between them (``lth_jax.analyses.lmc``),
  into ``instability.csv`` and ``interpolation.csv`` beside summary.csv.
* ``lmc sweep`` (``lmc.rewind_steps`` = (k, ...)): for each k a study of its own in
  ``rewind_<k>/`` (IMP with rewinding to k, then its pairs), and every k's rows
  gathered into the sweep directory's tables::

    <workdir>/<name>-<hash>/          the sweep (its config.json, lock)
      instability.csv, interpolation.csv    every k's rows (k, level, seed order)
      report/                               its report (sections below)
      rewind_<k>/                           a study directory: IMP with rewinding to k,
                                            and its pairs beside its summary.csv

Everything resumes: IMP's runs and the pairs already measured are kept.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lth_jax.analyses import lmc, lmc_sections
from lth_jax.study import from_config, results, stages
from lth_jax.study.lock import Lock


def rewind_config(config, k: int):
  """The config of the study of rewind step ``k`` of a sweep: IMP with rewinding to k, then
  its pairs at the sweep's levels."""
  c = config.copy_and_resolve_references()
  c.rewind_step = int(k)
  c.lmc.rewind_steps = ()
  c.lmc.pairs = True
  return c


def rewind_dir(sweep_dir: Path, k: int) -> Path:
  return Path(sweep_dir) / f'rewind_{int(k)}'


def _pairs(ctx: stages.StageContext) -> None:
  settings = ctx.config.lmc
  lmc.run_pairs(
    ctx.study, ctx.store, ctx.path, levels=tuple(settings.levels), num_alphas=settings.num_alphas,
    bn_recompute=settings.bn_recompute, log=ctx.log,
  )  # fmt: skip


def _sweep(ctx: stages.StageContext) -> None:
  config = ctx.config
  dataset = ctx.dataset if ctx.dataset is not None else from_config.load_data(config)
  steps = tuple(config.lmc.rewind_steps)
  base = from_config.from_config(rewind_config(config, steps[0]), dataset, validated=True)
  for k in steps:
    ctx.log(f'rewinding to k={k}: IMP and its pairs in {rewind_dir(ctx.path, k)}')
    # The studies differ in the rewind step alone: compiled programs are shared.
    study = dataclasses.replace(base, rewind_step=int(k))
    ctx.run_child(rewind_dir(ctx.path, k), rewind_config(config, k), study=study, dataset=dataset)
  gather(ctx.path, steps)


def gather(sweep_dir: Path, rewind_steps) -> None:
  """Writes the sweep's tables: the rows of every ``rewind_<k>/``, in (k, level, seed) order."""
  for table in (lmc.INSTABILITY, lmc.INTERPOLATION):
    rows = []
    for k in rewind_steps:
      rows += results.read_rows(rewind_dir(sweep_dir, k) / table)
    rows.sort(key=lambda r: (int(r['rewind_step']), int(r['level']), int(r['seed'])))
    lmc.write(sweep_dir, table, rows)


def instability_table(rows) -> str:
  """Mean ± sample std over seeds of the instability and the errors, per (k, level)."""
  groups: dict[tuple[int, int], list] = {}
  for r in rows:
    groups.setdefault((int(r['rewind_step']), int(r['level'])), []).append(r)
  lines = [
    f'{"k":>6} {"level":>5} {"weights %":>9} {"seeds":>5} {"error A/B %":>14} '
    f'{"max path error %":>17} {"instability %":>15}'
  ]
  for (k, level), group in sorted(groups.items()):
    ends = [float(r[c]) for r in group for c in ('error_a', 'error_b')]
    cells = [
      results.mean_std(ends),
      results.mean_std(float(r['max_path_error']) for r in group),
      results.mean_std(float(r['instability']) for r in group),
    ]
    shown = [f'{100 * m:.2f}' + (f'±{100 * s:.2f}' if len(group) > 1 else '') for m, s in cells]
    remaining = 100 * float(group[0]['weights_remaining'])
    lines.append(
      f'{k:>6} {level:>5} {remaining:>9.1f} {len(group):>5} {shown[0]:>14} {shown[1]:>17} '
      f'{shown[2]:>15}'
    )
  return '\n'.join(lines)


def _summary(path: Path, config) -> str:
  return instability_table(results.read_rows(path / lmc.INSTABILITY))


def _sweep_status(path: Path, config) -> str:
  measured = {int(r['rewind_step']) for r in results.read_rows(path / lmc.INSTABILITY)}
  done = len(measured & {int(k) for k in config.lmc.rewind_steps})
  state = 'running' if Lock(path).held() else f'{done}/{len(config.lmc.rewind_steps)} rewind steps'
  return f'{"":>9}  LMC study: {state} (IMP per k in {path.name}/rewind_<k>/)'


PAIRS = stages.register(
  stages.Stage(
    'lmc', wanted=lambda config: bool(config.lmc.pairs), run=_pairs, tables=lmc.COLUMNS,
    summary=_summary, sections=lmc_sections.SECTIONS,
  )
)  # fmt: skip
SWEEP = stages.register(
  stages.Stage(
    'lmc sweep', wanted=lambda config: bool(config.lmc.rewind_steps), run=_sweep, after=(),
    needs_study=False, tables=lmc.COLUMNS, summary=_summary, status=_sweep_status,
    sections=lmc_sections.SECTIONS,
  )
)  # fmt: skip

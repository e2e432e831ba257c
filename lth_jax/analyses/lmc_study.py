"""A linear mode connectivity study from a config: IMP with rewinding to each k, then the pairs.

``lth run --config=experiments/lmc.py:lenet300`` lands here (a config whose
``lmc.rewind_steps`` is not empty). For each k of ``lmc.rewind_steps`` the
study runs IMP with ``rewind_step = k`` (the ordinary level loop, resumable)
and then, at each level of ``lmc.levels`` and for each seed, the pair of
copies trained from the level's ticket at k and the path between them
(``lth_jax.analyses.lmc``). On disk::

    <workdir>/<name>-<hash>/          the LMC study (its config.json, lock)
      instability.csv                 every k's rows, gathered (seed, level, rewind_step order)
      interpolation.csv
      report/                         figures (``lth_jax.analyses.lmc_figures``)
      rewind_<k>/                     an ordinary run directory of IMP with rewinding to k:
        config.json, summary.csv, curves.csv, layers.csv, checkpoints/ (θ0, θk, masks, ...)
        instability.csv, interpolation.csv    the pairs of this k, beside its summary.csv

Everything resumes: IMP's runs and the pairs already measured are kept.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from lth_jax.analyses import lmc
from lth_jax.study import config as config_lib
from lth_jax.study import from_config, results, runner, workdir
from lth_jax.study import progress as progress_lib


def rewind_config(config, k: int):
  """The config of IMP with rewinding to ``k``: ``config`` with ``rewind_step = k``, no LMC keys."""
  c = config.copy_and_resolve_references()
  c.rewind_step = int(k)
  c.lmc = config_lib.lmc_defaults()
  return c


def rewind_dir(lmc_dir: Path, k: int) -> Path:
  return Path(lmc_dir) / f'rewind_{int(k)}'


def run_lmc(config, workdir_path: str | os.PathLike, *, log=print, progress=None) -> Path:
  """Runs (or resumes) the LMC study of ``config`` under ``workdir_path``; returns its directory."""
  config_lib.validate(config)
  lmc_dir = workdir.prepare(workdir_path, config)
  settings = config.lmc
  with workdir.Lock(lmc_dir, log=log):
    log(f'loading {config.data.name} ...')
    dataset = from_config.load_data(config)
    base = from_config.from_config(rewind_config(config, 0), dataset, validated=True)
    for k in settings.rewind_steps:
      k_config = rewind_config(config, k)
      k_dir = rewind_dir(lmc_dir, k)
      # The configs differ in rewind_step alone; compiled programs are shared (study.programs).
      study = dataclasses.replace(base, rewind_step=int(k))
      log(f'rewinding to k={k}: IMP in {k_dir}')
      store = runner.run_imp(study, run_dir=k_dir, log=log, progress=progress)
      (k_dir / 'config.json').write_text(config_lib.to_json(k_config) + '\n')  # For lth report.
      lmc.run_pairs(
        study, store, k_dir, levels=tuple(settings.levels),
        num_alphas=settings.num_alphas, bn_recompute=settings.bn_recompute, log=log,
      )  # fmt: skip
    gather(lmc_dir, settings.rewind_steps)
  progress_lib.write_figures(
    log, 'figures', 'lth_jax.analyses.lmc_figures', 'write_figures', lmc_dir
  )
  log('\n' + instability_table(results.read_rows(lmc_dir / lmc.INSTABILITY)))
  log(f'\nresults: {lmc_dir}/instability.csv, interpolation.csv; report: {lmc_dir}/report/')
  return lmc_dir


def gather(lmc_dir: Path, rewind_steps) -> None:
  """Writes the LMC directory's tables: the rows of every ``rewind_<k>/``, in (k, level, seed) order."""
  for table in (lmc.INSTABILITY, lmc.INTERPOLATION):
    rows = []
    for k in rewind_steps:
      rows += results.read_rows(rewind_dir(lmc_dir, k) / table)
    rows.sort(key=lambda r: (int(r['rewind_step']), int(r['level']), int(r['seed'])))
    lmc.write(lmc_dir, table, rows)


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
    e, e_sd = results.mean_std(ends)
    p, p_sd = results.mean_std(float(r['max_path_error']) for r in group)
    i, i_sd = results.mean_std(float(r['instability']) for r in group)
    remaining = 100 * float(group[0]['weights_remaining'])
    lines.append(
      f'{k:>6} {level:>5} {remaining:>9.1f} {len(group):>5} {100 * e:>7.2f}±{100 * e_sd:<5.2f} '
      f'{100 * p:>10.2f}±{100 * p_sd:<5.2f} {100 * i:>8.2f}±{100 * i_sd:<5.2f}'
    )
  return '\n'.join(lines)


def is_lmc_dir(run_dir: Path) -> bool:
  """Whether ``run_dir`` holds an LMC study (its config names rewind steps)."""
  config = workdir.load_config_json(run_dir)
  return bool(config.get('lmc', {}).get('rewind_steps'))


def write_figures(lmc_dir: Path) -> Path:
  """(Re)writes the figures of an LMC study from its tables; returns the report directory."""
  from lth_jax.analyses import lmc_figures

  gather(lmc_dir, workdir.load_config_json(lmc_dir)['lmc']['rewind_steps'])
  return lmc_figures.write_figures(lmc_dir)

"""The report's early-bird section: when each level's masks settle, and the arm that starts there.

Drawn from ``early_bird.csv`` (``lth_jax.study.early_bird``); a study without the
``early_bird`` arm has no such table and gets no section.
"""

from __future__ import annotations

from collections import defaultdict

from lth_jax.report import figures
from lth_jax.report.analysis import Run, config_value
from lth_jax.report.document import Doc, pct_label, pm
from lth_jax.study import results

ARMS = ('ticket', 'early_bird', 'random_prune')


def _by_level(rows) -> dict[int, dict[int, list[dict]]]:
  """{level: {seed: rows in step order}}."""
  out: dict[int, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
  for r in rows:
    out[int(r['level'])][int(r['seed'])].append(r)
  for seeds in out.values():
    for seed_rows in seeds.values():
      seed_rows.sort(key=lambda r: int(r['step']))
  return out


def found_steps(seed_rows: dict[int, list[dict]]) -> dict[int, int | None]:
  """{seed: the early-bird step, None when the masks never settled}."""
  return {
    seed: next((int(r['step']) for r in rows if r['early_bird'] == '1'), None)
    for seed, rows in seed_rows.items()
  }


def section_early_bird(run: Run, doc: Doc) -> None:
  rows = results.read_rows(run.run_dir / results.EARLY_BIRD)
  if not rows:
    return
  doc.heading('Early-bird tickets: when the masks settle')
  levels = _by_level(rows)
  num_steps = int(config_value(run.config, 'num_steps', 0)) or None
  epsilon = float(config_value(run.config, 'early_bird.epsilon', 0.1))
  fig, axes = figures.new_figure(size=(7.5, 4.2))
  ax = axes[0][0]
  for level, seed_rows in sorted(levels.items()):
    for i, (seed, series) in enumerate(sorted(seed_rows.items())):
      points = [
        (int(r['step']), float(r['window_distance'])) for r in series if r['window_distance']
      ]
      if points:
        steps, spreads = zip(*points, strict=True)
        label = f'level {level}' if i == 0 else None
        ax.plot(steps, spreads, color=f'C{level % 10}', alpha=0.8, lw=1, label=label)
  ax.axhline(epsilon, color='k', ls='--', lw=1, label=f'ε = {epsilon:g}')
  ax.set(xlabel='iteration', ylabel='largest distance in the window', yscale='log')
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  doc.image(
    figures.save(fig, run.out_dir / 'early_bird.png'),
    "Figure. While each level's ticket trains: the largest normalised Hamming distance between "
    'the newest mask the next pruning would give and the masks of the previous evaluations in '
    'the window (one line per seed). The early-bird step is the first below ε.',
  )
  stats = {(s.level, s.arm): s for s in run.stats}
  table = []
  for level, seed_rows in sorted(levels.items()):
    steps = [s for s in found_steps(seed_rows).values() if s is not None]
    mean_std = results.mean_std(steps) if steps else (float('nan'),) * 2
    share = '—'
    if steps and num_steps:
      share = pm(results.mean_std([s / num_steps for s in steps]), len(steps), 100, 0)
    remaining = pct_label(run.remaining[level + 1]) if level + 1 in run.remaining else '—'
    found = f'{len(steps)}/{len(seed_rows)}'
    cells = [f'{level}→{level + 1}', remaining, found, pm(mean_std, len(steps), 1, 0), share]
    for arm in ARMS:
      s = stats.get((level + 1, arm))
      cells.append(pm(s.test_acc, s.n, 100) if s else '—')
    table.append(cells)
  doc.table(
    [
      'Levels',
      'Remaining at next (%)',
      'Seeds settled',
      'Early-bird step',
      '% of T',
      *(f'{figures.arm_label(a)} acc. (%)' for a in ARMS),
    ],  # fmt: skip
    table,
    'Table. The early-bird step of each level (seeds whose masks settled; the others start '
    "the next level's early_bird arm from their final masks, the ticket's) and, at the next "
    'level, test accuracy at early stop of the ticket, the early-bird ticket and the random '
    'control, mean ± std over seeds.',
  )

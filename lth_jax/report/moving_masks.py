"""The report's section on masks that move (SET, RigL): how much each update changed, and how
close the mask stays to the ticket's.

Drawn from ``dst.csv`` (``lth_jax.study.moving``); a study without a moving arm has no
such table and gets no section.
"""

from __future__ import annotations

from collections import defaultdict

from lth_jax.report import figures
from lth_jax.report.analysis import Run
from lth_jax.report.document import Doc, pct_label, pm
from lth_jax.study import results


def section_moving_masks(run: Run, doc: Doc) -> None:
  rows = results.read_rows(run.run_dir / results.DST)
  if not rows:
    return
  doc.heading('Masks that move: SET and RigL')
  series: dict[tuple[str, int], dict[int, list]] = defaultdict(lambda: defaultdict(list))
  for r in rows:
    series[(r['arm'], int(r['level']))][int(r['step'])].append(r)
  fig, axes = figures.new_figure(ncols=2, size=(11, 4))
  left, right = axes[0]
  arms = sorted({arm for arm, _ in series})
  deepest = max(level for _, level in series)
  for (arm, level), by_step in sorted(series.items()):
    steps = sorted(by_step)
    for ax, column in ((left, 'changed'), (right, 'overlap_with_ticket')):
      means = [results.mean_std(100 * float(r[column]) for r in by_step[s])[0] for s in steps]
      ax.plot(steps, means, color=figures.arm_color(arm, arms), alpha=0.4 + 0.6 * level / deepest,
              label=f'{arm} L{level}')  # fmt: skip
  left.set(xlabel='iteration', ylabel='mask changed by the update (% of kept)')
  right.set(xlabel='iteration', ylabel="overlap with the ticket's mask (% of the ticket's)")
  for ax in (left, right):
    ax.grid(True, alpha=0.3)
  right.legend(fontsize=7, ncol=2)
  doc.image(
    figures.save(fig, run.out_dir / 'moving_masks.png'),
    "Figure. At each update, mean over seeds: the share of a run's kept weights that the update "
    "replaced, and the share of the level's ticket mask that the run's mask holds.",
  )
  last = {}
  for (arm, level), by_step in series.items():
    last[(arm, level)] = by_step[max(by_step)]
  doc.table(
    [
      'Arm',
      'Level',
      'Remaining (%)',
      'Updates',
      'Changed in all updates (%)',
      'Final overlap with the ticket (%)',
    ],  # fmt: skip
    [
      [
        arm,
        level,
        pct_label(run.remaining[level]) if level in run.remaining else '—',
        len(series[(arm, level)]),
        pm(results.mean_std(_total_changed(rows, arm, level)), len(last[(arm, level)]), 100),
        pm(
          results.mean_std(float(r['overlap_with_ticket']) for r in last[(arm, level)]),
          len(last[(arm, level)]),
          100,
        ),
      ]
      for arm, level in sorted(series, key=lambda k: (k[1], k[0]))
    ],  # fmt: skip
    'Table. Per arm and level, mean ± std over seeds: the updates made, the summed share of '
    "kept weights they replaced, and the final mask's overlap with the ticket's.",
  )


def _total_changed(rows, arm: str, level: int) -> list[float]:
  per_seed: dict[int, float] = defaultdict(float)
  for r in rows:
    if r['arm'] == arm and int(r['level']) == level:
      per_seed[int(r['seed'])] += float(r['changed'])
  return list(per_seed.values())

"""Plain-text tables of a study's results, for the terminal."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

from lth_jax.study.results import arm_rank, is_diverged, mean_std


def level_table(rows: Iterable[Mapping]) -> str:
  """Per level and arm: weights remaining, early-stop iteration, test accuracy there.

  Means over seeds (± sample standard deviation, ``results.mean_std``, shown from two seeds
  on); diverged runs are left out of the means and counted in their own column.
  """
  groups: dict[tuple[int, str], list[Mapping]] = defaultdict(list)
  for r in rows:
    groups[int(r['level']), r['arm']].append(r)
  lines = [
    f'{"level":>5}  {"remaining":>9}  {"arm":<12} {"early-stop it":>15}  '
    f'{"test acc @ early stop":>22}  {"seeds":>5}  {"diverged":>8}'
  ]
  order = lambda item: (item[0][0], arm_rank(item[0][1]), item[0][1])
  for (level, arm), members in sorted(groups.items(), key=order):
    ok = [r for r in members if not is_diverged(r)]
    stop = mean_std([float(r['early_stop_step'] or 'nan') for r in ok])  # '': trains no weight.
    acc = mean_std([100 * float(r['test_accuracy_at_early_stop']) for r in ok])
    remaining = 100 * float(members[0]['weights_remaining'])
    spread = len(ok) > 1  # One value has no sample standard deviation: no ± then.
    stop_text = (
      '—' if math.isnan(stop[0]) else f'{stop[0]:.0f}' + (f' ± {stop[1]:.0f}' if spread else '')
    )
    acc_text = f'{acc[0]:.2f}' + (f' ± {acc[1]:.2f}' if spread else '') + ' %'
    lines.append(
      f'{level:>5}  {remaining:>8.1f}%  {arm:<12} {stop_text:>15}  {acc_text:>22}  {len(ok):>5}  '
      f'{len(members) - len(ok):>8}'
    )
  return '\n'.join(lines)

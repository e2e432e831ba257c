"""lth_jax extended from outside the package: a new arm, a new stage.

Each is what a user writes in their own module: an arm is one function and one
line, a stage one function and one line; nothing in lth_jax changes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_data import tiny_study

import lth_jax
from lth_jax import arms, commands
from lth_jax.core.rewind import rewind
from lth_jax.study import artifacts, results, stages, store
from lth_jax.study.definition import control_key


# ---------------------------------------------------------------------------- a new arm
def flipped(context, state_k, masks, key):
  """The ticket with the sign of every weight flipped."""
  return rewind(state_k._replace(params=jax.tree.map(jnp.negative, state_k.params)), masks)


arms.register(arms.Arm('flipped_ticket', 'ticket with its signs flipped', flipped))
# ---------------------------------------------------------------------------- (4 lines)


def test_a_new_arm_runs_in_a_study_vmapped_and_sequential():
  summaries = {}
  for parallel in ('false', 'true'):
    study = tiny_study(arms='ticket,flipped_ticket', num_levels=1, parallel=parallel)
    store = lth_jax.run_imp(study, log=None, progress=False)
    summaries[parallel] = store.summary
    assert [(r['level'], r['arm']) for r in store.summary] == [
      (0, 'ticket'), (1, 'ticket'), (1, 'flipped_ticket'),
    ]  # fmt: skip
    state_k = store.load(artifacts.rewind(0))
    masks = store.load(artifacts.masks(0, 1))
    start = study.start('flipped_ticket', state_k, masks, control_key(0, 1, 'flipped_ticket'))
    ticket = study.start('ticket', state_k, masks, control_key(0, 1, 'ticket'))
    for a, b in zip(jax.tree.leaves(start.params), jax.tree.leaves(ticket.params), strict=True):
      np.testing.assert_array_equal(np.asarray(a), -np.asarray(b))
  assert arms.label('flipped_ticket') == 'ticket with its signs flipped'
  for a, b in zip(summaries['false'], summaries['true'], strict=True):
    assert a['arm'] == b['arm']
    assert a['test_accuracy_at_early_stop'] == pytest.approx(
      b['test_accuracy_at_early_stop'], abs=0.02
    )


# ---------------------------------------------------------------------------- a new stage
def count_kept(ctx):
  """kept.csv: the weights each level's ticket keeps, from its stored masks."""
  done = {(int(r['seed']), int(r['level'])) for r in results.read_rows(ctx.path / 'kept.csv')}
  rows = []
  for seed, level, arm in sorted(map(results.run_key, ctx.store.summary)):
    if arm == 'ticket' and (seed, level) not in done:
      counts = ctx.study.plan.counts(ctx.store.trees.load(artifacts.masks(seed, level)))
      rows.append({'seed': seed, 'level': level, 'kept': sum(k for k, _ in counts.values())})
  store.append_csv(ctx.path / 'kept.csv', ('seed', 'level', 'kept'), rows)


KEPT = stages.Stage(
  'kept', wanted=lambda config: config.name == 'kept-smoke', run=count_kept,
  tables={'kept.csv': ('seed', 'level', 'kept')},
)  # fmt: skip
# ---------------------------------------------------------------------------- (15 lines)


def test_a_new_stage_runs_after_imp_and_skips_what_is_done(fashion_mnist_dir, tmp_path):
  from experiments import lenet300

  config = lenet300.get_config('smoke')
  config.name, config.num_levels, config.arms = 'kept-smoke', 1, 'ticket'
  config.data.data_dir, config.parallel = fashion_mnist_dir, 'false'
  stages.register(KEPT)
  try:
    path = commands.run(config, tmp_path, log=lambda m: None, progress=False)
    rows = results.read_rows(path / 'kept.csv')
    assert [(r['seed'], r['level']) for r in rows] == [('0', '0'), ('0', '1')]
    by_hand = {0: 0, 1: 0}  # The ticket's kept weights, from layers.csv.
    for r in results.read_rows(path / 'layers.csv'):
      by_hand[int(r['level'])] += int(r['kept'])
    assert [int(r['kept']) for r in rows] == [by_hand[0], by_hand[1]] and by_hand[1] < by_hand[0]
    before = (path / 'kept.csv').read_bytes()
    commands.run(config, tmp_path, log=lambda m: None, progress=False)  # Nothing left to do.
    assert (path / 'kept.csv').read_bytes() == before
  finally:
    stages.unregister(KEPT)
  assert KEPT not in stages.all_stages()

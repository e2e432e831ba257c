"""Early-bird tickets: the distances and the settling rule by hand, the search in a study."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from processes import interrupted_then_resumed
from test_early import tiny_study

from experiments import early_bird as early_bird_recipe
from lth_jax import commands, report
from lth_jax.report import early_bird as early_bird_report
from lth_jax.study import artifacts, early_bird, levels, results, starts
from lth_jax.study.definition import RunKey


def test_the_distance_is_the_share_of_counted_weights_that_differ():
  a = {'w': jnp.array([[True, False], [True, True]]), 'b': jnp.array([True, False])}
  b = {'w': jnp.array([[False, False], [True, False]]), 'b': jnp.array([False, True])}
  counted = {'w': True, 'b': False}  # The bias is not a counted weight.
  assert early_bird.distance(a, b, counted) == 2 / 4
  assert early_bird.distance(a, a, counted) == 0


@pytest.fixture(scope='module')
def ran():
  study = tiny_study(levels=2, arms=('ticket', 'early_bird', 'random_prune'))
  study.early_bird = type(study.early_bird)(window=3, epsilon=0.2)
  return study, levels.train_levels(study)


def test_every_evaluation_of_a_ticket_is_searched_and_the_rule_holds(ran):
  study, store = ran
  rows = store.results.rows(results.EARLY_BIRD)
  for level in (0, 1):  # The levels with a next level to find masks for.
    mine = [r for r in rows if r['level'] == level]
    assert [r['step'] for r in mine] == list(range(0, 31, 10))  # The start, then each evaluation.
    assert mine[0]['distance'] == '' and mine[0]['window_distance'] == ''
    found = [r['step'] for r in mine if r['early_bird']]
    assert len(found) <= 1 and {r['found'] for r in mine} == {int(bool(found))}
    for i, r in enumerate(mine):  # The rule, from the recorded distances.
      settled = i >= 2 and r['window_distance'] <= 0.2
      first = settled and not any(m['early_bird'] for m in mine[:i])
      assert bool(r['early_bird']) == first, (level, r)
      if r['distance'] != '' and r['window_distance'] != '':
        assert r['window_distance'] >= r['distance'] - 1e-12  # The newest vs its predecessor: in.
  assert not any(r['level'] == 2 for r in rows)  # The last level has no next one.


def test_the_early_bird_arm_starts_from_the_masks_found(ran):
  study, store = ran
  for level in (1, 2):
    found = store.load(artifacts.early_bird_masks(0, level))
    ticket = store.load(artifacts.masks(0, level))
    assert study.plan.counts(found) == study.plan.counts(ticket)  # The level's sparsity.
    (start,) = starts.start_states(study, store, [RunKey(0, level, 'early_bird')])
    state_k = store.load(artifacts.rewind(0))
    for p, p0, m in zip(jax.tree.leaves(start.params), jax.tree.leaves(state_k.params),
                        jax.tree.leaves(found), strict=True):  # fmt: skip
      np.testing.assert_array_equal(np.asarray(p), np.where(np.asarray(m), p0, 0))
  rows = {(r['level'], r['arm']) for r in store.summary}
  assert {(1, 'early_bird'), (2, 'early_bird')} <= rows


def test_vmapped_search_finds_the_same_steps(ran):
  study, store = ran
  vmapped = tiny_study(levels=2, arms=('ticket', 'early_bird', 'random_prune'), 
                       parallel='true')  # fmt: skip
  vmapped.early_bird = study.early_bird
  other = levels.train_levels(vmapped)
  step = lambda s: [
    (r['level'], r['step']) for r in s.results.rows(results.EARLY_BIRD) if r['early_bird']
  ]
  assert step(other) == step(store)


# A study on disk, as ``lth run`` makes it: resumed mid-level, the same steps; the report's section.


@pytest.fixture(scope='module')
def on_disk(fashion_mnist_dir, tmp_path_factory):
  config = early_bird_recipe.get_config('smoke')
  config.data.data_dir, config.parallel = fashion_mnist_dir, 'false'
  workdir = tmp_path_factory.mktemp('early_bird')
  commands.run(config, workdir, log=lambda line: None, progress=False)
  (run_dir,) = [p for p in workdir.iterdir() if (p / 'config.json').exists()]
  return config, run_dir


def test_a_resumed_level_finds_the_same_early_bird_step(on_disk, tmp_path, monkeypatch):
  config, reference = on_disk
  # Level 1's ticket (the second training), stopped after its checkpoint at step 40.
  run_dir = interrupted_then_resumed(config, tmp_path, monkeypatch, call=2, step=45)
  mine, theirs = (results.read_rows(d / results.EARLY_BIRD) for d in (run_dir, reference))
  assert mine == theirs and any(r['early_bird'] == '1' for r in mine)
  assert (run_dir / results.SUMMARY).read_bytes() == (reference / results.SUMMARY).read_bytes()


def test_the_report_shows_when_the_masks_settle(on_disk):
  _, run_dir = on_disk
  report.write_report(run_dir)
  text = (run_dir / 'report' / 'report.md').read_text()
  assert 'Early-bird tickets: when the masks settle' in text
  assert (run_dir / 'report' / 'early_bird.png').stat().st_size > 1000
  rows = results.read_rows(run_dir / results.EARLY_BIRD)
  for level in (0, 1):
    (step,) = early_bird_report.found_steps(
      {0: [r for r in rows if r['level'] == str(level)]}
    ).values()
    line = next(t for t in text.splitlines() if t.startswith(f'| {level}→{level + 1} |'))
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert cells[2:4] == (['1/1', str(step)] if step is not None else ['0/1', '—'])

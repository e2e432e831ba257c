"""How a pruned level retrains (Renda, Frankle & Carbin 2020): weight rewinding, learning-rate
rewinding and fine-tuning, each against a hand computation of its definition."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fake_data import Tiny, float_task

import lth_jax
from lth_jax.core import masks as masks_lib
from lth_jax.core import train as train_lib
from lth_jax.study import artifacts, starts
from lth_jax.study.definition import RunKey, seed_keys

K, T = 10, 40
SCHEDULE = optax.piecewise_constant_schedule(0.1, {20: 0.1, 30: 0.1})  # 0.1, 0.01, 0.001


def study_of(retrain: str):
  train, test = float_task()
  return lth_jax.make_study(
    Tiny(), train=train, test=test, validation=60, optimizer=optax.sgd(SCHEDULE, momentum=0.9),
    num_steps=T, eval_every=10, batch_size=20, num_levels=2, rewind_step=K, train_eval_size=0,
    arms='ticket,reinit', retrain=retrain, parallel='false',
    pruning={'output_layer': 'head', 'rate_dense': 0.5, 'rate_output': 0.25},
  )  # fmt: skip


@pytest.fixture(scope='module')
def ran():
  return {
    mode: (s := study_of(mode), lth_jax.run_imp(s, log=None))
    for mode in lth_jax.core.rewind.RETRAIN
  }


def schedule_count(opt_state) -> int:
  counts = [
    int(s.count) for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByScheduleState))
    if isinstance(s, optax.ScaleByScheduleState)
  ]  # fmt: skip
  (count,) = counts
  return count


def one_step_by_hand(task, start, x, y):
  """The params after one masked SGD step from ``start`` at the rate its schedule is at."""

  def loss(p):
    logits = task.model.apply({'params': masks_lib.apply(p, start.masks)}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  grads = masks_lib.apply(jax.grad(loss)(start.params), start.masks)
  rate = SCHEDULE(schedule_count(start.opt_state))
  return jax.tree.map(
    lambda p, g, m: jnp.where(m, p - rate * g, 0), start.params, grads, start.masks
  )


@pytest.mark.parametrize('mode', ['rewind', 'lr_rewind', 'finetune'])
def test_each_mode_starts_where_its_definition_says(ran, mode):
  study, store = ran[mode]
  (start,) = starts.start_states(study, store, [RunKey(0, 1, 'ticket')])
  masks = store.load(artifacts.masks(0, 1))
  state_k = store.load(artifacts.rewind(0))
  trained = store.load(artifacts.trained(0, 0, 'ticket'))['params']  # θT of the level pruned.
  source = state_k.params if mode == 'rewind' else trained
  for got, want, m in zip(
    jax.tree.leaves(start.params), jax.tree.leaves(source), jax.tree.leaves(masks)
  ):
    np.testing.assert_array_equal(np.asarray(got), np.where(m, want, 0))  # Bit for bit.
  assert int(start.step) == K  # Every mode trains from k to T, on the same data order.
  assert schedule_count(start.opt_state) == {'rewind': K, 'lr_rewind': K, 'finetune': T}[mode]
  momentum = jax.tree.leaves(start.opt_state[0].trace)
  if mode == 'rewind':  # The optimizer state at k (rewind_optimizer='restore').
    assert any(np.abs(np.asarray(t)).max() > 0 for t in momentum)
  else:  # A fresh optimizer: no momentum carried from the dense run.
    assert all(np.abs(np.asarray(t)).max() == 0 for t in momentum)


@pytest.mark.parametrize('mode', ['lr_rewind', 'finetune'])
def test_the_first_step_uses_the_rate_of_its_mode(ran, mode):
  study, store = ran[mode]
  (start,) = starts.start_states(study, store, [RunKey(0, 1, 'ticket')])
  idx = train_lib.batch_indices(
    seed_keys(0).data, K, 1, num_examples=study.train.x.shape[0], batch_size=20
  )[0]
  x, y = study.train.x[idx], study.train.y[idx]
  want = one_step_by_hand(study.task, start, study.task.normalize(x), y)
  got, _ = train_lib.train_step(study.task, start, x, y, jax.random.fold_in(seed_keys(0).data, K))
  for g, w in zip(jax.tree.leaves(got.params), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-7)
  rate = float(SCHEDULE(K if mode == 'lr_rewind' else T))
  assert rate == pytest.approx(0.1 if mode == 'lr_rewind' else 0.001)


def test_the_modes_train_different_networks_and_the_next_level_prunes_its_own(ran):
  finals = {
    mode: store.load(artifacts.trained(0, 1, 'ticket'))['params']['hidden']['kernel']
    for mode, (_, store) in ran.items()
  }
  assert not np.allclose(finals['rewind'], finals['lr_rewind'])
  assert not np.allclose(finals['lr_rewind'], finals['finetune'])
  for mode, (_, store) in ran.items():  # Level 2 is pruned from this mode's level-1 network.
    level_1 = store.load(artifacts.masks(0, 1))['hidden']['kernel']
    level_2 = store.load(artifacts.masks(0, 2))['hidden']['kernel']
    kept = np.abs(np.asarray(finals[mode]))[np.asarray(level_2)]
    dropped = np.abs(np.asarray(finals[mode]))[np.asarray(level_1) & ~np.asarray(level_2)]
    assert kept.min() >= dropped.max(), mode
  assert {r['arm'] for r in ran['finetune'][1].summary if r['level'] == 1} == {'ticket', 'reinit'}


def test_an_imported_ticket_and_another_retrain_refuse_each_other():
  from experiments import lenet300
  from lth_jax.study import config as config_lib

  config = lenet300.get_config('smoke')
  config.ticket, config.retrain = 'ticket_{seed}.npz', 'finetune'
  with pytest.raises(lth_jax.ConfigError, match="config.retrain='finetune' .* ticket is imported"):
    config_lib.validate(config)

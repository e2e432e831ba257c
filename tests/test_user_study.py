"""A user's own model and data through ``lth_jax.make_study``: nothing guessed silently."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fake_data import Tiny, float_task, tiny_study

import lth_jax
from lth_jax.core import models, rewind
from lth_jax.study import artifacts, starts
from lth_jax.study.definition import RunKey


def test_plan_is_printed_and_masks_follow_it_exactly():
  study = tiny_study()
  table = study.plan.table()
  assert 'head    head/kernel    16x3   output   25%' in table
  assert 'hidden  hidden/kernel  8x16   dense    50%' in table
  assert 'prunable weights: 176 (layer-wise)' in table
  lines = []
  store = lth_jax.run_imp(study, log=lines.append)
  assert table in lines[0]  # Printed at the start of the run.
  for level, (hidden, head) in {1: (64, 36), 2: (32, 27)}.items():
    masks = store.load(artifacts.masks(0, level))
    assert int(masks['hidden']['kernel'].sum()) == hidden  # 128 -> 64 -> 32: 50% of survivors.
    assert int(masks['head']['kernel'].sum()) == head  # 48 -> 36 -> 27: 25% of survivors.
    assert masks['hidden']['bias'].all() and masks['head']['bias'].all()
    rows = [r for r in store.summary if r['level'] == level]
    assert {r['arm'] for r in rows} == {'ticket', 'reinit'}
    assert all(r['weights_remaining'] == (hidden + head) / 176 for r in rows)
  assert all(np.isnan(r['train_accuracy_at_early_stop']) for r in store.summary)  # No train subset.
  assert store.summary[0]['test_accuracy_at_early_stop'] > 0.6  # It learned.


def test_an_output_layer_that_cannot_be_told_stops_with_the_fix():
  with pytest.raises(lth_jax.ConfigError, match="output_layer='<layer>'.*head, hidden"):
    tiny_study(pruning={'rate_dense': 0.2, 'rate_output': 0.1})
  # When the output layer makes no difference, nothing needs naming.
  study = tiny_study(pruning={'rate_dense': 0.2, 'rate_output': 0.2})
  assert {leaf.kind for leaf in study.plan.leaves} == {'dense', ''}
  with pytest.raises(lth_jax.ConfigError, match="output_layer='nope' is not a prunable layer"):
    tiny_study(pruning={'output_layer': 'nope'})


def test_prunable_layers_and_kinds_can_be_set():
  study = tiny_study(pruning={'output_layer': None, 'prunable': ['hidden'], 'rate_dense': 0.5})
  assert [(f.layer, f.kind) for f in study.plan.leaves if f.kind] == [('hidden', 'dense')]


def test_float_inputs_are_used_as_given_unless_standardized():
  (x, _), _ = float_task()
  given = tiny_study()
  np.testing.assert_array_equal(given.task.normalize(jnp.asarray(x)), x)
  standardized = tiny_study(standardize=True)
  z = np.asarray(standardized.task.normalize(jnp.asarray(x[:240])))
  np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
  np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-4)


def test_uint8_images_are_divided_by_255_or_standardized_per_channel():
  rng = np.random.default_rng(1)
  x = rng.integers(0, 256, size=(200, 4, 4, 2), dtype=np.uint8)
  x[..., 1] //= 2  # Channels with different statistics.
  y = rng.integers(0, 10, size=200).astype(np.int32)
  model = models.get_model('lenet300', num_classes=10, hidden=(8,))
  make = lambda standardize: lth_jax.make_study(
    model, train=(x, y), test=(x[:50], y[:50]), validation=40, optimizer=optax.sgd(0.1),
    num_steps=10, batch_size=10, standardize=standardize,
  )  # fmt: skip
  plain = make(False).task.normalize(jnp.asarray(x))
  np.testing.assert_allclose(plain, x.astype(np.float32) / 255.0, rtol=1e-6)  # x / 255, no more.
  z = np.asarray(make(True).task.normalize(jnp.asarray(x[:160])))
  np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1, atol=1e-4)
  assert make(None).task.std != (1.0,)  # uint8 images are standardized by default.


def test_labels_beyond_the_models_outputs_are_refused():
  train, test = float_task()
  bad = (train[0], train[1] + 5)
  with pytest.raises(lth_jax.ConfigError, match='labels go up to 7 but Tiny outputs 3 logits'):
    lth_jax.make_study(Tiny(), train=bad, test=test, validation=60, optimizer=optax.adam(1e-2),
                       num_steps=10, pruning={'output_layer': 'head'})  # fmt: skip


def test_fresh_optimizer_at_rewinding_keeps_the_schedule_at_k():
  schedule = optax.piecewise_constant_schedule(1e-2, {30: 0.1})
  study = tiny_study(rewind_step=20, rewind_optimizer='fresh', optimizer=optax.adam(schedule))
  store = lth_jax.run_imp(study, log=None)
  state_k = store.load(artifacts.rewind(0))
  start = starts.start_states(study, store, [RunKey(0, 1, 'ticket')])[0]
  adam, sched = start.opt_state
  assert int(adam.count) == 0 and int(sched.count) == 20 == int(start.step)
  assert all(not np.any(np.asarray(m)) for m in jax.tree.leaves(adam.mu))
  assert any(np.any(np.asarray(m)) for m in jax.tree.leaves(state_k.opt_state[0].mu))
  restored = tiny_study(rewind_step=20, optimizer=optax.adam(schedule))
  start = starts.start_states(restored, store, [RunKey(0, 1, 'ticket')])[0]
  for a, b in zip(
    jax.tree.leaves(start.opt_state), jax.tree.leaves(state_k.opt_state), strict=True
  ):
    np.testing.assert_array_equal(a, b)  # 'restore': the optimizer state at k, exactly.
  np.testing.assert_array_equal(
    start.params['head']['kernel'], rewind.rewind(state_k, start.masks).params['head']['kernel']
  )


@pytest.mark.parametrize('scheme, std', [('he_normal', np.sqrt(2 / 784)), ('lecun_normal', np.sqrt(1 / 784)),
                                         ('glorot_uniform', np.sqrt(2 / (784 + 300)))])  # fmt: skip
def test_init_schemes_draw_the_prunable_weights_at_their_variance(scheme, std):
  model = models.get_model('lenet300', num_classes=10)
  params = jax.jit(lambda k: model.init(k, jnp.zeros((1, 28, 28, 1)))['params'])(jax.random.key(0))
  weights = jax.tree.map(lambda x: x.ndim == 2, params)
  redrawn = models.reinitialize(params, jax.random.key(1), scheme, weights)
  assert float(np.std(redrawn['dense_0']['kernel'])) == pytest.approx(std, rel=0.03)
  np.testing.assert_array_equal(redrawn['dense_0']['bias'], params['dense_0']['bias'])
  assert models.reinitialize(params, jax.random.key(1), 'default', weights) is params


def test_init_setting_reaches_theta_0_and_the_reinit_control():
  study = tiny_study(init='he_uniform')
  theta0 = study.initial_state(0).params['hidden']['kernel']
  default = tiny_study().initial_state(0).params['hidden']['kernel']
  assert not np.array_equal(theta0, default)
  bound = np.sqrt(6 / 8)  # he_uniform: U(-sqrt(6 / fan_in), +sqrt(6 / fan_in)).
  fresh = study.init_params(jax.random.key(5))['hidden']['kernel']
  assert np.abs(theta0).max() <= bound and np.abs(fresh).max() <= bound
  assert np.abs(theta0).max() > 0.8 * bound


def test_a_model_added_to_the_zoo_is_accepted_by_the_config(monkeypatch):
  from experiments import lenet300
  from lth_jax.study import config as config_lib

  config = lenet300.get_config('smoke')
  config.model.name = 'my_mlp'
  with pytest.raises(lth_jax.ConfigError, match='my_mlp'):
    config_lib.validate(config)
  monkeypatch.setitem(models.MODELS, 'my_mlp', models.LeNet300100)
  config_lib.validate(config)

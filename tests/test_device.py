"""The numpy-only device trainer: no JAX inside, and the framework's masked training step by step."""

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lth_jax.analyses import edge_trainer, ticket
from lth_jax.core import masks as masks_lib
from lth_jax.core import models, train
from lth_jax.data import ticket_file

DEVICE_PY = Path(edge_trainer.__file__)
TICKET_FILE_PY = Path(ticket_file.__file__)


def test_device_module_runs_without_jax(tmp_path):
  for source in (DEVICE_PY, TICKET_FILE_PY):  # What a device gets: the two files, side by side.
    shutil.copy(source, tmp_path / source.name)
  code = f"""
import importlib.util, sys
sys.modules['jax'] = None  # import jax now raises
sys.modules['jaxlib'] = None
sys.modules['flax'] = None
sys.path.insert(0, {str(tmp_path)!r})
spec = importlib.util.spec_from_file_location('edge_trainer', {str(tmp_path / DEVICE_PY.name)!r})
edge_trainer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(edge_trainer)
assert not any(m.startswith(('jax', 'flax', 'lth_jax')) and sys.modules[m] is not None for m in sys.modules)
print('ok', edge_trainer.DeviceTrainer.__name__)
"""
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == 'ok DeviceTrainer'


def small_ticket(tmp_path, density=0.3):
  """A LeNet-style ticket 784-32-16-10 with a random mask and dead units, written to a file."""
  model = models.LeNet300100(num_classes=10, hidden=(32, 16))
  params = jax.tree.map(
    np.array, model.init(jax.random.key(3), jnp.zeros((1, 28, 28, 1)))['params']
  )
  rng = np.random.default_rng(0)
  masks = jax.tree.map(
    lambda p: rng.random(p.shape) < density if p.ndim == 2 else np.ones(p.shape, bool), params
  )
  masks['dense_0']['kernel'][:, 2] = False  # no incoming: its bias still trains
  masks['output']['kernel'][4, :] = False  # no outgoing: dropped
  masks['dense_0']['kernel'][:56] = False  # two rows of pixels feed nothing
  params['dense_0']['bias'][2] = 0.1  # relu(0) has no gradient: a live constant unit.
  params = masks_lib.apply(params, masks)
  header = {
    'model': {'name': 'lenet300', 'settings': {'num_classes': 10}}, 'weights_remaining': density,
    'provenance': {'config': {'optimizer': {'name': 'adam', 'learning_rate': 1.2e-3}}},
  }  # fmt: skip
  t = ticket.Ticket(ticket.flatten(params), ticket.flatten(masks), {}, header)
  return model, ticket.save(t, tmp_path / 'small.npz')


MODES = [None, 'dense', 'sparse', ['sparse', 'dense', 'sparse']]  # timed, forced, mixed


@pytest.mark.parametrize('modes', MODES)
@pytest.mark.parametrize('density', [0.3, 0.004])  # BLAS then gather; sampled products
def test_device_equals_framework_step_by_step(tmp_path, density, modes):
  model, path = small_ticket(tmp_path, density)
  _, params, masks, _ = ticket_file.read(path)
  trainer = edge_trainer.DeviceTrainer.from_file(path, mean=0.25, std=0.5, modes=modes)
  assert trainer.opt == {'name': 'adam', 'learning_rate': 1.2e-3} and trainer.t == 0  # fresh Adam
  assert len(trainer.inputs) <= 784 - 56 and trainer.layers[1].shape[0] <= 15  # dropped
  task = train.Task(
    model=model, optimizer=optax.adam(1.2e-3), batch_size=25, mean=(0.25,), std=(0.5,)
  )
  state = train.create_state(task, ticket.unflatten(params), {}, ticket.unflatten(masks))
  step = jax.jit(functools.partial(train.train_step, task))
  rng = np.random.default_rng(1)
  # Batches of 25: a class frequency is never exactly the 1/10 of an all-equal softmax,
  # whose zero gradient Adam would turn into ±learning rate on float noise.
  x_all = rng.integers(0, 256, size=(125, 28, 28, 1), dtype=np.uint8)
  y_all = rng.integers(0, 10, size=125).astype(np.int32)
  for i in range(5):
    x, y = x_all[i * 25 : (i + 1) * 25], y_all[i * 25 : (i + 1) * 25]
    want_logits = model.apply({'params': state.params}, task.normalize(x))
    np.testing.assert_allclose(trainer.logits(x), want_logits, rtol=1e-5, atol=1e-5)
    state, want_loss = step(state, x, y, jax.random.key(0))
    loss = trainer.step(x, y)
    assert abs(loss - float(want_loss)) < 1e-5
    got, want = trainer.dense_params(), ticket.flatten(jax.tree.map(np.asarray, state.params))
    for name in want:
      np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=2e-6, err_msg=name)
      assert np.all(got[name][~masks[name]] == 0)  # Pruned weights stay exactly zero.
    assert_pruned_stay_zero(trainer)
  assert trainer.timed == (modes is None)  # Chosen by timing once, on the first step, or forced.
  assert trainer.modes == ([modes] * 3 if isinstance(modes, str) else modes or trainer.modes)
  assert set(trainer.modes) <= set(edge_trainer.MODES)
  moved = got['dense_0/bias'][2] != params['dense_0/bias'][2]
  assert moved == trainer.alive[1][2]  # A live unit without incoming weights trains its bias.
  if density > 0.1:
    assert moved


def assert_pruned_stay_zero(trainer):
  """In dense mode the trained matrices themselves hold exact zeros at every pruned weight."""
  for mode, kernel, kept in zip(trainer.modes, trainer.kernels, trainer.kept_masks, strict=True):
    assert (kernel is not None) == (mode == 'dense')
    if kernel is not None:
      assert kernel.shape == kept.shape and np.all(kernel[~kept] == 0)


def test_modes_are_chosen_once_and_can_be_forced(tmp_path, monkeypatch):
  _, path = small_ticket(tmp_path, 0.3)
  chosen = []
  fastest = edge_trainer._fastest
  monkeypatch.setattr(
    edge_trainer, '_fastest', lambda ways: chosen.append(fastest(ways)) or chosen[-1]
  )
  trainer = edge_trainer.DeviceTrainer.from_file(path, modes=[None, 'sparse', None])
  assert trainer.modes == [None, 'sparse', None] and trainer.timed == 0
  x = np.random.default_rng(0).integers(0, 256, size=(25, 28, 28, 1), dtype=np.uint8)
  y = np.arange(25) % 10
  for _ in range(3):
    trainer.step(x, y)
    modes = list(trainer.modes)
    assert trainer.timed == 1 and None not in modes and modes[1] == 'sparse'
  # Once: layers 0 and 2 each timed both ways, and each sparse layer's weight-gradient product.
  products = (edge_trainer.sampled_product, edge_trainer.dense_product)
  assert sum(c in edge_trainer.MODES for c in chosen) == 2
  assert sum(c in products for c in chosen) == 3 and len(chosen) == 5
  forced = edge_trainer.DeviceTrainer.from_file(path, modes='dense')
  forced.step(x, y)
  assert forced.timed == 0 and forced.modes == ['dense'] * 3
  with pytest.raises(ValueError, match='modes'):
    edge_trainer.DeviceTrainer.from_file(path, modes=['dense', 'sparse'])
  with pytest.raises(ValueError, match='modes'):
    edge_trainer.DeviceTrainer.from_file(path, modes='csr')


SGD = {
  'name': 'sgd', 'learning_rate': 0.05, 'momentum': 0.9, 'weight_decay': 1e-3,
  'warmup_steps': 2, 'milestones': (3,), 'decay_factor': 0.5,
}  # fmt: skip


def test_the_schedule_is_the_recipes():
  import ml_collections

  from lth_jax.study import from_config

  schedule = from_config.learning_rate_schedule(ml_collections.ConfigDict(SGD))
  for count in range(8):
    assert edge_trainer.learning_rate(SGD, count) == pytest.approx(float(schedule(count)))


@pytest.mark.parametrize('modes', ['dense', 'sparse'])
def test_device_follows_warmup_milestones_and_weight_decay(tmp_path, modes):
  import ml_collections

  from lth_jax.study import from_config

  model, path = small_ticket(tmp_path, 0.3)
  _, params, masks, _ = ticket_file.read(path)
  trainer = edge_trainer.DeviceTrainer(
    params, masks, optimizer=SGD, mean=0.25, std=0.5, modes=modes
  )
  optimizer = from_config.make_optimizer(ml_collections.ConfigDict(SGD))
  task = train.Task(model=model, optimizer=optimizer, batch_size=25, mean=(0.25,), std=(0.5,))
  state = train.create_state(task, ticket.unflatten(params), {}, ticket.unflatten(masks))
  step = jax.jit(functools.partial(train.train_step, task))
  rng = np.random.default_rng(2)
  for _ in range(5):  # Warmup (0, half), then the base rate, then the decayed rate.
    x = rng.integers(0, 256, size=(25, 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, size=25).astype(np.int32)
    state, _ = step(state, x, y, jax.random.key(0))
    trainer.step(x, y)
  want_logits = model.apply({'params': state.params}, task.normalize(x))
  np.testing.assert_allclose(trainer.logits(x), want_logits, rtol=1e-4, atol=1e-5)
  got, want = trainer.dense_params(), ticket.flatten(jax.tree.map(np.asarray, state.params))
  for i, name in enumerate(trainer.names):  # The weights of the units that reach the outputs.
    rows, cols = np.flatnonzero(trainer.alive[i]), np.flatnonzero(trainer.alive[i + 1])
    live = np.ix_(rows, cols)
    np.testing.assert_allclose(
      got[f'{name}/kernel'][live], want[f'{name}/kernel'][live], rtol=1e-4, atol=2e-6
    )
    np.testing.assert_allclose(got[f'{name}/bias'][cols], want[f'{name}/bias'][cols], rtol=1e-4)
  assert_pruned_stay_zero(trainer)  # Weight decay moves no pruned weight either.
  for name in masks:
    assert np.all(got[name][~masks[name]] == 0)


@pytest.mark.parametrize('optimizer', [{'name': 'adam', 'learning_rate': 1.2e-3}, SGD])
def test_dense_masked_reference_equals_the_device_trainer(tmp_path, optimizer):
  """The benchmark's baseline (plain dense numpy, masks multiplied in) trains the same network."""
  _, path = small_ticket(tmp_path, 0.3)
  _, params, masks, _ = ticket_file.read(path)
  kwargs = {'optimizer': optimizer, 'mean': 0.25, 'std': 0.5}
  reference = edge_trainer.DenseMaskedTrainer(params, masks, **kwargs)
  trainer = edge_trainer.DeviceTrainer(params, masks, modes='sparse', **kwargs)
  rng = np.random.default_rng(4)
  for _ in range(5):
    x = rng.integers(0, 256, size=(25, 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, size=25).astype(np.int32)
    np.testing.assert_allclose(reference.logits(x), trainer.logits(x), rtol=1e-5, atol=1e-5)
    assert reference.step(x, y) == pytest.approx(trainer.step(x, y), abs=1e-5)
  got, want = trainer.dense_params(), reference.dense_params()
  for i, name in enumerate(trainer.names):  # Dropped units aside (weight decay shrinks them).
    live = np.ix_(np.flatnonzero(trainer.alive[i]), np.flatnonzero(trainer.alive[i + 1]))
    np.testing.assert_allclose(got[f'{name}/kernel'][live], want[f'{name}/kernel'][live], atol=2e-6)
    assert np.all(want[f'{name}/kernel'][~masks[f'{name}/kernel']] == 0)

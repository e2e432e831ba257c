"""Tickets that travel: export → load is bit-exact; a study starts from an imported ticket."""

import json

import jax
import numpy as np
import pytest

from lth_jax.analyses import ticket
from lth_jax.cli import export_ticket, main
from lth_jax.core import rewind
from lth_jax.errors import ConfigError, DataError, RunError
from lth_jax.study import artifacts, config, from_config, store, workdir


def tiny_config(data_dir, **changes):
  from experiments import lenet300

  c = lenet300.get_config('smoke')
  c.data.data_dir = data_dir
  c.num_levels = 2
  c.checkpoint_every = 0
  c.checkpoint_seconds = 0.0
  for key, value in changes.items():
    target = c
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


@pytest.fixture(scope='module')
def run_dir(transfer_smoke):
  """The smoke transfer's source study: LeNet-300-100 on 5 classes, θk at 20, levels 0-1."""
  source, _ = transfer_smoke
  return source


def checkpointed(run_dir, seed, level):
  trees = store.DiskStore(run_dir, log=lambda m: None).trees
  state_k = trees.load(artifacts.rewind(seed))
  masks = trees.load(artifacts.masks(seed, level))
  return state_k, masks


def test_export_load_is_bit_exact(run_dir, tmp_path):
  path = export_ticket(
    [str(run_dir), '--level', '1', '--output', str(tmp_path / 't.npz')], log=print
  )
  model, params, masks = ticket.load(path)
  trees = store.DiskStore(run_dir, log=lambda m: None).trees
  exported = ticket.export(run_dir, level=1)
  like = from_config.state_like(exported_config(run_dir))
  state_k = trees.load(artifacts.rewind(0), like=like)
  want_masks = trees.load(artifacts.masks(0, 1), like=like.masks)
  want = rewind.rewind(state_k, want_masks)
  assert type(model).__name__ == 'LeNet300100' and model.num_classes == 5
  for got, exp in [(params, want.params), (masks, want_masks)]:
    assert jax.tree.structure(got) == jax.tree.structure(jax.tree.map(np.asarray, exp))
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(exp), strict=True):
      e = np.asarray(e)
      assert g.dtype == e.dtype and g.shape == e.shape
      assert g.tobytes() == e.tobytes()  # Bit for bit (signs of zeros included).
  # θk differs from θ0: the rewind step was 20, and the file says so.
  header = exported.header
  assert header['provenance']['starts_from'] == 'theta_k'
  assert header['provenance']['rewind_step'] == 20
  assert header['provenance']['config_hash'] == run_dir.name.rsplit('-', 1)[1]
  assert header['weights_remaining'] == pytest.approx(
    (265200 * 0.8 + 500 * 0.9) / 265700,
    abs=1e-4,  # 20% of hidden, 10% of output weights
  )
  assert 0 < header['provenance']['test_accuracy_at_early_stop'] <= 1
  # Only kept weights are stored (4 bytes each) with one bit per weight for the masks.
  kept = sum(int(m.sum()) for m in exported.masks.values())
  total = sum(m.size for m in exported.masks.values())
  assert ticket.file_bytes(path) < 4 * kept + total / 8 + 20_000 < exported.dense_bytes()


def exported_config(run_dir):
  return workdir.load_config(run_dir)


def test_export_level0_is_theta0(run_dir):
  exported = ticket.export(run_dir, level=0)
  trees = store.DiskStore(run_dir, log=lambda m: None).trees
  init = trees.load(artifacts.init(0))
  assert np.array_equal(exported.params['dense_0/kernel'], init['params']['dense_0']['kernel'])
  assert all(m.all() for m in exported.masks.values())


def test_export_other_arm_uses_its_control(run_dir):
  exported = ticket.export(run_dir, level=1, arm='reinit')
  ticket_arm = ticket.export(run_dir, level=1)
  for name, m in ticket_arm.masks.items():
    assert np.array_equal(exported.masks[name], m)
  kernel = exported.params['dense_0/kernel']
  assert not np.array_equal(kernel, ticket_arm.params['dense_0/kernel'])
  assert np.all(kernel[~exported.masks['dense_0/kernel']] == 0)


def test_bad_files_and_runs_fail_clearly(run_dir, tmp_path):
  with pytest.raises(DataError, match='no ticket file'):
    ticket.load(tmp_path / 'missing.npz')
  (tmp_path / 'junk.npz').write_bytes(b'not a zip')
  with pytest.raises(DataError, match='not a readable ticket file'):
    ticket.load(tmp_path / 'junk.npz')
  good = ticket.save(ticket.export(run_dir, level=1), tmp_path / 'good.npz')
  data = bytearray(good.read_bytes())
  data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
  (tmp_path / 'torn.npz').write_bytes(bytes(data))
  with pytest.raises(DataError):
    ticket.load(tmp_path / 'torn.npz')
  with pytest.raises(RunError, match='no finished run seed 0 level 7'):
    ticket.export(run_dir, level=7)


def test_cli_export_prints_sizes(run_dir, tmp_path, capsys):
  out = tmp_path / 'cli.npz'
  main(['lth', 'export', str(run_dir), '--level', '1', '--output', str(out)])
  printed = capsys.readouterr().out
  dense = 4 * (784 * 300 + 300 + 300 * 100 + 100 + 100 * 5 + 5)
  assert out.exists() and f'bytes (the dense parameters: {dense:,} bytes' in printed
  with pytest.raises(SystemExit):
    main(['lth', 'export', str(run_dir), '--output', str(out)])  # --level missing
  assert '--level' in capsys.readouterr().err


def test_new_keys_keep_existing_hashes(fashion_mnist_dir):
  c = tiny_config(fashion_mnist_dir)
  plain = config.study_hash(c)
  assert config.DEFAULT_ONLY['ticket'] == '' and config.DEFAULT_ONLY['data.classes'] == ()
  import hashlib

  left_out = (*config.EXECUTION_KEYS, *config.GROWTH_KEYS, *config.LOCATION_KEYS)
  flat = {k: list(v) if isinstance(v, tuple) else v for k, v in config.flatten(c.to_dict()).items()}
  # A config from before the added keys existed has none of them.
  flat = {k: v for k, v in flat.items() if k not in left_out and k not in config.DEFAULT_ONLY}
  before = hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:10]
  assert plain == before  # The hash of a config from before these keys existed.
  c.ticket = 'a.npz'
  assert config.study_hash(c) != plain
  c.ticket, c.data.classes = '', (0, 1)
  assert config.study_hash(c) != plain
  c.data.classes = (3,)
  with pytest.raises(ConfigError, match='data.classes'):
    config.validate(c)


def test_study_starts_from_imported_ticket(transfer_smoke):
  from lth_jax.study import from_config, starts, workdir
  from lth_jax.study.definition import RunKey

  source, _ = transfer_smoke
  target = next(source.parent.glob('transfer-smoke-source-level1-*'))
  path = source / 'tickets' / 'level_1' / 'seed_0.npz'
  _, params, masks = ticket.load(path)
  c = workdir.load_config(target)
  assert c.ticket == str(path).replace('seed_0', 'seed_{seed}')
  study = from_config.from_config(c)
  disk = store.DiskStore(target, log=lambda m: None)
  saved = disk.trees.load(artifacts.masks(0, 1))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(masks)))
  runs = [RunKey(0, 1, 'ticket'), RunKey(0, 1, 'random_prune')]
  first = starts.start_states(study, disk, runs)
  for got, want in zip(jax.tree.leaves(first[0].params), jax.tree.leaves(params), strict=True):
    assert np.array_equal(np.asarray(got), want)  # The imported values, not the target's θ0.
  assert int(first[0].step) == 0
  assert all(float(np.abs(x).max()) == 0 for x in jax.tree.leaves(first[0].opt_state[0].mu))
  counts = study.plan.counts(first[1].masks)
  assert counts == study.plan.counts(jax.tree.map(np.asarray, masks))  # Same per-layer counts.
  assert not all(
    np.array_equal(np.asarray(a), b)
    for a, b in zip(jax.tree.leaves(first[1].masks), jax.tree.leaves(masks), strict=True)
  )
  rows = {(r['level'], r['arm']): r for r in disk.summary}
  assert set(rows) == {('0', 'ticket'), ('1', 'ticket'), ('1', 'reinit'), ('1', 'random_prune')}
  assert float(rows[('1', 'ticket')]['weights_remaining']) == pytest.approx(
    ticket.read(path)[0]['weights_remaining']
  )
  study.imported.path = str(source.parent / 'other_{seed}.npz')
  with pytest.raises(DataError, match='no ticket file'):
    study.imported(0)

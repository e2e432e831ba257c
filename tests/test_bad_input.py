"""Nothing the project reads can hurt it: crafted study directories, ticket files, data and flags.

Each case is what a user (or someone else's file) can hand us. Each asserts one
clear line (or a repair note), the exit code, that nothing outside the study
directory is touched (a sentinel directory beside it survives), and that nothing
finished is lost.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tracemalloc
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lth_jax import cli, commands, make_study
from lth_jax.analyses import ticket
from lth_jax.data import ticket_file
from lth_jax.errors import ConfigError, DataError, RunError
from lth_jax.study import results, workdir
from lth_jax.training import distributed

FIXTURE = Path(__file__).resolve().parent / 'fixtures' / 'made_before_layers'
LENET = 'lenet300-smoke-8f7c7a3359'


@pytest.fixture
def study_dir(tmp_path, fashion_mnist_dir):
  """A finished study (levels 0-1, ticket) in runs/, a sentinel directory beside runs/."""
  runs = tmp_path / 'runs'
  path = shutil.copytree(FIXTURE / LENET, runs / LENET)
  config = json.loads((path / 'config.json').read_text())
  config['data']['data_dir'] = fashion_mnist_dir  # Where the data are (not the study's identity).
  (path / 'config.json').write_text(json.dumps(config))
  sentinel = tmp_path / 'sentinel'
  sentinel.mkdir()
  (sentinel / 'keep.txt').write_text('mine')
  return path, sentinel


def resume(path) -> list[str]:
  lines = []
  commands.resume(path, log=lines.append)
  return lines


def rows_of(path) -> list[dict]:
  """summary.csv's rows, less the columns added since the fixture was made."""
  return [
    {k: v for k, v in r.items() if k != 'mask_steps'}
    for r in results.read_rows(path / 'summary.csv')
  ]


def summary_of(path) -> list[tuple]:
  return [results.run_key(r) for r in results.read_rows(path / 'summary.csv')]


# ----------------------------------------------------------------------------- study directories


def test_a_path_in_a_table_deletes_nothing_outside(study_dir):
  path, sentinel = study_dir
  rows_before = rows_of(path)
  row = (path / 'summary.csv').read_text().splitlines()[-1].split(',')
  row[2] = '../../../../sentinel'  # The arm: what a repair would have deleted.
  with open(path / 'summary.csv', 'a') as f:
    f.write(','.join(row) + '\n')
  lines = resume(path)
  assert (sentinel / 'keep.txt').read_text() == 'mine'
  assert any(
    "summary.csv line 4: arm='../../../../sentinel' is not an arm name" in x for x in lines
  )
  assert rows_of(path) == rows_before  # Dropped; the finished runs kept as they were.


def test_rows_with_missing_or_garbage_fields_are_not_finished(study_dir):
  path, _ = study_dir
  text = (path / 'summary.csv').read_text().splitlines()
  good = text[2]
  text[2] = good.replace(',60,', ',sixty,', 1)  # Level 1's early-stop step: garbage.
  text.append('0,1')  # A line with fields missing.
  (path / 'summary.csv').write_text('\n'.join(text) + '\n')
  lines = resume(path)
  notes = [x for x in lines if x.startswith('repaired:')]
  assert any("line 3: early_stop_step='sixty'" in x for x in notes), notes
  assert any('line 4:' in x and 'missing' in x for x in notes), notes
  assert any('done: seed 0 level 1 ticket' in x for x in lines)  # Recomputed ...
  assert rows_of(path)[1] == dict(zip(text[0].split(','), good.split(',')))  # ... the same row.


def test_a_binary_summary_is_moved_aside_and_its_runs_recomputed(study_dir):
  path, _ = study_dir
  (path / 'summary.csv').write_bytes(bytes(range(256)) * 4)
  lines = resume(path)
  assert (path / 'summary.csv.unreadable').read_bytes() == bytes(range(256)) * 4
  assert summary_of(path) == [(0, 0, 'ticket'), (0, 1, 'ticket')]
  assert any('moved it to summary.csv.unreadable' in x for x in lines)


@pytest.mark.parametrize('content', ['[]', '{"name": 5}', '{"data": 7}', 'not json', ''])
def test_a_config_json_of_the_wrong_shape_is_one_line(study_dir, content, capsys):
  path, _ = study_dir
  (path / 'config.json').write_text(content)
  with pytest.raises(SystemExit) as exit_:
    cli.main(['lth', 'resume', str(path)])
  assert exit_.value.code == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('lth: error:') and 'config.json' in err[0], err
  with pytest.raises(SystemExit) as exit_:
    cli.main(['lth', 'report', str(path)])  # The report is drawn from the tables still.
  assert exit_.value.code in (0, None)
  out = capsys.readouterr()
  assert out.out.strip().endswith('index.html') and out.err == ''
  listed = commands.list_runs(path.parent)  # `lth ls` lists every directory, this one broken.
  assert LENET in listed and 'broken' in listed


def test_deletes_stay_inside_the_checkpoints(tmp_path):
  from lth_jax.study import checkpoint

  root = tmp_path / 'checkpoints'
  (root / 'seed_0').mkdir(parents=True)
  outside = tmp_path / 'outside'
  outside.mkdir()
  (root / 'seed_0' / 'link').symlink_to(outside)
  for victim in (
    outside,
    root / 'seed_0' / '..' / '..' / 'outside',
    root / 'seed_0' / 'link',
    root,
  ):
    with pytest.raises(RunError, match='refusing to delete'):
      checkpoint.remove(victim, root=root)
  assert outside.is_dir()
  checkpoint.remove(root / 'seed_0', root=root)
  assert not (root / 'seed_0').exists()


# ----------------------------------------------------------------------------- ticket files


@pytest.fixture(scope='module')
def good_ticket(tmp_path_factory):
  """A valid ticket file of LeNet-300-100, with one pruned layer."""
  from lth_jax.core import models

  model = models.LeNet300100(num_classes=10)
  params = jax.tree.map(
    np.asarray, model.init(jax.random.key(0), np.zeros((1, 28, 28, 1)))['params']
  )
  flat = ticket.flatten(params)
  rng = np.random.default_rng(0)
  masks = {n: (rng.random(v.shape) < 0.3) if n == 'dense_0/kernel' else np.ones(v.shape, bool)
           for n, v in flat.items()}  # fmt: skip
  header = {
    'model': {'name': 'lenet300', 'settings': {'num_classes': 10}}, 'input_shape': [28, 28, 1],
  }  # fmt: skip
  path = tmp_path_factory.mktemp('ticket') / 'good.npz'
  ticket_file.write(path, flat, masks, {}, header)
  return path, flat, masks


def members_of(path) -> dict[str, bytes]:
  with zipfile.ZipFile(path) as z:
    return {name: z.read(name) for name in z.namelist()}


def write_members(path, members: dict[str, bytes]) -> Path:
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
    for name, raw in members.items():
      z.writestr(name, raw)
  return path


def npy(array) -> bytes:
  import io

  buffer = io.BytesIO()
  np.save(buffer, array)
  return buffer.getvalue()


def header_of(path) -> dict:
  raw = np.load(path)['header']
  return json.loads(raw.tobytes())


def with_header(path, out, change) -> Path:
  members = members_of(path)
  header = header_of(path)
  change(header)
  members['header.npy'] = npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
  return write_members(out, members)


def test_a_valid_ticket_reads_back(good_ticket):
  path, flat, masks = good_ticket
  _, params, got_masks = ticket.load(path)
  for name, value in flat.items():
    np.testing.assert_array_equal(ticket.flatten(params)[name], np.where(masks[name], value, 0))


def bad_cases(path, tmp):
  """(name, file) of crafted ticket files, each wrong in one way."""
  dense_0 = lambda h: next(leaf for leaf in h['leaves'] if leaf['name'] == 'dense_0/kernel')
  yield (
    'float16 values',
    with_header(path, tmp / 'f16.npz', lambda h: dense_0(h).update(dtype='float16')),
  )
  yield (
    'a duplicated leaf',
    with_header(path, tmp / 'dup.npz', lambda h: h['leaves'].append(h['leaves'][0])),
  )
  yield (
    'a wrong kept count',
    with_header(path, tmp / 'kept.npz', lambda h: dense_0(h).update(kept=dense_0(h)['kept'] + 1)),
  )
  yield (
    'a huge shape',
    with_header(path, tmp / 'huge.npz', lambda h: dense_0(h).update(shape=[2**30, 2**9])),
  )
  yield (
    'a shape of strings',
    with_header(path, tmp / 'str.npz', lambda h: dense_0(h).update(shape=['a'])),
  )
  yield 'no leaves', with_header(path, tmp / 'none.npz', lambda h: h.update(leaves=[]))
  yield 'another format', with_header(path, tmp / 'fmt.npz', lambda h: h.update(format='x/2'))
  yield (
    'a path for a name',
    with_header(path, tmp / 'name.npz', lambda h: dense_0(h).update(name='../x')),
  )
  members = members_of(path)
  mask = np.load(path)['mask/dense_0/kernel']
  short = dict(members, **{'mask/dense_0/kernel.npy': npy(mask[:-1000])})
  yield 'a short mask', write_members(tmp / 'short.npz', short)
  wrong = dict(members, **{'value/output/bias.npy': npy(np.zeros(10, np.float16))})
  yield 'a float16 member', write_members(tmp / 'member16.npz', wrong)
  gone = {k: v for k, v in members.items() if k != 'value/output/kernel.npy'}
  yield 'a missing member', write_members(tmp / 'gone.npz', gone)
  raw = path.read_bytes()
  (tmp / 'cut.npz').write_bytes(raw[: len(raw) // 2])
  yield 'a truncated file', tmp / 'cut.npz'
  flipped = bytearray(raw)
  for i in range(len(flipped) // 3, len(flipped) // 3 + 200):
    flipped[i] ^= 0xFF
  (tmp / 'flip.npz').write_bytes(bytes(flipped))
  yield 'flipped bits', tmp / 'flip.npz'
  (tmp / 'text.npz').write_text('not a zip')
  yield 'not a zip', tmp / 'text.npz'


def test_every_crafted_ticket_is_one_clear_error(good_ticket, tmp_path):
  path, _, _ = good_ticket
  for case, bad in bad_cases(path, tmp_path):
    with pytest.raises(DataError) as error:
      ticket.load(bad)
    message = str(error.value)
    assert '\n' not in message and str(bad) in message, (case, message)


def test_members_the_header_does_not_declare_are_never_read(good_ticket, tmp_path):
  path, _, _ = good_ticket
  bomb = tmp_path / 'bomb.npz'
  shutil.copy(path, bomb)
  with (
    zipfile.ZipFile(bomb, 'a', zipfile.ZIP_DEFLATED) as z,
    z.open('junk.npy', 'w', force_zip64=True) as f,
  ):
    for _ in range(200):
      f.write(bytes(1 << 20))  # 200 MB of zeros, ~200 KB on disk.
  assert bomb.stat().st_size < 2 * path.stat().st_size + (1 << 20)
  tracemalloc.start()
  try:
    ticket.load(bomb)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  declared = sum(v.nbytes for v in ticket.flatten(ticket.load(path)[1]).values())
  assert peak < 20 * declared + (8 << 20)  # Not the 200 MB.


def test_a_declared_member_larger_than_the_file_can_hold_is_refused(good_ticket, tmp_path):
  path, _, _ = good_ticket
  members = members_of(path)
  header = header_of(path)
  header['state'] = [{'name': 'stats', 'shape': [8_000_000_000], 'dtype': 'uint8'}]
  members['header.npy'] = npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
  bad = write_members(tmp_path / 'declared.npz', members)
  with pytest.raises(DataError, match='more than a .*-byte file can hold'):
    ticket.read(bad)


json_values = st.recursive(
  st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
  lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
  max_leaves=12,
)  # fmt: skip
leaf_fields = st.fixed_dictionaries({
  'name': st.sampled_from(['dense_0/kernel', 'output/bias', '', 'a/../b', 7]) | json_values,
  'shape': st.lists(st.integers(-2, 2**35), max_size=3) | json_values,
  'dtype': st.sampled_from(['float32', 'float16', 'uint8', 'object', 'x']) | json_values,
  'stored': st.sampled_from(['dense', 'packed', 'other']) | json_values,
  'kept': st.integers(-1, 2**20) | json_values,
})  # fmt: skip


@settings(
  max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
  leaves=st.lists(leaf_fields, max_size=3) | json_values,
  state=st.lists(json_values, max_size=2) | json_values,
  members=st.dictionaries(
    st.sampled_from(['value/dense_0/kernel', 'mask/dense_0/kernel', 'value/output/bias', 'x']),
    st.binary(max_size=64),
    max_size=3,
  ),
)
def test_generated_headers_and_members_give_a_ticket_file_error(tmp_path, leaves, state, members):
  header = {'format': ticket_file.FORMAT, 'leaves': leaves, 'state': state}
  contents = {f'{k}.npy': v for k, v in members.items()}
  contents['header.npy'] = npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
  path = write_members(tmp_path / 'generated.npz', contents)
  try:
    ticket_file.read(path)
  except ticket_file.TicketFileError:
    pass  # The one kind of error a crafted file may give.


def test_export_keeps_an_existing_file_unless_forced(tmp_path, good_ticket):
  from lth_jax.analyses.ticket import Ticket

  path, flat, masks = good_ticket
  made = Ticket(params=flat, masks=masks, model_state={}, header={'weights_remaining': 0.3})
  out = tmp_path / 'out.npz'
  out.write_text('precious')
  with pytest.raises(RunError, match='exists; .* --force'):
    ticket.save(made, out)
  assert out.read_text() == 'precious'
  ticket.save(made, out, overwrite=True)
  assert ticket_file.read(out)[0]['weights_remaining'] == 0.3
  assert [p.name for p in tmp_path.iterdir()] == ['out.npz']  # No partial file left behind.


# ----------------------------------------------------------------------------- data


def test_data_damaged_after_preparation_are_refused(fashion_mnist_dir, tmp_path):
  from lth_jax import data

  copy = shutil.copytree(fashion_mnist_dir, tmp_path / 'tfds')
  record = next(copy.rglob('*train.array_record*'))
  raw = bytearray(record.read_bytes())
  raw[len(raw) // 2] ^= 0x01  # One bit of one image.
  record.write_bytes(bytes(raw))
  with pytest.raises(DataError, match='(changed after it was prepared|cannot be read)'):
    data.load('fashion_mnist', validation_size=5000, data_dir=str(copy))


def test_a_manual_dir_given_for_prepared_data_is_reported_unused(fashion_mnist_dir, tmp_path):
  from lth_jax import data

  loaded = data.load(
    'fashion_mnist', validation_size=5000, data_dir=fashion_mnist_dir, manual_dir=str(tmp_path)
  )
  assert len(loaded.notes) == 1 and 'was not used' in loaded.notes[0]


# ----------------------------------------------------------------------------- settings, the shell


def test_seeds_beyond_what_keys_tell_apart_are_refused():
  from experiments import lenet300
  from lth_jax.study import config as config_lib

  config = lenet300.get_config('smoke')
  config.seed, config.num_seeds = 2**32 - 1, 2
  with pytest.raises(ConfigError, match=r'config.seed=4294967295 .*2\*\*32'):
    config_lib.validate(config)
  x = np.zeros((40, 4), np.float32)
  y = np.zeros(40, np.int32)
  import flax.linen as nn
  import optax

  with pytest.raises(ConfigError, match=r'seeds=\[4294967296\]'):
    make_study(nn.Dense(2), train=(x, y), test=(x, y), validation=10, optimizer=optax.sgd(0.1),
               num_steps=2, batch_size=4, num_levels=0, seeds=[2**32])  # fmt: skip


def test_an_unforeseen_error_is_one_line_with_where_its_traceback_is(monkeypatch, capsys):
  def broken(*args, **kwargs):
    raise TypeError('something nobody foresaw')

  monkeypatch.setattr(commands, 'list_runs', broken)
  with pytest.raises(SystemExit) as exit_:
    cli.main(['lth', 'ls', '.'])
  assert exit_.value.code == 1
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert line.startswith('lth: error: TypeError: something nobody foresaw (traceback: ')
  traceback_file = Path(line.rsplit('traceback: ', 1)[1].rstrip(')'))
  assert 'something nobody foresaw' in traceback_file.read_text()
  traceback_file.unlink()


def test_a_cache_directory_others_can_write_to_is_not_used(tmp_path, monkeypatch):
  shared = tmp_path / 'shared'
  (shared / 'jax').mkdir(parents=True)
  os.chmod(shared / 'jax', 0o777)
  monkeypatch.setenv('LTH_CACHE_DIR', str(shared))
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  before = jax.config.jax_compilation_cache_dir
  lines = []
  try:
    jax.config.update('jax_compilation_cache_dir', None)
    commands.use_compilation_cache(log=lines.append)
    assert jax.config.jax_compilation_cache_dir is None
    assert len(lines) == 1 and 'others can write to it' in lines[0]
    os.chmod(shared / 'jax', 0o700)
    commands.use_compilation_cache(log=lines.append)
    assert jax.config.jax_compilation_cache_dir == str(shared / 'jax')
    assert stat.S_IMODE(os.stat(shared / 'jax').st_mode) == 0o700
  finally:
    jax.config.update('jax_compilation_cache_dir', before)
    jax.config.update('jax_enable_compilation_cache', True)


def test_processes_given_different_workdirs_are_told_apart(tmp_path):
  shared, other = tmp_path / 'shared', tmp_path / 'other'
  shared.mkdir()
  other.mkdir()
  nonce = distributed.write_launch(shared)  # Process 0.
  assert distributed.sees_launch(shared, nonce)  # A process with the same --workdir.
  assert not distributed.sees_launch(other, nonce)  # One with another.
  distributed.write_launch(shared)  # A later launch: the old nonce no longer matches.
  assert not distributed.sees_launch(shared, nonce)


def test_a_study_directory_of_another_study_is_refused(tmp_path, study_dir):
  path, _ = study_dir
  (path / 'study.json').write_text(json.dumps({'model': 'another'}))
  with pytest.raises(RunError, match='holds another study'):
    commands.resume(path, log=lambda m: None)
  with workdir.open_study(tmp_path / 'new', identity={'model': 'm'}, log=lambda m: None):
    pass
  (tmp_path / 'new' / 'study.json').write_text('[1, 2]')
  with pytest.raises(RunError, match='not a study identity'):
    with workdir.open_study(tmp_path / 'new', identity={'model': 'm'}, log=lambda m: None):
      pass

"""The accelerator benchmark in its CPU size: one command, one table, one JSON file."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_small_benchmark_prints_its_table_and_writes_json(tmp_path):
  out = tmp_path / 'accelerator.json'
  done = subprocess.run(
    [sys.executable, str(REPO / 'benchmarks' / 'accelerator.py'), '--small', f'--output={out}'],
    capture_output=True, text=True, timeout=900, cwd=tmp_path,
  )  # fmt: skip
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(out.read_text())
  machine = report['machine']
  assert (
    machine['backend'] == 'cpu' and machine['jax'] and machine['jaxlib'] and machine['cpus'] >= 1
  )
  rows = report['rows']
  networks = [r for r in rows if r['section'] == 'networks']
  for model in ('lenet300', 'conv2', 'resnet20'):
    mine = {r['n']: r for r in networks if r['model'] == model}
    assert (
      set(mine)
      == {'lenet300': {'plain', 1, 4}, 'conv2': {'plain', 1}, 'resnet20': {'plain'}}[model]
    )
    assert mine['plain']['throughput_vs_plain'] == 1
    for r in mine.values():
      assert r['ms_per_iteration_per_network'] > 0 and r['first_call_s'] > 0
  level = {r['parallel']: r for r in rows if r['section'] == 'imp level'}
  assert set(level) == {'false', 'threads', 'true'} and level['false']['runs'] == 6
  assert {r['what'].split(',')[0].split(' of')[0] for r in rows if r['section'] == 'lmc'} == {
    'pair',
    'path',
  }
  (split,) = [r for r in rows if r['section'] == 'split']
  # Memory for a third of the runs: the level loop made three calls of two runs.
  assert split['runs_per_call'] == 2 and split['runs_in_calls'] == [2, 2, 2]
  for line in ('section=networks  model=resnet20', 'section=split', 'written to'):
    assert line in done.stdout

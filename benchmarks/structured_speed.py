"""Structured tickets compacted against their dense-masked selves, in JAX on this machine.

    python benchmarks/bench_sparse.py --structured RUN_DIR [--levels 4,7,8] [--repeats 7]

For each level of a unit (or channel) study (``experiments/structured.py``), the
ticket of seed 0 is exported twice (``lth_jax.analyses.ticket.export``): as is,
and compacted (``--compact``: a smaller model of the same family). Both train
with the library's step (``lth_jax.core.train.train_steps``, lax.scan over
``--steps`` iterations at the run's batch size and optimizer, masks applied) and
infer on 1,000 inputs; times are best-of-``--repeats`` with the ways of one
level timed in turns, so a shared CPU's load hits them alike. Inputs are
random uint8 images of the run's shape (speed does not depend on them).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import common
import jax
import jax.numpy as jnp
import numpy as np

from lth_jax.analyses import ticket
from lth_jax.core import masks as masks_lib
from lth_jax.core import train as train_lib
from lth_jax.study import from_config, workdir

INFER_BATCH = 1000


def _data(shape, n: int) -> train_lib.DataArrays:
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
  y = rng.integers(0, 10, size=(n,)).astype(np.int32)
  return train_lib.DataArrays(jax.device_put(x), jax.device_put(y))


def _training(task, model, params, masks, model_state, data, steps: int):
  task = dataclasses.replace(task, model=model)
  state = train_lib.create_state(task, params, model_state, masks)
  run = jax.jit(functools.partial(train_lib.train_steps, task, num_steps=steps, train=data))
  key = jax.random.key(0)
  common.block(run(state, data_key=key))  # Compiled, not timed.
  return lambda: common.block(run(state, data_key=key))


def _inference(model, params, masks, model_state, x):
  variables = {'params': masks_lib.apply(params, masks), **model_state}
  kwargs = train_lib.call_kwargs(model, False)
  apply = jax.jit(lambda v, x: model.apply(v, x, **kwargs))
  common.block(apply(variables, x))
  return lambda: common.block(apply(variables, x))


def _nested(flat):
  return jax.tree.map(jnp.asarray, ticket.unflatten(flat)) if flat else {}


def measure(run_dir: Path, level: int, steps: int, repeats: int) -> dict:
  config = workdir.load_config(run_dir)
  task = train_lib.Task(
    model=None, optimizer=from_config.make_optimizer(config.optimizer),
    batch_size=config.batch_size, mean=(0.0,), std=(1.0,),
  )  # fmt: skip
  shape = tuple(from_config.INPUT_SHAPES[config.data.name])
  data = _data(shape, max(steps * config.batch_size, INFER_BATCH))
  x = data.x[:INFER_BATCH].astype(jnp.float32) / 255.0
  ways = {}
  for name, compact in (('masked', False), ('compact', True)):
    t = ticket.export(run_dir, level=level, compact=compact)
    model = ticket.model_of(run_dir, t.header)
    params, masks = _nested(t.params), _nested(t.masks)
    state = _nested(t.model_state)
    ways[f'train_{name}'] = _training(task, model, params, masks, state, data, steps)
    ways[f'infer_{name}'] = _inference(model, params, masks, state, x)
    if compact:
      widths = t.header['model']['widths']
      remaining = t.header['weights_remaining']
  ms = common.interleaved(ways, repeats, per=1)
  ms = {k: v / (steps if k.startswith('train') else 1) for k, v in ms.items()}
  return {'level': level, 'remaining': remaining, 'widths': widths, **ms}


def table(rows) -> str:
  lines = [
    '| level | weights remaining | compact widths | train ms/step: dense-masked / compact '
    '(speed-up) | infer ms/1000: dense-masked / compact (speed-up) |',
    '|---|---|---|---|---|',
  ]
  for r in rows:
    widths = '-'.join(str(w) for w in r['widths'].values())
    lines.append(
      f'| {r["level"]} | {r["remaining"]:.1%} | {widths} | {r["train_masked"]:.3f} / '
      f'{r["train_compact"]:.3f} ({r["train_masked"] / r["train_compact"]:.2f}x) | '
      f'{r["infer_masked"]:.2f} / {r["infer_compact"]:.2f} '
      f'({r["infer_masked"] / r["infer_compact"]:.2f}x) |'
    )
  return '\n'.join(lines)


def main(run_dir: Path, levels: list[int], steps: int, repeats: int) -> None:
  began = time.time()
  print(common.describe_machine(), f'run {run_dir}')
  rows = []
  for level in levels:
    rows.append(measure(run_dir, level, steps, repeats))
    print(rows[-1], flush=True)
  print(table(rows))
  print(f'({time.time() - began:.0f} s)')

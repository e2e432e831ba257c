"""Does a compact ticket train faster than its dense-masked self? Per level of a LeNet-300-100 study.

    python benchmarks/bench_sparse.py --run_dir RUN_DIR [--levels 0,3,7,10,12,15]
    python benchmarks/bench_sparse.py --make DIR     # makes a small study first (a few minutes)
    python benchmarks/bench_sparse.py --structured RUN_DIR   # unit/channel tickets, compacted
                                                             # (benchmarks/structured_speed.py)

For each level's ticket (``lth_jax.analyses.ticket.export``), at batch 60 on fixed data:

* train ms/step: the dense-masked network in JAX (the library's ``train_steps``:
  lax.scan over steps, masks applied densely); the compact network in JAX (dense
  matmuls on the shapes left after removing the units that reach no output, the
  same Adam with masked gradients); the numpy/scipy device trainer
  (``lth_jax.analyses.edge_trainer.DeviceTrainer``: each layer CSR over the kept
  weights or dense-masked, whichever its first step timed faster); its baseline,
  the same network and Adam as plain dense numpy with the masks multiplied in
  (``DenseMaskedTrainer``). Both numpy ways single-threaded.
* infer ms/batch (1,000 images): dense-masked JAX, compact JAX (dead units
  folded), scipy CSR (``CompactMLP.sparse``).
* bytes: the dense float32 params, the compact dense params, the CSR arrays
  and the ticket file.

The break-even density is where the device trainer's step time crosses the
dense-masked JAX one's (linear interpolation between measured levels); the
device trainer's step should take no longer than the dense-masked numpy one's at
any level. Times are best-of-``--repeats``, the ways of one level timed in turns,
so that a shared CPU's load hits them alike and their ratios are comparable.
"""

from __future__ import annotations

import os

# numpy's BLAS single-threaded, as on a small device (and many threads thrash a shared CPU).
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import argparse  # noqa: E402
import dataclasses
import functools
import tempfile
import time
from pathlib import Path

import common
import jax
import jax.numpy as jnp
import numpy as np
import optax
import structured_speed

from lth_jax.analyses import compact, edge_trainer, ticket
from lth_jax.core import masks as masks_lib
from lth_jax.core import train as train_lib

BATCH, INFER_BATCH = 60, 1000


def make_study(root: Path, data_dir: str) -> Path:
  """A LeNet-300-100 study on Fashion-MNIST, 15 levels of 400 iterations (masks, not accuracy)."""
  from experiments import lenet300
  from lth_jax.commands import run as run_study

  c = lenet300.get_config('quick')
  c.name, c.num_steps, c.eval_every, c.num_levels, c.arms = 'bench-sparse', 400, 200, 15, 'ticket'
  c.data.data_dir = data_dir
  return run_study(c, root, log=lambda m: None, progress=False)


def library_step(model, params, masks, data, steps: int):
  task = dataclasses.replace(common.lenet_task(), model=model)
  state = train_lib.create_state(task, params, {}, masks)
  run = jax.jit(functools.partial(train_lib.train_steps, task, num_steps=steps, train=data))
  key = jax.random.key(0)
  common.block(run(state, data_key=key))
  return lambda: common.block(run(state, data_key=key))


def uncompacted(params, masks) -> compact.CompactMLP:
  """The dense-masked network in the same form as a compact one (nothing removed)."""
  flat_p, flat_m = ticket.flatten(params), ticket.flatten(masks)
  names = edge_trainer.dense_layers(flat_p)
  ms = [flat_m[f'{n}/kernel'] for n in names]
  return compact.CompactMLP(
    inputs=np.arange(ms[0].shape[0]),
    kernels=[np.where(m, flat_p[f'{n}/kernel'], 0) for n, m in zip(names, ms, strict=True)],
    biases=[flat_p[f'{n}/bias'] for n in names],
    masks=ms,
  )


def masked_step(small: compact.CompactMLP, data, steps: int):
  """One loop for both: Adam on (W ⊙ m) kernels with masked gradients, data pre-batched."""
  params, masks = small.params(), _masks_tree(small)
  opt = optax.adam(1.2e-3)
  x_all = jnp.asarray(data.x[: steps * BATCH].reshape(steps, BATCH, -1)[:, :, small.inputs])
  y_all = jnp.asarray(data.y[: steps * BATCH].reshape(steps, BATCH))

  def loss(p, x, y):
    p = jax.tree.map(lambda w, m: w * m, p, masks)  # As the framework: the forward sees W ⊙ m.
    return train_lib.cross_entropy(compact.forward(p, x.astype(jnp.float32) / 255.0), y)

  def body(carry, batch):
    p, s = carry
    g = jax.tree.map(lambda g, m: g * m, jax.grad(loss)(p, *batch), masks)
    u, s = opt.update(g, s, p)
    return (jax.tree.map(lambda w, m: w * m, optax.apply_updates(p, u), masks), s), None

  run = jax.jit(lambda p: jax.lax.scan(body, (p, opt.init(p)), (x_all, y_all))[0])
  common.block(run(params))
  return lambda: common.block(run(params))


def _masks_tree(small):
  return {
    f'layer_{i}': {'kernel': jnp.asarray(m, jnp.float32), 'bias': jnp.ones(m.shape[1])}
    for i, m in enumerate(small.masks)
  }


def device_step(path: Path, x, y, steps: int, trainer=edge_trainer.DeviceTrainer):
  """``steps`` numpy steps of ``trainer`` (the device trainer or its dense-masked baseline)."""
  trainer = trainer.from_file(path)

  def go():
    for i in range(steps):
      trainer.step(x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH])

  go()  # The device trainer chooses its layers' modes on its first step.
  return trainer, go


def inference(model, params, masks, small, x, repeats: int) -> dict[str, float]:
  xf = jnp.asarray(x, jnp.float32) / 255.0
  dense = jax.jit(lambda p, m, x: model.apply({'params': masks_lib.apply(p, m)}, x))
  cparams = small.params()
  comp = jax.jit(lambda p, x: compact.forward(p, compact.select(x, small.inputs)))
  csr, xn = small.sparse(), np.asarray(xf)
  common.block(dense(params, masks, xf))
  common.block(comp(cparams, xf))
  runs = {
    'infer_dense_masked_ms': lambda: common.block(dense(params, masks, xf)),
    'infer_compact_ms': lambda: common.block(comp(cparams, xf)),
    'infer_csr_ms': lambda: csr(xn),
  }
  return common.interleaved(runs, repeats, per=1)


def measure(run_dir: Path, level: int, data, out: Path, steps: int, repeats: int) -> dict:
  t = ticket.export(run_dir, level=level)
  path = ticket.save(t, out / f'level_{level}.npz')
  model, params, masks = ticket.load(path)
  data = data._replace(y=data.y % t.header['num_classes'])
  trainable = compact.compact(params, masks, fold=False)
  folded = compact.compact(params, masks)
  full = uncompacted(params, masks)
  x, y = np.asarray(data.x[: steps * BATCH]), np.asarray(data.y[: steps * BATCH])
  device, device_go = device_step(path, x, y, steps)
  _, numpy_dense_go = device_step(path, x, y, steps, edge_trainer.DenseMaskedTrainer)
  row = {
    'level': level,
    'remaining': t.header['weights_remaining'],
    'compact_shapes': 'x'.join(str(s[0]) for s in folded.shapes) + f'x{folded.shapes[-1][1]}',
    **common.interleaved(
      {
        'train_library_ms': library_step(model, params, masks, data, steps),
        'train_dense_masked_ms': masked_step(full, data, steps),
        'train_compact_ms': masked_step(trainable, data, steps),
        'train_device_ms': device_go,
        'train_numpy_dense_ms': numpy_dense_go,
      },
      repeats,
      per=steps,
    ),
    'device_modes': ','.join(device.modes),
    **inference(model, params, masks, folded, np.asarray(data.x[:INFER_BATCH]), repeats),
    'dense_bytes': t.dense_bytes(),
    'compact_bytes': int(sum(k.nbytes + b.nbytes for k, b in zip(folded.kernels, folded.biases))),
    'csr_bytes': folded.sparse().nbytes(),
    'file_bytes': ticket.file_bytes(path),
  }
  return row


def break_even(rows) -> float | None:
  """The density where the device trainer's step time equals the dense-masked one's."""
  pts = sorted((r['remaining'], r['train_device_ms'] / r['train_dense_masked_ms']) for r in rows)
  for (d0, r0), (d1, r1) in zip(pts, pts[1:]):
    if (r0 - 1) * (r1 - 1) <= 0 and r0 != r1:
      return d0 + (1 - r0) * (d1 - d0) / (r1 - r0)
  return None


def table(rows) -> str:
  lines = [
    '| remaining | compact shape | train ms/step: library / dense-masked / compact JAX / device | '
    'speed-up compact, device | infer ms/1000: dense-masked / compact / CSR | file KB (dense KB) | '
    'numpy train ms/step: dense-masked / device (ratio; device modes) |',
    '|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    lines.append(
      f'| {r["remaining"]:.1%} | {r["compact_shapes"]} | {r["train_library_ms"]:.3f} / '
      f'{r["train_dense_masked_ms"]:.3f} / {r["train_compact_ms"]:.3f} / {r["train_device_ms"]:.3f} | '
      f'{r["train_dense_masked_ms"] / r["train_compact_ms"]:.2f}x, '
      f'{r["train_dense_masked_ms"] / r["train_device_ms"]:.2f}x | '
      f'{r["infer_dense_masked_ms"]:.2f} / {r["infer_compact_ms"]:.2f} / {r["infer_csr_ms"]:.2f} | '
      f'{r["file_bytes"] / 1e3:.0f} ({r["dense_bytes"] / 1e3:.0f}, '
      f'{r["dense_bytes"] / r["file_bytes"]:.1f}x) | '
      f'{r["train_numpy_dense_ms"]:.3f} / {r["train_device_ms"]:.3f} '
      f'({r["train_device_ms"] / r["train_numpy_dense_ms"]:.2f}x; {r["device_modes"]}) |'
    )
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--run_dir', type=Path)
  parser.add_argument('--make', type=Path, help='make a small study under this directory first')
  parser.add_argument('--data_dir', default='')
  parser.add_argument('--levels', default='', help='default 0,3,7,10,12,15 (--structured: 4,7,8)')
  parser.add_argument('--structured', type=Path, help='a unit/channel study: compact vs masked')
  parser.add_argument('--steps', type=int, default=200)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  if args.structured:
    levels = [int(v) for v in (args.levels or '4,7,8').split(',')]
    return structured_speed.main(args.structured, levels, args.steps, max(args.repeats, 5))
  args.levels = args.levels or '0,3,7,10,12,15'
  began = time.time()
  run_dir = args.run_dir or make_study(args.make, args.data_dir)
  print(common.describe_machine(), f'run {run_dir}')
  data = common.fake_mnist(max(args.steps * BATCH, INFER_BATCH))
  rows = []
  with tempfile.TemporaryDirectory() as out:
    for level in args.levels.split(','):
      rows.append(measure(run_dir, int(level), data, Path(out), args.steps, args.repeats))
      print(rows[-1], flush=True)  # Each level as it is measured.
  print(table(rows))
  even = break_even(rows)
  print(f'break-even density (device = dense-masked JAX step time): {even:.1%}' if even else
        'break-even density: not crossed between the measured levels')  # fmt: skip
  ratios = [f'{r["train_device_ms"] / r["train_numpy_dense_ms"]:.2f}x at {r["remaining"]:.1%}'
            for r in rows]  # fmt: skip
  print('device step / dense-masked numpy step (≤ 1 wanted; all-dense layers: 1 up to noise):',
        ', '.join(ratios))  # fmt: skip
  print(f'({time.time() - began:.0f} s)')


if __name__ == '__main__':
  main()

"""Conv-2 training throughput on CPU, against the machine's matmul FLOP floor.

Compares the two conv implementations of ``lth_jax.core.im2col`` ('lax': XLA's own
weight gradient; 'im2col': the same forward, weight gradient as one matmul).

Times a jitted Adam train step run under ``jax.lax.scan`` (batch 60, 32x32x3, random
data already on device), counts one step's FLOPs analytically, measures the dense
float32 matmul rate, and prints the implied floor time per step.

Then a user's Conv-2 (plain ``nn.Conv``, no conv function chosen) trained by the library's
own step (``train.train_step``): before (``LTH_CONV_IMPL=lax``, XLA:CPU's weight gradient)
against after (the default on CPU: every plain ``nn.Conv`` on im2col), and their ratio.

  python benchmarks/bench_conv2.py [--steps 20] [--repeats 5] [--only zoo|user]
"""

from __future__ import annotations

import argparse
import os

import common
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lth_jax.core import im2col, models
from lth_jax.core import train as train_lib

BATCH = 60
IMAGE = (32, 32, 3)
CLASSES = 10


def conv2_forward_flops(image=IMAGE, classes=CLASSES) -> list[tuple[str, int]]:
  """Per-example forward FLOPs (2 per multiply-add) of each Conv-2 layer.

  Bias adds, ReLUs and pooling are O(activations), well under 1% here, and ignored.
  """
  h, w, c = image
  layers = [
    ('conv_0 3x3 3->64', 2 * h * w * 64 * 3 * 3 * c),
    ('conv_1 3x3 64->64', 2 * h * w * 64 * 3 * 3 * 64),
  ]
  flat = (h // 2) * (w // 2) * 64  # After the 2x2 max-pool.
  layers += [
    (f'dense_0 {flat}->256', 2 * flat * 256),
    ('dense_1 256->256', 2 * 256 * 256),
    (f'output 256->{classes}', 2 * 256 * classes),
  ]
  return layers


def make_train_loop(model, optimizer):
  """A jitted function running one scan of Adam steps over stacked batches."""

  def loss_fn(params, x, y):
    logits = model.apply({'params': params}, x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(carry, batch):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  @jax.jit
  def train_loop(params, opt_state, xs, ys):
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (xs, ys))
    return params, opt_state, losses

  return train_loop


class UserConv2(nn.Module):
  """Conv-2 as a user writes it: plain ``nn.Conv``, a head of its own name, no ``train``."""

  num_classes: int = CLASSES

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(64, (3, 3), name='conv_a')(x))
    x = nn.relu(nn.Conv(64, (3, 3), name='conv_b')(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2)).reshape(len(x), -1)
    x = nn.relu(nn.Dense(256, name='hidden_a')(x))
    x = nn.relu(nn.Dense(256, name='hidden_b')(x))
    return nn.Dense(self.num_classes, name='classifier')(x)


def user_seconds_per_step(impl: str, steps: int, repeats: int) -> float:
  """Seconds per ``train.train_step`` of ``UserConv2`` with ``LTH_CONV_IMPL=impl``."""
  task = train_lib.Task(UserConv2(), optax.adam(2e-4), BATCH)
  params, model_state = train_lib.init_variables(task.model, jax.random.key(0), IMAGE)
  state = train_lib.create_state(task, params, model_state)
  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.integers(0, 256, (steps, BATCH, *IMAGE)), jnp.uint8)
  ys = jnp.asarray(rng.integers(0, CLASSES, (steps, BATCH)), jnp.int32)
  keys = jax.random.split(jax.random.key(1), steps)
  body = lambda state, batch: train_lib.train_step(task, state, *batch)
  loop = jax.jit(lambda state: jax.lax.scan(body, state, (xs, ys, keys)))
  previous = os.environ.get(im2col.ENV_VAR)
  os.environ[im2col.ENV_VAR] = impl  # Read when the step is traced.
  try:
    loop = loop.lower(state).compile()  # Not timed.
  finally:
    if previous is None:
      del os.environ[im2col.ENV_VAR]
    else:
      os.environ[im2col.ENV_VAR] = previous
  return common.best_of(lambda: common.block(loop(state)), repeats) / steps


def user_model(args) -> None:
  print(
    f"A user's Conv-2 (plain nn.Conv) through train.train_step, batch {BATCH}, {IMAGE}; "
    f'load average {os.getloadavg()}:',
    flush=True,
  )
  seconds = {}
  for impl, label in (('lax', 'before (LTH_CONV_IMPL=lax)'), ('im2col', 'after (default on CPU)')):
    seconds[impl] = user_seconds_per_step(impl, args.steps, args.repeats)
    print(f'  {label:28s} {seconds[impl] * 1e3:8.1f} ms/step', flush=True)
  print(f'  speed-up: {seconds["lax"] / seconds["im2col"]:.1f}x (same run)', flush=True)


def zoo_model(args) -> None:
  model = models.get_model('conv2', num_classes=CLASSES, conv_impl='lax')
  params = jax.jit(lambda k: model.init(k, jnp.zeros((1, *IMAGE)), train=False))(jax.random.key(0))[
    'params'
  ]
  optimizer = optax.adam(2e-4)  # The paper's Conv-2 learning rate.
  opt_state = optimizer.init(params)
  xs = jax.random.normal(jax.random.key(3), (args.steps, BATCH, *IMAGE), jnp.float32)
  ys = jax.random.randint(jax.random.key(4), (args.steps, BATCH), 0, CLASSES)
  layers = conv2_forward_flops()
  per_example = sum(f for _, f in layers)
  step_flops = 3 * per_example * BATCH  # Backward ~ 2x forward (input and weight gradients).
  print(f'devices: {jax.devices()}  load average: {os.getloadavg()}')
  print(f'Conv-2 forward FLOPs per example ({IMAGE}):')
  for name, flops in layers:
    print(f'  {name:24s} {flops / 1e6:10.2f} MFLOP  ({flops / per_example:6.1%})')
  print(f'  {"total":24s} {per_example / 1e6:10.2f} MFLOP')
  print(f'train step FLOPs (3 x forward x batch {BATCH}): {step_flops / 1e9:.2f} GFLOP')
  rate = common.matmul_flops_per_second()
  floor = step_flops / rate
  print(f'matmul 2048x2048 f32 rate: {rate / 1e9:.1f} GFLOP/s', flush=True)

  print(f'FLOP floor: {floor * 1e3:.1f} ms/step ({1 / floor:.2f} it/s)')
  for impl in im2col.IMPLS:
    model = models.get_model('conv2', num_classes=CLASSES, conv_impl=impl)
    train_loop = make_train_loop(model, optimizer)
    common.block(train_loop(params, opt_state, xs, ys))  # Compilation, not timed.
    seconds = common.best_of(
      lambda: common.block(train_loop(params, opt_state, xs, ys)), args.repeats
    )
    step_seconds = seconds / args.steps
    print(
      f'{impl:7s} measured: {1 / step_seconds:.3f} it/s, {step_seconds * 1e3:.1f} ms/step '
      f'({step_flops / step_seconds / 1e9:.1f} GFLOP/s achieved); '
      f'measured/floor = {step_seconds / floor:.2f}',
      flush=True,
    )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=20, help='train steps per scan')
  parser.add_argument('--repeats', type=int, default=2, help='timed scans (best is kept)')
  parser.add_argument('--only', choices=('zoo', 'user'), help='one of the two comparisons')
  args = parser.parse_args()
  if args.only != 'user':
    zoo_model(args)
  if args.only != 'zoo':
    user_model(args)


if __name__ == '__main__':
  main()

"""A bare-JAX lottery-ticket study: the yardstick for benchmarks/bench_study.py.

What a researcher would write without a framework, on the same recipe as
``lth run --config=experiments/lenet300.py:paper`` with Fashion-MNIST, 5,000
iterations, 3 levels, ticket + random reinit, 1 seed: LeNet-300-100 (Gaussian
Glorot init), Adam 1.2e-3, batch 60, a fresh random order every epoch,
validation on the last 5,000 training images and test every 100 iterations,
early stopping at the minimum validation loss, layer-wise pruning of 20%
(hidden) / 10% (output) of the surviving weights per level, rewinding to θ0.

    python benchmarks/bare_study.py [--iterations 5000] [--levels 3]
"""

import argparse
import gzip
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

FASHION = '/usr/share/datasets/fashion-mnist/'
SIZES = (784, 300, 100, 10)


def idx(name, offset):
  with gzip.open(FASHION + name) as f:
    return np.frombuffer(f.read(), np.uint8, offset=offset)


def load():
  x = idx('train-images-idx3-ubyte.gz', 16).reshape(-1, 784)
  y = idx('train-labels-idx1-ubyte.gz', 8).astype(np.int32)
  xt = idx('t10k-images-idx3-ubyte.gz', 16).reshape(-1, 784)
  yt = idx('t10k-labels-idx1-ubyte.gz', 8).astype(np.int32)
  mean, std = (x[:-5000] / 255.0).mean(), (x[:-5000] / 255.0).std()
  norm = lambda a: jnp.asarray(((a / 255.0 - mean) / std).astype(np.float32))
  return (norm(x[:-5000]), y[:-5000]), (norm(x[-5000:]), y[-5000:]), (norm(xt), yt)


def init(key):
  keys = jax.random.split(key, 3)
  glorot = jax.nn.initializers.glorot_normal()
  return [{'w': glorot(k, (a, b)), 'b': jnp.zeros(b)} for k, a, b in zip(keys, SIZES, SIZES[1:])]


def logits(params, masks, x):
  for i, (p, m) in enumerate(zip(params, masks, strict=True)):
    x = x @ (p['w'] * m) + p['b']
    x = jax.nn.relu(x) if i < len(params) - 1 else x
  return x


def loss(params, masks, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits(params, masks, x), y).mean()


opt = optax.adam(1.2e-3)


@jax.jit
def train_period(params, opt_state, masks, x, y, batches):
  """One evaluation period: a scan over its batches (indices [steps, 60])."""

  def step(carry, batch):
    params, opt_state = carry
    grads = jax.grad(loss)(params, masks, x[batch], y[batch])
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  return jax.lax.scan(step, (params, opt_state), batches)[0]


@jax.jit
def evaluate(params, masks, vx, vy, tx, ty):
  """Validation loss and test accuracy."""
  val = optax.softmax_cross_entropy_with_integer_labels(logits(params, masks, vx), vy).mean()
  return val, (logits(params, masks, tx).argmax(-1) == ty).mean()


def train(params, masks, data, key, iterations):
  (x, y), (vx, vy), (tx, ty) = data
  y, vy, ty = jnp.asarray(y), jnp.asarray(vy), jnp.asarray(ty)
  opt_state, per_epoch = opt.init(params), len(x) // 60
  orders = {}  # Epoch -> its random order of the training examples.
  best = (np.inf, 0, 0.0)
  for it in range(0, iterations + 1, 100):
    val_loss, test_acc = evaluate(params, masks, vx, vy, tx, ty)
    if float(val_loss) < best[0]:
      best = (float(val_loss), it, float(test_acc))
    if it == iterations:
      return params, best
    batches = []
    for s in range(it, it + 100):
      epoch = s // per_epoch
      if epoch not in orders:
        orders = {epoch: np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), len(x)))}
      batches.append(orders[epoch][(s % per_epoch) * 60 : (s % per_epoch + 1) * 60])
    params, opt_state = train_period(params, opt_state, masks, x, y, jnp.asarray(np.stack(batches)))


def prune(params, masks):
  new = []
  for i, (p, m) in enumerate(zip(params, masks, strict=True)):
    rate = 0.1 if i == len(params) - 1 else 0.2
    alive = np.asarray(m).sum()
    keep = int(alive - round(rate * alive))
    scores = np.where(np.asarray(m), np.abs(np.asarray(p['w'])), -np.inf).ravel()
    order = np.argsort(-scores, kind='stable')
    kept = np.zeros(scores.size, bool)
    kept[order[:keep]] = True
    new.append(jnp.asarray(kept.reshape(m.shape), jnp.float32))
  return new


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--iterations', type=int, default=5000)
  parser.add_argument('--levels', type=int, default=3)
  args = parser.parse_args()
  start = time.perf_counter()
  data = load()
  init_key, data_key, reinit_key = jax.random.split(jax.random.key(0), 3)
  theta0 = init(init_key)
  masks = [jnp.ones((a, b)) for a, b in zip(SIZES, SIZES[1:])]
  trained = None
  for level in range(args.levels + 1):
    if level:
      masks = prune(trained, masks)
    arms = (
      {'ticket': theta0}
      if level == 0
      else {'ticket': theta0, 'reinit': init(jax.random.fold_in(reinit_key, level))}
    )
    for arm, start_params in arms.items():
      params, (val_loss, stop, test_acc) = train(
        start_params, masks, data, data_key, args.iterations
      )
      if arm == 'ticket':
        trained = params
      remaining = sum(float(m.sum()) for m in masks) / 266_200
      print(
        f'level {level} {arm:<7} {100 * remaining:5.1f}%  early stop {stop:>5}  val loss {val_loss:.4f}  test acc {100 * test_acc:.2f}%',
        flush=True,
      )
  print(f'bare study: {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
  main()

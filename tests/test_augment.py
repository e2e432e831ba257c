"""random_crop_flip: deterministic, per-image, and every output is a shifted/mirrored copy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax.core.augment import random_crop_flip

# One jitted function, one batch shape and padding always passed by keyword (a default
# and an explicit value are different static keys): every XLA compile costs ~1.5 s on CPU.
augment = jax.jit(random_crop_flip, static_argnames='padding')


def _images(batch=32, size=8, channels=3, seed=0):
  # Strictly positive so the zero padding is distinguishable from content.
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(0.1, 1.0, (batch, size, size, channels)), jnp.float32)


def _candidates(image: np.ndarray, padding: int):
  """Every crop of the zero-padded image, and its mirror, keyed by (dy, dx, flipped)."""
  h, w, _ = image.shape
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  for dy in range(2 * padding + 1):
    for dx in range(2 * padding + 1):
      crop = padded[dy : dy + h, dx : dx + w]
      yield (dy, dx, False), crop
      yield (dy, dx, True), crop[:, ::-1]


def _match(out: np.ndarray, image: np.ndarray, padding: int):
  return [k for k, c in _candidates(image, padding) if np.array_equal(out, c)]


def test_deterministic_per_key(key):
  images = _images()
  a = augment(key, images, padding=4)
  b = augment(key, images, padding=4)
  np.testing.assert_array_equal(a, b)


def test_different_keys_differ(key):
  images = _images()
  a = augment(key, images, padding=4)
  b = augment(jax.random.fold_in(key, 1), images, padding=4)
  assert not np.array_equal(a, b)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_shape_and_dtype(key, dtype):
  images = _images().astype(dtype)
  out = augment(key, images, padding=4)
  assert out.shape == images.shape and out.dtype == dtype


def test_padding_zero_flips_only(key):
  images = np.asarray(_images())
  out = np.asarray(augment(key, jnp.asarray(images), padding=0))
  flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images, strict=True)]
  same = [np.array_equal(o, i) for o, i in zip(out, images, strict=True)]
  assert all(f or s for f, s in zip(flipped, same, strict=True))
  assert 5 < sum(flipped) < 27  # Both outcomes happen, at roughly even odds.


def test_crops_are_shifted_copies(key):
  padding = 4
  images = np.asarray(_images())
  out = np.asarray(augment(key, jnp.asarray(images), padding=padding))
  found = set()
  for o, image in zip(out, images, strict=True):
    matches = _match(o, image, padding)
    assert matches, 'output is not a crop (or mirrored crop) of the padded input'
    found.update(matches)
  offsets = {(dy, dx) for dy, dx, _ in found}
  assert len(offsets) > 5  # Offsets are drawn per image, not once per batch.
  assert {False, True} <= {f for _, _, f in found}


def test_jit_scan_with_folded_keys(key):
  images = _images()
  seed_key = jax.random.fold_in(key, 7)

  @jax.jit
  def run(images):
    def step(carry, step_index):
      return carry, random_crop_flip(jax.random.fold_in(seed_key, step_index), images)

    return jax.lax.scan(step, None, jnp.arange(3))[1]

  outs = run(images)
  assert outs.shape == (3, *images.shape)
  # Same key, same result whether traced inside scan or called on its own.
  alone = augment(jax.random.fold_in(seed_key, 1), images, padding=4)
  np.testing.assert_array_equal(outs[1], alone)
  assert not np.array_equal(outs[0], outs[1])


def test_negative_padding_is_refused(key):
  with pytest.raises(ValueError, match='padding'):
    random_crop_flip(key, _images(), padding=-1)

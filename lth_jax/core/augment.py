"""On-device data augmentation: pure functions of (key, batch), safe inside jit, vmap and scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_crop_flip(key: jax.Array, images: jax.Array, *, padding: int = 4) -> jax.Array:
  """Zero-pads, randomly crops back to size and randomly mirrors each image.

  The standard CIFAR augmentation: every image gets its own crop offset,
  uniform in ``[0, 2 * padding]`` on each axis, and is flipped left-right
  with probability 1/2. Nothing branches on array values, so the function
  traces once per shape and is deterministic for a given ``key``.

  Args:
    key: PRNG key; fold in the seed and step outside to vary it per batch.
    images: [B, H, W, C] batch (any dtype; float in training).
    padding: pixels of zeros added on each side before cropping (a Python int).

  Returns:
    [B, H, W, C] array of ``images.dtype``.
  """
  if padding < 0:
    raise ValueError(f'padding must be >= 0, got {padding}')
  batch, height, width, channels = images.shape
  crop_key, flip_key = jax.random.split(key)
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * padding + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

  cropped = jax.vmap(crop)(padded, offsets)
  flip = jax.random.bernoulli(flip_key, 0.5, (batch,))
  return jnp.where(flip[:, None, None, None], cropped[:, :, ::-1], cropped)

"""A 2-D convolution whose weight gradient is one matmul, for XLA:CPU.

XLA:CPU computes the weight gradient of a convolution (a conv of the input with
the output gradient) more than ten times slower than the forward pass: Conv-2's
64->64 layer on a 60x32x32 batch takes ~0.07 s forward but ~0.9 s for the kernel
gradient. ``conv_general_dilated`` below is a drop-in for
``lax.conv_general_dilated`` (Flax's ``nn.Conv(conv_general_dilated=...)``)
with the same forward pass and a weight gradient computed as im2col: the kh*kw
shifted (strided) slices of the padded input, concatenated along channels, times
the output gradient in one matmul. Its input gradient is one plain convolution of
the padded, stride-dilated output gradient with the flipped kernel: lax's own
transposed conv is as fast in a plain program but several times slower inside
``lax.scan`` (how training runs) on XLA:CPU. The zoo's models keep lax's input
gradient (``input_grad='vjp'``), with which their recorded results were computed.

``default_impl()`` picks it on CPU only; GPUs and TPUs have fast native kernels. The zoo's
models ask for it (``nn.Conv(conv_general_dilated=conv_fn(impl))``); a user's model gets it
without any change: under ``plain_convs()`` (entered wherever the library applies a model:
training, evaluation, the gradient scores) every plain ``nn.Conv`` it supports (2-D, no groups,
no dilation, no conv function of its own) runs on it; any other conv is left as it is.

One switch, read when a program is traced: ``LTH_CONV_IMPL=lax`` (or ``im2col``) in the
environment overrides the backend's default for the zoo's models and users' alike.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ('lax', 'im2col')
ENV_VAR = 'LTH_CONV_IMPL'  # 'lax' or 'im2col': overrides the backend's default.
_NHWC = ('NHWC', 'HWIO', 'NHWC')


def default_impl() -> str:
  """``$LTH_CONV_IMPL`` if set, else 'im2col' on CPU, where it is faster, and 'lax' elsewhere."""
  chosen = os.environ.get(ENV_VAR, '')
  if chosen:
    if chosen not in IMPLS:
      raise ValueError(f'{ENV_VAR}={chosen!r}; choose one of {IMPLS}.')
    return chosen
  return 'im2col' if jax.default_backend() == 'cpu' else 'lax'


def _explicit_padding(padding, in_hw, kernel_hw, strides):
  if not isinstance(padding, str):
    return tuple((int(lo), int(hi)) for lo, hi in padding)
  return tuple(lax.padtype_to_pads(in_hw, kernel_hw, strides, padding))


def _lax_conv(x, w, strides, padding):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC)


def _fwd(x, w, strides, padding):
  return _lax_conv(x, w, strides, padding), (x, w)


def _weight_grad(x, g, kernel_hw, strides, padding):
  """dL/dw[i, j, c, o] = sum_{n,h,w} xpad[n, s*h + i, s*w + j, c] * g[n, h, w, o]."""
  (kh, kw), (sh, sw) = kernel_hw, strides
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  n, ho, wo, co = g.shape
  ci = x.shape[-1]
  patches = [
    lax.slice(
      xp, (0, i, j, 0), (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, ci), (1, sh, sw, 1)
    )
    for i in range(kh)
    for j in range(kw)
  ]
  cols = jnp.concatenate(patches, axis=-1).reshape(n * ho * wo, kh * kw * ci)
  dw = jnp.dot(cols.T, g.reshape(n * ho * wo, co), preferred_element_type=g.dtype)
  return dw.reshape(kh, kw, ci, co)


def _vjp_input_grad(x, w, g, strides, padding):
  """dL/dx as ``jax.vjp`` gives it, lax's transposed conv: the zoo's (see ``conv_nhwc_zoo``)."""
  _, x_vjp = jax.vjp(lambda x: _lax_conv(x, w, strides, padding), x)
  return x_vjp(g)[0]


def _plain_input_grad(x, w, g, strides, padding):
  """dL/dx as one plain NHWC x HWIO convolution: the output gradient dilated by the strides and
  padded (one ``lax.pad``), convolved with the kernel flipped and its channels swapped.

  The same sums as the transposed conv ``jax.vjp`` gives (kernel as 01oi, lhs dilation), in a
  form XLA:CPU runs as fast inside a loop (``lax.scan``, how training runs) as outside; that one
  took 5-17x longer inside one than outside here (Conv-2's 64->64 layer: 260 ms against 45).
  """
  config = [(0, 0, 0)]
  sizes = zip(padding, w.shape[:2], strides, x.shape[1:3], g.shape[1:3], strict=True)
  for (lo, _), k, s, n, o in sizes:
    config.append((k - 1 - lo, n + lo - (o - 1) * s - 1, s - 1))
  config.append((0, 0, 0))
  g_full = lax.pad(g, jnp.zeros((), g.dtype), config)
  w_back = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  return lax.conv_general_dilated(g_full, w_back, (1, 1), 'VALID', dimension_numbers=_NHWC)


def _conv_with(input_grad):
  """NHWC x HWIO convolution with explicit ``padding``: lax's forward, weight gradient by
  im2col, input gradient by ``input_grad``."""

  @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
  def conv(x, w, strides: tuple[int, int], padding: tuple[tuple[int, int], ...]):
    return _lax_conv(x, w, strides, padding)

  def bwd(strides, padding, res, g):
    x, w = res
    dx = input_grad(x, w, g, strides, padding).astype(x.dtype)
    return dx, _weight_grad(x, g, w.shape[:2], strides, padding).astype(w.dtype)

  conv.defvjp(_fwd, bwd)
  return conv


# Users' convs (``plain_convs``) take the plain input gradient. The zoo's keep the transposed
# conv that their recorded results (tests/golden) were computed with: the same sums in another
# order, so the last bits differ; switching them means regenerating those on purpose.
conv_nhwc = _conv_with(_plain_input_grad)
conv_nhwc_zoo = _conv_with(_vjp_input_grad)
INPUT_GRADS = {'plain': conv_nhwc, 'vjp': conv_nhwc_zoo}


def conv_general_dilated(
  lhs,
  rhs,
  window_strides: Sequence[int],
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  precision=None,
  *,
  input_grad: str = 'plain',
  **kwargs,
):
  """``lax.conv_general_dilated`` with the im2col weight gradient where it applies.

  Applies to 2-D NHWC/HWIO convs without dilation or groups (every conv of the
  models here); anything else falls through to ``lax.conv_general_dilated``.
  ``input_grad``: 'plain' (one plain conv, fast in loops too) or 'vjp' (the zoo's).
  """
  plain = (
    lhs.ndim == 4
    and all(d == 1 for d in (lhs_dilation or (1, 1)))
    and all(d == 1 for d in (rhs_dilation or (1, 1)))
    and feature_group_count == 1
    and precision is None
    and not kwargs
    and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  )
  if not plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, precision=precision, **kwargs,
    )  # fmt: skip
  strides = tuple(int(s) for s in window_strides)
  pads = _explicit_padding(padding, lhs.shape[1:3], rhs.shape[:2], strides)
  return INPUT_GRADS[input_grad](lhs, rhs, strides, pads)


_zoo_conv_general_dilated = functools.partial(conv_general_dilated, input_grad='vjp')


def conv_fn(impl: str):
  """The ``conv_general_dilated`` for ``nn.Conv``: lax's own (chosen, so ``plain_convs``
  leaves it alone) or im2col's."""
  if impl not in IMPLS:
    raise ValueError(f'conv impl={impl!r}; choose one of {IMPLS}.')
  return _zoo_conv_general_dilated if impl == 'im2col' else lax.conv_general_dilated


def _ones(value) -> bool:
  return value is None or all(v == 1 for v in ((value,) if isinstance(value, int) else value))


def supported(conv: nn.Module) -> bool:
  """Whether ``plain_convs`` gives ``conv`` im2col's weight gradient: a ``nn.Conv`` with no
  conv function of its own, 2-D, without groups, dilation or an explicit precision."""
  if not isinstance(conv, nn.Conv):
    return False
  kernel = conv.kernel_size
  return (
    conv.conv_general_dilated is None
    and conv.conv_general_dilated_cls is None
    and not isinstance(kernel, int)
    and len(kernel) == 2
    and conv.feature_group_count == 1
    and _ones(conv.input_dilation)
    and _ones(conv.kernel_dilation)
    and conv.precision is None
  )


def _on_im2col(next_fun, args, kwargs, context):
  """A Flax method interceptor: a supported conv's ``__call__`` runs with im2col's conv.

  The module is the bound copy of this one ``apply`` (never the user's own object); its
  ``conv_general_dilated`` field is set for the call and restored after it.
  """
  conv = context.module
  if context.method_name != '__call__' or not supported(conv):
    return next_fun(*args, **kwargs)
  object.__setattr__(conv, 'conv_general_dilated', conv_general_dilated)
  try:
    return next_fun(*args, **kwargs)
  finally:
    object.__setattr__(conv, 'conv_general_dilated', None)


@contextlib.contextmanager
def plain_convs(impl: str | None = None):
  """Within it, the supported plain ``nn.Conv`` of any model applied (traced) runs on
  ``impl``'s convolution (None: ``default_impl()``); 'lax' changes nothing."""
  if (impl or default_impl()) == 'lax':
    yield
    return
  with nn.intercept_methods(_on_im2col):
    yield

"""2-D convolution that is fast to train on CPU; a drop-in for lax.conv_general_dilated.

XLA's CPU backend computes a convolution's weight gradient as another convolution, with the
output gradient as a kernel as large as the image: 4 to 7x slower than the forward pass at the
5x5, 64-384-channel layers of the DVF U-Net (oneDNN in torch takes about the forward's time),
and its forward pass reaches about 70% of these cores' peak. For a stride-1 NHWC/HWIO float32
convolution under differentiation, hcjax's compiled CPU kernels (csrc/conv2d.cc, see
hcjax.ops.cpu_kernels) compute the forward pass, the input gradient (the forward pass of the
output gradient with the kernel flipped) and the weight gradient, as register-tiled outer
products at about 90% of peak (the forward kernel only with 16 or more channels in and out).
They keep an evenly batch-sharded operand sharded (each device computes its own rows; the
weight gradient is then all-reduced) and take the XLA path under vmap. The undifferentiated
call stays XLA's on every platform, so exported models carry no custom call.

Without the kernels (no compiler at install time, HCJAX_CPU_KERNELS=0) and for other float
types, the weight gradient on CPU is instead one GEMM per chunk of rows:

    dW[i, j, ci, co] = sum_{b, p} X[b, p + i·Wp + j, ci] · G[b, p, co]

with X the zero-padded input and G the output gradient both flattened over (row, column) of a
Wp-wide padded grid (G zero outside the output), so that a kernel offset is a shift along one
axis. A chunk stacks the kw column shifts of X ([rows, kw·Ci]) and the kh row shifts of G
([rows, kh·Co]) and contracts them over (batch, rows) in one matrix product, 2-4x faster than
XLA's own. A strided convolution's weight gradient on CPU is the kernel's on its space-to-depth
form where that pays (_strided_conv_bwd), else XLA's. Elsewhere (GPU, TPU) and for dilated or
grouped convolutions XLA's native convolutions and gradients are used.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hcjax.ops import cpu_kernels

_NHWC = ("NHWC", "HWIO", "NHWC")
_CHUNK_ROWS = 4096   # rows of the padded grid per GEMM, over the whole batch (at least)
_REAL_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
# The forward kernel's vectors run over output channels and each tile call sums over the input
# channels of one kernel offset: with fewer of either, XLA's convolution is faster.
_KERNEL_MIN_CHANNELS = 16
_OP = "convolution's training passes"
# csrc/conv2d.cc's cap on the weight gradient's per-thread buffers, all threads together.
_KERNEL_PARTIAL_BYTES = 256 << 20
# A strided convolution's space-to-depth weight gradient does more multiply-adds (a 3x3/2 one
# 16/9 as many: the zero taps); it pays only where XLA:CPU's own is slow, on output rows this
# wide or wider (ResNet's stem and first strided stage at 224 px; its narrower ones were as
# fast or slower than XLA's).
_SPACE_TO_DEPTH_MIN_WIDTH = 16


def _native(x: jax.Array, w: jax.Array, pads, precision) -> jax.Array:
  return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_NHWC, precision=precision)


def weight_gradient(x: jax.Array, g: jax.Array, kernel: tuple[int, int],
                    pads: Sequence[tuple[int, int]], precision=None) -> jax.Array:
  """dLoss/dW [kh, kw, Ci, Co] of a stride-1 convolution from x [B, H, W, Ci] and g [B, Ho, Wo, Co].

  Computed in float32 as chunked GEMMs (see the module docstring); the batch axis stays a
  contraction axis, so a batch-sharded x and g give partial sums and one all-reduce, as the
  native gradient does (a test checks there is no all-gather).
  """
  (kh, kw), ((top, bottom), (left, right)) = kernel, pads
  b, _, _, ci = x.shape
  co = g.shape[-1]
  xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  hp, wp = xp.shape[1:3]
  if g.shape[1:3] != (hp - kh + 1, wp - kw + 1):
    raise ValueError(f"output gradient {g.shape} does not match input {x.shape}, kernel "
                     f"{kernel} and padding {pads}")
  size = hp * wp
  tail = (kh - 1) * wp                                   # rows a chunk reads past its end
  rows = min(size, max(4 * tail, -(-_CHUNK_ROWS // b), 256))
  chunks = -(-size // rows)
  flat_x = jnp.pad(xp.reshape(b, size, ci), ((0, 0), (0, chunks * rows + tail + kw - 1 - size),
                                             (0, 0)))
  gp = jnp.pad(g, ((0, 0), (0, kh - 1), (0, kw - 1), (0, 0)))      # zero outside the output
  flat_g = jnp.pad(gp.reshape(b, size, co), ((0, 0), (0, chunks * rows - size), (0, 0)))

  def chunk(c, total):
    start = c * rows
    xs = lax.dynamic_slice_in_dim(flat_x, start, rows + tail + kw - 1, axis=1)
    gs = lax.dynamic_slice_in_dim(flat_g, start, rows, axis=1)
    x_cols = jnp.concatenate([xs[:, j:j + rows + tail] for j in range(kw)], axis=2)
    g_rows = jnp.concatenate([jnp.pad(gs, ((0, 0), (i * wp, tail - i * wp), (0, 0)))
                              for i in range(kh)], axis=2)
    n = b * (rows + tail)
    return total + lax.dot_general(x_cols.reshape(n, kw * ci), g_rows.reshape(n, kh * co),
                                   (((0,), (0,)), ((), ())), precision=precision,
                                   preferred_element_type=jnp.float32)

  total = lax.fori_loop(0, chunks, chunk, jnp.zeros((kw * ci, kh * co), jnp.float32))
  return total.reshape(kw, ci, kh, co).transpose(2, 0, 1, 3)


def _kernel_forward(x: jax.Array, w: jax.Array, pads) -> jax.Array:
  """csrc/conv2d.cc's forward pass, float32; a batch-sharded x stays sharded."""
  (top, bottom), (left, right) = pads

  def call(x, w):
    out = jax.ShapeDtypeStruct((x.shape[0], x.shape[1] + top + bottom - w.shape[0] + 1,
                                x.shape[2] + left + right - w.shape[1] + 1, w.shape[3]),
                               jnp.float32)
    return jax.ffi.ffi_call("hcjax_conv2d_forward", out)(x, w, top=np.int64(top),
                                                        left=np.int64(left))

  xla = lambda x, w: _native(x, w, pads, None)
  return cpu_kernels.sharded_by_batch(call, xla, "b h w c, i j c o -> b y x o")(x, w)


def _kernel_weight_gradient(x: jax.Array, g: jax.Array, kernel: tuple[int, int], pads,
                            xla) -> jax.Array:
  """csrc/conv2d.cc's weight gradient [kh, kw, Ci, Co], float32; a batch-sharded x and g give
  per-device sums and one all-reduce."""
  (top, _), (left, _) = pads

  def call(x, g):
    dw = jax.ShapeDtypeStruct((*kernel, x.shape[3], g.shape[3]), jnp.float32)
    return jax.ffi.ffi_call("hcjax_conv2d_weight_gradient", dw)(x, g, top=np.int64(top),
                                                               left=np.int64(left))

  return cpu_kernels.sharded_by_batch(call, xla, "b h w c, b y x o -> i j c o",
                                      summed=True)(x, g)


def _kernel_applies(*arrays: jax.Array) -> bool:
  return all(a.dtype == jnp.float32 for a in arrays)


def _forward_kernel_applies(w: jax.Array, *arrays: jax.Array) -> bool:
  """Whether the forward kernel (also the input gradient's) takes a conv of kernel w."""
  return _kernel_applies(w, *arrays) and min(w.shape[2:]) >= _KERNEL_MIN_CHANNELS


def _forward(x, w, pads, precision):
  native = lambda x, w: _native(x, w, pads, precision)
  if not _forward_kernel_applies(w, x):
    return native(x, w)
  return cpu_kernels.by_platform(_OP, lambda x, w: _kernel_forward(x, w, pads), native, x, w)


def _input_gradient(x, w, g, pads, precision):
  """dLoss/dx: on the kernel path, the forward pass of g with w flipped and transposed."""
  (kh, kw) = w.shape[:2]
  flipped_pads = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip((kh, kw), pads))
  if not _forward_kernel_applies(w, g) or any(p < 0 for pair in flipped_pads for p in pair):
    return jax.vjp(lambda x: _native(x, w, pads, precision), x)[1](g)[0]
  flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  return cpu_kernels.by_platform(
      _OP, lambda g, f: _kernel_forward(g, f, flipped_pads),
      lambda g, f: _native(g, f, flipped_pads, precision), g, flipped)


def _weight_gradient(x, w, g, pads, precision):
  # Functions of (x, g) alone: the gradient is linear in them and w is only a shape here (a
  # closure over its tracer would break the kernel's vmap and JVP rules).
  w = jax.ShapeDtypeStruct(w.shape, w.dtype)
  native_dw = lambda x, g: jax.vjp(lambda w: _native(x, w, pads, precision),
                                   jnp.zeros(w.shape, w.dtype))[1](g)[0]
  gemm_dw = lambda x, g: weight_gradient(x, g, w.shape[:2], pads, precision).astype(w.dtype)
  xla_dw = lambda x, g: lax.platform_dependent(x, g, cpu=gemm_dw, default=native_dw)
  if not _kernel_applies(x, g):
    return xla_dw(x, g)
  if 2 * math.prod(w.shape) * 4 > _KERNEL_PARTIAL_BYTES:
    # The kernel would sum on one thread (its per-thread copies of dw do not fit), and for such
    # weights (VGG's fc6: 7x7x512x4096 on 7x7 maps) XLA's own beats the chunked GEMMs too.
    return native_dw(x, g)
  return cpu_kernels.by_platform(
      _OP, lambda x, g: _kernel_weight_gradient(x, g, w.shape[:2], pads, xla_dw), xla_dw, x, g)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, pads, precision) -> jax.Array:
  return _native(x, w, pads, precision)


def _conv_fwd(x, w, pads, precision):
  return _forward(x, w, pads, precision), (x, w)


def _conv_bwd(pads, precision, residuals, g):
  x, w = residuals
  return (_input_gradient(x, w, g, pads, precision), _weight_gradient(x, w, g, pads, precision))


_conv.defvjp(_conv_fwd, _conv_bwd)


# --- strided convolutions: the training passes as a stride-1 convolution of space-to-depth --

def _space_to_depth(x: jax.Array, w: jax.Array, strides: tuple[int, int], pads):
  """(x2 [B, H2, W2, sh·sw·Ci], w2 [ah, aw, sh·sw·Ci, Co]): a stride-(sh, sw) convolution of x
  by w [kh, kw, Ci, Co] with `pads` is the stride-1 unpadded convolution of x2 by w2.

  With kernel offsets i = s·a + b (0 <= b < s), input row s·(o + a) + b of the padded x is row
  o + a, phase b of x2, and w2[a, b] = w[s·a + b] (zero past the kernel): each output row sums
  ah = ceil(kh / sh) rows of x2. The padded x is cut or zero-extended to s·(Ho + ah - 1) rows;
  the rows added meet only the zero taps.
  """
  (sh, sw), (kh, kw) = strides, w.shape[:2]
  (top, bottom), (left, right) = pads
  b, h, wd, ci = x.shape
  co = w.shape[3]
  ah, aw = -(-kh // sh), -(-kw // sw)
  h2 = (h + top + bottom - kh) // sh + ah        # output rows + ah - 1
  w2 = (wd + left + right - kw) // sw + aw
  x = lax.pad(x, jnp.zeros((), x.dtype),
              ((0, 0, 0), (top, sh * h2 - h - top, 0), (left, sw * w2 - wd - left, 0), (0, 0, 0)))
  x = x.reshape(b, h2, sh, w2, sw, ci).transpose(0, 1, 3, 2, 4, 5)
  w = jnp.pad(w, ((0, ah * sh - kh), (0, aw * sw - kw), (0, 0), (0, 0)))
  w = w.reshape(ah, sh, aw, sw, ci, co).transpose(0, 2, 1, 3, 4, 5)
  return x.reshape(b, h2, w2, sh * sw * ci), w.reshape(ah, aw, sh * sw * ci, co)


def _native_strided(x, w, strides, pads, precision):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC,
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _strided_conv(x: jax.Array, w: jax.Array, strides, pads, precision) -> jax.Array:
  return _native_strided(x, w, strides, pads, precision)


def _strided_conv_fwd(x, w, strides, pads, precision):
  return _native_strided(x, w, strides, pads, precision), (x, w)


def _strided_conv_bwd(strides, pads, precision, residuals, g):
  """The input gradient is XLA's. On CPU with the compiled kernels (float32, output rows of
  _SPACE_TO_DEPTH_MIN_WIDTH or more) the weight gradient is the stride-1 kernel's on the
  space-to-depth convolution: despite the zero taps about 5x faster than XLA:CPU's for ResNet's
  7x7/2 stem at batch 32 and 1.2-1.5x for its 3x3/2 conv at 56 px. Elsewhere XLA's own (the
  chunked GEMMs were 2-4x slower than it here, and so was the space-to-depth input gradient
  as often as not)."""
  x, w = residuals
  native = lambda x, w: _native_strided(x, w, strides, pads, precision)
  dx = jax.vjp(lambda x: native(x, w), x)[1](g)[0]
  native_dw = lambda x, g: jax.vjp(lambda w: native(x, w), w)[1](g)[0]
  if (not _kernel_applies(x, g) or g.shape[2] < _SPACE_TO_DEPTH_MIN_WIDTH
      or not cpu_kernels.available()):
    return dx, native_dw(x, g)

  def by_space_to_depth(x, g):
    # Functions of (x, g) alone, as in _weight_gradient: w's rearrangement is linear, so its
    # transpose needs only w's shape.
    zeros = jnp.zeros(w.shape, w.dtype)
    x2, w2 = _space_to_depth(x, zeros, strides, pads)
    dw2 = _weight_gradient(x2, w2, g, ((0, 0), (0, 0)), precision)
    return jax.vjp(lambda w: _space_to_depth(x, w, strides, pads)[1], zeros)[1](dw2)[0]

  return dx, lax.platform_dependent(x, g, cpu=by_space_to_depth, default=native_dw)


_strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


def _is_one(values) -> bool:
  return values is None or all(v == 1 for v in values)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None) -> jax.Array:
  """lax.conv_general_dilated, with the fast CPU training passes where they apply.

  Pass it to flax: nn.Conv(..., conv_general_dilated=conv_general_dilated). It applies to
  2-D NHWC/HWIO convolutions of float32 / bfloat16 / float16 arrays with unit dilations, one
  group, a kernel larger than 1x1, a non-empty batch and no negative padding (the compiled
  kernels take float32, the fallback GEMMs accumulate in float32); a strided one keeps XLA's
  forward pass and input gradient, and on CPU may take its weight gradient from the compiled
  kernel of its space-to-depth form (see _strided_conv_bwd).
  Anything else is lax.conv_general_dilated itself. The fast path is differentiable in reverse
  mode (a custom VJP; jax.jvp of it raises).
  """
  native = functools.partial(
      lax.conv_general_dilated, lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, batch_group_count=batch_group_count,
      precision=precision, preferred_element_type=preferred_element_type)
  if (lhs.ndim != 4 or rhs.ndim != 4 or lhs.shape[0] == 0
      or not all(t.dtype in _REAL_DTYPES for t in (lhs, rhs))):
    return native()
  numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  if (numbers != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
      or not (_is_one(lhs_dilation) and _is_one(rhs_dilation))
      or feature_group_count != 1 or batch_group_count != 1
      or preferred_element_type is not None or rhs.shape[0] * rhs.shape[1] == 1):
    return native()
  strides = tuple(int(s) for s in window_strides)
  pads = (lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
          if isinstance(padding, str) else padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  if any(p < 0 for pair in pads for p in pair):
    return native()
  if _is_one(strides):
    return _conv(lhs, rhs, pads, precision)
  if any(n + lo + hi < k for n, (lo, hi), k in zip(lhs.shape[1:3], pads, rhs.shape[:2])):
    return native()                                       # an empty output
  return _strided_conv(lhs, rhs, strides, pads, precision)

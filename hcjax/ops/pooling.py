"""Max pooling from strided slices, for a fast backward pass on CPU.

flax's nn.max_pool is lax.reduce_window; its gradient is a select-and-scatter, which XLA's CPU
backend expands into a reduce-window carrying index maps: in a ResNet-18 train step at 224 px the
stem pool's backward alone took about 13% of the step. Here the window maximum is a chain of
elementwise maxima over the window's strided slices (non-overlapping windows: one reshape and a
max), whose gradient is dense selects and pads.

Forward values equal nn.max_pool's exactly, and so do the derivatives of overlapping windows
in both modes (a custom JVP: each window's tangent is its first maximum's, which transposes to
select-and-scatter's gradient; the backward pass keeps one small integer per output, the
maximum's offset, and is about 3x faster than differentiating the chain of maxima, whose every
link was kept). Non-overlapping windows equal them wherever a window's maximum is unique; on
ties the gradient is split between the tied inputs (JAX's rule for max), which leaves its sum
unchanged. After a ReLU the common tie is an all-zero window, where the ReLU's own gradient is
zero either way.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Padding = str | Sequence[tuple[int, int]]


def _pads(size: int, window: int, stride: int, padding) -> tuple[int, int]:
  if padding == "VALID":
    return 0, 0
  if padding == "SAME":
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2
  lo, hi = padding
  return int(lo), int(hi)


def max_pool(x: jax.Array, window: int | tuple[int, int], stride: int | tuple[int, int], *,
             padding: Padding = "VALID") -> jax.Array:
  """[B, H, W, C] -> [B, h, w, C], the same values as nn.max_pool(x, window, stride, padding).

  padding: "VALID", "SAME" (lax's split: the extra row / column at the end) or ((top, bottom),
  (left, right)); padded cells never win (they hold the dtype's lowest value).
  """
  if x.ndim != 4:
    raise ValueError(f"max_pool expects [B, H, W, C], got shape {x.shape}")
  wh, ww = (window, window) if isinstance(window, int) else tuple(window)
  sh, sw = (stride, stride) if isinstance(stride, int) else tuple(stride)
  if isinstance(padding, str):
    if padding not in ("VALID", "SAME"):
      raise ValueError(f"padding must be 'VALID', 'SAME' or explicit pairs, got {padding!r}")
    pad_h, pad_w = padding, padding
  else:
    pad_h, pad_w = padding
  _, h, w, _ = x.shape
  (top, bottom), (left, right) = _pads(h, wh, sh, pad_h), _pads(w, ww, sw, pad_w)
  out_h = (h + top + bottom - wh) // sh + 1
  out_w = (w + left + right - ww) // sw + 1
  if out_h < 1 or out_w < 1:
    raise ValueError(f"a {wh}x{ww} window does not fit the padded {h}x{w} input")
  low = (jnp.finfo(x.dtype).min if jnp.issubdtype(x.dtype, jnp.floating)
         else jnp.iinfo(x.dtype).min)
  if top or bottom or left or right:
    x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=low)
  b, _, _, c = x.shape
  if (wh, ww) == (sh, sw):
    x = x[:, :out_h * sh, :out_w * sw]
    return x.reshape(b, out_h, sh, out_w, sw, c).max(axis=(2, 4))
  return _overlapping_max(x, (wh, ww), (sh, sw), (out_h, out_w))


def _window_slices(x: jax.Array, window, stride, out_shape) -> list[jax.Array]:
  """The window's strided slices of the padded x, in row-major offset order: [B, h, w, C] each."""
  (wh, ww), (sh, sw), (out_h, out_w) = window, stride, out_shape
  b, _, _, c = x.shape
  return [lax.slice(x, (0, dy, dx, 0),
                    (b, dy + (out_h - 1) * sh + 1, dx + (out_w - 1) * sw + 1, c), (1, sh, sw, 1))
          for dy in range(wh) for dx in range(ww)]


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _overlapping_max(x: jax.Array, window, stride, out_shape) -> jax.Array:
  return functools.reduce(jnp.maximum, _window_slices(x, window, stride, out_shape))


@_overlapping_max.defjvp
def _overlapping_max_jvp(window, stride, out_shape, primals, tangents):
  """The tangent of each window is its first maximum's (row-major; a NaN maximum is its first
  NaN), which transposes to select-and-scatter's gradient. Only that maximum's offset is kept
  for the backward pass, as one small integer per output, instead of every link of the chain
  of maxima."""
  (x,), (t,) = primals, tangents
  parts = _window_slices(x, window, stride, out_shape)
  out = functools.reduce(jnp.maximum, parts)
  index = jnp.full(out.shape, len(parts), jnp.int8 if len(parts) < 127 else jnp.int32)
  for k in reversed(range(len(parts))):       # the first maximum wins
    hit = (parts[k] == out) | (jnp.isnan(parts[k]) & jnp.isnan(out))
    index = jnp.where(hit, jnp.asarray(k, index.dtype), index)
  zero = jnp.zeros((), t.dtype)
  t_out = [jnp.where(index == k, t_part, zero)
           for k, t_part in enumerate(_window_slices(t, window, stride, out_shape))]
  return out, functools.reduce(jnp.add, t_out)

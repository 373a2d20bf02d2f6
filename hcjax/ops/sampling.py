"""Bilinear sampling and Deep Voxel Flow synthesis (Liu et al., ICCV 2017).

Coordinates are (x, y) in pixel units with the align_corners=True convention of DVF's TensorFlow
release: x = 0 is the centre of the first column and x = W - 1 the centre of the last.
`bilinear_sample` equals torch.nn.functional.grid_sample(mode="bilinear", align_corners=True) with
the same padding, forward and backward, including torch's conventions where the bilinear weights
have kinks: at an integer coordinate the gradient is the one-sided difference towards the next
pixel (floor picks the corners), and with "border" a coordinate on or beyond the border gets no
gradient (torch counts the border itself as clamped).

The fast op has a custom VJP and works on the image viewed as rows of C floats, [B·H·W, C]. The
forward pass gathers the four corners of each output pixel, one row each (XLA's CPU gather and
scatter loops are several times faster on short contiguous rows than on 2x2 windows). The image
gradient is the transpose: one scatter-add of weight·cotangent per corner pair (left and right
corners are 2·C contiguous floats), nothing dense or one-hot; the coordinate gradient is the
analytic derivative of the bilinear weights, which the forward pass of a differentiated call
keeps per channel (dx, dy) so that the backward pass never reads the image again.
"zeros" reads a copy of the image inside a ring of zero pixels. `bilinear_sample_reference` is
the slow definition beside it: a dense hat-function weighting of every input row and column.

On CPU, a differentiated call runs that forward and the backward pass as compiled kernels
(csrc/bilinear_sample.cc through XLA's FFI, see hcjax.ops.cpu_kernels): XLA's CPU scatter is a
serial loop with per-element index arithmetic, each kernel one pass over the pixels, spread over
the cores by rows (forward) or batch elements (backward). They compute the same values to float
rounding (a test holds them to the XLA path, NaN and infinities included); higher derivatives
use the XLA path. An undifferentiated call, and every call on GPU or TPU, is the XLA path
alone, so exported models carry no custom call.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hcjax.ops import cpu_kernels

PADDINGS = ("border", "zeros")

_PROMISE = lax.GatherScatterMode.PROMISE_IN_BOUNDS  # indices are clamped before use


def _check(image: jax.Array, coords: jax.Array, padding: str) -> None:
  if not isinstance(padding, str) or padding not in PADDINGS:
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
  if jnp.ndim(image) != 4 or 0 in jnp.shape(image)[1:]:
    raise ValueError(f"image must be [B, H, W, C] with H, W, C >= 1, got shape "
                     f"{jnp.shape(image)}")
  if jnp.ndim(coords) != 4 or jnp.shape(coords)[-1] != 2 \
      or jnp.shape(coords)[0] != jnp.shape(image)[0]:
    raise ValueError(f"coords must be [B, h, w, 2] (x, y) with B = {jnp.shape(image)[0]} of "
                     f"image, got shape {jnp.shape(coords)}")
  b, height, width, channels = jnp.shape(image)
  if isinstance(b, int) and b * (height + 2) * (width + 2) * channels >= 2**31:
    raise ValueError(f"image {jnp.shape(image)} is too large for int32 indices; split the batch")


# --- fast op -------------------------------------------------------------------------------------

def _padded_size(size: tuple[int, int], padding: str) -> tuple[int, int]:
  """(H, W) of the image the gathers read: "zeros" adds a ring of zero pixels; "border" only
  repeats a single row or column, so that a 2x2 neighbourhood always fits (the copy gets no
  weight)."""
  if padding == "zeros":
    return size[0] + 2, size[1] + 2
  return max(size[0], 2), max(size[1], 2)


def _pad_image(image: jax.Array, padding: str) -> jax.Array:
  height, width = image.shape[1:3]
  hp, wp = _padded_size((height, width), padding)
  if padding == "zeros":
    return jnp.pad(image, ((0, 0), (1, 1), (1, 1), (0, 0)))
  if (hp, wp) != (height, width):
    return jnp.pad(image, ((0, 0), (0, hp - height), (0, wp - width), (0, 0)), mode="edge")
  return image


def _axis(v: jax.Array, size: int, padded: int, padding: str):
  """One axis of the coordinates -> (v in padded pixels, first corner int32, gradient mask).

  The corners are floor(v) and floor(v) + 1 as in torch, the first capped so that both fit in
  the padded image (where the cap bites the fraction comes out 1, or the value 0). The mask is
  where torch passes a gradient to v. NaN reads corner 0 and keeps the NaN in its fraction.
  """
  if padding == "zeros":
    lo, hi, offset = -1.0, float(size), 1            # beyond [-1, size] every corner is 0
    ok = (v >= lo) & (v < hi)
  else:
    lo, hi, offset = 0.0, size - 1.0, 0
    ok = (v > lo) & (v < hi)                         # torch: the border counts as clamped
  v = jnp.clip(v, lo, hi) + offset
  start = jnp.minimum(jnp.floor(jnp.where(jnp.isnan(v), 0.0, v)), padded - 2)
  return v, start.astype(jnp.int32), ok


def _once(i: jax.Array) -> jax.Array:
  """i itself (int32, |i| < 2^29), computed once however many fusions read it.

  XLA recomputes cheap elementwise values in every fusion that reads them, and may round the
  coordinates' own arithmetic (say grid + flow, FMA-contracted or not) differently in each:
  floor(1.9999999) for the gather's index beside 2.0 - floor(2.0) for the weight puts the
  weight on the pixel next door. An integer division is expensive enough that XLA neither
  duplicates it nor folds (3i) / 3 (it could overflow), so the corners and the fractions taken
  against them come from one copy of floor(v). There is no barrier op that survives on CPU.
  """
  return lax.div(i * 3, jnp.int32(3))


def _locate(coords: jax.Array, size: tuple[int, int], padded: tuple[int, int], padding: str):
  """coords [B, n, 2] -> (pixel, fx, fy, okx, oky), each [B·n].

  pixel is the flat index of the top-left corner in the padded image viewed as [B·Hp·Wp, C].
  """
  batch = coords.shape[0]
  vx, x0, okx = _axis(coords[..., 0], size[1], padded[1], padding)
  vy, y0, oky = _axis(coords[..., 1], size[0], padded[0], padding)
  corner = _once(jnp.stack([y0, x0], -1))
  y0, x0 = corner[..., 0], corner[..., 1]      # from here on exact integer arithmetic only
  pixel = (y0 + (jnp.arange(batch, dtype=jnp.int32) * padded[0])[:, None]) * padded[1] + x0
  fx = jnp.clip(vx - x0.astype(jnp.float32), 0.0, 1.0)
  fy = jnp.clip(vy - y0.astype(jnp.float32), 0.0, 1.0)
  return tuple(a.reshape(-1) for a in (pixel, fx, fy, okx, oky))


def _forward(image, coords, size, padding):
  """out [B, h, w, C] and its derivatives w.r.t. x and y per channel, [B, h, w, C] each (zero
  where torch's clamp, or the outside, cuts them)."""
  b, hp, wp, c = image.shape
  pixel, fx, fy, okx, oky = _locate(coords.reshape(b, -1, 2), size, (hp, wp), padding)
  rows = image.reshape(b * hp * wp, c)
  dims = lax.GatherDimensionNumbers(offset_dims=(1,), collapsed_slice_dims=(0,),
                                    start_index_map=(0,))
  # One gather per corner, each a row of C floats: on CPU faster than one 2x2 window.
  v00, v01, v10, v11 = (lax.gather(rows, (pixel + k)[:, None], dims, (1, c), mode=_PROMISE)
                        for k in (0, 1, wp, wp + 1))
  ex, ey = fx[:, None], fy[:, None]
  d_top, d_bottom = v01 - v00, v11 - v10
  upper, lower = v00 + ex * d_top, v10 + ex * d_bottom
  out = upper + ey * (lower - upper)
  dx = jnp.where(okx[:, None], d_top + ey * (d_bottom - d_top), 0.0)
  dy = jnp.where(oky[:, None], lower - upper, 0.0)
  shape = (*coords.shape[:3], c)
  return out.reshape(shape), dx.reshape(shape), dy.reshape(shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _sample(image: jax.Array, coords: jax.Array, size: tuple[int, int], padding: str):
  """float32 padded image [B, Hp, Wp, C], float32 coords [B, h, w, 2] -> [B, h, w, C]."""
  return _forward(image, coords, size, padding)[0]


def _sample_fwd(image, coords, size, padding):
  """The forward pass for differentiation: out, plus dx and dy, so that the backward pass
  never reads the image again."""
  out, dx, dy = cpu_kernels.by_platform(
      "bilinear_sample's gradient",
      functools.partial(_cpu_forward, size=size, padding=padding),
      functools.partial(_forward, size=size, padding=padding), image, coords)
  return out, (coords, dx, dy)


def _sample_bwd(size, padding, residuals, cotangent):
  coords, dx, dy = residuals
  return cpu_kernels.by_platform(
      "bilinear_sample's gradient",
      functools.partial(_cpu_backward, size=size, padding=padding),
      functools.partial(_xla_backward, size=size, padding=padding),
      coords, dx, dy, cotangent)


def _kernel_attributes(size, padding) -> dict[str, np.int64]:
  return {"height": np.int64(size[0]), "width": np.int64(size[1]),
          "zeros": np.int64(padding == "zeros")}


def _cpu_forward(image, coords, size, padding):
  """csrc/bilinear_sample.cc's forward: (out, dx, dy) in one pass."""
  shape = jax.ShapeDtypeStruct((*coords.shape[:-1], image.shape[-1]), jnp.float32)
  call = jax.ffi.ffi_call("hcjax_bilinear_sample_forward", (shape,) * 3,
                          vmap_method="broadcast_all")
  return call(image, coords, **_kernel_attributes(size, padding))


def _cpu_backward(coords, dx, dy, cotangent, size, padding):
  """csrc/bilinear_sample.cc's backward: (d image, d coords) in one pass, no XLA scatter."""
  hp, wp = _padded_size(size, padding)
  d_image = jax.ShapeDtypeStruct((*cotangent.shape[:-3], hp, wp, cotangent.shape[-1]),
                                 jnp.float32)
  call = jax.ffi.ffi_call("hcjax_bilinear_sample_backward",
                          (d_image, jax.ShapeDtypeStruct(coords.shape, jnp.float32)),
                          vmap_method="broadcast_all")
  return call(coords, dx, dy, cotangent, **_kernel_attributes(size, padding))


def _xla_backward(coords, dx, dy, cotangent, size, padding):
  (b, h, w, c), (hp, wp) = cotangent.shape, _padded_size(size, padding)
  pixel, fx, fy, _, _ = _locate(coords.reshape(b, -1, 2), size, (hp, wp), padding)
  g = cotangent.reshape(-1, c)
  # The transpose of the gathers: the left and right corners of a row are 2·C contiguous floats
  # of the flat image, so one scatter-add of [top pair, bottom pair] windows per output pixel,
  # update[n, i, j] = weight of corner (i, j) · g[n]. Indices and windows are in XLA's canonical
  # [M, 1], [M, 2·C] form (others cost a relayout copy); the weights are selects, not
  # concatenations, which XLA's CPU loops handle slowly.
  second = jnp.arange(2) == 1
  wy = jnp.where(second, fy[:, None], 1.0 - fy[:, None])   # [N, 2]: (1 - fy, fy)
  wx = jnp.where(second, fx[:, None], 1.0 - fx[:, None])
  update = wy[:, :, None, None] * wx[:, None, :, None] * g[:, None, None, :]   # [N, 2, 2, C]
  index = jnp.stack([pixel, pixel + wp], 1) * c
  dims = lax.ScatterDimensionNumbers(update_window_dims=(1,), inserted_window_dims=(),
                                     scatter_dims_to_operand_dims=(0,))
  d_image = lax.scatter_add(jnp.zeros((b * hp * wp * c,), jnp.float32), index.reshape(-1, 1),
                            update.reshape(-1, 2 * c), dims, mode=_PROMISE)
  d_coords = jnp.stack([_channel_sum(dx * cotangent), _channel_sum(dy * cotangent)], -1)
  return d_image.reshape(b, hp, wp, c), d_coords


def _channel_sum(x: jax.Array) -> jax.Array:
  """x.sum(-1), unrolled for a few channels: a tiny minor-axis reduce is slow on XLA's CPU."""
  if x.shape[-1] > 8:
    return jnp.sum(x, -1)
  return functools.reduce(jnp.add, [x[..., k] for k in range(x.shape[-1])])


_sample.defvjp(_sample_fwd, _sample_bwd)


def bilinear_sample(image: jax.Array, coords: jax.Array, padding: str = "border") -> jax.Array:
  """image [B, H, W, C] sampled at coords [B, h, w, 2] (x, y in pixels) -> [B, h, w, C].

  "border" clamps coordinates to the image (torch's padding_mode="border"); "zeros" treats
  every pixel outside as 0. Computes in float32; the output has the image's dtype and the
  gradients those of image and coords. Differentiable in reverse mode (custom VJP; jax.jvp
  raises), jit- and vmap-able, exportable with a symbolic batch. Infinite coordinates clamp
  (or read zeros); a NaN coordinate gives NaN there, never an out-of-bounds read.
  """
  _check(image, coords, padding)
  batch, height, width, channels = image.shape
  if batch == 0:   # (XLA rejects a scatter into an empty operand)
    return jnp.zeros((*coords.shape[:3], channels), image.dtype)
  padded = _pad_image(image.astype(jnp.float32), padding)
  out = _sample(padded, coords.astype(jnp.float32), (height, width), padding)
  return out.astype(image.dtype)


# --- reference -----------------------------------------------------------------------------------

def bilinear_sample_reference(image: jax.Array, coords: jax.Array,
                              padding: str = "border") -> jax.Array:
  """Slow `bilinear_sample`: every output pixel weighs every input row and column; autodiff.

      out[b, i, j] = sum_{r, s} hat(y - r) hat(x - s) image[b, r, s],  hat(d) = max(0, 1 - |d|)

  with (x, y) = coords[b, i, j], clamped into the image first for "border" (where() at the
  bounds: no gradient on the border, as torch); "zeros" needs nothing more since the sum only
  runs over pixels inside. Memory O(B·h·w·(H + W)): small inputs only. Its autodiff at exactly
  integer coordinates takes |d|' = 0 there, unlike the fast op's (and torch's) one-sided slope.
  """
  _check(image, coords, padding)
  _, height, width, _ = image.shape
  x, y = coords[..., 0].astype(jnp.float32), coords[..., 1].astype(jnp.float32)
  if padding == "border":
    x = jnp.where(x <= 0, 0.0, jnp.where(x >= width - 1, width - 1.0, x))
    y = jnp.where(y <= 0, 0.0, jnp.where(y >= height - 1, height - 1.0, y))
  hat = lambda d: jnp.maximum(0.0, 1.0 - jnp.abs(d))
  wx = hat(x[..., None] - jnp.arange(width, dtype=jnp.float32))    # [B, h, w, W]
  wy = hat(y[..., None] - jnp.arange(height, dtype=jnp.float32))   # [B, h, w, H]
  out = jnp.einsum("bijr,bijs,brsc->bijc", wy, wx, image.astype(jnp.float32),
                   precision=lax.Precision.HIGHEST)
  return out.astype(image.dtype)


# --- Deep Voxel Flow -----------------------------------------------------------------------------

def pixel_grid(batch: int, height: int, width: int) -> jax.Array:
  """[B, H, W, 2] (x, y) of every pixel centre."""
  y, x = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                      jnp.arange(width, dtype=jnp.float32), indexing="ij")
  return jnp.broadcast_to(jnp.stack([x, y], -1), (batch, height, width, 2))


def flow_to_pixels(flow: jax.Array) -> jax.Array:
  """flow [B, H, W, 2] in normalised units ([-1, 1] spans the image) -> pixels."""
  height, width = flow.shape[1:3]
  return flow * jnp.array([(width - 1) / 2.0, (height - 1) / 2.0], flow.dtype)


def voxel_flow_synthesize(frame0: jax.Array, frame1: jax.Array, flow: jax.Array,
                          mask: jax.Array, t: float = 0.5) -> jax.Array:
  """The frame at time t in (0, 1) between frame0 and frame1, [B, H, W, C].

  flow [B, H, W, 2] is DVF's voxel flow in normalised units: at t = 0.5 frame0 is sampled at
  grid + flow and frame1 at grid - flow (linear motion); mask [B, H, W, 1] in [0, 1] weighs
  frame0. At other t the displacements scale to 2t·flow and -2(1-t)·flow and the weights to
  (1-t)·mask and t·(1-mask), renormalised; at t = 0.5 this is exactly DVF's synthesis.
  t must be a Python number (it picks the formula).
  """
  b, height, width, _ = frame0.shape
  grid = pixel_grid(b, height, width)
  pixels = flow_to_pixels(flow)
  s0 = bilinear_sample(frame0, grid + 2.0 * t * pixels)
  s1 = bilinear_sample(frame1, grid - 2.0 * (1.0 - t) * pixels)
  if t == 0.5:
    return mask * s0 + (1.0 - mask) * s1
  w0, w1 = (1.0 - t) * mask, t * (1.0 - mask)
  return (w0 * s0 + w1 * s1) / jnp.maximum(w0 + w1, 1e-6)


def voxel_flow_extrapolate(frame_prev: jax.Array, frame_last: jax.Array, flow: jax.Array,
                           mask: jax.Array) -> jax.Array:
  """The next frame after frame_last, [B, H, W, C], from DVF's extrapolation mode.

  flow is the per-frame motion: frame_prev is sampled at grid - 2·flow and frame_last at
  grid - flow; mask weighs frame_prev.
  """
  b, height, width, _ = frame_last.shape
  grid = pixel_grid(b, height, width)
  pixels = flow_to_pixels(flow)
  s_prev = bilinear_sample(frame_prev, grid - 2.0 * pixels)
  s_last = bilinear_sample(frame_last, grid - pixels)
  return mask * s_prev + (1.0 - mask) * s_last

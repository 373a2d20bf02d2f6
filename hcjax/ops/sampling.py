"""Bilinear sampling and Deep Voxel Flow synthesis (Liu et al., ICCV 2017).

Coordinates are (x, y) in pixel units with the align_corners=True convention of DVF's TensorFlow
release: x = 0 is the centre of the first column and x = W - 1 the centre of the last.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PADDINGS = ("border", "zeros")


def _check(image: jax.Array, coords: jax.Array, padding: str) -> None:
  if padding not in PADDINGS:
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
  if image.ndim != 4:
    raise ValueError(f"image must be [B, H, W, C], got shape {image.shape}")
  if coords.ndim != 4 or coords.shape[-1] != 2 or coords.shape[0] != image.shape[0]:
    raise ValueError(f"coords must be [B, h, w, 2] with B = {image.shape[0]}, got shape "
                     f"{coords.shape}")


def bilinear_sample(image: jax.Array, coords: jax.Array, padding: str = "border") -> jax.Array:
  """image [B, H, W, C] sampled at coords [B, h, w, 2] (x, y in pixels) -> [B, h, w, C].

  "border" clamps coordinates to the image (torch's padding_mode="border"); "zeros" treats
  every pixel outside as 0.
  """
  _check(image, coords, padding)
  b, height, width, channels = image.shape
  x, y = coords[..., 0].astype(jnp.float32), coords[..., 1].astype(jnp.float32)
  if padding == "border":
    x = jnp.clip(x, 0.0, width - 1.0)
    y = jnp.clip(y, 0.0, height - 1.0)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  wx1, wy1 = x - x0, y - y0
  flat = image.reshape(b, height * width, channels)
  out = 0.0
  for dy, wy in ((0, 1.0 - wy1), (1, wy1)):
    for dx, wx in ((0, 1.0 - wx1), (1, wx1)):
      xi, yi = x0 + dx, y0 + dy
      weight = wx * wy
      if padding == "zeros":
        inside = (xi >= 0) & (xi <= width - 1) & (yi >= 0) & (yi <= height - 1)
        weight = jnp.where(inside, weight, 0.0)
      index = (jnp.clip(yi, 0, height - 1).astype(jnp.int32) * width
               + jnp.clip(xi, 0, width - 1).astype(jnp.int32))
      values = jnp.take_along_axis(flat, index.reshape(b, -1, 1), axis=1)
      out = out + weight.reshape(b, -1, 1) * values
  return out.reshape(*coords.shape[:3], channels).astype(image.dtype)


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

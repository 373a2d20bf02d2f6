"""Bilinear sampling and DVF synthesis: fast == torch.grid_sample == slow reference, gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hcjax.ops import sampling

# W - 1 and H - 1 are powers of two, so torch's [-1, 1] coordinates map back to exact pixels.
B, H, W, C = 2, 5, 9, 3


# Test data is numpy: the ops take it as is, and eager jnp ops would each cost a compile.

def _normal(shape, seed=0):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _sigmoid(x):
  return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _coords(shape, seed=0, lo=-2.5, hi=None, height=H, width=W):
  """Random (x, y) [*shape, 2] over the image and up to 2.5 pixels beyond it."""
  hi = (width + 1.5, height + 1.5) if hi is None else hi
  return np.random.default_rng(seed).uniform(lo, hi, (*shape, 2)).astype(np.float32)


def _generic(shape, seed=0, height=H, width=W):
  """Coordinates at least 0.05 from any integer or bound: the weights are smooth there."""
  c = _coords(shape, seed, -1.8, (width + 0.8, height + 0.8), height, width)
  frac = c - np.floor(c)
  return (np.floor(c) + np.clip(frac, 0.05, 0.95)).astype(np.float32)


def _grid(batch, height, width):
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  return np.broadcast_to(np.stack([x, y], -1), (batch, height, width, 2))


def _special(height=H, width=W):
  """[1, n, n, 2]: every pair of x, y from the kinks: integers, the borders, one beyond."""
  xs = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, width - 2.0, width - 1.5, width - 1.0,
        width - 0.5, width, width + 0.5]
  ys = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, height - 1.5, height - 1.0, height - 0.5, height,
        height + 0.5]
  x, y = np.meshgrid(xs, ys, indexing="xy")
  return np.stack([x, y], -1)[None].astype(np.float32)


def _torch(image, coords, padding, cotangent):
  """grid_sample's output and the gradients w.r.t. image and pixel coords, in our layout."""
  torch = pytest.importorskip("torch")
  _, height, width, _ = image.shape
  img = torch.tensor(image).permute(0, 3, 1, 2).requires_grad_(True)
  scale = np.array([2.0 / (width - 1), 2.0 / (height - 1)], np.float32)
  grid = torch.tensor(coords * scale - 1.0).requires_grad_(True)
  out = torch.nn.functional.grid_sample(img, grid, mode="bilinear", padding_mode=padding,
                                        align_corners=True)
  out.backward(torch.tensor(cotangent).permute(0, 3, 1, 2))
  return (out.detach().permute(0, 2, 3, 1).numpy(), img.grad.permute(0, 2, 3, 1).numpy(),
          grid.grad.numpy() * scale)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _ours(op, image, coords, padding, cotangent):
  """(output, d image, d coords) of op (jit-compiled: one compile per test case, not per op)."""
  out, vjp = jax.vjp(lambda i, c: op(i, c, padding), image, coords)
  return (out, *vjp(cotangent))


_fast = jax.jit(sampling.bilinear_sample, static_argnums=2)
_slow = jax.jit(sampling.bilinear_sample_reference, static_argnums=2)


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_equals_torch_grid_sample_forward_and_backward(padding):
  out_hw = (7, 11)   # h, w differ from H, W
  image, coords = _normal((B, H, W, C)), _coords((B, *out_hw), 1)
  cotangent = _normal((B, *out_hw, C), 2)
  want = _torch(image, coords, padding, cotangent)
  got = _ours(sampling.bilinear_sample, image, coords, padding, cotangent)
  for name, a, b in zip(("out", "d_image", "d_coords"), got, want):
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_equals_torch_on_integers_borders_and_beyond(padding):
  # Where the weights have kinks torch takes the slope towards floor(x) + 1 and, for "border",
  # none on or beyond the border (x == 0, x == W - 1); for "zeros" x == -1 still sees pixel 0.
  coords = _special()
  image = _normal((1, H, W, C), 3)
  cotangent = _normal((*coords.shape[:3], C), 4)
  want = _torch(image, coords, padding, cotangent)
  got = _ours(sampling.bilinear_sample, image, coords, padding, cotangent)
  for name, a, b in zip(("out", "d_image", "d_coords"), got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5, err_msg=name)
  # At (x, y) = (3, 2), an integer point inside, the slopes are the forward differences.
  d_coords, img, cot = np.asarray(got[2])[0], image[0], cotangent[0]
  assert tuple(coords[0, 6, 6]) == (3.0, 2.0)
  np.testing.assert_allclose(d_coords[6, 6], [np.dot(img[2, 4] - img[2, 3], cot[6, 6]),
                                              np.dot(img[3, 3] - img[2, 3], cot[6, 6])],
                             rtol=1e-5)
  if padding == "border":
    assert np.all(d_coords[:, :4, 0] == 0) and np.all(d_coords[:, -6:-4, 0] != 0)
    assert np.all(d_coords[:, -4:, 0] == 0)   # x = W - 1 and beyond: clamped
  else:
    assert np.all(d_coords[:, 0, 0] == 0) and np.all(d_coords[:, -2:, 0] == 0)


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_equals_reference(padding):
  image, coords = _normal((B, H, W, C), 6), _coords((B, 6, 7), 7)
  fast, slow = _fast(image, coords, padding), _slow(image, coords, padding)
  assert fast.shape == (B, 6, 7, C) and fast.dtype == jnp.float32
  np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)


def test_reference_equals_the_definition_pixel_by_pixel():
  image, coords = _normal((1, 3, 4, 2), 8), _coords((1, 3, 5), 9)
  for padding in ("border", "zeros"):
    want = np.zeros((1, 3, 5, 2))
    for i in range(3):
      for j in range(5):
        x, y = coords[0, i, j].astype(np.float64)
        if padding == "border":
          x, y = np.clip(x, 0, 3), np.clip(y, 0, 2)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
          for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < 3 and 0 <= xx < 4:
              want[0, i, j] += wy * wx * image[0, yy, xx]
    for op in (_slow, _fast):
      np.testing.assert_allclose(op(image, coords, padding), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_gradients_equal_reference_autodiff(padding):
  image, coords = _normal((B, H, W, C), 10), _generic((B, 7, 11), 11)   # shapes as above
  cotangent = _normal((B, 7, 11, C), 12)
  fast = _ours(sampling.bilinear_sample, image, coords, padding, cotangent)
  slow = _ours(sampling.bilinear_sample_reference, image, coords, padding, cotangent)
  for a, b in zip(fast, slow):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)
  assert np.abs(fast[2]).max() > 0


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_numerical_gradients(padding):
  # Away from the kinks the op is bilinear: central differences are exact up to rounding.
  image, coords = _normal((1, 4, 6, 2), 13), _generic((1, 3, 4), 14, 4, 6)
  check_grads(lambda i, c: _fast(i, c, padding), (image, coords), order=1,
              modes=("rev",), eps=1e-2, atol=2e-3, rtol=2e-3)


def test_bfloat16_image_gives_bfloat16_output_computed_in_float32():
  image, coords = _normal((B, H, W, C), 15).astype(jnp.bfloat16), _coords((B, 4, 5), 16)
  out = _fast(image, coords, "border")
  assert out.dtype == jnp.bfloat16
  want = np.asarray(_fast(image.astype(np.float32), coords, "border")).astype(jnp.bfloat16)
  np.testing.assert_array_equal(np.asarray(out, np.float32), want.astype(np.float32))
  _, d_image, d_coords = _ours(sampling.bilinear_sample, image, coords, "border", out)
  assert d_image.dtype == jnp.bfloat16 and d_coords.dtype == jnp.float32
  # Integer coordinates are fine too (no gradient to give them).
  grid = _grid(B, H, W).astype(np.int32)
  np.testing.assert_array_equal(np.asarray(_fast(image, grid, "zeros"), np.float32),
                                image.astype(np.float32))


@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize("shape", [(1, 4, 5, 1), (2, 5, 1, 2)])
def test_batch_of_one_single_channel_and_single_row_or_column(padding, shape):
  image = _normal(shape, 17)
  coords = _coords((shape[0], 3, 4), 18, hi=(shape[2] + 1.5, shape[1] + 1.5), height=shape[1],
                   width=shape[2])
  cotangent = _normal((shape[0], 3, 4, shape[3]), 19)
  got = _ours(sampling.bilinear_sample, image, coords, padding, cotangent)
  if shape[1] > 1 and shape[2] > 1:
    want = _torch(image, coords, padding, cotangent)
  else:  # torch's [-1, 1] coordinates cannot address a single row or column
    want = _ours(sampling.bilinear_sample_reference, image, coords, padding, cotangent)[:2]
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)


def test_identity_grid_returns_the_image_and_its_gradient_is_the_cotangent():
  image, cotangent = _normal((B, H, W, C), 20), _normal((B, H, W, C), 21)
  grid = _grid(B, H, W)
  for padding in ("border", "zeros"):
    out, d_image, _ = _ours(sampling.bilinear_sample, image, grid, padding, cotangent)
    np.testing.assert_allclose(out, image, atol=1e-6)
    np.testing.assert_allclose(d_image, cotangent, atol=1e-6)


def test_jit_and_vmap():
  images, coords = _normal((3, B, H, W, C), 22), _coords((3, B, 4, 6), 23)
  cotangents = _normal((3, B, 4, 6, C), 24)
  for padding in ("border", "zeros"):
    batched = jax.jit(jax.vmap(lambda i, c, g, p=padding: _ours(sampling.bilinear_sample, i, c,
                                                                 p, g)))(images, coords, cotangents)
    for k in range(3):
      single = _ours(sampling.bilinear_sample, images[k], coords[k], padding, cotangents[k])
      for a, b in zip(batched, single):
        np.testing.assert_allclose(a[k], b, rtol=1e-5, atol=1e-5)


def test_export_with_a_symbolic_batch():
  # hcjax.export serialises models (DVF's synthesis included) with a symbolic batch size.
  batch, = jax.export.symbolic_shape("b")
  spec = lambda *shape: jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
  fn = jax.jit(lambda i, c: sampling.bilinear_sample(i, c, "zeros"))
  exported = jax.export.export(fn)(spec(H, W, C), spec(4, 6, 2))
  image, coords = _normal((3, H, W, C), 26), _coords((3, 4, 6), 27)
  np.testing.assert_allclose(exported.call(image, coords), fn(image, coords), atol=1e-6)


def test_non_finite_coordinates_stay_in_bounds():
  # (torch's grid_sample crashes on these.) Infinities clamp to the border or read zeros;
  # a NaN coordinate gives a NaN sample and leaves the other pixels alone.
  image = _normal((1, H, W, C), 25)
  coords = np.array([[[[np.inf, 2.0], [-np.inf, 1.5], [np.nan, 1.0], [2.0, np.nan]]]],
                    np.float32)
  border = np.asarray(_fast(image, coords, "border"))[0, 0]
  np.testing.assert_allclose(border[0], image[0, 2, W - 1], rtol=1e-6)
  np.testing.assert_allclose(border[1], (image[0, 1, 0] + image[0, 2, 0]) / 2, rtol=1e-6)
  assert np.all(np.isnan(border[2:]))
  zeros = np.asarray(_fast(image, coords, "zeros"))[0, 0]
  np.testing.assert_array_equal(zeros[:2], 0.0)
  assert np.all(np.isnan(zeros[2:]))
  _, d_image, _ = _ours(sampling.bilinear_sample, image, coords[:, :, :2], "border",
                        np.ones((1, 1, 2, C), np.float32))
  assert np.all(np.isfinite(d_image)) and float(np.sum(d_image)) == pytest.approx(2 * C)


def test_memory_is_linear_in_the_pixels():
  # No one-hot or dense [h·w, H·W] weights: the temporaries of forward + backward stay within
  # a few image-sized buffers (the dense reference would need ~100 MB here).
  image = jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32)
  coords = jax.ShapeDtypeStruct((1, 128, 128, 2), jnp.float32)
  fn = jax.jit(jax.grad(lambda i, c: sampling.bilinear_sample(i, c).sum(), (0, 1)))
  stats = fn.lower(image, coords).compile().memory_analysis()
  if stats is None:
    pytest.skip("no memory analysis on this backend")
  assert stats.temp_size_in_bytes < 24 * 128 * 128 * 3 * 4


def test_argument_errors():
  image, coords = np.zeros((B, H, W, C), np.float32), np.zeros((B, 4, 4, 2), np.float32)
  with pytest.raises(ValueError, match="padding"):
    sampling.bilinear_sample(image, coords, "reflection")
  with pytest.raises(ValueError, match="image must be"):
    sampling.bilinear_sample(image[0], coords)
  with pytest.raises(ValueError, match="image must be"):
    sampling.bilinear_sample(np.zeros((B, 0, W, C)), coords)
  with pytest.raises(ValueError, match="coords must be"):
    sampling.bilinear_sample(image, np.zeros((B, 4, 4, 3)))
  with pytest.raises(ValueError, match="coords must be"):
    sampling.bilinear_sample(image, np.zeros((B + 1, 4, 4, 2)))
  with pytest.raises(ValueError, match="coords must be"):
    sampling.bilinear_sample_reference(image, np.zeros((4, 4, 2)))
  with pytest.raises(ValueError, match="too large"):
    sampling.bilinear_sample(jax.ShapeDtypeStruct((2**14, 256, 256, 3), jnp.float32),
                             jax.ShapeDtypeStruct((2**14, 4, 4, 2), jnp.float32))


# --- Deep Voxel Flow -----------------------------------------------------------------------------

_synthesize = jax.jit(sampling.voxel_flow_synthesize, static_argnames="t")
_extrapolate = jax.jit(sampling.voxel_flow_extrapolate)


def _moving(steps, shift, height=12, width=16):
  """[1, H, W, 3] frames of a smooth pattern moving `shift` (dx, dy) pixels per step."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  frames = []
  for s in steps:
    u, v = x - s * shift[0], y - s * shift[1]
    frames.append(np.stack([np.sin(0.5 * u + 0.3 * v), np.cos(0.4 * v), np.sin(0.2 * u * v)], -1))
  return [f[None].astype(np.float32) for f in frames]


def _normalised(pixels, height=12, width=16):
  per_pixel = np.array([pixels[0] * 2.0 / (width - 1), pixels[1] * 2.0 / (height - 1)])
  return np.broadcast_to(per_pixel.astype(np.float32), (1, height, width, 2))


@pytest.mark.parametrize("t", [0.25, 0.5, 0.75])
def test_voxel_flow_synthesize_recovers_linear_motion(t):
  # A pattern moving v = (4, -4) px per unit time: frame_t(p) = f(p - t·v); the flow is -v/2.
  frame0, frame1, middle = _moving([0.0, 1.0, t], (4.0, -4.0))
  flow, mask = _normalised((-2.0, 2.0)), np.full((1, 12, 16, 1), 0.5, np.float32)
  got = np.asarray(_synthesize(frame0, frame1, flow, mask, t=t))
  inside = (slice(None), slice(4, -4), slice(4, -4))   # away from clamped borders
  np.testing.assert_allclose(got[inside], middle[inside], atol=1e-5)


def test_voxel_flow_synthesize_weighs_the_frames_with_the_mask():
  frame0, frame1 = _normal((2, 6, 7, 3), 24), _normal((2, 6, 7, 3), 25)
  mask = _sigmoid(_normal((2, 6, 7, 1), 26))
  zero = np.zeros((2, 6, 7, 2), np.float32)
  np.testing.assert_allclose(_synthesize(frame0, frame1, zero, mask),
                             mask * frame0 + (1 - mask) * frame1, atol=1e-6)
  # At t the weights are (1 - t)·mask and t·(1 - mask), renormalised.
  w0, w1 = 0.7 * mask, 0.3 * (1 - mask)
  np.testing.assert_allclose(_synthesize(frame0, frame1, zero, mask, t=0.3),
                             (w0 * frame0 + w1 * frame1) / (w0 + w1), atol=1e-6)


def test_voxel_flow_extrapolate_recovers_linear_motion():
  prev, last, nxt = _moving([0.0, 1.0, 2.0], (-2.0, 1.0))
  got = np.asarray(_extrapolate(prev, last, _normalised((-2.0, 1.0)),
                                np.full((1, 12, 16, 1), 0.3, np.float32)))
  inside = (slice(None), slice(3, -3), slice(5, -5))
  np.testing.assert_allclose(got[inside], nxt[inside], atol=1e-5)


@pytest.mark.parametrize("t", [0.5, 0.3])
def test_voxel_flow_synthesize_gradients_equal_reference(t):
  frame0, frame1, weights = (_normal((1, 6, 8, 3), seed) for seed in (27, 28, 31))
  flow = np.random.default_rng(29).uniform(-0.3, 0.3, (1, 6, 8, 2)).astype(np.float32)
  mask = _sigmoid(_normal((1, 6, 8, 1), 30))

  def loss(sample, f0, f1, fl, m):   # the DVF formula, spelled out with the given sampler
    grid = _grid(1, 6, 8)
    pixels = fl * np.array([3.5, 2.5], np.float32)   # normalised -> pixels, (W - 1) / 2
    s0 = sample(f0, grid + 2 * t * pixels)
    s1 = sample(f1, grid - 2 * (1 - t) * pixels)
    w0, w1 = (1 - t) * m, t * (1 - m)
    return jnp.sum((w0 * s0 + w1 * s1) / (w0 + w1) * weights)

  value = lambda f0, f1, fl, m: jnp.sum(_synthesize(f0, f1, fl, m, t=t) * weights)
  ours = jax.jit(jax.value_and_grad(value, (0, 1, 2, 3)))
  slow = jax.jit(jax.value_and_grad(functools.partial(loss, sampling.bilinear_sample_reference),
                                    (0, 1, 2, 3)))
  (a, grads_a), (b, grads_b) = ours(frame0, frame1, flow, mask), slow(frame0, frame1, flow, mask)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  for name, x, y in zip(("frame0", "frame1", "flow", "mask"), grads_a, grads_b):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5, err_msg=name)
    assert np.abs(x).max() > 0, name
  if t == 0.5:
    # Whole-pixel flows put coordinates within an ulp of integers, rounded differently wherever
    # XLA recomputes grid + flow (with or without FMA): corners and weights must still agree
    # (they once picked the pixel next door). The flow's own gradient sits on a kink there.
    for shift in [(1, 0), (-2, 1), (3, -2), (0, -1)]:
      (a, grads_a), (b, grads_b) = (f(frame0, frame1, _normalised(shift, 6, 8), mask)
                                    for f in (ours, slow))
      np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=str(shift))
      for k in (0, 1, 3):
        np.testing.assert_allclose(grads_a[k], grads_b[k], rtol=1e-5, atol=1e-5,
                                   err_msg=str(shift))
  else:   # finite differences of the whole synthesis (the renormalised formula)
    check_grads(jax.jit(lambda fl, m: value(frame0, frame1, fl, m)), (flow, mask), order=1,
                modes=("rev",), eps=1e-3, atol=2e-2, rtol=2e-2)

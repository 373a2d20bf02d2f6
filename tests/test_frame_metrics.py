"""PSNR / SSIM as DVF's eval_voxelflow.m: against skimage, scipy and the script's formula in numpy.

The images are scikit-image's photographs (astronaut, chelsea, coffee) cropped to one size, paired
with noisy, shifted and identical copies.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.metrics

from hcjax.metrics import frames

SIZE = (192, 256)


@functools.cache
def _photos():
  photos = [getattr(skimage.data, name)()[:SIZE[0], :SIZE[1]]
            for name in ("astronaut", "chelsea", "coffee")]
  return np.stack(photos).astype(np.float64)


@functools.cache
def _pairs():
  """{name: (pred, target)} in 0..255 float64, [3, H, W, 3]."""
  target = _photos()
  rng = np.random.default_rng(0)
  noisy = np.clip(target + rng.normal(0, 12, target.shape), 0, 255)
  shifted = np.roll(target, (2, -3), axis=(1, 2))
  return {"noisy": (noisy, target), "shifted": (shifted, target),
          "blurred": (scipy.ndimage.uniform_filter(target, (1, 3, 3, 1)), target)}


def _motion_masks(soft=False):
  """[3, H, W] masks: a disc, a box, a stripe (binary, or soft edges when `soft`)."""
  y, x = np.mgrid[:SIZE[0], :SIZE[1]]
  masks = np.stack([np.hypot(y - 90, x - 120) < 50, (y > 20) & (y < 80) & (x > 30),
                    np.abs(x - y) < 15]).astype(np.float64)
  return scipy.ndimage.gaussian_filter(masks, (0, 3, 3)) if soft else masks


def _gray(rgb):
  return rgb @ np.asarray(frames.GRAY_COEFFICIENTS)


def _skimage_ssim(pred, target):
  return np.array([skimage.metrics.structural_similarity(
      a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
                   for a, b in zip(pred, target)])


def _script_psnr(pred, target, mask):
  """eval_voxelflow.m, line for line, one image at a time."""
  out = []
  for p, t, m in zip(pred, target, mask):
    mse = np.sum((m[..., None] * p - m[..., None] * t) ** 2) / (3 * np.sum(m))
    out.append(20 * np.log10(255.0) - 10 * np.log10(mse))
  return np.array(out)


@pytest.mark.parametrize("name", ["noisy", "shifted", "blurred"])
def test_psnr_matches_skimage_unmasked(name):
  pred, target = _pairs()[name]
  want = [skimage.metrics.peak_signal_noise_ratio(t, p, data_range=255)
          for p, t in zip(pred, target)]
  got = frames.psnr(pred, target)
  assert got.shape == (3,)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_array_equal(frames.psnr_valid(pred, target), True)
  np.testing.assert_allclose(frames.psnr(pred / 255, target / 255, max_value=1.0), want, rtol=1e-5)


@pytest.mark.parametrize("soft", [False, True])
def test_masked_psnr_is_the_eval_scripts(soft):
  pred, target = _pairs()["noisy"]
  mask = _motion_masks(soft)
  got = frames.psnr(pred, target, mask)
  np.testing.assert_allclose(got, _script_psnr(pred, target, mask), rtol=1e-5)
  np.testing.assert_allclose(frames.psnr(pred, target, mask[..., None]), got)
  if not soft:  # binary masks: REFERENCES' Σ mask·err² / (3·Σ mask) is the same number
    mse = (np.sum(mask[..., None] * (pred - target) ** 2, axis=(1, 2, 3))
           / (3 * mask.sum((1, 2))))
    np.testing.assert_allclose(frames.mse(pred, target, mask), mse, rtol=1e-5)
  assert not np.allclose(got, frames.psnr(pred, target))


def test_psnr_identical_images_and_empty_masks_count_nowhere():
  pred, target = _pairs()["noisy"]
  pred = pred.copy()
  pred[1] = target[1]  # MSE 0: infinite PSNR in the script, which then leaves the image out
  mask = _motion_masks()
  mask[2] = 0  # no counted pixel: left out too
  psnr = jax.jit(frames.psnr)(pred, target, mask)
  assert np.all(np.isfinite(psnr)) and psnr[1] == 0 and psnr[2] == 0 and psnr[0] > 20
  np.testing.assert_array_equal(frames.psnr_valid(pred, target, mask), [True, False, False])
  np.testing.assert_array_equal(frames.mse(pred, target, mask)[1:], 0.0)
  # A Task's reduction over counted images equals the script's mean over flag_valid.
  valid = frames.psnr_valid(pred, target, mask)
  np.testing.assert_allclose(jnp.sum(valid * psnr) / jnp.sum(valid), psnr[0])


@pytest.mark.parametrize("name", ["noisy", "shifted", "blurred"])
def test_ssim_matches_skimage_on_gray_photographs(name):
  pred, target = _pairs()[name]
  want = _skimage_ssim(_gray(pred), _gray(target))
  got = frames.ssim(pred, target)
  assert got.shape == (3,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, atol=1e-5)
  gray = frames.ssim(_gray(pred)[..., None], _gray(target)[..., None])  # gray [B, H, W, 1] in
  np.testing.assert_allclose(gray, want, atol=1e-5)
  np.testing.assert_allclose(frames.ssim(target, target), 1.0, atol=1e-6)


def test_masked_and_quantized_ssim_follow_the_eval_script():
  pred, target = _pairs()["noisy"]
  mask = _motion_masks(soft=True)
  masked = lambda x: mask[..., None] * x
  want = _skimage_ssim(_gray(masked(pred)), _gray(masked(target)))
  np.testing.assert_allclose(frames.ssim(pred, target, mask), want, atol=1e-5)
  # rgb2gray(uint8(mask·img)): MATLAB rounds half away from zero, after the mask and the luma.
  uint8 = lambda x: np.clip(np.floor(x + 0.5), 0, 255)
  want = _skimage_ssim(uint8(_gray(uint8(masked(pred)))), uint8(_gray(uint8(masked(target)))))
  np.testing.assert_allclose(frames.ssim(pred, target, mask, quantize=True), want, atol=1e-5)


def test_replicate_padding_ssim_matches_scipy_full_map():
  """MATLAB's built-in ssim: Gaussian filtering with replicated borders, mean over every pixel."""
  pred, target = (_gray(x) for x in _pairs()["shifted"])
  blur = lambda x: scipy.ndimage.gaussian_filter(x, 1.5, mode="nearest", truncate=5 / 1.5)
  want = []
  for x, y in zip(pred, target):
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 2.55 ** 2, 7.65 ** 2
    want.append(np.mean((2 * mx * my + c1) * (2 * cxy + c2)
                        / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))))
  got = frames.ssim(pred[..., None], target[..., None], padding="replicate")
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert not np.allclose(got, frames.ssim(pred[..., None], target[..., None]), atol=1e-4)


def test_ssim_gradient_and_bad_inputs():
  pred, target = (jnp.asarray(x[:1, :32, :32], jnp.float32) for x in _pairs()["noisy"])
  g = jax.grad(lambda p: jnp.sum(frames.ssim(p, target)))(pred)
  assert g.shape == pred.shape and np.all(np.isfinite(g)) and np.abs(g).max() > 0
  with pytest.raises(ValueError, match="11x11"):
    frames.ssim(pred[:, :10], target[:, :10])
  with pytest.raises(ValueError, match="padding"):
    frames.ssim(pred, target, padding="same")
  with pytest.raises(ValueError, match="mask"):
    frames.psnr(pred, target, jnp.ones((1, 32, 31)))
  with pytest.raises(ValueError, match="one shape"):
    frames.psnr(pred, target[:, :16])


def test_ssim_region_equals_ssim_of_the_cropped_images():
  """Padding around an image (region 0) does not count: the same as SSIM of the crop alone."""
  rng = np.random.default_rng(3)
  target = rng.uniform(0, 255, (2, 30, 40, 3)).astype(np.float32)
  pred = np.clip(target + rng.normal(0, 20, target.shape), 0, 255).astype(np.float32)
  region = np.zeros((2, 30, 40), np.float32)
  region[:, :24, :33] = 1
  padded_pred = pred.copy()
  padded_pred[:, 24:] = 0  # whatever sits in the padding is ignored
  got = frames.ssim(padded_pred, target, region=region)
  want = frames.ssim(pred[:, :24, :33], target[:, :24, :33])
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(frames.ssim(pred, target, region=np.ones((2, 30, 40))),
                             frames.ssim(pred, target), rtol=1e-6)

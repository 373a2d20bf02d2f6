"""Frame synthesis metrics as DVF's eval_voxelflow.m computes them: masked PSNR, gray SSIM.

Every function is batched and returns one value per image [B]: a Task sums psnr·valid·_mask and
ssim·valid·_mask (valid = `psnr_valid`) and valid·_mask over batches, and divides once. Images are
RGB [B, H, W, 3] in 0..max_value (0..255: the script reads PNGs); masks are [B, H, W] or
[B, H, W, 1] in [0, 1] (the script's motion_mask.png / 255).

What the script (liuziwei7/voxel-flow) does per test triplet, and so what we do:
- MSE = Σ (mask·pred - mask·target)² / (3·Σ mask): the mask multiplies the images before the
  difference is squared, so a soft mask weighs by mask² (REFERENCES' Σ mask·err² is the same for
  the binary motion masks);
- PSNR = 20 log10 255 - 10 log10 MSE;
- SSIM = ssim(rgb2gray(uint8(mask·pred)), rgb2gray(uint8(mask·target))): SSIM of the masked
  images, zero outside the mask, so the script's SSIM is a masked SSIM too;
- a triplet counts in both means only when Σ mask > 0 and the PSNR is finite (MSE > 0); the others
  get PSNR 0 and are left out. `psnr` returns 0 for them too, and `psnr_valid` says which count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# MATLAB's rgb2gray: the first row of the inverse NTSC (YIQ) matrix, ITU-R 601 luma to ~1e-4.
GRAY_COEFFICIENTS = (0.2989360212937754, 0.5870430744511212, 0.11402090425510325)
SSIM_PADDINGS = ("valid", "replicate")


def _images(pred, target) -> tuple[jax.Array, jax.Array]:
  pred, target = jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32)
  if pred.ndim != 4 or pred.shape != target.shape:
    raise ValueError(f"pred and target must be [B, H, W, C] of one shape, got {pred.shape} and "
                     f"{target.shape}")
  return pred, target


def _mask(mask, shape: tuple[int, ...]) -> jax.Array:
  """[B, H, W] or [B, H, W, 1] -> float32 [B, H, W, 1]."""
  mask = jnp.asarray(mask, jnp.float32)
  if mask.ndim == 3:
    mask = mask[..., None]
  if mask.shape != (*shape[:3], 1):
    raise ValueError(f"mask must be [B, H, W] or [B, H, W, 1] with B, H, W = {shape[:3]}, got "
                     f"shape {mask.shape}")
  return mask


def mse(pred, target, mask=None) -> jax.Array:
  """[B] mean squared error per image and channel over the (masked) pixels; 0 for an empty mask."""
  pred, target = _images(pred, target)
  if mask is None:
    return jnp.mean(jnp.square(pred - target), axis=(1, 2, 3))
  mask = _mask(mask, pred.shape)
  counted = jnp.sum(mask, axis=(1, 2, 3)) * pred.shape[-1]
  squares = jnp.sum(jnp.square(mask * pred - mask * target), axis=(1, 2, 3))
  return jnp.where(counted > 0, squares / jnp.where(counted > 0, counted, 1.0), 0.0)


def psnr_valid(pred, target, mask=None) -> jax.Array:
  """[B] bool: the image counts in the mean PSNR and SSIM (some pixel counted and MSE > 0)."""
  return mse(pred, target, mask) > 0


def psnr(pred, target, mask=None, max_value: float = 255.0) -> jax.Array:
  """[B] PSNR in dB, 20 log10 max_value - 10 log10 MSE; 0 where `psnr_valid` is False.

  Identical images (MSE = 0, infinite PSNR) and empty masks give 0, never inf or NaN, as the
  script's mat_psnr; average only over `psnr_valid` images, as the script does.
  """
  error = mse(pred, target, mask)
  valid = error > 0
  db = 20.0 * jnp.log10(max_value) - 10.0 * jnp.log10(jnp.where(valid, error, 1.0))
  return jnp.where(valid, db, 0.0)


def _matlab_uint8(x: jax.Array, max_value: float) -> jax.Array:
  # MATLAB's uint8(): round half away from zero (up, for what survives the clip), saturate.
  return jnp.clip(jnp.floor(x + 0.5), 0.0, max_value)


def to_gray(rgb) -> jax.Array:
  """[B, H, W, 3] RGB -> [B, H, W] float32 luma with MATLAB rgb2gray's weights (no rounding)."""
  rgb = jnp.asarray(rgb, jnp.float32)
  if rgb.shape[-1] != 3:
    raise ValueError(f"rgb must be [..., 3], got shape {rgb.shape}")
  return rgb @ jnp.asarray(GRAY_COEFFICIENTS, jnp.float32)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  """[size] normalised 1-D Gaussian: fspecial('gaussian', 11, 1.5) is its outer product."""
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  window = np.exp(-0.5 * (x / sigma) ** 2)
  return window / window.sum()


def _filter_valid(x: jax.Array, window: np.ndarray) -> jax.Array:
  """Separable correlation of [B, H, W, K] with the window, 'valid' region only."""
  n = len(window)
  height, width = x.shape[1] - n + 1, x.shape[2] - n + 1
  x = sum(float(w) * x[:, i:i + height] for i, w in enumerate(window))
  return sum(float(w) * x[:, :, i:i + width] for i, w in enumerate(window))


def ssim(pred, target, mask=None, max_value: float = 255.0, *, padding: str = "valid",
         quantize: bool = False, region=None) -> jax.Array:
  """[B] SSIM (Wang et al. 2004) of gray images: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03.

  pred, target: [B, H, W, 3] RGB (converted with `to_gray`) or [B, H, W, 1] gray. `mask` multiplies
  the RGB images first, as the script does. `padding`: "valid" averages the SSIM map over the
  positions where the window fits (Wang's ssim.m, skimage's structural_similarity with
  gaussian_weights=True, use_sample_covariance=False); "replicate" over all pixels, filtering
  with replicated borders (MATLAB's built-in ssim since R2014a). Which of the two the script
  called depends on its MATLAB path and is not recorded. `quantize` rounds as its uint8() and
  rgb2gray do for uint8 images (after the mask and after the gray conversion).
  `region` [B, H, W] (1 = the image's own pixels, 0 = padding around it) limits the mean to the
  windows that lie wholly inside the region, so padding never counts; "valid" padding only.
  """
  if padding not in SSIM_PADDINGS:
    raise ValueError(f"padding must be one of {SSIM_PADDINGS}, got {padding!r}")
  pred, target = _images(pred, target)
  if pred.shape[-1] not in (1, 3):
    raise ValueError(f"images must be RGB or gray [B, H, W, 3 or 1], got shape {pred.shape}")
  if mask is not None:
    mask = _mask(mask, pred.shape)
    pred, target = mask * pred, mask * target
  if quantize:
    pred, target = _matlab_uint8(pred, max_value), _matlab_uint8(target, max_value)
  if pred.shape[-1] == 3:
    pred, target = to_gray(pred), to_gray(target)
    if quantize:
      pred, target = _matlab_uint8(pred, max_value), _matlab_uint8(target, max_value)
  else:
    pred, target = pred[..., 0], target[..., 0]
  window = gaussian_window()
  if padding == "replicate":
    pad = ((0, 0), (len(window) // 2,) * 2, (len(window) // 2,) * 2)
    pred, target = jnp.pad(pred, pad, mode="edge"), jnp.pad(target, pad, mode="edge")
  if min(pred.shape[1:]) < len(window):
    raise ValueError(f"SSIM needs images of at least {len(window)}x{len(window)} pixels, got "
                     f"{pred.shape[1:]}")
  # Moments of images centred on their means: float32 E[x²] - E[x]² cancels badly at 0..255.
  x = pred - jnp.mean(pred, axis=(1, 2), keepdims=True)
  y = target - jnp.mean(target, axis=(1, 2), keepdims=True)
  moments = _filter_valid(jnp.stack([x, y, x * x, y * y, x * y], -1), window)
  mu_x, mu_y, xx, yy, xy = (moments[..., i] for i in range(5))
  var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
  mu_x = mu_x + jnp.mean(pred, axis=(1, 2), keepdims=True)
  mu_y = mu_y + jnp.mean(target, axis=(1, 2), keepdims=True)
  c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
  ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
              / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)))
  if region is None:
    return jnp.mean(ssim_map, axis=(1, 2))
  if padding != "valid":
    raise ValueError("ssim's region needs padding='valid'")
  region = _mask(region, (*pred.shape, 1))
  # A window is inside when the region covers all of it: its box sum equals the window's area.
  box = np.ones(len(window))
  inside = (_filter_valid(region, box)[..., 0] > len(window) ** 2 - 0.5).astype(jnp.float32)
  count = jnp.sum(inside, axis=(1, 2))
  return jnp.where(count > 0, jnp.sum(ssim_map * inside, axis=(1, 2)) / jnp.maximum(count, 1.0),
                   0.0)

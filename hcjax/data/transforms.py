"""numpy image ops for the input pipeline that keep labels aligned with the image.

Ops run inside grain worker processes, so they use numpy and PIL only (no JAX). A *sample* is a
dict; geometric ops transform whichever of these keys it holds and pass every other key through:

  "image":     [H, W, C] (or [H, W]) uint8 or float; bilinear.
  "mask":      [H, W] integer label map; nearest neighbour, `mask_fill` where the output pixel
               comes from outside the source.
  "landmarks": [K, 2] float32 (x, y) in pixel-centre coordinates: pixel (row i, col j) is at
               x=j, y=i. Arrays named in `per_landmark_keys` (e.g. "visibility") are permuted
               with the landmark rows when a flip swaps left/right pairs.
  "boxes":     [N, 4] float32 (x1, y1, x2, y2) in edge coordinates: the image covers
               [0, W] x [0, H]; a box maps to the min/max of its mapped corners, clipped.

Every geometric op is one affine matrix in edge coordinates (x_edge = x_centre + 0.5) handed to
`affine`, so the image and its labels go through the same map and can never disagree. Half-pixel
conventions then live in one place instead of in each op.

All randomness comes from the `np.random.Generator` passed in, so the pipeline's per-example seed
reproduces the whole chain.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from hcjax.data.errors import ImageDecodeError

Sample = Mapping[str, Any]
Size = int | tuple[int, int]

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as PIL's "L" conversion.


# --- decoding and value ops ---------------------------------------------------------------------


def decode_image(data: bytes, channels: int = 3) -> np.ndarray:
  """Decodes JPEG/PNG bytes to uint8 [H, W, channels]; bad bytes raise ImageDecodeError."""
  if channels not in (1, 3, 4):
    raise ValueError(f"channels must be 1, 3 or 4, got {channels}")
  try:
    with Image.open(io.BytesIO(bytes(data))) as img:
      img.load()  # Decodes now, so truncated data fails here rather than later.
      if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNG: rescale rather than clip.
        gray = np.asarray(img, np.float64) / 257.0
        img = Image.fromarray(np.clip(np.rint(gray), 0, 255).astype(np.uint8))
      arr = np.asarray(img.convert({1: "L", 3: "RGB", 4: "RGBA"}[channels]))
  except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
    raise ImageDecodeError(f"cannot decode image ({len(data)} bytes): {e}") from e
  if arr.ndim == 2:
    arr = arr[:, :, None]
  return np.ascontiguousarray(arr)


def to_float(image: np.ndarray) -> np.ndarray:
  """Scales to float32 in [0, 1]: integer images by their dtype's max, float images unchanged."""
  image = np.asarray(image)
  if np.issubdtype(image.dtype, np.integer):
    return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
  return image.astype(np.float32)


def normalize(image: np.ndarray, mean: Any, std: Any) -> np.ndarray:
  """(image - mean) / std as float32; mean and std broadcast over the channel axis."""
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  return (np.asarray(image, np.float32) - mean) / std


def landmarks_inside(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
  """bool [K]: landmark lies on a pixel of a [height, width] image (e.g. not cropped away)."""
  pts = np.asarray(landmarks, np.float64).reshape(-1, 2) + 0.5  # Edge coordinates.
  with np.errstate(invalid="ignore"):
    return ((pts[:, 0] >= 0) & (pts[:, 0] < width) & (pts[:, 1] >= 0) & (pts[:, 1] < height))


# --- the one warp -------------------------------------------------------------------------------


def affine(sample: Sample, matrix: Any, out_size: tuple[int, int], *, mask_fill: int = 255,
           fill: float | Sequence[float] = 0, flip_pairs: Sequence[tuple[int, int]] = (),
           per_landmark_keys: Sequence[str] = ("visibility",)) -> dict[str, Any]:
  """Warps image and labels by `matrix` ([2, 3] or [3, 3], source -> output edge coordinates).

  out_size is (height, width). When the map mirrors (negative determinant) the subject's left and
  right swap, so the landmark rows of each pair in `flip_pairs`, and the arrays named in
  `per_landmark_keys`, are exchanged; a pure rotation or scale leaves them in place.
  """
  m = _as_matrix(matrix)
  out_h, out_w = _check_size(out_size)
  det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
  if not np.isfinite(m).all() or abs(det) < 1e-12:
    raise ValueError(f"affine matrix must be finite and invertible, got {m[:2].tolist()}")
  inv = np.linalg.inv(m)
  out = dict(sample)
  if "image" in sample:
    out["image"] = _warp_image(np.asarray(sample["image"]), m, inv, (out_h, out_w), fill)
  if "mask" in sample:
    mask = np.asarray(sample["mask"])
    out["mask"] = _gather(mask, m, inv, (out_h, out_w), np.asarray(mask_fill, mask.dtype))
  if "landmarks" in sample:
    pts = np.asarray(sample["landmarks"], np.float32)
    moved = _map_points(pts.reshape(-1, 2).astype(np.float64) + 0.5, m) - 0.5
    out["landmarks"] = moved.astype(np.float32).reshape(pts.shape)
  if "boxes" in sample:
    out["boxes"] = _map_boxes(np.asarray(sample["boxes"], np.float32), m, out_h, out_w)
  if det < 0 and flip_pairs and "landmarks" in sample:
    order = _swap_order(len(out["landmarks"]), flip_pairs)
    out["landmarks"] = out["landmarks"][order]
    for key in per_landmark_keys:
      if key in out:
        out[key] = np.asarray(out[key])[order]
  return out


def _as_matrix(matrix: Any) -> np.ndarray:
  m = np.asarray(matrix, np.float64)
  if m.shape == (2, 3):
    m = np.vstack([m, [0.0, 0.0, 1.0]])
  if m.shape != (3, 3):
    raise ValueError(f"affine matrix must be [2, 3] or [3, 3], got shape {m.shape}")
  return m


def _check_size(size: Size) -> tuple[int, int]:
  h, w = (size, size) if isinstance(size, (int, np.integer)) else size
  if int(h) != h or int(w) != w or h < 1 or w < 1:
    raise ValueError(f"size must be positive integers (height, width), got {size}")
  return int(h), int(w)


def _hw(sample: Sample) -> tuple[int, int]:
  for key in ("image", "mask"):
    if key in sample:
      shape = np.shape(sample[key])
      return int(shape[0]), int(shape[1])
  raise ValueError(f"sample has neither 'image' nor 'mask' to take its size from: {sorted(sample)}")


def _map_points(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
  """[P, 2] edge coordinates through m."""
  return pts @ m[:2, :2].T + m[:2, 2]


def _map_boxes(boxes: np.ndarray, m: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  b = boxes.reshape(-1, 4).astype(np.float64)
  corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], axis=1)  # [N, 4, 2]
  mapped = _map_points(corners.reshape(-1, 2), m).reshape(-1, 4, 2)
  lo, hi = mapped.min(axis=1), mapped.max(axis=1)
  out = np.concatenate([lo, hi], axis=1)
  out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, out_w)
  out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, out_h)
  return out.astype(np.float32).reshape(boxes.shape)


def _swap_order(k: int, flip_pairs: Sequence[tuple[int, int]]) -> np.ndarray:
  order = np.arange(k)
  for a, b in flip_pairs:
    if not (0 <= a < k and 0 <= b < k):
      raise ValueError(f"flip pair ({a}, {b}) out of range for {k} landmarks")
    order[a], order[b] = b, a
  return order


def _is_pixel_exact(m: np.ndarray) -> bool:
  """Axis-aligned, unit scale and integer shift: every output pixel centre is a source centre."""
  return (m[0, 1] == 0 and m[1, 0] == 0 and abs(m[0, 0]) == 1 and abs(m[1, 1]) == 1
          and float(m[0, 2]).is_integer() and float(m[1, 2]).is_integer())


def _gather(src: np.ndarray, m: np.ndarray, inv: np.ndarray, out_size: tuple[int, int],
            fill: Any) -> np.ndarray:
  """Nearest-neighbour warp: the source pixel under each output pixel centre, else `fill`."""
  h, w = src.shape[:2]
  out_h, out_w = out_size
  out = np.empty((out_h, out_w) + src.shape[2:], src.dtype)
  out[...] = fill
  if m[0, 1] == 0 and m[1, 0] == 0:  # Separable: index rows and columns independently.
    xs = (np.arange(out_w) + 0.5 - m[0, 2]) / m[0, 0]
    ys = (np.arange(out_h) + 0.5 - m[1, 2]) / m[1, 1]
    cols_ok = (xs >= 0) & (xs < w)
    rows_ok = (ys >= 0) & (ys < h)
    cols = np.floor(xs[cols_ok]).astype(np.int64)
    rows = np.floor(ys[rows_ok]).astype(np.int64)
    out[np.ix_(rows_ok, cols_ok)] = src[np.ix_(rows, cols)]
    return out
  gy, gx = np.mgrid[0:out_h, 0:out_w].astype(np.float64) + 0.5
  xs = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
  ys = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
  ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
  out[ok] = src[np.floor(ys[ok]).astype(np.int64), np.floor(xs[ok]).astype(np.int64)]
  return out


def _warp_image(image: np.ndarray, m: np.ndarray, inv: np.ndarray, out_size: tuple[int, int],
                fill: float | Sequence[float]) -> np.ndarray:
  """Bilinear warp through PIL, whose convention is ours: edge coordinates, sampled at pixel
  centres, clamped inside the border and `fill` outside it."""
  squeeze = image.ndim == 2
  img = image[:, :, None] if squeeze else image
  c = img.shape[2]
  fills = np.broadcast_to(np.asarray(fill, np.float64), (c,))
  if _is_pixel_exact(m):  # Crops and flips: copy pixels, bit-exact and fast.
    out = _gather(img, m, inv, out_size, _cast(fills, img.dtype))
    return out[:, :, 0] if squeeze else out
  out_h, out_w = out_size
  data = tuple(float(v) for v in inv[:2].reshape(-1))
  planes = []
  # One float plane at a time: PIL's 8-bit bilinear truncates (a -0.5 level bias per warp), it
  # has no mode for >4 channels, and it would premultiply an RGBA image by its alpha.
  for ch in range(c):
    pil = Image.fromarray(np.ascontiguousarray(img[:, :, ch], dtype=np.float32))
    planes.append(np.asarray(pil.transform(
        (out_w, out_h), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR,
        fillcolor=float(fills[ch]))))
  out = _cast(np.stack(planes, axis=-1), img.dtype)
  return out[:, :, 0] if squeeze else out


def _cast(x: Any, dtype: np.dtype) -> np.ndarray:
  """Casts with rounding and saturation for integer dtypes."""
  x = np.asarray(x)
  if np.issubdtype(dtype, np.integer):
    info = np.iinfo(dtype)
    return np.clip(np.rint(x), info.min, info.max).astype(dtype)
  return x.astype(dtype)


# --- geometric ops ------------------------------------------------------------------------------


def scale_matrix(sx: float, sy: float) -> np.ndarray:
  """3x3 homogeneous map (x, y) -> (sx·x, sy·y), for composing with `affine`."""
  return np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], np.float64)


def translation_matrix(tx: float, ty: float) -> np.ndarray:
  """3x3 homogeneous map (x, y) -> (x + tx, y + ty), for composing with `affine`."""
  return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)


def resize(sample: Sample, size: Size) -> dict[str, Any]:
  """Resizes to size (height, width); bilinear, without anti-aliasing when shrinking."""
  h, w = _hw(sample)
  out_h, out_w = _check_size(size)
  return affine(sample, scale_matrix(out_w / w, out_h / h), (out_h, out_w))


def crop(sample: Sample, top: int, left: int, height: int, width: int, *, mask_fill: int = 255,
         fill: float | Sequence[float] = 0) -> dict[str, Any]:
  """Crops [top, top + height) x [left, left + width); parts outside the image are filled."""
  return affine(sample, translation_matrix(-int(left), -int(top)), (height, width),
                mask_fill=mask_fill, fill=fill)


def hflip(sample: Sample, flip_pairs: Sequence[tuple[int, int]] = (), *,
          per_landmark_keys: Sequence[str] = ("visibility",)) -> dict[str, Any]:
  """Mirrors left-right and swaps each (left, right) landmark pair, e.g. the two eyes."""
  h, w = _hw(sample)
  m = np.array([[-1, 0, w], [0, 1, 0], [0, 0, 1]], np.float64)
  return affine(sample, m, (h, w), flip_pairs=flip_pairs, per_landmark_keys=per_landmark_keys)


def rotation_matrix(degrees: float, center: tuple[float, float]) -> np.ndarray:
  """[3, 3] counter-clockwise (as displayed) rotation about center (x, y), edge coordinates."""
  t = math.radians(degrees)
  cos, sin = math.cos(t), math.sin(t)
  # y points down, so a visually counter-clockwise turn moves +x towards -y.
  rot = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]], np.float64)
  cx, cy = center
  return translation_matrix(cx, cy) @ rot @ translation_matrix(-cx, -cy)


def rotate(sample: Sample, degrees: float, *, center: tuple[float, float] | None = None,
           mask_fill: int = 255, fill: float | Sequence[float] = 0) -> dict[str, Any]:
  """Rotates counter-clockwise by `degrees` about center (x, y) in edge coordinates.

  The default centre is the image centre (W / 2, H / 2); the output keeps the input size, so
  corners are cut and filled.
  """
  h, w = _hw(sample)
  center = (w / 2.0, h / 2.0) if center is None else center
  return affine(sample, rotation_matrix(degrees, center), (h, w), mask_fill=mask_fill, fill=fill)


# --- random geometric ops -----------------------------------------------------------------------


def random_crop(sample: Sample, rng: np.random.Generator, size: Size, *, mask_fill: int = 255,
                fill: float | Sequence[float] = 0) -> dict[str, Any]:
  """Crops `size` (height, width) at a uniform position; a smaller image is padded around."""
  h, w = _hw(sample)
  out_h, out_w = _check_size(size)
  top = int(rng.integers(min(0, h - out_h), max(0, h - out_h) + 1))
  left = int(rng.integers(min(0, w - out_w), max(0, w - out_w) + 1))
  return crop(sample, top, left, out_h, out_w, mask_fill=mask_fill, fill=fill)


def random_resized_crop(sample: Sample, rng: np.random.Generator, size: Size,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> dict[str, Any]:
  """Inception-style crop: random area fraction and aspect ratio (w / h), resized to `size`.

  Falls back to the largest centred crop within `ratio` when 10 tries do not fit.
  """
  h, w = _hw(sample)
  out_h, out_w = _check_size(size)
  area = h * w
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
    cw = int(round(math.sqrt(target * aspect)))
    ch = int(round(math.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      top = int(rng.integers(0, h - ch + 1))
      left = int(rng.integers(0, w - cw + 1))
      break
  else:
    aspect = w / h
    if aspect < min(ratio):
      cw, ch = w, max(1, int(round(w / min(ratio))))
    elif aspect > max(ratio):
      cw, ch = max(1, int(round(h * max(ratio)))), h
    else:
      cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
  m = scale_matrix(out_w / cw, out_h / ch) @ translation_matrix(-left, -top)
  return affine(sample, m, (out_h, out_w))


def random_scale(sample: Sample, rng: np.random.Generator,
                 scale_range: tuple[float, float] = (0.5, 2.0)) -> dict[str, Any]:
  """Resizes by a factor drawn uniformly from scale_range (sizes rounded, at least 1 pixel)."""
  h, w = _hw(sample)
  s = rng.uniform(scale_range[0], scale_range[1])
  return resize(sample, (max(1, int(round(h * s))), max(1, int(round(w * s)))))


def random_flip(sample: Sample, rng: np.random.Generator,
                flip_pairs: Sequence[tuple[int, int]] = (), p: float = 0.5, *,
                per_landmark_keys: Sequence[str] = ("visibility",)) -> dict[str, Any]:
  """hflip with probability p."""
  if rng.random() < p:
    return hflip(sample, flip_pairs, per_landmark_keys=per_landmark_keys)
  return dict(sample)


def random_rotate(sample: Sample, rng: np.random.Generator, max_degrees: float, *,
                  mask_fill: int = 255, fill: float | Sequence[float] = 0) -> dict[str, Any]:
  """Rotates about the image centre by an angle uniform in [-max_degrees, max_degrees]."""
  degrees = rng.uniform(-max_degrees, max_degrees)
  return rotate(sample, degrees, mask_fill=mask_fill, fill=fill)


# --- photometric --------------------------------------------------------------------------------


def color_jitter(sample: Sample, rng: np.random.Generator, brightness: float = 0.0,
                 contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0) -> dict[str, Any]:
  """Random brightness, contrast, saturation and hue, applied in a random order; image only.

  Factors are uniform in [max(0, 1 - x), 1 + x]; the hue shift is uniform in [-hue, hue] turns
  (hue <= 0.5). uint8 images stay uint8; float images are taken to be in [0, 1] and clipped
  there. Saturation and hue need 3 channels and are skipped otherwise.
  """
  if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5:
    raise ValueError("jitter strengths must be >= 0 and hue <= 0.5, got "
                     f"{(brightness, contrast, saturation, hue)}")
  factors = [rng.uniform(max(0.0, 1 - x), 1 + x) for x in (brightness, contrast, saturation)]
  shift = rng.uniform(-hue, hue)
  order = rng.permutation(4)
  out = dict(sample)
  if "image" not in sample:
    return out
  image = np.asarray(sample["image"])
  top = 255.0 if image.dtype == np.uint8 else 1.0
  x = image.astype(np.float32)
  rgb = x.ndim == 3 and x.shape[2] == 3
  for op in order:
    if op == 0 and factors[0] != 1:
      x = np.clip(x * factors[0], 0, top)
    elif op == 1 and factors[1] != 1:
      mean = (_gray(x) if rgb else x).mean()
      x = np.clip(mean + factors[1] * (x - mean), 0, top)
    elif op == 2 and rgb and factors[2] != 1:
      gray = _gray(x)[..., None]
      x = np.clip(gray + factors[2] * (x - gray), 0, top)
    elif op == 3 and rgb and shift != 0:
      hsv = _rgb_to_hsv(x / top)
      hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
      x = _hsv_to_rgb(hsv) * top
  out["image"] = _cast(x, image.dtype) if image.dtype == np.uint8 else x.astype(image.dtype)
  return out


def _gray(rgb: np.ndarray) -> np.ndarray:
  return rgb @ _LUMA


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
  """[..., 3] RGB in [0, 1] -> HSV with hue in turns [0, 1)."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  v = rgb.max(axis=-1)
  chroma = v - rgb.min(axis=-1)
  s = np.where(v > 0, chroma / np.where(v > 0, v, 1), 0)
  c = np.where(chroma > 0, chroma, 1)
  sector = np.where(v == r, (g - b) / c, np.where(v == g, 2 + (b - r) / c, 4 + (r - g) / c))
  h = np.where(chroma > 0, (sector / 6.0) % 1.0, 0)
  return np.stack([h, s, v], axis=-1).astype(np.float32)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
  h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  # Each channel is v minus a piecewise-linear dip over the hue circle.
  k = lambda n: (n + h * 6.0) % 6.0
  channel = lambda n: v - v * s * np.clip(np.minimum(k(n), 4 - k(n)), 0, 1)
  return np.stack([channel(5), channel(3), channel(1)], axis=-1).astype(np.float32)

"""Transforms keep image, mask, landmarks and boxes aligned; pixel convention checked vs skimage.

The alignment tests draw what each label describes into the image (a Gaussian spot per landmark,
the mask's square, the box's rectangle), transform, and measure the drawing again. Tolerances are
well below half a pixel where possible so that a half-pixel convention slip fails.
"""

from __future__ import annotations

import colorsys
import io

import numpy as np
import pytest
from PIL import Image
from skimage import transform as sktransform

from hcjax.data import transforms as T
from hcjax.data.errors import ImageDecodeError

H, W = 72, 96
SIGMA = 1.5
LANDMARKS = np.array([[26.0, 19.0], [68.3, 20.6], [47.0, 37.0], [25.5, 54.0], [69.0, 53.2]],
                     np.float32)
SQUARE = (20, 36, 44, 64)  # Mask label 3 on rows [20, 44) x cols [36, 64).
BOX = np.array([[20.0, 14.0, 76.0, 58.0]], np.float32)  # Edge coordinates.
LABEL, BACKGROUND, VOID = 3, 1, 255


def _spots(h: int, w: int, points: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
  """[h, w] float: one Gaussian spot (peak 255) centred on each (x, y) pixel-centre point."""
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
  out = np.zeros((h, w))
  for x, y in points:
    out += 255.0 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
  return np.clip(out, 0, 255)


def _make_sample(dtype=np.uint8) -> dict:
  """Channel 0: landmark spots; channel 1: the mask's square; channel 2: the box's rectangle."""
  image = np.zeros((H, W, 3), np.float64)
  image[:, :, 0] = _spots(H, W, LANDMARKS)
  t, l, b, r = SQUARE
  image[t:b, l:r, 1] = 255
  x1, y1, x2, y2 = BOX[0].astype(int)
  image[y1:y2, x1:x2, 2] = 255
  mask = np.full((H, W), BACKGROUND, np.uint8)
  mask[t:b, l:r] = LABEL
  image = np.rint(image).astype(np.uint8) if dtype == np.uint8 else (image / 255).astype(dtype)
  return {"image": image, "mask": mask, "landmarks": LANDMARKS.copy(), "boxes": BOX.copy(),
          "visibility": np.array([1, 1, 0, 1, 0], np.int32), "attributes": np.arange(4)}


def _as_255(image: np.ndarray) -> np.ndarray:
  return image.astype(np.float64) * (1.0 if image.dtype == np.uint8 else 255.0)


def _centroid(plane: np.ndarray, x: float, y: float, radius: int) -> tuple[float, float]:
  cx, cy = int(round(x)), int(round(y))
  win = plane[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1]
  ys, xs = np.mgrid[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1]
  return float((win * xs).sum() / win.sum()), float((win * ys).sum() / win.sum())


def _check_landmarks(out: dict, scale: float, min_checked: int, tol: float = 0.25) -> None:
  """Each landmark well inside the output sits on its spot's intensity centroid."""
  plane = _as_255(out["image"])[:, :, 0]
  h, w = plane.shape
  radius = int(np.ceil(3 * SIGMA * scale)) + 1
  checked = 0
  for x, y in out["landmarks"]:
    if not (radius <= x < w - 1 - radius and radius <= y < h - 1 - radius):
      continue
    gx, gy = _centroid(plane, x, y, radius)
    assert np.hypot(gx - x, gy - y) < tol, (x, y, gx, gy)
    checked += 1
  assert checked >= min_checked


def _check_mask(out: dict) -> None:
  """Nearest and bilinear agree: a pixel mostly inside the drawn square is labelled, and so on.

  The nearest source pixel carries at least a quarter of the bilinear weight, so a bilinear value
  >= 192 means it is inside the square and <= 63 that it is not.
  """
  plane = _as_255(out["image"])[:, :, 1]
  mask = out["mask"]
  assert mask.shape == plane.shape
  assert set(np.unique(mask)) <= {LABEL, BACKGROUND, VOID}
  assert (mask == LABEL).sum() > 20
  np.testing.assert_array_equal(mask[plane >= 192], LABEL)
  assert not (mask[plane <= 63] == LABEL).any()


def _check_boxes(out: dict, tol: float = 1.0) -> None:
  """The drawn rectangle's extent matches the transformed box."""
  plane = _as_255(out["image"])[:, :, 2]
  rows = np.nonzero((plane >= 128).any(axis=1))[0]
  cols = np.nonzero((plane >= 128).any(axis=0))[0]
  assert len(rows) and len(cols)
  measured = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float64)
  np.testing.assert_allclose(out["boxes"][0], measured, atol=tol)


def _check_all(out: dict, scale: float = 1.0, min_landmarks: int = 5) -> None:
  _check_landmarks(out, scale, min_landmarks)
  _check_mask(out)
  _check_boxes(out)
  np.testing.assert_array_equal(out["attributes"], np.arange(4))  # Other keys pass through.


# Every geometric op: (name, op, largest scale factor, landmarks expected well inside).
GEOMETRIC = [
    ("resize_up_nonuniform", lambda s: T.resize(s, (130, 170)), 1.8, 5),
    ("resize_down_nonuniform", lambda s: T.resize(s, (50, 61)), 0.7, 5),
    ("resize_down_half", lambda s: T.resize(s, (36, 48)), 0.5, 5),
    ("crop_inside", lambda s: T.crop(s, 10, 15, 54, 66), 1.0, 5),
    ("crop_out_of_bounds", lambda s: T.crop(s, -9, 21, 70, 90), 1.0, 3),
    ("hflip", lambda s: T.hflip(s, [(0, 1), (3, 4)]), 1.0, 5),
    ("rotate_30", lambda s: T.rotate(s, 30.0), 1.0, 5),
    ("rotate_minus_75_center", lambda s: T.rotate(s, -75.0, center=(44.0, 40.0)), 1.0, 4),
    ("affine_shear_scale",
     lambda s: T.affine(s, [[1.2, 0.3, -4.0], [-0.1, 0.9, 6.5]], (80, 120)), 1.25, 5),
    ("affine_mirror_rotate",
     lambda s: T.affine(s, [[-0.8, 0.2, 100.0], [0.25, 1.1, -3.0]], (90, 110)), 1.15, 5),
]
for _seed in range(3):
  GEOMETRIC += [
      (f"random_crop_{_seed}",
       lambda s, k=_seed: T.random_crop(s, np.random.default_rng(k), (56, 70)), 1.0, 3),
      (f"random_resized_crop_{_seed}",
       lambda s, k=_seed: T.random_resized_crop(s, np.random.default_rng(k), (64, 64),
                                                scale=(0.5, 1.0)), 1.5, 1),
      (f"random_scale_{_seed}",
       lambda s, k=_seed: T.random_scale(s, np.random.default_rng(k)), 2.0, 5),
      (f"random_flip_{_seed}",
       lambda s, k=_seed: T.random_flip(s, np.random.default_rng(k), [(0, 1)]), 1.0, 5),
      (f"random_rotate_{_seed}",
       lambda s, k=_seed: T.random_rotate(s, np.random.default_rng(k), 40.0), 1.0, 4),
  ]


@pytest.mark.parametrize("name,op,scale,min_landmarks", GEOMETRIC, ids=[g[0] for g in GEOMETRIC])
def test_labels_follow_image(name, op, scale, min_landmarks):
  sample = _make_sample()
  _check_all(sample)  # The checks hold before any transform.
  _check_all(op(sample), scale, min_landmarks)


@pytest.mark.parametrize("name,op,scale,min_landmarks",
                         [g for g in GEOMETRIC if not g[0].startswith("random")],
                         ids=[g[0] for g in GEOMETRIC if not g[0].startswith("random")])
def test_labels_follow_float_image(name, op, scale, min_landmarks):
  sample = _make_sample(np.float32)
  out = op(sample)
  assert out["image"].dtype == np.float32
  _check_all(out, scale, min_landmarks)


def test_labels_move_by_hand_computed_amounts():
  sample = _make_sample()
  # Resize scales edge coordinates: x' = (x + 0.5) * s - 0.5 for pixel centres.
  out = T.resize(sample, (144, 48))
  np.testing.assert_allclose(out["landmarks"][:, 0], (LANDMARKS[:, 0] + 0.5) * 0.5 - 0.5, atol=1e-5)
  np.testing.assert_allclose(out["landmarks"][:, 1], (LANDMARKS[:, 1] + 0.5) * 2.0 - 0.5, atol=1e-5)
  np.testing.assert_allclose(out["boxes"], [[10.0, 28.0, 38.0, 116.0]], atol=1e-5)
  # Mirror: pixel column j goes to W - 1 - j; box edges x go to W - x.
  out = T.hflip(sample)
  np.testing.assert_allclose(out["landmarks"][:, 0], W - 1 - LANDMARKS[:, 0], atol=1e-5)
  np.testing.assert_allclose(out["boxes"], [[W - 76.0, 14.0, W - 20.0, 58.0]], atol=1e-5)
  # Crop shifts; boxes are clipped to the crop.
  out = T.crop(sample, 30, 25, 20, 40)
  np.testing.assert_allclose(out["landmarks"], LANDMARKS - [25, 30], atol=1e-5)
  np.testing.assert_allclose(out["boxes"], [[0.0, 0.0, 40.0, 20.0]], atol=1e-5)
  # A quarter turn about the centre of a square image.
  square = {"image": np.zeros((10, 10, 3), np.uint8), "landmarks": np.array([[7.0, 2.0]])}
  out = T.rotate(square, 90.0)
  np.testing.assert_allclose(out["landmarks"], [[2.0, 2.0]], atol=1e-5)  # Top-right -> top-left.


def test_crop_out_of_bounds_is_filled():
  sample = _make_sample()
  out = T.crop(sample, -5, 90, 20, 12, fill=(7, 8, 9), mask_fill=200)
  assert out["image"].shape == (20, 12, 3) and out["mask"].shape == (20, 12)
  np.testing.assert_array_equal(out["image"][:5], np.broadcast_to([7, 8, 9], (5, 12, 3)))
  np.testing.assert_array_equal(out["image"][:, 6:], np.broadcast_to([7, 8, 9], (20, 6, 3)))
  np.testing.assert_array_equal(out["image"][5:, :6], sample["image"][:15, 90:])
  np.testing.assert_array_equal(out["mask"][:5], 200)
  np.testing.assert_array_equal(out["mask"][5:, :6], sample["mask"][:15, 90:])
  outside = ~T.landmarks_inside(out["landmarks"], 20, 12)
  assert outside.all()


def test_hflip_swaps_pairs_and_double_flip_is_identity():
  sample = _make_sample()
  out = T.hflip(sample, flip_pairs=[(0, 1), (3, 4)])
  expected = LANDMARKS[[1, 0, 2, 4, 3]].copy()
  expected[:, 0] = W - 1 - expected[:, 0]
  np.testing.assert_allclose(out["landmarks"], expected, atol=1e-5)
  np.testing.assert_array_equal(out["visibility"], [1, 1, 0, 0, 1])
  np.testing.assert_array_equal(out["image"], sample["image"][:, ::-1])
  np.testing.assert_array_equal(out["mask"], sample["mask"][:, ::-1])
  back = T.hflip(out, flip_pairs=[(0, 1), (3, 4)])
  for key in ("image", "mask", "landmarks", "boxes", "visibility"):
    np.testing.assert_array_equal(back[key], sample[key])


def test_only_mirroring_maps_swap_pairs():
  sample = {"image": np.zeros((20, 20, 3), np.uint8),
            "landmarks": np.array([[5.0, 5.0], [14.0, 5.0], [9.5, 15.0]], np.float32),
            "visibility": np.array([1, 0, 1])}
  pairs = [(0, 1)]
  vflip = T.affine(sample, [[1, 0, 0], [0, -1, 20]], (20, 20), flip_pairs=pairs)
  np.testing.assert_allclose(vflip["landmarks"], [[14.0, 14.0], [5.0, 14.0], [9.5, 4.0]])
  np.testing.assert_array_equal(vflip["visibility"], [0, 1, 1])
  turn = T.affine(sample, T.rotation_matrix(180.0, (10.0, 10.0)), (20, 20), flip_pairs=pairs)
  np.testing.assert_allclose(turn["landmarks"], [[14.0, 14.0], [5.0, 14.0], [9.5, 4.0]],
                             atol=1e-5)
  np.testing.assert_array_equal(turn["visibility"], [1, 0, 1])


def test_identity_resize_and_full_crop():
  sample = _make_sample()
  for out in (T.resize(sample, (H, W)), T.crop(sample, 0, 0, H, W),
              T.affine(sample, np.eye(3), (H, W)), T.rotate(sample, 0.0)):
    for key in ("image", "mask", "landmarks", "boxes", "visibility"):
      np.testing.assert_array_equal(out[key], sample[key])
      assert out[key].dtype == sample[key].dtype


def test_ops_return_new_dict_and_leave_input_alone():
  sample = _make_sample()
  copies = {k: np.copy(v) for k, v in sample.items()}
  rng = np.random.default_rng(0)
  for op in (lambda s: T.hflip(s, [(0, 1)]), lambda s: T.rotate(s, 10.0),
             lambda s: T.color_jitter(s, rng, 0.5, 0.5, 0.5, 0.2),
             lambda s: T.random_flip(s, rng, p=0.0)):
    out = op(sample)
    assert out is not sample
  for key, value in copies.items():
    np.testing.assert_array_equal(sample[key], value)


def test_multichannel_and_2d_images_warp_per_plane():
  rng = np.random.default_rng(1)
  five = rng.integers(0, 256, (24, 30, 5), dtype=np.uint8)
  m = [[0.9, 0.2, 1.5], [-0.15, 1.1, -2.0]]
  out = T.affine({"image": five}, m, (26, 28))["image"]
  assert out.shape == (26, 28, 5) and out.dtype == np.uint8
  for c in range(5):
    plane = T.affine({"image": five[:, :, c]}, m, (26, 28))["image"]
    assert plane.shape == (26, 28)
    np.testing.assert_array_equal(out[:, :, c], plane)
  rgb = T.affine({"image": five[:, :, :3]}, m, (26, 28))["image"]
  np.testing.assert_array_equal(rgb, out[:, :, :3])


def test_random_ops_are_deterministic_per_seed():
  sample = _make_sample()
  ops = [
      lambda s, r: T.random_crop(s, r, (40, 50)),
      lambda s, r: T.random_resized_crop(s, r, (32, 32)),
      lambda s, r: T.random_scale(s, r),
      lambda s, r: T.random_rotate(s, r, 30.0),
      lambda s, r: T.random_flip(s, r, [(0, 1)]),
      lambda s, r: T.color_jitter(s, r, 0.4, 0.4, 0.4, 0.1),
  ]
  for op in ops:
    a = op(sample, np.random.default_rng(123))
    b = op(sample, np.random.default_rng(123))
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  crops = {T.random_crop(sample, np.random.default_rng(k), (40, 50))["landmarks"][0].tobytes()
           for k in range(8)}
  assert len(crops) > 4
  rrc = {T.random_resized_crop(sample, np.random.default_rng(k), (32, 32))["image"].tobytes()
         for k in range(8)}
  assert len(rrc) == 8


def test_random_crop_pads_a_small_image():
  sample = _make_sample()
  for k in range(5):
    out = T.random_crop(sample, np.random.default_rng(k), (80, 100))
    assert out["image"].shape == (80, 100, 3)
    labelled = (out["mask"] != VOID).sum()
    assert labelled == H * W  # The whole image is inside the padded crop.


def test_random_resized_crop_falls_back_to_centre_crop():
  image = np.tile(np.arange(100, dtype=np.uint8), (10, 1))[:, :, None].repeat(3, axis=2)
  sample = {"image": image, "landmarks": np.array([[49.0, 4.0]], np.float32)}
  # A square covering >= 90% of a 10x100 image cannot fit: fall back to the centred 10x10.
  out = T.random_resized_crop(sample, np.random.default_rng(0), (10, 10), scale=(0.9, 1.0),
                              ratio=(1.0, 1.0))
  np.testing.assert_array_equal(out["image"], image[:, 45:55])
  np.testing.assert_allclose(out["landmarks"], [[4.0, 4.0]])


def test_resize_matches_skimage_and_pil():
  ys, xs = np.mgrid[0:40, 0:52].astype(np.float64)
  smooth = np.stack([127 + 100 * np.sin(xs / 6.0) * np.cos(ys / 5.0),
                     127 + 120 * np.cos((xs + ys) / 9.0),
                     60 + 2.5 * xs + ys], axis=-1)
  smooth = np.clip(np.rint(smooth), 0, 255).astype(np.uint8)
  for size in [(70, 110), (25, 31), (40, 80)]:
    ours = T.resize({"image": smooth}, size)["image"].astype(np.float64)
    ref = sktransform.resize(smooth.astype(np.float64), size + (3,), order=1, mode="edge",
                             anti_aliasing=False, preserve_range=True)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 0.5 + 1e-6  # Only uint8 rounding differs...
    assert abs((ours - ref).mean()) < 0.05  # ...and it is unbiased.
  # PIL's own resize is bilinear without its anti-aliasing support when enlarging.
  pil = np.asarray(Image.fromarray(smooth).resize((110, 70), Image.Resampling.BILINEAR))
  ours = T.resize({"image": smooth}, (70, 110))["image"]
  assert np.abs(ours.astype(int) - pil.astype(int)).max() <= 1
  # The test can tell conventions apart: scaling pixel centres instead of edges is far off.
  sx, sy = 110 / 52, 70 / 40
  slip = [[sx, 0, 0.5 * (1 - sx)], [0, sy, 0.5 * (1 - sy)]]
  slipped = T.affine({"image": smooth}, slip, (70, 110))["image"]
  ref = sktransform.resize(smooth.astype(np.float64), (70, 110, 3), order=1, mode="edge",
                           anti_aliasing=False, preserve_range=True)
  assert np.abs(slipped - ref).mean() > 2.0


def test_decode_image():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (12, 17, 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format="PNG")
  png = buf.getvalue()
  out = T.decode_image(png)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, rgb)
  gray = T.decode_image(png, channels=1)
  assert gray.shape == (12, 17, 1)
  assert T.decode_image(png, channels=4).shape == (12, 17, 4)

  smooth = np.clip(np.mgrid[0:32, 0:48][1] * 5, 0, 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(smooth).save(buf, format="JPEG", quality=95)  # Grayscale JPEG.
  out = T.decode_image(buf.getvalue())
  assert out.shape == (32, 48, 3)
  assert np.abs(out.astype(int) - smooth[:, :, None]).mean() < 2

  deep = (np.mgrid[0:8, 0:8][1] * 8000).astype(np.uint16)  # 16-bit PNG: scaled, not clipped.
  buf = io.BytesIO()
  Image.fromarray(deep).save(buf, format="PNG")
  out = T.decode_image(buf.getvalue(), channels=1)[:, :, 0]
  np.testing.assert_allclose(out[0], deep[0] / 257.0, atol=1)

  for bad in (b"", b"not an image at all", png[: len(png) // 2]):
    with pytest.raises(ImageDecodeError):
      T.decode_image(bad)


def test_color_jitter_touches_only_the_image():
  sample = _make_sample()
  rng = np.random.default_rng(5)
  out = T.color_jitter(sample, rng, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2)
  assert out["image"].dtype == np.uint8 and out["image"].shape == sample["image"].shape
  assert not np.array_equal(out["image"], sample["image"])
  for key in ("mask", "landmarks", "boxes", "visibility", "attributes"):
    np.testing.assert_array_equal(out[key], sample[key])
  floats = T.color_jitter(_make_sample(np.float32), np.random.default_rng(5), 0.4, 0.4, 0.4, 0.2)
  assert floats["image"].dtype == np.float32
  assert 0.0 <= floats["image"].min() and floats["image"].max() <= 1.0
  # No jitter is the identity; brightness alone scales.
  same = T.color_jitter(sample, np.random.default_rng(0))
  np.testing.assert_array_equal(same["image"], sample["image"])
  gray = {"image": np.full((4, 4, 3), 100, np.uint8)}
  rng = np.random.default_rng(1)
  factor = np.random.default_rng(1).uniform(0.5, 1.5)
  out = T.color_jitter(gray, rng, brightness=0.5)
  np.testing.assert_array_equal(out["image"], np.rint(100 * factor))


def test_hue_shift_keeps_saturation_and_value():
  rng = np.random.default_rng(3)
  rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
  hsv = T._rgb_to_hsv(rgb / 255.0)  # pylint: disable=protected-access
  for (r, g, b), (h, s, v) in zip(rgb.reshape(-1, 3) / 255.0, hsv.reshape(-1, 3)):
    np.testing.assert_allclose(colorsys.rgb_to_hsv(r, g, b), (h, s, v), atol=1e-5)
  back = T._hsv_to_rgb(hsv)  # pylint: disable=protected-access
  np.testing.assert_allclose(back, rgb / 255.0, atol=1e-5)
  out = T.color_jitter({"image": rgb}, np.random.default_rng(0), hue=0.5)["image"]
  moved = T._rgb_to_hsv(out / 255.0)  # pylint: disable=protected-access
  np.testing.assert_allclose(moved[..., 1:], hsv[..., 1:], atol=0.03)
  turn = (moved[..., 0] - hsv[..., 0]) % 1.0
  assert np.ptp(turn) < 0.02 and 0.02 < turn.mean() < 0.98  # One common, non-zero hue shift.


def test_normalize_to_float_and_landmarks_inside():
  image = np.array([[[0, 128, 255]]], np.uint8)
  np.testing.assert_allclose(T.to_float(image), [[[0.0, 128 / 255, 1.0]]], rtol=1e-6)
  assert T.to_float(image).dtype == np.float32
  norm = T.normalize(image, [0, 128, 127.5], [1, 2, 127.5])
  assert norm.dtype == np.float32
  np.testing.assert_allclose(norm, [[[0.0, 0.0, 1.0]]])
  pts = np.array([[-0.5, 0], [-0.51, 0], [9.49, 4.49], [9.5, 0], [0, 4.5], [np.nan, 1]])
  np.testing.assert_array_equal(T.landmarks_inside(pts, 5, 10),
                                [True, False, True, False, False, False])


def test_bad_arguments_are_rejected():
  sample = _make_sample()
  with pytest.raises(ValueError):
    T.affine(sample, np.zeros((2, 3)), (10, 10))
  with pytest.raises(ValueError):
    T.resize(sample, (0, 10))
  with pytest.raises(ValueError):
    T.hflip(sample, flip_pairs=[(0, 9)])
  with pytest.raises(ValueError):
    T.color_jitter(sample, np.random.default_rng(0), hue=0.7)

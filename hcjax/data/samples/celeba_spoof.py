"""A deterministic, procedurally rendered CelebA-Spoof look-alike in CelebA-Spoof's on-disk format.

The faces are the rendered CelebA identities of hcjax/data/samples/celeba.py (their 40 attributes
are true by construction), photographed in rendered indoor / outdoor scenes (live), or re-captured
through simulated presentation attacks (spoof). Every attack is real image content, with random
strength: nothing about the label leaks through file names, sizes or metadata.

  Live (0)          the person in a scene; true depth map <name>_depth.png from the face geometry
  Photo (1)         a photo print: halftone or dither dots, ink/paper gamut and colour cast, white
                    paper margin (most), held in the hand, tilted; sometimes glossy glare
  Poster (2)        a large print on the wall: coarse halftone, paper fibres, fold crease, tape;
                    bigger than the frame, so its edges are mostly out of view
  A4 (3)            an office print on an A4 sheet: the photo in the upper part of a white sheet
                    with lines of text below it, strong dither/halftone, hands at the edges
  Face Mask (4)     a print cut around the head (wobbly cut, white cut edge, sometimes eye holes)
                    held over another person's face by hand or strings
  Upper Body Mask (5) a print cut along the person's outline (head and shoulders), held up
  Region Mask (6)   a printed strip of the eyes (or nose and mouth) held over another person's face
  PC (7) / Pad (8) / Phone (9)  screen replay: the photo shown at the screen's native resolution,
                    RGB sub-pixel stripes and row gaps (a pixel grid of 1.3-3 image pixels, with
                    its aliasing moire), an extra moire beat, glass glare, screen gamma / black
                    glow / white point, a bezel whose size and shape depend on the device
  3D Mask (10)      a smooth, low-texture, uniformly tinted face with glossy 3D shading, a rim at
                    its edge and eye holes, worn over the head
Capture conditions (label 41 / 42 of spoof images; live images vary the same way but are labelled
0 = Live, as CelebA-Spoof labels them): Normal, Strong (over-exposure, hot spot, clipping), Back
(bright background and light source, dark subject, bloom), Dark (under-exposure, sensor noise,
tungsten or blue cast; screens stay bright); Indoor or Outdoor backgrounds.

Face boxes (_BB.txt) are the box of the rendered face ellipse where it lands in the image (through
the crop, the print, the screen and the perspective of the sheet), in 224x224 coordinates.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import math
import os
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from hcjax.data.converters.celeba import ATTRIBUTE_NAMES
from hcjax.data.converters.celeba_spoof import (BB_SIZE, DEFAULT_PROTOCOL, ENVIRONMENT_NAMES,
                                                ILLUMINATION_NAMES, LABEL_SUFFIX, MAP_SUFFIXES,
                                                SPOOF_TYPE_NAMES)
from hcjax.data.samples import celeba

# The renderer's building blocks (private to celeba.py; reused, not copied).
_identity_traits = celeba._identity_traits  # pylint: disable=protected-access
_image_attributes = celeba._image_attributes  # pylint: disable=protected-access
_Pose = celeba._Pose  # pylint: disable=protected-access

NUM_IMAGES = 1600
IMAGES_PER_SUBJECT = 16
TEST_FRACTION = 0.2  # subjects (the highest numbers) of the test split
SIZE_RANGE = (160, 256)  # the longer image side, pixels
JPEG_QUALITY = (90, 95)
CANVAS_W, CANVAS_H = celeba.WIDTH, celeba.HEIGHT
SS = celeba.SS
CX, CY = celeba.CENTER
# Face geometry of celeba._render, in its unposed frame (checked against its landmarks).
EYE_Y, EYE_DX, NOSE_Y, MOUTH_Y = 110.0, 19.0, 132.0, 152.0
# How often each attack is drawn (CelebA-Spoof has mostly prints and replays, few 3D masks).
SPOOF_WEIGHTS = {1: 0.14, 2: 0.11, 3: 0.14, 4: 0.08, 5: 0.08, 6: 0.08, 7: 0.1, 8: 0.1, 9: 0.11,
                 10: 0.06}
ILLUMINATION_WEIGHTS = {1: 0.4, 2: 0.2, 3: 0.2, 4: 0.2}  # Normal, Strong, Back, Dark
OUTDOOR_RATE = 0.4
SCREENS = (7, 8, 9)
# Attackers (the people behind masks) are identities that are no subject of the set.
_ATTACKER_BASE = 100_000


# --- the plan: which image is what ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Item:
  """One image of the set, before rendering."""
  index: int            # 0-based
  name: str             # 000001.jpg
  split: str            # train | test
  subject: int          # the rendered identity (celeba.py's), the Data/<split>/<subject> folder
  spoof_type: int       # 0 live, 1..10 (SPOOF_TYPE_NAMES)
  illumination: int     # capture light 1..4 (live images vary too but are labelled 0)
  environment: int      # 1 indoor, 2 outdoor (idem)

  @property
  def live(self) -> bool:
    return self.spoof_type == 0

  @property
  def id(self) -> str:
    return f"Data/{self.split}/{self.subject}/{'live' if self.live else 'spoof'}/{self.name}"


def num_subjects(num_images: int) -> int:
  """About IMAGES_PER_SUBJECT images per subject; at least two subjects, two images each."""
  return max(2, min(num_images // 2, round(num_images / IMAGES_PER_SUBJECT)))


def _quotas(total: int, weights: dict[int, float]) -> dict[int, int]:
  """Largest-remainder counts; every kind at least once when there are enough images."""
  keys = list(weights)
  w = np.array([weights[k] for k in keys]) / sum(weights.values())
  floor = np.floor(w * total).astype(int)
  if total >= len(keys):
    floor = np.maximum(floor, 1)
  while floor.sum() > total:
    floor[np.argmax(floor)] -= 1
  order = np.argsort(-(w * total - floor), kind="stable")
  for k in order[:total - floor.sum()]:
    floor[k] += 1
  return dict(zip(keys, floor.tolist()))


@functools.lru_cache(maxsize=16)
def sample_plan(num_images: int = NUM_IMAGES, seed: int = 0) -> tuple[Item, ...]:
  """Every image's split, subject, spoof type and capture conditions (cheap; no rendering).

  Half the images are live; the spoof types follow SPOOF_WEIGHTS. Each kind is dealt round-robin
  over the subjects, so every subject has live and spoof images and the splits (subject-disjoint,
  the last TEST_FRACTION of the subjects are test) hold every kind in proportion.
  """
  if num_images < 4:
    raise ValueError(f"need num_images >= 4 (live and spoof images of two subjects), got "
                     f"{num_images}")
  rng = np.random.default_rng([seed, 30])
  num_spoof = num_images // 2
  kinds = [0] * (num_images - num_spoof)
  for kind, count in _quotas(num_spoof, SPOOF_WEIGHTS).items():
    kinds += [kind] * count
  kinds = rng.permutation(np.array(kinds))
  subjects_total = num_subjects(num_images)
  num_test = max(1, round(TEST_FRACTION * subjects_total))
  # Deal order: train and test subjects interleaved evenly, so that any run of the deal holds
  # both splits in proportion.
  num_train = subjects_total - num_test
  order = sorted(range(1, subjects_total + 1), key=lambda s: (
      (s - 0.5) / num_train if s <= num_train else (s - num_train - 0.5) / num_test, s))
  subjects = np.zeros(num_images, int)
  slot = 0
  for kind in range(len(SPOOF_TYPE_NAMES)):
    for i in np.flatnonzero(kinds == kind):
      subjects[i] = order[slot % subjects_total]
      slot += 1
  lights = list(ILLUMINATION_WEIGHTS)
  p = np.array([ILLUMINATION_WEIGHTS[k] for k in lights])
  illumination = rng.choice(lights, size=num_images, p=p / p.sum())
  environment = np.where(rng.random(num_images) < OUTDOOR_RATE, 2, 1)
  return tuple(
      Item(i, f"{i + 1:06d}.jpg", "test" if subjects[i] > subjects_total - num_test else "train",
           int(subjects[i]), int(kinds[i]), int(illumination[i]), int(environment[i]))
      for i in range(num_images))


# --- geometry ------------------------------------------------------------------------------------

def _homography(src, dst) -> np.ndarray:
  """3x3 H with dst ~ H src from four point pairs."""
  a, b = [], []
  for (x, y), (u, v) in zip(src, dst):
    a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
    a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b += [u, v]
  return np.append(np.linalg.solve(np.array(a, float), np.array(b, float)), 1.0).reshape(3, 3)


def _affine(scale_x, scale_y, tx, ty) -> np.ndarray:
  return np.array([[scale_x, 0, tx], [0, scale_y, ty], [0, 0, 1]], float)


def _similarity(angle: float, scale: float, centre, target) -> np.ndarray:
  """Rotate by angle and scale about `centre`, which lands on `target`."""
  c, s = math.cos(angle) * scale, math.sin(angle) * scale
  return np.array([[c, -s, target[0] - c * centre[0] + s * centre[1]],
                   [s, c, target[1] - s * centre[0] - c * centre[1]], [0, 0, 1]], float)


def _apply(h: np.ndarray, pts) -> np.ndarray:
  pts = np.asarray(pts, float).reshape(-1, 2)
  p = np.c_[pts, np.ones(len(pts))] @ h.T
  return p[:, :2] / p[:, 2:]


def _pixel_grid(width: int, height: int, h_inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Pixel centres of a width x height image mapped through h_inv: (x, y) arrays [H, W]."""
  xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
  den = h_inv[2, 0] * xs + h_inv[2, 1] * ys + h_inv[2, 2]
  return ((h_inv[0, 0] * xs + h_inv[0, 1] * ys + h_inv[0, 2]) / den,
          (h_inv[1, 0] * xs + h_inv[1, 1] * ys + h_inv[1, 2]) / den)


def _warp(image: Image.Image, h: np.ndarray, size: tuple[int, int],
          resample=Image.BILINEAR) -> Image.Image:
  """`image` seen through h (its pixel coordinates -> the output's), as PIL PERSPECTIVE."""
  inv = np.linalg.inv(h)
  inv = inv / inv[2, 2]
  return image.transform(size, Image.PERSPECTIVE, tuple(inv.flatten()[:8]), resample)


def _warp_rgba(rgb: np.ndarray, alpha: np.ndarray, h: np.ndarray, size: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray]:
  """Premultiplied warp: (colour x alpha [H, W, 3], alpha [H, W]) in the output, float32."""
  prem = Image.fromarray(np.clip(rgb * alpha[..., None], 0, 255).astype(np.uint8))
  a = Image.fromarray(np.clip(alpha * 255, 0, 255).astype(np.uint8))
  return (np.asarray(_warp(prem, h, size), np.float32),
          np.asarray(_warp(a, h, size), np.float32) / 255)


def _box_of(points: np.ndarray, width: int, height: int):
  """(x0, y0, x1, y1) of points clipped to the image, or None when none is inside."""
  x0, y0 = points.min(0)
  x1, y1 = points.max(0)
  x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
  if x1 - x0 < 2 or y1 - y0 < 2:
    return None
  return float(x0), float(y0), float(x1), float(y1)


@dataclasses.dataclass
class _Face:
  """The rendered face ellipse: unposed frame (celeba.CENTER) -> canvas pixels (edge coords)."""
  pose: np.ndarray  # 3x3
  rx: float
  ry: float
  nose_w: float
  nose_tip: float

  @classmethod
  def of(cls, pose, traits: dict[str, Any], a: dict[str, bool]) -> "_Face":
    # celeba._Pose maps to the supersampled canvas (pixel centres); edge coordinates in the final
    # canvas are those divided by SS plus half a supersampled pixel.
    c, s = math.cos(pose.angle) * pose.scale, math.sin(pose.angle) * pose.scale
    off = 0.5 / SS
    matrix = np.array([[c, -s, CX - c * CX + s * CY + pose.shift[0] + off],
                       [s, c, CY - s * CX - c * CY + pose.shift[1] + off], [0, 0, 1]], float)
    rx = traits["face_rx"] * (1.15 if a["Chubby"] else 1.0) * (0.92 if a["Oval_Face"] else 1.0)
    ry = traits["face_ry"] * (1.06 if a["Oval_Face"] else 1.0)
    return cls(matrix, rx, ry, 9.0 if a["Big_Nose"] else 5.5,
               NOSE_Y + (3.0 if a["Pointy_Nose"] else 0.0))

  def outline(self, n: int = 72) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return _apply(self.pose, np.c_[CX + self.rx * np.cos(t), CY + self.ry * np.sin(t)])

  def field(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside the face, depth 0..1) at canvas points: an ellipsoid head with a nose ridge and
    eye sockets; the depth is > 0.15 everywhere inside and 0 outside."""
    inv = np.linalg.inv(self.pose)
    u = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2] - CX
    v = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2] - CY
    r2 = (u / self.rx) ** 2 + (v / self.ry) ** 2
    inside = r2 <= 1.0
    z = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    ridge = (self.nose_tip - 7.0) - CY
    nose = np.exp(-0.5 * ((u / (0.6 * self.nose_w + 1.5)) ** 2 + ((v - ridge) / 9.0) ** 2))
    sockets = np.exp(-0.5 * (((np.abs(u) - EYE_DX) / 6.0) ** 2 + ((v - (EYE_Y - CY)) / 4.5) ** 2))
    depth = np.clip(0.28 + 0.52 * z + 0.2 * nose - 0.08 * sockets, 0.15, 1.0)
    return inside, np.where(inside, depth, 0.0).astype(np.float32)


# --- rendering people into scenes ----------------------------------------------------------------

@contextlib.contextmanager
def _background_override(image: Image.Image) -> Iterator[None]:
  """celeba._render draws on `image` (the supersampled canvas) instead of its own background.

  The pose is drawn before the background, so it is that of the unchanged render; what is drawn
  after (accessory colours, lighting) differs from it but is the same for the same generator.
  """
  original = celeba._background  # pylint: disable=protected-access

  def background(rng):
    del rng
    return image.copy()

  celeba._background = background  # pylint: disable=protected-access
  try:
    yield
  finally:
    celeba._background = original  # pylint: disable=protected-access


def _render_person(traits: dict[str, Any], a: dict[str, bool], rng: np.random.Generator,
                   scene: np.ndarray, matte: bool = False
                   ) -> tuple[Image.Image, _Face, np.ndarray | None]:
  """(the person drawn over `scene` [canvas size], the face geometry, the person's matte)."""
  face = _Face.of(_Pose(copy.deepcopy(rng)), traits, a)
  again = copy.deepcopy(rng) if matte else None
  scene = Image.fromarray(scene).resize((CANVAS_W * SS, CANVAS_H * SS), Image.NEAREST)
  with _background_override(scene):
    image, landmarks, _ = celeba._render(traits, a, rng)  # pylint: disable=protected-access
  eyes = _apply(face.pose, [(CX - EYE_DX, EYE_Y), (CX + EYE_DX, EYE_Y)]) - 0.5
  if np.abs(eyes.ravel() - np.asarray(landmarks[:4])).max() > 1e-6:
    raise RuntimeError("celeba._render's face geometry changed; update celeba_spoof._Face")
  person = None
  if matte:
    with _background_override(Image.new("RGB", (CANVAS_W * SS, CANVAS_H * SS))):
      dark, _, _ = celeba._render(traits, a, again)  # pylint: disable=protected-access
    m = Image.fromarray(((np.asarray(dark).max(axis=2) > 6) * 255).astype(np.uint8))
    m = m.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.MinFilter(5))  # close pupils
    person = np.asarray(m, np.float32) / 255
  return image, face, person


def _noise(rng: np.random.Generator, height: int, width: int, grid_h: int, grid_w: int
           ) -> np.ndarray:
  """Smooth noise in about [0, 1]: a random grid_h x grid_w grid, bicubically enlarged."""
  small = Image.fromarray(rng.random((grid_h, grid_w)).astype(np.float32), "F")
  return np.asarray(small.resize((width, height), Image.BICUBIC), np.float32)


WALLS = ((214, 204, 184), (190, 190, 186), (176, 196, 214), (196, 212, 190), (232, 226, 214),
         (150, 118, 90), (208, 180, 170), (120, 128, 140))
FLOORS = ((120, 84, 52), (160, 130, 96), (90, 90, 96), (150, 60, 50))


def _rect(img, box, colour, alpha=1.0):
  h, w = img.shape[:2]
  x0, y0, x1, y1 = (int(round(v)) for v in (box[0] * w, box[1] * h, box[2] * w, box[3] * h))
  x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
  if x1 > x0 and y1 > y0:
    img[y0:y1, x0:x1] = (1 - alpha) * img[y0:y1, x0:x1] + alpha * np.asarray(colour, np.float32)


def _indoor(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  yy, xx = np.linspace(0, 1, h, dtype=np.float32)[:, None], np.linspace(0, 1, w, dtype=np.float32)
  wall = np.asarray(WALLS[rng.integers(len(WALLS))], np.float32) * rng.uniform(0.7, 1.1)
  lx, ly, spread = rng.uniform(-0.2, 1.2), rng.uniform(-0.3, 0.5), rng.uniform(0.3, 0.6)
  light = 0.72 + 0.4 * np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * spread ** 2))
  img = wall * light[..., None] * (1 + 0.06 * (_noise(rng, h, w, 5, 4) - 0.5))[..., None]
  if rng.random() < 0.4:  # a corner of the room
    x = rng.uniform(0.1, 0.9)
    side = xx > x if rng.random() < 0.5 else xx < x
    img = img * np.where(side, rng.uniform(0.78, 0.9), 1.0)[..., None]
  for _ in range(rng.integers(1, 4)):
    kind = rng.integers(5)
    x0, y0 = rng.uniform(-0.1, 0.85), rng.uniform(0.0, 0.6)
    if kind == 0:  # a door with its frame
      x1 = x0 + rng.uniform(0.2, 0.35)
      _rect(img, (x0 - 0.02, y0 - 0.02, x1 + 0.02, 1.0), (235, 232, 225))
      _rect(img, (x0, y0, x1, 1.0), np.asarray(FLOORS[rng.integers(2)]) * rng.uniform(0.8, 1.3))
    elif kind == 1:  # a window with daylight
      x1, y1 = x0 + rng.uniform(0.2, 0.4), y0 + rng.uniform(0.25, 0.45)
      _rect(img, (x0 - 0.02, y0 - 0.02, x1 + 0.02, y1 + 0.02), (240, 240, 236))
      _rect(img, (x0, y0, x1, y1), rng.uniform([170, 195, 215], [225, 240, 255]))
      _rect(img, ((x0 + x1) / 2 - 0.008, y0, (x0 + x1) / 2 + 0.008, y1), (240, 240, 236))
      _rect(img, (x0, (y0 + y1) / 2 - 0.008, x1, (y0 + y1) / 2 + 0.008), (240, 240, 236))
    elif kind == 2:  # a framed picture
      x1, y1 = x0 + rng.uniform(0.1, 0.25), y0 + rng.uniform(0.1, 0.22)
      _rect(img, (x0, y0, x1, y1), rng.uniform(10, 120, 3))
      for k in range(4):
        _rect(img, (x0 + 0.015 + (x1 - x0 - 0.03) * (k % 2) / 2, y0 + 0.015 + (y1 - y0 - 0.03)
                    * (k // 2) / 2, x0 + 0.015 + (x1 - x0 - 0.03) * (k % 2 + 1) / 2,
                    y0 + 0.015 + (y1 - y0 - 0.03) * (k // 2 + 1) / 2), rng.uniform(30, 230, 3))
    elif kind == 3:  # a shelf with books
      y = rng.uniform(0.15, 0.6)
      _rect(img, (0, y, 1, y + 0.02), np.asarray(FLOORS[0]) * 0.8)
      x = rng.uniform(0.0, 0.3)
      while x < rng.uniform(0.5, 1.0):
        bw = rng.uniform(0.015, 0.04)
        _rect(img, (x, y - rng.uniform(0.07, 0.12), x + bw, y), rng.uniform(20, 200, 3))
        x += bw + 0.003
    else:  # a dark television or monitor on the wall
      x1, y1 = x0 + rng.uniform(0.2, 0.35), y0 + rng.uniform(0.12, 0.2)
      _rect(img, (x0, y0, x1, y1), (18, 18, 20))
      _rect(img, (x0 + 0.01, y0 + 0.012, x1 - 0.01, y1 - 0.012), rng.uniform(25, 60, 3))
  if rng.random() < 0.6:
    _rect(img, (0, rng.uniform(0.82, 0.95), 1, 1), np.asarray(FLOORS[rng.integers(len(FLOORS))])
          * rng.uniform(0.7, 1.1))
  return img


def _outdoor(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
  horizon = rng.uniform(0.3, 0.65)
  top = rng.uniform([40, 90, 170], [110, 150, 225])
  low = rng.uniform([170, 195, 215], [225, 235, 250])
  t = np.clip(yy / horizon, 0, 1)
  img = (top * (1 - t) + low * t) * np.ones((1, w, 1), np.float32)
  clouds = np.clip((_noise(rng, h, w, 4, 6) - rng.uniform(0.45, 0.75)) * 3, 0, 1)[..., None]
  img = img * (1 - clouds) + clouds * rng.uniform(225, 250)
  kind = rng.integers(3)
  if kind == 0:  # buildings with window grids
    x = rng.uniform(-0.2, 0.0)
    while x < 1.0:
      bw = rng.uniform(0.2, 0.45)
      top_y = horizon - rng.uniform(0.05, 0.35)
      colour = rng.uniform([90, 80, 70], [200, 180, 160])
      x0, x1 = max(int(x * w), 0), min(int((x + bw) * w), w)
      y0 = max(int(top_y * h), 0)
      if x1 > x0:
        block = np.ones((h - y0, x1 - x0, 3), np.float32) * colour
        gy, gx = np.mgrid[0:h - y0, 0:x1 - x0]
        pw, ph = rng.uniform(0.04, 0.08) * w, rng.uniform(0.05, 0.09) * h
        window = ((gx % pw) > 0.35 * pw) & ((gy % ph) > 0.4 * ph)
        block[window] = rng.uniform([60, 80, 100], [150, 170, 200])
        img[y0:, x0:x1] = block
      x += bw + rng.uniform(0.0, 0.05)
  else:  # trees, hedges or a park
    line = horizon - 0.25 * _noise(rng, 1, w, 1, 7)[0]
    leaves = _noise(rng, h, w, 14, 12) * 0.6 + _noise(rng, h, w, 40, 34) * 0.4
    dark = rng.uniform([20, 45, 15], [50, 80, 35])
    light = rng.uniform([90, 130, 40], [150, 180, 80])
    foliage = dark + (light - dark) * leaves[..., None]
    mask = (yy[..., 0] > line[None, :])[..., None]
    img = np.where(mask, foliage, img)
  ground = rng.uniform(0.8, 0.95)
  if rng.random() < 0.7:
    colour = (rng.uniform([70, 110, 40], [120, 160, 70]) if rng.random() < 0.5
              else rng.uniform([100, 100, 100], [160, 155, 150]))
    g = (colour * (0.9 + 0.2 * _noise(rng, h, w, 20, 20))[..., None])
    img = np.where((yy > ground), g, img)
  return img * rng.uniform(0.95, 1.15)


def _scene(rng: np.random.Generator, environment: int, height: int, width: int) -> np.ndarray:
  """A background, uint8 [height, width, 3]: environment 1 indoor, 2 outdoor."""
  img = _indoor(rng, height, width) if environment == 1 else _outdoor(rng, height, width)
  return np.clip(img, 0, 255).astype(np.uint8)


def _backdrop(rng: np.random.Generator, environment: int) -> Image.Image:
  """A scene without a person, lit like celeba._render's output."""
  scene = Image.fromarray(_scene(rng, environment, CANVAS_H, CANVAS_W))  # as _render_person's:
  scene = scene.resize((CANVAS_W * SS, CANVAS_H * SS), Image.NEAREST)  # up, drawn on, down
  arr = np.asarray(scene.resize((CANVAS_W, CANVAS_H), Image.LANCZOS), np.float32)
  ramp = np.linspace(rng.uniform(0.75, 1.1), rng.uniform(0.75, 1.1), CANVAS_W)[None, :, None]
  arr = arr * ramp * rng.uniform(0.92, 1.08, 3)
  return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _image_size(rng: np.random.Generator, aspect: float) -> tuple[int, int]:
  side = int(rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1))
  if aspect >= 1:
    return side, max(SIZE_RANGE[0] // 2, int(round(side / aspect)))
  return max(SIZE_RANGE[0] // 2, int(round(side * aspect))), side


def _window(rng: np.random.Generator, face: _Face | None) -> tuple[tuple[float, ...], np.ndarray,
                                                                    tuple[int, int]]:
  """A camera window on the canvas (x0, y0, x1, y1), canvas -> image matrix, image (W, H).

  The window keeps the face (when given) inside with a margin, not always centred.
  """
  aspect = rng.uniform(0.75, 1.25)
  hw = rng.uniform(0.62, 1.0) * CANVAS_H
  ww = hw * aspect
  if ww > CANVAS_W:
    ww, hw = CANVAS_W, CANVAS_W / aspect
  if face is not None:
    fx0, fy0 = face.outline().min(0) - 5
    fx1, fy1 = face.outline().max(0) + 5
    grow = max((fx1 - fx0) / ww, (fy1 - fy0) / hw, 1.0)
    ww, hw = min(ww * grow, CANVAS_W), min(hw * grow, CANVAS_H)
    xr = (max(0.0, fx1 - ww), min(fx0, CANVAS_W - ww))
    yr = (max(0.0, fy1 - hw), min(fy0, CANVAS_H - hw))
  else:
    xr, yr = (0.0, CANVAS_W - ww), (0.0, CANVAS_H - hw)
  x0 = rng.uniform(*xr) if xr[1] > xr[0] else max(0.0, min(sum(xr) / 2, CANVAS_W - ww))
  y0 = rng.uniform(*yr) if yr[1] > yr[0] else max(0.0, min(sum(yr) / 2, CANVAS_H - hw))
  size = _image_size(rng, ww / hw)
  matrix = _affine(size[0] / ww, size[1] / hw, -x0 * size[0] / ww, -y0 * size[1] / hw)
  return (x0, y0, x0 + ww, y0 + hw), matrix, size


def _shot(canvas: Image.Image, window, size) -> np.ndarray:
  return np.asarray(canvas.resize(size, Image.BICUBIC, box=window), np.float32)


# --- media: prints, cut-outs, screens ------------------------------------------------------------

@dataclasses.dataclass
class _Medium:
  rgb: np.ndarray     # float32 [h, w, 3]
  alpha: np.ndarray   # float32 [h, w] in 0..1
  content: np.ndarray  # 3x3: the victim's canvas -> medium pixels
  regions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # masks [h, w]

  @property
  def size(self) -> tuple[int, int]:
    return self.rgb.shape[1], self.rgb.shape[0]


def _content(canvas: Image.Image, window, size) -> tuple[np.ndarray, np.ndarray]:
  """The canvas window resized to size (w, h) and the canvas -> content matrix."""
  x0, y0, x1, y1 = window
  sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
  return np.asarray(canvas.resize(size, Image.BICUBIC, box=window), np.float32), _affine(
      sx, sy, -x0 * sx, -y0 * sy)


def _photo_window(rng, face: _Face, aspect: float, fill: tuple[float, float]):
  """A window of the victim's canvas with the given aspect that holds the face."""
  h = rng.uniform(*fill) * CANVAS_H
  w = h * aspect
  if w > CANVAS_W:
    w, h = CANVAS_W, CANVAS_W / aspect
  fx0, fy0 = face.outline().min(0) - 3
  fx1, fy1 = face.outline().max(0) + 3
  if w < fx1 - fx0 or h < fy1 - fy0:  # too tight: take the largest window of that aspect
    w, h = (CANVAS_W, CANVAS_W / aspect) if CANVAS_W / aspect <= CANVAS_H else (
        CANVAS_H * aspect, CANVAS_H)
  lo_x, hi_x = max(0.0, fx1 - w), min(fx0, CANVAS_W - w)
  lo_y, hi_y = max(0.0, fy1 - h), min(fy0, CANVAS_H - h)
  x0 = rng.uniform(lo_x, hi_x) if hi_x > lo_x else min(max(0.0, (fx0 + fx1 - w) / 2), CANVAS_W - w)
  y0 = rng.uniform(lo_y, hi_y) if hi_y > lo_y else min(max(0.0, (fy0 + fy1 - h) / 2), CANVAS_H - h)
  x0, y0 = max(x0, 0.0), max(y0, 0.0)
  return (x0, y0, x0 + w, y0 + h)


def _halftone(ink: np.ndarray, rng: np.random.Generator, period: float) -> np.ndarray:
  """Ink coverage (0..1, [h, w, c]) -> printed coverage: rotated AM dot screens or dither."""
  h, w, channels = ink.shape
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  out = np.empty_like(ink)
  if rng.random() < 0.6:  # amplitude-modulated dots, one screen angle per ink
    base = rng.uniform(0, 90)
    for c in range(channels):
      t = math.radians(base + (15, 75, 0, 45)[c % 4])
      u = (xx * math.cos(t) + yy * math.sin(t)) * (2 * math.pi / period)
      v = (-xx * math.sin(t) + yy * math.cos(t)) * (2 * math.pi / period)
      screen = 0.5 + 0.25 * (np.cos(u) + np.cos(v))
      out[..., c] = np.clip((ink[..., c] - screen) / 0.12 + 0.5, 0, 1)
  else:  # ordered dither (an inkjet / office printer) with a little jitter
    bayer = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]],
                     np.float32) / 16 + 1 / 32
    cell = max(1, int(round(period / 3)))
    idx_y, idx_x = (yy.astype(int) // cell) % 4, (xx.astype(int) // cell) % 4
    threshold = bayer[idx_y, idx_x]
    for c in range(channels):
      jitter = rng.uniform(-0.08, 0.08, (h, w)).astype(np.float32)
      out[..., c] = np.clip((ink[..., c] - threshold + jitter) / 0.08 + 0.5, 0, 1)
  return out


def _print(rgb: np.ndarray, rng: np.random.Generator, period: float, strength: float,
           saturation: float, texture: float) -> np.ndarray:
  """An RGB picture [0, 255] as it looks printed: ink gamut, colour cast, halftone, paper."""
  x = rgb / 255.0
  lum = x @ np.array([0.299, 0.587, 0.114], np.float32)
  x = lum[..., None] + saturation * (x - lum[..., None])
  x = np.clip(x * (1 + rng.uniform(-0.08, 0.08, 3)), 0, 1)  # the printer's colour cast
  if strength > 0:
    cmy = 1 - x
    k = cmy.min(axis=2, keepdims=True) * rng.uniform(0.5, 0.9)
    cmy = (cmy - k) / np.maximum(1 - k, 1e-3)
    cov = _halftone(np.concatenate([cmy, k], axis=2), rng, period)
    absorb = np.array([[0.92, 0.1, 0.02], [0.2, 0.9, 0.1], [0.02, 0.1, 0.85]], np.float32)
    printed = np.prod(1 - cov[..., :3, None] * absorb[None, None], axis=2)
    printed = printed * (1 - 0.9 * cov[..., 3:])
    x = (1 - strength) * x + strength * printed
  paper = rng.uniform(0.86, 0.98) * (1 + rng.uniform(-0.03, 0.03, 3))
  black = rng.uniform(0.06, 0.2)
  x = black + (paper - black) * x
  h, w = x.shape[:2]
  fibres = _noise(rng, h, w, max(2, h // 3), max(2, w // 12)) - 0.5
  x = x * (1 + texture * (fibres + 0.6 * (_noise(rng, h, w, 4, 4) - 0.5)))[..., None]
  return np.clip(x * 255, 0, 255).astype(np.float32)


def _glare(rng: np.random.Generator, h: int, w: int, amplitude: float) -> np.ndarray:
  """A soft specular streak [h, w] of the given peak, somewhere on an h x w surface."""
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
  t = rng.uniform(0, math.pi)
  u = (xx - cx) * math.cos(t) + (yy - cy) * math.sin(t)
  v = -(xx - cx) * math.sin(t) + (yy - cy) * math.cos(t)
  size = max(h, w)
  long, short = rng.uniform(0.15, 0.45) * size, rng.uniform(0.03, 0.1) * size
  return amplitude * np.exp(-0.5 * ((u / long) ** 2 + (v / short) ** 2))


def _print_medium(rng, canvas: Image.Image, face: _Face, kind: int, scale: float) -> _Medium:
  """A printed sheet (Photo, Poster, A4); scale = final pixels per victim canvas pixel."""
  m = scale / rng.uniform(0.8, 1.0)  # medium pixels per canvas pixel: slight downscale later
  if kind == 1:  # photo print, with or without a white margin
    aspect = rng.choice([0.75, 0.8, 0.667])
    window = _photo_window(rng, face, aspect, (0.7, 1.0))
    cw, ch = int(round((window[2] - window[0]) * m)), int(round((window[3] - window[1]) * m))
    border = 0 if rng.random() < 0.25 else int(round(rng.uniform(0.03, 0.09) * cw)) + 1
    sheet_w, sheet_h = cw + 2 * border, ch + 2 * border
    top, left = border, border
    params = dict(strength=rng.uniform(0.15, 0.7), saturation=rng.uniform(0.72, 0.95),
                  texture=rng.uniform(0.01, 0.03))
  elif kind == 2:  # poster: the whole picture on a large sheet
    aspect = rng.uniform(0.7, 0.82)
    window = _photo_window(rng, face, aspect, (0.85, 1.0))
    cw, ch = int(round((window[2] - window[0]) * m)), int(round((window[3] - window[1]) * m))
    border = int(round(rng.uniform(0.0, 0.03) * cw))
    sheet_w, sheet_h = cw + 2 * border, ch + 2 * border
    top, left = border, border
    params = dict(strength=rng.uniform(0.35, 0.9), saturation=rng.uniform(0.65, 0.92),
                  texture=rng.uniform(0.03, 0.08))
  else:  # A4: the photo in the upper part of a portrait sheet, text below
    aspect = rng.choice([0.75, 0.8, 1.0])
    window = _photo_window(rng, face, aspect, (0.75, 1.0))
    cw, ch = int(round((window[2] - window[0]) * m)), int(round((window[3] - window[1]) * m))
    sheet_w = int(round(cw / rng.uniform(0.55, 0.8)))
    sheet_h = int(round(sheet_w * math.sqrt(2)))
    top = int(round(rng.uniform(0.05, 0.16) * sheet_h))
    left = int(round((sheet_w - cw) / 2 + rng.uniform(-0.08, 0.08) * sheet_w))
    left = min(max(left, 2), sheet_w - cw - 2)
    params = dict(strength=rng.uniform(0.4, 1.0), saturation=rng.uniform(0.55, 0.85),
                  texture=rng.uniform(0.01, 0.03))
  content, c2c = _content(canvas, window, (cw, ch))
  sheet = np.full((sheet_h, sheet_w, 3), 255, np.float32)
  sheet[top:top + ch, left:left + cw] = content
  if kind == 3:  # lines of text under the photo
    y = top + ch + int(0.04 * sheet_h)
    line_h = max(2, int(0.012 * sheet_h))
    while y + line_h < sheet_h * 0.93:
      x1 = int(sheet_w * rng.uniform(0.5, 0.9))
      sheet[y:y + line_h, int(0.1 * sheet_w):x1] = rng.uniform(20, 80)
      y += int(line_h * rng.uniform(2.2, 3.2))
  period = rng.uniform(1.6, 3.5) * m / scale
  rgb = _print(sheet, rng, period, **params)
  regions = {"border": np.ones((sheet_h, sheet_w), np.float32)}
  regions["border"][top:top + ch, left:left + cw] = 0
  if kind == 2:
    if rng.random() < 0.5:  # a fold crease
      yy, xx = np.mgrid[0:sheet_h, 0:sheet_w].astype(np.float32)
      t = rng.uniform(0, math.pi)
      d = (xx - rng.uniform(0.2, 0.8) * sheet_w) * math.cos(t) + (
          yy - rng.uniform(0.2, 0.8) * sheet_h) * math.sin(t)
      rgb = rgb * np.where(d > 0, rng.uniform(0.9, 0.96), 1.0)[..., None]
      rgb = rgb * (1 - 0.15 * np.exp(-0.5 * (d / 1.2) ** 2))[..., None]
    if rng.random() < 0.4:  # tape at the corners
      tape = rng.uniform(0.06, 0.1) * sheet_w
      for x, y in ((0, 0), (sheet_w - tape, 0), (0, sheet_h - tape),
                   (sheet_w - tape, sheet_h - tape)):
        rgb[int(y):int(y + tape), int(x):int(x + tape)] = (
            0.5 * rgb[int(y):int(y + tape), int(x):int(x + tape)] + 0.5 * 235)
  if kind == 1 and rng.random() < 0.5:  # glossy photo paper
    rgb = rgb + _glare(rng, sheet_h, sheet_w, rng.uniform(30, 90))[..., None]
  matrix = _affine(1, 1, left, top) @ c2c
  return _Medium(rgb, np.ones((sheet_h, sheet_w), np.float32), matrix, regions)


def _cut_edge(alpha: np.ndarray, rgb: np.ndarray, strength: float) -> np.ndarray:
  """Lighten a thin band along the inside of a cut outline (the paper's white core)."""
  a = Image.fromarray(np.pad((alpha * 255).astype(np.uint8), 1))  # the outside is no paper
  inner = np.asarray(a.filter(ImageFilter.MinFilter(3)), np.float32)[1:-1, 1:-1] / 255
  band = np.clip(alpha - inner, 0, 1)[..., None] * strength
  return rgb * (1 - band) + 240 * band


def _wobbly_polygon(rng, centre, rx, ry, n=40, wobble=0.05) -> np.ndarray:
  t = np.linspace(0, 2 * math.pi, n, endpoint=False)
  r = 1 + wobble * (np.interp(t, np.linspace(0, 2 * math.pi, 9), np.r_[rng.uniform(-1, 1, 8), 0])
                    + 0.3 * rng.uniform(-1, 1, n))
  return np.c_[centre[0] + rx * r * np.cos(t), centre[1] + ry * r * np.sin(t)]


def _cutout_medium(rng, canvas: Image.Image, outline_canvas: np.ndarray | None,
                   person: np.ndarray | None, m: float, holes: list[np.ndarray] = ()) -> _Medium:
  """A print cut along a polygon (canvas coordinates) or the person's matte, at m px per canvas
  pixel. Holes are polygons cut out of it (eye holes)."""
  if outline_canvas is not None:
    x0, y0 = np.floor(outline_canvas.min(0)) - 2
    x1, y1 = np.ceil(outline_canvas.max(0)) + 2
  else:
    x0, y0, x1, y1 = 0.0, 0.0, float(CANVAS_W), float(CANVAS_H)
  x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, CANVAS_W), min(y1, CANVAS_H)
  w, h = max(8, int(round((x1 - x0) * m))), max(8, int(round((y1 - y0) * m)))
  content, c2m = _content(canvas, (x0, y0, x1, y1), (w, h))
  if outline_canvas is not None:
    mask = Image.new("L", (w * 2, h * 2), 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon([tuple(p) for p in _apply(_affine(2, 2, 0, 0) @ c2m, outline_canvas) - 0.5],
                 fill=255)
    for hole in holes:
      draw.polygon([tuple(p) for p in _apply(_affine(2, 2, 0, 0) @ c2m, hole) - 0.5], fill=0)
    alpha = np.asarray(mask.resize((w, h), Image.BOX), np.float32) / 255
  else:
    grown = Image.fromarray((person * 255).astype(np.uint8)).filter(
        ImageFilter.MaxFilter(2 * int(rng.integers(1, 4)) + 1))
    wobble = 0.5 + 0.35 * (_noise(rng, CANVAS_H, CANVAS_W, 9, 8) - 0.5)
    soft = np.asarray(grown.filter(ImageFilter.GaussianBlur(2)), np.float32) / 255
    cut = Image.fromarray(((soft > wobble) * 255).astype(np.uint8))
    alpha = np.asarray(cut.resize((w, h), Image.BILINEAR, box=(x0, y0, x1, y1)), np.float32) / 255
  rgb = _print(content, rng, rng.uniform(1.8, 4.0), strength=rng.uniform(0.2, 0.8),
               saturation=rng.uniform(0.65, 0.92), texture=rng.uniform(0.01, 0.04))
  rgb = _cut_edge(alpha, rgb, rng.uniform(0.3, 0.9))
  return _Medium(rgb, alpha, c2m)


DEVICES = {  # screen aspect (w / h), bezel as a fraction of the screen's short side, corner radius
    7: dict(aspect=(1.5, 1.78), bezel=(0.03, 0.07), chin=(0.05, 0.12), radius=0.01),
    8: dict(aspect=(0.72, 0.78), bezel=(0.05, 0.1), chin=(0.0, 0.0), radius=0.05),
    9: dict(aspect=(0.45, 0.56), bezel=(0.025, 0.05), chin=(0.0, 0.05), radius=0.12),
}
BODIES = ((18, 18, 20), (40, 40, 44), (200, 200, 205), (235, 235, 235), (170, 150, 120))


def _screen_medium(rng, canvas: Image.Image, face: _Face, kind: int, screen_px: float
                   ) -> tuple[_Medium, float]:
  """A device showing the victim's photo; screen_px: the screen's longer side in image pixels.

  Returns the medium and its scale (image pixels per medium pixel).
  """
  spec = DEVICES[kind]
  aspect = rng.uniform(*spec["aspect"])
  if kind == 8 and rng.random() < 0.4:
    aspect = 1 / aspect  # a tablet held landscape
  pitch = rng.uniform(1.3, 3.0)  # one screen pixel, in image pixels
  sub = 3  # medium pixels per screen pixel: the R, G, B stripes
  long_native = max(24, int(round(screen_px / pitch)))
  nw, nh = (long_native, int(round(long_native / aspect))) if aspect >= 1 else (
      int(round(long_native * aspect)), long_native)
  # The photo on the screen: filling it (cropped) or fitted with dark bars.
  screen = np.zeros((nh, nw, 3), np.float32) + rng.uniform(0, 30)
  photo_aspect = CANVAS_W / CANVAS_H
  if aspect <= 1.0 and rng.random() < 0.5:  # (a wide crop would cut the face)
    window = _photo_window(rng, face, aspect, (0.75, 1.0))
    content, c2s = _content(canvas, window, (nw, nh))
    screen = content
  else:
    if aspect > photo_aspect:
      ph = nh
      pw = max(4, int(round(nh * photo_aspect)))
    else:
      pw = nw
      ph = max(4, int(round(nw / photo_aspect)))
    content, c2s = _content(canvas, (0, 0, CANVAS_W, CANVAS_H), (pw, ph))
    ox, oy = (nw - pw) // 2, (nh - ph) // 2
    screen[oy:oy + ph, ox:ox + pw] = content
    c2s = _affine(1, 1, ox, oy) @ c2s
  # Display response: gamma, contrast, black glow, white point.
  x = (screen / 255) ** rng.uniform(0.75, 1.3)
  glow = rng.uniform(0.03, 0.12)
  x = glow + (1 - glow) * x * rng.uniform(0.85, 1.05)
  x = x * np.array([rng.uniform(0.88, 1.0), rng.uniform(0.95, 1.02), rng.uniform(1.0, 1.1)])
  # The pixel grid: each screen pixel is sub x sub medium pixels, three colour stripes and a gap.
  up = np.repeat(np.repeat(x.astype(np.float32), sub, axis=0), sub, axis=1)
  colour_stripes, gaps = rng.uniform(0.1, 0.5), rng.uniform(0.15, 0.6)
  cols = np.arange(nw * sub) % sub
  stripes = np.stack([(cols == c).astype(np.float32) * sub for c in range(3)], axis=1)
  up = up * ((1 - colour_stripes) + colour_stripes * stripes[None, :, :])
  rows = (np.arange(nh * sub) % sub == sub - 1).astype(np.float32)
  up = up * (1 - gaps * rows)[:, None, None] * (1 - gaps * (cols == sub - 1))[None, :, None]
  up = np.clip(up * 255, 0, 255)
  sh, sw = up.shape[:2]
  # The device around the screen.
  bezel = int(round(rng.uniform(*spec["bezel"]) * min(sh, sw))) + 2
  chin = int(round(rng.uniform(*spec["chin"]) * min(sh, sw)))
  mw, mh = sw + 2 * bezel, sh + 2 * bezel + chin
  body = np.asarray(BODIES[rng.integers(len(BODIES))], np.float32) * rng.uniform(0.85, 1.1)
  rgb = np.ones((mh, mw, 3), np.float32) * body
  rgb[bezel:bezel + sh, bezel:bezel + sw] = up
  mask = Image.new("L", (mw * 2, mh * 2), 0)
  ImageDraw.Draw(mask).rounded_rectangle((0, 0, mw * 2 - 1, mh * 2 - 1),
                                         radius=int(spec["radius"] * min(mw, mh) * 2), fill=255)
  alpha = np.asarray(mask.resize((mw, mh), Image.BOX), np.float32) / 255
  if kind == 9 and rng.random() < 0.7:  # the front camera
    r = max(1.5, 0.25 * bezel)
    yy, xx = np.mgrid[0:mh, 0:mw]
    dot = (xx - mw / 2) ** 2 + (yy - bezel / 2) ** 2 < r * r
    rgb[dot] = 10
  screen_mask = np.zeros((mh, mw), np.float32)
  screen_mask[bezel:bezel + sh, bezel:bezel + sw] = 1
  # A moire beat and the glare of the glass.
  yy, xx = np.mgrid[0:mh, 0:mw].astype(np.float32)
  t = rng.uniform(0, math.pi)
  beat = np.cos((xx * math.cos(t) + yy * math.sin(t)) * 2 * math.pi / (rng.uniform(8, 30) * sub))
  rgb = rgb * (1 + rng.uniform(0.0, 0.1) * beat * screen_mask)[..., None]
  if rng.random() < 0.7:
    rgb = rgb + _glare(rng, mh, mw, rng.uniform(40, 140))[..., None]
  matrix = _affine(sub, sub, bezel, bezel) @ c2s
  return _Medium(rgb, alpha, matrix, {"screen": screen_mask}), pitch / sub


def _placement(rng, medium: _Medium, anchor_medium, target, scale: float, angle_deg: float,
               tilt: float) -> np.ndarray:
  """Medium -> image: rotate and scale about anchor_medium, which lands on target, then move
  each corner by up to tilt x the medium's size (the sheet seen at an angle)."""
  w, h = medium.size
  sim = _similarity(math.radians(rng.uniform(-angle_deg, angle_deg)), scale, anchor_medium, target)
  corners = np.array([(0, 0), (w, 0), (w, h), (0, h)], float)
  moved = _apply(sim, corners) + rng.uniform(-tilt, tilt, (4, 2)) * max(w, h) * scale
  return _homography(corners, moved)


# --- hands ---------------------------------------------------------------------------------------

def _ellipse_pts(centre, a, b, angle, n=24):
  t = np.linspace(0, 2 * math.pi, n, endpoint=False)
  c, s = math.cos(angle), math.sin(angle)
  x, y = a * np.cos(t), b * np.sin(t)
  return [(centre[0] + c * xi - s * yi, centre[1] + s * xi + c * yi) for xi, yi in zip(x, y)]


def _hand(rng, contact, inward, size: tuple[int, int], skin) -> tuple[np.ndarray, np.ndarray]:
  """Layers (behind, in front) [H, W, 4] float: fingers behind a sheet edge, a thumb in front."""
  w, h = size
  unit = min(w, h)
  angle = math.atan2(inward[1], inward[0])
  layers = []
  skin = np.asarray(skin, np.float32)
  for part in ("behind", "front"):
    img = Image.new("RGBA", (w * 2, h * 2), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    if part == "behind":  # the palm and fingers, mostly outside the sheet
      centre = contact - inward * 0.12 * unit
      colour = tuple(int(v) for v in skin * 0.85) + (255,)
      draw.polygon([(2 * x, 2 * y)
                    for x, y in _ellipse_pts(centre, 0.17 * unit, 0.12 * unit, angle)], fill=colour)
    else:  # the thumb, across the edge
      centre = contact + inward * 0.035 * unit
      colour = tuple(int(v) for v in skin) + (255,)
      thumb = _ellipse_pts(centre, 0.07 * unit, 0.028 * unit, angle)
      draw.polygon([(2 * x, 2 * y) for x, y in thumb], fill=colour)
    layers.append(np.asarray(img.resize((w, h), Image.BOX), np.float32))
  return layers[0], layers[1]


def _over(base: np.ndarray, layer: np.ndarray) -> np.ndarray:
  a = layer[..., 3:] / 255
  return base * (1 - a) + layer[..., :3] * a


# --- capture -------------------------------------------------------------------------------------

def _illuminate(img: np.ndarray, rng: np.random.Generator, illumination: int,
                subject: np.ndarray | None, emissive: np.ndarray | None) -> np.ndarray:
  """Capture light: 1 Normal, 2 Strong, 3 Back (needs the subject's matte), 4 Dark."""
  h, w = img.shape[:2]
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  if illumination == 1:
    t = rng.uniform(-0.06, 0.06)
    return img * rng.uniform(0.88, 1.12) * np.array([1 + t, 1, 1 - t], np.float32)
  if illumination == 2:
    cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.3, 0.6) * max(w, h)
    spot = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
    return img * rng.uniform(1.05, 1.3) * (1 + 0.2 * spot) + rng.uniform(10, 40) * spot
  if illumination == 3:
    m = subject if subject is not None else np.zeros((h, w), np.float32)
    m = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(1.0)), np.float32)[..., None] / 255
    bg = 1 - m
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(-0.1, 0.35) * h
    r = rng.uniform(0.15, 0.35) * max(w, h)
    source = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
    lit = img * (m * rng.uniform(0.35, 0.6) + bg * rng.uniform(1.3, 1.8)) + bg * rng.uniform(
        20, 60) + bg * source * rng.uniform(60, 160)
    glow = np.asarray(Image.fromarray((bg[..., 0] * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.04 * max(w, h))), np.float32)[..., None] / 255
    return lit + m * glow * rng.uniform(20, 60)  # bloom over the subject's edges
  gain = rng.uniform(0.22, 0.45)
  if emissive is not None:  # a screen keeps most of its own light
    gain = gain + (rng.uniform(0.6, 0.9) - gain) * emissive[..., None]
  cast = np.array([1.12, 0.97, 0.75] if rng.random() < 0.6 else [0.85, 0.95, 1.12], np.float32)
  dark = img * gain * cast
  return (dark + rng.uniform(3, 8) * rng.standard_normal((h, w, 1), dtype=np.float32)
          + 2.0 * rng.standard_normal((h, w, 3), dtype=np.float32))


def _camera(img: np.ndarray, rng: np.random.Generator, max_blur: float = 0.9) -> np.ndarray:
  img = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
  blur = rng.uniform(0, max_blur)
  if blur > 0.25:
    img = img.filter(ImageFilter.GaussianBlur(blur))
  arr = np.asarray(img, np.float32) + rng.uniform(0.5, 3.0) * rng.standard_normal(
      img.size[::-1] + (3,), dtype=np.float32)
  return np.clip(np.round(arr), 0, 255).astype(np.uint8)


# --- examples ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Example:
  """One rendered image with everything true by construction."""
  item: Item
  image: np.ndarray                        # uint8 [H, W, 3], before JPEG
  labels: list[int]                        # the 44 CelebA-Spoof labels
  face_box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels (edge coords)
  face_mask: np.ndarray                    # bool [H, W]: where the face is
  depth: np.ndarray | None                 # uint8 [H, W] for live images, else None
  regions: dict[str, np.ndarray]           # float masks [H, W]: medium, border, screen
  bb_score: float


def _victim(seed: int, item: Item) -> tuple[dict[str, Any], dict[str, bool], np.random.Generator]:
  traits = _identity_traits(seed, item.subject)
  rng = np.random.default_rng([seed, 32, item.index])
  return traits, _image_attributes(traits, rng), rng


def _labels(item: Item, attributes: dict[str, bool]) -> list[int]:
  spoof = not item.live
  return [int(attributes[n]) for n in ATTRIBUTE_NAMES] + [
      item.spoof_type, item.illumination if spoof else 0, item.environment if spoof else 0,
      int(spoof)]


def _person_shot(item, rng, traits, attrs, prng, matte: bool):
  """The person (victim or attacker) in the capture scene: canvas, face, window, matrix, size."""
  scene = _scene(rng, item.environment, CANVAS_H, CANVAS_W)
  canvas, face, person = _render_person(traits, attrs, prng, scene, matte)
  window, matrix, size = _window(rng, face)
  return canvas, face, person, window, matrix, size


def _live(seed, item, rng):
  traits, attrs, prng = _victim(seed, item)
  canvas, face, person, window, matrix, size = _person_shot(
      item, rng, traits, attrs, prng, matte=item.illumination == 3)
  img = _shot(canvas, window, size)
  subject = None if person is None else np.asarray(
      Image.fromarray((person * 255).astype(np.uint8)).resize(size, Image.BILINEAR, box=window),
      np.float32) / 255
  img = _illuminate(img, rng, item.illumination, subject, None)
  return attrs, img, _apply(matrix, face.outline()), face, matrix, {}


def _mask3d(seed, item, rng):
  """A 3D mask of the victim worn over the head: smooth, tinted, glossy, with a rim."""
  traits, attrs, prng = _victim(seed, item)
  canvas, face, person, window, matrix, size = _person_shot(
      item, rng, traits, attrs, prng, matte=item.illumination == 3)
  arr = np.asarray(canvas, np.float32)
  xs, ys = np.meshgrid(np.arange(CANVAS_W) + 0.5, np.arange(CANVAS_H) + 0.5)
  inside, depth = face.field(xs, ys)
  smooth = np.asarray(canvas.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 3.0))), np.float32)
  mean = smooth[inside].mean(axis=0)
  material = rng.uniform([200, 170, 150], [245, 225, 210])
  tint = mean + (material - mean) * rng.uniform(0.3, 0.75)
  flat = tint + (smooth - smooth[inside].mean(axis=0)) * rng.uniform(0.25, 0.55)
  gy, gx = np.gradient(depth * 40)
  normal = np.stack([-gx, -gy, np.ones_like(gx)], -1)
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.6, 0.0), 1.0])
  light /= np.linalg.norm(light)
  lambert = np.clip(normal @ light, 0, 1)[..., None]
  half = light + np.array([0, 0, 1.0])
  spec = np.clip(normal @ (half / np.linalg.norm(half)), 0, 1) ** rng.uniform(15, 40)
  masked = flat * (0.7 + 0.4 * lambert) + rng.uniform(30, 80) * spec[..., None]
  eyes_open = rng.random() < 0.6
  pts = face.pose
  for side in (-1, 1):  # eye holes: the wearer's eyes (the original pixels) or dark holes
    ex, ey = _apply(pts, [(CX + side * EYE_DX, EYE_Y)])[0]
    hole = ((xs - ex) / 7.5) ** 2 + ((ys - ey) / 4.5) ** 2 < 1
    masked[hole] = arr[hole] if eyes_open else masked[hole] * 0.25
  rim = inside & ~np.asarray(Image.fromarray((inside * 255).astype(np.uint8)).filter(
      ImageFilter.MinFilter(3)), bool)
  masked[rim] = masked[rim] * rng.uniform(0.55, 0.8)
  arr = np.where(inside[..., None], masked, arr)
  canvas = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
  img = _shot(canvas, window, size)
  subject = None if person is None else np.asarray(
      Image.fromarray((person * 255).astype(np.uint8)).resize(size, Image.BILINEAR, box=window),
      np.float32) / 255
  img = _illuminate(img, rng, item.illumination, subject, None)
  return attrs, img, _apply(matrix, face.outline()), face, matrix, {}


def _attacker(seed, item, rng):
  identity = _ATTACKER_BASE + int(rng.integers(1000))
  traits = _identity_traits(seed, identity)
  prng = np.random.default_rng([seed, 33, item.index])
  return traits, _image_attributes(traits, prng), prng


def _worn(seed, item, rng):
  """Face Mask (4) and Region Mask (6): a print held over another person's face."""
  traits, attrs, prng = _victim(seed, item)
  victim_scene = _scene(rng, int(rng.integers(1, 3)), CANVAS_H, CANVAS_W)
  victim_canvas, victim, _ = _render_person(traits, attrs, prng, victim_scene)
  a_traits, a_attrs, a_prng = _attacker(seed, item, rng)
  canvas, attacker, person, window, matrix, size = _person_shot(
      item, rng, a_traits, a_attrs, a_prng, matte=item.illumination == 3)
  img = _shot(canvas, window, size)
  scale = matrix[0, 0]
  m = scale / rng.uniform(0.8, 1.0)
  inv_victim = np.linalg.inv(victim.pose)
  # Where the victim's unposed face frame goes on the attacker: their face frame, jittered.
  jitter = _similarity(math.radians(rng.uniform(-5, 5)), rng.uniform(1.0, 1.12), (CX, CY),
                       (CX + rng.uniform(-3, 3), CY + rng.uniform(-3, 3)))
  if item.spoof_type == 4:
    # Around the head, never into the face ellipse (the wobble is at most 6.5%).
    cut = _wobbly_polygon(rng, (CX, CY - 4), victim.rx * rng.uniform(1.1, 1.25),
                          victim.ry * rng.uniform(1.15, 1.25))
    holes = []
    if rng.random() < 0.4:
      holes = [_apply(victim.pose, _ellipse_pts((CX + s * EYE_DX, EYE_Y), 7, 4, 0.0, 16))
               for s in (-1, 1)]
    medium = _cutout_medium(rng, victim_canvas, _apply(victim.pose, cut), None, m, holes)
    to_image = matrix @ attacker.pose @ jitter @ inv_victim @ np.linalg.inv(medium.content)
    box_points = _apply(to_image @ medium.content, victim.outline())
    face_field = (victim, to_image @ medium.content)
  else:
    if rng.random() < 0.65:  # the eyes and brows
      band = (CX - victim.rx - 3, EYE_Y - 18, CX + victim.rx + 3, EYE_Y + 11)
    else:  # nose and mouth
      band = (CX - 0.8 * victim.rx, victim.nose_tip - 12, CX + 0.8 * victim.rx, MOUTH_Y + 12)
    bw, bh = int(round((band[2] - band[0]) * m)), int(round((band[3] - band[1]) * m))
    unposed_to_medium = _affine(bw / (band[2] - band[0]), bh / (band[3] - band[1]),
                                -band[0] * bw / (band[2] - band[0]),
                                -band[1] * bh / (band[3] - band[1]))
    c2m = unposed_to_medium @ inv_victim
    content = np.asarray(_warp(victim_canvas, c2m, (bw, bh), Image.BICUBIC), np.float32)
    rgb = _print(content, rng, rng.uniform(1.6, 3.5) * m / scale, strength=rng.uniform(0.2, 0.8),
                 saturation=rng.uniform(0.65, 0.92), texture=rng.uniform(0.01, 0.04))
    alpha = np.ones((bh, bw), np.float32)
    rgb = _cut_edge(alpha, rgb, rng.uniform(0.4, 0.9))
    medium = _Medium(rgb, alpha, c2m)
    to_image = matrix @ attacker.pose @ jitter @ np.linalg.inv(unposed_to_medium)
    box_points = _apply(matrix, attacker.outline())
    face_field = (attacker, matrix)
  front = None
  if item.spoof_type == 4 and rng.random() < 0.5:  # held by a hand under the chin
    chin = _apply(to_image @ medium.content @ victim.pose, [(CX, CY + victim.ry)])[0]
    up = _apply(to_image @ medium.content @ victim.pose, [(CX, CY)])[0] - chin
    behind, front = _hand(rng, chin, up / (np.linalg.norm(up) + 1e-6), size, _skin(rng))
    img = _over(img, behind)
  # The paper, a little in front of the face, casts a soft shadow on it.
  offset = _affine(1, 1, *(rng.uniform(0.5, 2.5, 2) * rng.choice([-1, 1], 2)))
  shadow = Image.fromarray((medium.alpha * 255).astype(np.uint8))
  shadow = _warp(shadow, offset @ to_image, size).filter(ImageFilter.GaussianBlur(1.5))
  img = img * (1 - rng.uniform(0.15, 0.45) * np.asarray(shadow, np.float32)[..., None] / 255)
  colour, a = _warp_rgba(medium.rgb, medium.alpha, to_image, size)
  img = img * (1 - a[..., None]) + colour
  if front is not None:
    img = _over(img, front)
  elif item.spoof_type == 4:  # strings to the ears
      draw_img = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
      draw = ImageDraw.Draw(draw_img)
      shade = tuple(int(v) for v in rng.uniform(10, 80, 3))
      for s in (-1, 1):
        p0 = _apply(to_image @ medium.content @ victim.pose, [(CX + s * victim.rx, CY)])[0]
        p1 = _apply(matrix @ attacker.pose, [(CX + s * (attacker.rx + 6), CY + 2)])[0]
        draw.line([tuple(p0), tuple(p1)], fill=shade, width=1)
      img = np.asarray(draw_img, np.float32)
  subject = a
  if person is not None:
    subject = np.maximum(a, np.asarray(Image.fromarray((person * 255).astype(np.uint8)).resize(
        size, Image.BILINEAR, box=window), np.float32) / 255)
  img = _illuminate(img, rng, item.illumination, subject, None)
  return attrs, img, box_points, face_field[0], face_field[1], {"medium": a}


SKIN_TONES = ((241, 205, 180), (224, 172, 135), (198, 140, 100), (150, 100, 70), (105, 70, 50))


def _skin(rng) -> np.ndarray:
  return np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))], np.float32) * rng.uniform(0.85, 1.05)


def _held(seed, item, rng):
  """Photo, Poster, A4, Upper Body Mask and the screens, in front of a scene."""
  traits, attrs, prng = _victim(seed, item)
  kind = item.spoof_type
  victim_scene = _scene(rng, int(rng.integers(1, 3)), CANVAS_H, CANVAS_W)
  victim_canvas, victim, person = _render_person(traits, attrs, prng, victim_scene, matte=kind == 5)
  backdrop = _backdrop(rng, item.environment)
  window, _, size = _window(rng, None)
  img = _shot(backdrop, window, size)
  w, h = size
  face_h = 2 * victim.ry  # the face's height on the canvas
  centre_face = np.array([CX, CY])
  if kind in SCREENS:
    long_side = {7: rng.uniform(0.95, 1.4) * max(w, h), 8: rng.uniform(0.65, 0.95) * max(w, h),
                 9: rng.uniform(0.55, 0.9) * max(w, h)}[kind]
    medium, scale = _screen_medium(rng, victim_canvas, victim, kind, long_side)
    sheet = medium.size
    target = (w / 2 + rng.uniform(-0.12, 0.12) * w, h / 2 + rng.uniform(-0.1, 0.1) * h)
    anchor = (sheet[0] / 2, sheet[1] / 2)
    if kind == 7:  # a monitor bigger than the view: keep the face in view
      anchor = _apply(medium.content @ victim.pose, [centre_face])[0]
      target = (rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.6) * h)
    to_image = _placement(rng, medium, anchor, target, scale, 8, 0.03)
  else:
    if kind == 5:
      target_face = rng.uniform(0.28, 0.42) * h
      medium = _cutout_medium(rng, victim_canvas, None, person,
                              target_face / face_h / rng.uniform(0.8, 1.0))
    else:
      target_face = {1: rng.uniform(0.2, 0.4), 2: rng.uniform(0.45, 0.7),
                     3: rng.uniform(0.12, 0.25)}[kind] * h
      medium = _print_medium(rng, victim_canvas, victim, kind, target_face / face_h)
    scale = target_face / face_h / (medium.content[0, 0])
    sheet = medium.size
    if kind in (2, 5):  # the face in view, the sheet's edges wherever they fall
      anchor = _apply(medium.content @ victim.pose, [centre_face])[0]
      target = (rng.uniform(0.35, 0.65) * w, rng.uniform(0.3, 0.5) * h)
    else:  # the sheet in view when it fits
      anchor = (sheet[0] / 2, sheet[1] / 2)
      slack_x = max(0.0, (w - sheet[0] * scale) / 2 * 0.8)
      slack_y = max(0.0, (h - sheet[1] * scale) / 2 * 0.8)
      target = (w / 2 + rng.uniform(-slack_x, slack_x), h / 2 + rng.uniform(-slack_y, slack_y))
      if sheet[1] * scale > h:  # too tall (A4): the photo part in view
        anchor = _apply(medium.content @ victim.pose, [centre_face])[0]
        target = (w / 2 + rng.uniform(-slack_x, slack_x), rng.uniform(0.3, 0.45) * h)
    to_image = _placement(rng, medium, anchor, target, scale, 12 if kind != 2 else 5,
                          0.04 if kind != 2 else 0.02)
  hands = kind in (1, 3, 5, 8, 9) and rng.random() < 0.75
  behind = front = None
  if hands:
    mw, mh = medium.size
    if kind == 5:
      edge = [((0.08 + rng.uniform(0, 0.1)) * mw, 0.92 * mh), (0, -1.0)]
    elif rng.random() < 0.6:
      edge = [(rng.uniform(0.15, 0.85) * mw, mh), (0, -1.0)]
    else:
      side = rng.random() < 0.5
      edge = [(mw if side else 0.0, rng.uniform(0.55, 0.9) * mh), (-1.0 if side else 1.0, 0)]
    p0 = _apply(to_image, [edge[0]])[0]
    p1 = _apply(to_image, [np.add(edge[0], np.multiply(edge[1], 10))])[0]
    inward = (p1 - p0) / (np.linalg.norm(p1 - p0) + 1e-6)
    behind, front = _hand(rng, p0, inward, size, _skin(rng))
    img = _over(img, behind)
  colour, a = _warp_rgba(medium.rgb, medium.alpha, to_image, size)
  img = img * (1 - a[..., None]) + colour
  if front is not None:
    img = _over(img, front)
  subject = a if behind is None else np.maximum(a, behind[..., 3] / 255)
  regions = {"medium": a}
  for name, mask in medium.regions.items():
    regions[name] = np.asarray(_warp(Image.fromarray((mask * 255).astype(np.uint8)), to_image,
                                     size), np.float32) / 255 * a
  if front is not None:
    regions = {k: v * (1 - front[..., 3] / 255) for k, v in regions.items()}
  emissive = regions.get("screen")
  img = _illuminate(img, rng, item.illumination, subject, emissive)
  chain = to_image @ medium.content
  return attrs, img, _apply(chain, victim.outline()), victim, chain, regions


def render_example(index: int, num_images: int = NUM_IMAGES, seed: int = 0) -> Example:
  """Image `index` (0-based) of the set of num_images: picture, labels, face box/mask, depth."""
  item = sample_plan(num_images, seed)[index]
  rng = np.random.default_rng([seed, 31, index])
  if item.live:
    attrs, img, points, face, chain, regions = _live(seed, item, rng)
  elif item.spoof_type == 10:
    attrs, img, points, face, chain, regions = _mask3d(seed, item, rng)
  elif item.spoof_type in (4, 6):
    attrs, img, points, face, chain, regions = _worn(seed, item, rng)
  else:
    attrs, img, points, face, chain, regions = _held(seed, item, rng)
  h, w = img.shape[:2]
  image = _camera(img, rng, 0.6 if item.spoof_type in SCREENS else 0.9)
  box = _box_of(points, w, h)
  if box is None:
    raise RuntimeError(f"image {item.name}: the face left the picture")  # placement keeps it in
  xs, ys = _pixel_grid(w, h, np.linalg.inv(chain))
  inside, depth = face.field(xs, ys)
  depth_map = np.clip(np.round(depth * 255), 0, 255).astype(np.uint8) if item.live else None
  score = float(rng.uniform(0.93, 0.99999))
  return Example(item, image, _labels(item, attrs), box, inside, depth_map, regions, score)


def bb_line(example: Example) -> str:
  """The _BB.txt line: integer x y w h in the image resized to 224x224, and a score."""
  h, w = example.image.shape[:2]
  x0, y0, x1, y1 = example.face_box
  bx, by = math.floor(x0 * BB_SIZE / w), math.floor(y0 * BB_SIZE / h)
  bw = max(1, math.ceil(x1 * BB_SIZE / w) - bx)
  bh = max(1, math.ceil(y1 * BB_SIZE / h) - by)
  return f"{bx} {by} {bw} {bh} {example.bb_score:.7f}"


# --- the set on disk -----------------------------------------------------------------------------

def write_sample_set(out_dir: str, *, num_images: int = NUM_IMAGES, seed: int = 0,
                     progress: bool = False) -> dict[str, Any]:
  """Writes CelebA_Spoof's Data/{train,test}/..., metas/intra_test/ and README.md under out_dir."""
  plan = sample_plan(num_images, seed)
  labels: dict[str, dict[str, list[int]]] = {"train": {}, "test": {}}
  for item in plan:  # every subject folder has live/ and spoof/, as in the real set
    for folder in ("live", "spoof"):
      os.makedirs(os.path.join(out_dir, "Data", item.split, str(item.subject), folder),
                  exist_ok=True)
  for item in tqdm(plan, desc="rendering live and spoof faces", disable=not progress, leave=False):
    example = render_example(item.index, num_images, seed)
    stem = os.path.join(out_dir, os.path.splitext(item.id)[0])
    quality = int(np.random.default_rng([seed, 34, item.index]).integers(JPEG_QUALITY[0],
                                                                        JPEG_QUALITY[1] + 1))
    Image.fromarray(example.image).save(stem + ".jpg", quality=quality)
    with open(stem + "_BB.txt", "w") as f:
      f.write(bb_line(example) + "\n")
    if example.depth is not None:
      Image.fromarray(example.depth, "L").save(stem + MAP_SUFFIXES["depth"])
    labels[item.split][item.id] = example.labels
  meta = os.path.join(out_dir, DEFAULT_PROTOCOL)
  os.makedirs(meta, exist_ok=True)
  for split, entries in labels.items():
    with open(os.path.join(meta, split + LABEL_SUFFIX), "w") as f:
      f.write("{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}"
                                 for k, v in sorted(entries.items())) + "\n}\n")
  summary = _summary(plan)
  with open(os.path.join(out_dir, "README.md"), "w") as f:
    f.write(_README.format(n=num_images, seed=seed, subjects=summary["num_subjects"],
                           train=summary["splits"]["train"], test=summary["splits"]["test"],
                           types=", ".join(f"{k} {v}" for k, v in summary["spoof_types"].items())))
  return summary


def _summary(plan: tuple[Item, ...]) -> dict[str, Any]:
  splits = {}
  for split in ("train", "test"):
    items = [i for i in plan if i.split == split]
    splits[split] = {"images": len(items), "live": sum(i.live for i in items),
                     "spoof": sum(not i.live for i in items),
                     "subjects": len({i.subject for i in items})}
  return {"num_images": len(plan), "num_subjects": len({i.subject for i in plan}),
          "splits": splits,
          "spoof_types": {SPOOF_TYPE_NAMES[k]: sum(i.spoof_type == k for i in plan)
                          for k in range(len(SPOOF_TYPE_NAMES))},
          "illumination": {ILLUMINATION_NAMES[k]: sum(i.illumination == k and not i.live
                                                      for i in plan) for k in range(1, 5)},
          "environment": {ENVIRONMENT_NAMES[k]: sum(i.environment == k and not i.live
                                                    for i in plan) for k in range(1, 3)}}


_README = """# CelebA-Spoof-format sample set (rendered)

{n} images of {subjects} rendered subjects, written by `hcjax samples celeba_spoof --seed {seed}`
(hcjax/data/samples/celeba_spoof.py) in CelebA-Spoof's layout:
Data/{{train,test}}/<subject>/{{live,spoof}}/<name>.jpg, each with <name>_BB.txt (`x y w h score`,
the face box in the image resized to 224x224), live images with <name>_depth.png (8-bit depth of
the face, 0 on the background) and metas/intra_test/{{train,test}}_label.json (44 labels per image:
40 CelebA attributes, spoof type, illumination, environment, live 0 / spoof 1).
Splits are subject-disjoint: train {train}; test {test}.

The people are the rendered CelebA identities of hcjax/data/samples/celeba.py (attributes true by
construction). Live images show them in rendered indoor / outdoor scenes under normal, strong,
back and dark light (labelled Live, as in CelebA-Spoof). Spoof images re-capture the same people
through simulated attacks: prints (halftone / dither dots, ink gamut, colour cast, paper, white
margins, hands), posters, A4 sheets with text, paper face / upper-body / region masks, PC / pad /
phone screens (pixel grid, moire, glare, bezels) and 3D masks, with their capture illumination
and environment labels. Spoof types: {types}.

Convert: `hcjax convert celeba_spoof --src THIS_FOLDER --out OUT`.
"""

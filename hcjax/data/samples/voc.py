"""A deterministic VOC 2012 look-alike cut from real photographs, in VOC's on-disk format.

Objects are cut out of the photographs that ship with scikit-image along outlines traced by hand
(astronaut and cameraman -> person, chelsea -> cat, stereo_motorcycle -> motorbike; the tracing is
rough, so a little of the photo's own background comes along, e.g. between the motorcycle's
spokes) or are real shapes filled with a photographed surface (horse.png's silhouette with a coat
from the moon photo; a table shape with the wooden table top of coffee.png -> diningtable). They
are pasted with random size, position and flip over backgrounds cropped from other photos (grass,
gravel, brick, coins, the rocket launch site), later pastes occluding earlier ones. Masks are exact
by construction: a pixel has an object's class iff that object's pixels were the last pasted
there. As in VOC, a void band (255) two pixels wide runs along every object outline; the image is
smoothed inside that band only, so labelled pixels keep the photo's values.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from hcjax.data.converters.voc import CLASS_NAMES, IGNORE_LABEL, PALETTE
from hcjax.data.errors import MissingDataError

LANDSCAPE = (120, 160)  # [H, W]; one image in four is portrait, [160, 120]
VAL_EVERY = 5  # images 5, 10, 15, ... (1-based) form the val split: 20%

# Outlines traced on the photographs, (x, y) in the photo's pixels.
_ASTRONAUT = (
    (205, 15), (255, 14), (290, 40), (302, 80), (298, 120), (285, 150), (300, 190), (308, 235),
    (330, 270), (352, 300), (362, 345), (330, 350), (300, 360), (282, 400), (275, 512), (22, 512),
    (20, 400), (25, 330), (45, 290), (85, 270), (115, 255), (112, 200), (125, 170), (160, 150),
    (165, 130), (150, 95), (158, 50), (180, 25))
_CAMERAMAN = (
    (0, 225), (60, 170), (125, 115), (160, 105), (170, 80), (200, 65), (240, 68), (265, 92),
    (268, 125), (258, 145), (260, 170), (245, 190), (270, 195), (300, 180), (330, 180), (330, 215),
    (305, 235), (286, 265), (288, 300), (240, 310), (180, 330), (155, 360), (150, 512), (0, 512))
_CHELSEA = (
    (40, 40), (60, 5), (110, 0), (330, 0), (395, 0), (390, 60), (370, 110), (372, 160), (360, 215),
    (340, 260), (330, 300), (0, 300), (0, 90))
_MOTORCYCLE = (
    (95, 200), (100, 230), (115, 245), (125, 290), (135, 340), (160, 385), (205, 402), (250, 392),
    (280, 370), (300, 355), (325, 362), (325, 400), (330, 435), (345, 435), (345, 395), (380, 375),
    (440, 370), (480, 350), (515, 345), (520, 380), (545, 420), (590, 448), (640, 450), (672, 425),
    (685, 385), (675, 335), (655, 300), (640, 280), (600, 262), (575, 270), (560, 240), (548, 205),
    (560, 185), (565, 150), (582, 125), (560, 110), (535, 98), (520, 78), (500, 85), (495, 100),
    (470, 125), (430, 130), (400, 140), (375, 150), (355, 175), (300, 190), (270, 175), (200, 160),
    (150, 155), (140, 175), (125, 195))
# The wooden table top right of the saucer in coffee.png (rows, columns): no cup, no saucer.
_WOOD = (slice(0, 400), slice(490, 600))

# Object kinds: (VOC class, how often). Person comes from two photographs.
KINDS = {
    "astronaut": ("person", 0.15), "cameraman": ("person", 0.15), "chelsea": ("cat", 0.175),
    "motorcycle": ("motorbike", 0.175), "horse": ("horse", 0.175), "table": ("diningtable", 0.175),
}
CLASSES = tuple(sorted({c for c, _ in KINDS.values()}, key=CLASS_NAMES.index))
# Horse coats: chestnut, bay, dark bay, black, grey.
_COATS = ((150, 80, 40), (120, 65, 35), (80, 48, 30), (45, 38, 35), (165, 160, 150))
# Grey texture photographs and the colour each is tinted to.
_TEXTURES = {"grass": (0.55, 0.9, 0.4), "gravel": (1.0, 0.94, 0.84), "brick": (1.05, 0.78, 0.72),
             "coins": (0.95, 0.95, 0.9)}


@dataclasses.dataclass
class Placed:
  """One pasted object: its pixels, where it went, and what it is."""
  kind: str
  class_id: int
  top: int
  left: int
  rgb: np.ndarray     # [h, w, 3] uint8
  alpha: np.ndarray   # [h, w] bool: the object's own pixels


@dataclasses.dataclass
class Scene:
  image: np.ndarray      # [H, W, 3] uint8, before JPEG
  mask: np.ndarray       # [H, W] uint8 class indices, 255 void
  instances: np.ndarray  # [H, W] int32: 0 background, k = objects[k - 1] (void band included)
  objects: list[Placed]


@functools.lru_cache(maxsize=None)
def _photos() -> dict[str, np.ndarray]:
  """The scikit-image photographs used (all ship with the package: nothing is downloaded)."""
  try:
    from skimage import data  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise MissingDataError("the VOC sample set is cut from scikit-image's photographs: "
                           "pip install scikit-image") from None
  camera = data.camera()
  return {
      "astronaut": data.astronaut(), "cameraman": np.stack([camera] * 3, -1),
      "chelsea": data.chelsea(), "motorcycle": data.stereo_motorcycle()[0],
      "horse": ~data.horse(), "moon": data.moon(), "coffee": data.coffee(),
      "rocket": data.rocket(), "grass": data.grass(), "gravel": data.gravel(),
      "brick": data.brick(), "coins": data.coins(),
  }


@functools.lru_cache(maxsize=None)
def _traced(kind: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
  """(photo crop [h, w, 3], outline mask [h, w] uint8 0/255, crop's (top, left)) of an object."""
  outline = {"astronaut": _ASTRONAUT, "cameraman": _CAMERAMAN, "chelsea": _CHELSEA,
             "motorcycle": _MOTORCYCLE}[kind]
  photo = _photos()[kind]
  canvas = Image.new("L", (photo.shape[1], photo.shape[0]), 0)
  ImageDraw.Draw(canvas).polygon(outline, fill=255)
  alpha = np.asarray(canvas)
  rows, cols = np.nonzero(alpha)
  box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
  return (np.ascontiguousarray(photo[box]), np.ascontiguousarray(alpha[box]),
          (int(rows.min()), int(cols.min())))


@functools.lru_cache(maxsize=None)
def _horse_silhouette() -> np.ndarray:
  horse = _photos()["horse"]
  rows, cols = np.nonzero(horse)
  return (horse[rows.min():rows.max() + 1, cols.min():cols.max() + 1] * 255).astype(np.uint8)


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bilinear (with box pre-reduction) resize of uint8 [h, w(, c)] to size (h, w)."""
  return np.asarray(Image.fromarray(array).resize((size[1], size[0]), Image.BILINEAR,
                                                   reducing_gap=2.0))


def _window(rng: np.random.Generator, photo: np.ndarray, aspect: float, min_frac: float
            ) -> np.ndarray:
  """A random crop of `photo` with width / height = aspect, at least min_frac of the largest."""
  h, w = photo.shape[:2]
  full_h = min(h, w / aspect)
  ch = full_h * rng.uniform(min_frac, 1.0)
  cw = min(w, ch * aspect)
  top = int(rng.integers(0, int(h - ch) + 1))
  left = int(rng.integers(0, int(w - cw) + 1))
  return photo[top:top + int(ch), left:left + int(cw)]


def _horse_coat(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
  """A coat: the moon photo's surface tinted to a horse colour, lit from above."""
  moon = _resize(_window(rng, _photos()["moon"], size[1] / size[0], 0.4), size).astype(np.float32)
  detail = moon / max(float(moon.mean()), 1.0)
  light = np.linspace(1.1, 0.8, size[0], dtype=np.float32)[:, None]
  coat = np.array(_COATS[rng.integers(len(_COATS))], np.float32)
  return ((0.5 + 0.5 * detail) * light)[..., None] * coat


def _table(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """A table seen from the front, slightly above: top, apron, legs, all of coffee.png's wood."""
  h, w = size
  top_h = h * rng.uniform(0.2, 0.35)
  apron = top_h + h * rng.uniform(0.06, 0.1)
  leg = w * rng.uniform(0.05, 0.08)
  inset = w * rng.uniform(0.08, 0.18)
  canvas = Image.new("L", (w, h), 0)
  draw = ImageDraw.Draw(canvas)
  draw.polygon([(inset, 0), (w - 1 - inset, 0), (w - 1, top_h), (0, top_h)], fill=255)  # top
  draw.rectangle([0, top_h, w - 1, apron], fill=170)                                 # apron
  back = apron + (h - apron) * 0.7
  for x in (inset + leg, w - 1 - inset - 2 * leg):                                   # back legs
    draw.rectangle([x, apron, x + leg, back], fill=120)
  for x in (leg * 0.3, w - 1 - leg * 1.3):                                           # front legs
    draw.rectangle([x, apron, x + leg, h - 1], fill=150)
  shade = np.asarray(canvas)
  wood = np.rot90(_photos()["coffee"][_WOOD])  # grain runs across the table
  wood = _resize(np.ascontiguousarray(_window(rng, wood, w / h, 0.6)), size).astype(np.float32)
  return wood * (shade[..., None] / 255.0), shade > 0


def cutout(kind: str, rng: np.random.Generator, size: tuple[int, int]
           ) -> tuple[np.ndarray, np.ndarray]:
  """An object of `kind` at size (h, w): (rgb [h, w, 3] uint8, alpha [h, w] bool)."""
  if kind == "table":
    rgb, alpha = _table(rng, size)
  elif kind == "horse":
    alpha = _resize(_horse_silhouette(), size) >= 128
    rgb = _horse_coat(rng, size)
  else:
    photo, outline, _ = _traced(kind)
    if size == outline.shape:
      rgb, alpha = photo, outline >= 128
    else:
      rgb, alpha = _resize(photo, size), _resize(outline, size) >= 128
  return np.clip(np.round(rgb), 0, 255).astype(np.uint8), alpha


def _shape(kind: str) -> tuple[int, int]:
  if kind == "table":
    return 100, 160
  if kind == "horse":
    return _horse_silhouette().shape
  return _traced(kind)[1].shape


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
  """Ground texture, under the rocket launch site's sky half the time; labelled background."""
  h, w = size
  photos = _photos()

  def texture(rows):
    name = list(_TEXTURES)[rng.integers(len(_TEXTURES))]
    grey = _resize(_window(rng, photos[name], w / rows, 0.35), (rows, w)).astype(np.float32)
    return grey[..., None] * np.array(_TEXTURES[name], np.float32) * rng.uniform(0.8, 1.15)

  if rng.random() < 0.5:
    image = texture(h)
  else:
    horizon = int(h * rng.uniform(0.3, 0.6))
    sky = _resize(_window(rng, photos["rocket"], w / horizon, 0.4), (horizon, w))
    image = np.concatenate([sky.astype(np.float32), texture(h - horizon)], axis=0)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _filter3(array: np.ndarray, reduce) -> np.ndarray:
  """3x3 max/min (np.maximum / np.minimum) with edge padding."""
  padded = np.pad(array, 1, mode="edge")
  h, w = array.shape
  out = padded[1:h + 1, 1:w + 1].copy()
  for dy in range(3):
    for dx in range(3):
      out = reduce(out, padded[dy:dy + h, dx:dx + w])
  return out


def _box_blur(image: np.ndarray) -> np.ndarray:
  padded = np.pad(image.astype(np.float32), ((1, 1), (1, 1), (0, 0)), mode="edge")
  h, w = image.shape[:2]
  total = sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
  return np.round(total / 9).astype(np.uint8)


def render_example(index: int, seed: int = 0) -> Scene:
  """Image `index` (0-based) of the sample set for `seed`."""
  rng = np.random.default_rng([seed, index])
  size = LANDSCAPE if rng.random() < 0.75 else LANDSCAPE[::-1]
  h, w = size
  image = _background(rng, size)
  instances = np.zeros(size, np.int32)
  kinds = list(KINDS)
  weights = np.array([KINDS[k][1] for k in kinds])
  objects: list[Placed] = []
  for _ in range(int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))):
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
    base_h, base_w = _shape(kind)
    area = rng.uniform(0.1, 0.45) * h * w
    oh = np.sqrt(area * base_h / base_w)
    scale = min(oh / base_h, 1.1 * h / base_h, 1.1 * w / base_w)
    oh, ow = max(8, int(round(base_h * scale))), max(8, int(round(base_w * scale)))
    rgb, alpha = cutout(kind, rng, (oh, ow))
    if rng.random() < 0.5:
      rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    top = int(rng.integers(-int(0.15 * oh), max(1, h - int(0.75 * oh))))
    left = int(rng.integers(-int(0.2 * ow), max(1, w - int(0.8 * ow))))
    objects.append(Placed(kind, CLASS_NAMES.index(KINDS[kind][0]), top, left,
                          np.ascontiguousarray(rgb), np.ascontiguousarray(alpha)))
    # The part of the object inside the image.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + oh, h), min(left + ow, w)
    if y1 <= y0 or x1 <= x0:
      continue
    inside = alpha[y0 - top:y1 - top, x0 - left:x1 - left]
    image[y0:y1, x0:x1][inside] = rgb[y0 - top:y1 - top, x0 - left:x1 - left][inside]
    instances[y0:y1, x0:x1][inside] = len(objects)
  class_of = np.array([0] + [o.class_id for o in objects], np.uint8)
  mask = class_of[instances]
  band = _filter3(instances, np.maximum) != _filter3(instances, np.minimum)
  mask[band] = IGNORE_LABEL
  image[band] = _box_blur(image)[band]
  return Scene(image, mask, instances, objects)


def _palette_png(indices: np.ndarray, path: str) -> None:
  img = Image.fromarray(indices.astype(np.uint8), "P")
  img.putpalette(PALETTE.tobytes())
  img.save(path)


def write_sample_set(out_dir: str, *, num_images: int = 400, seed: int = 0,
                     progress: bool = False) -> dict[str, Any]:
  """Writes VOC2012/{JPEGImages,SegmentationClass,SegmentationObject,ImageSets} under out_dir."""
  if num_images < 2:
    raise ValueError(f"need num_images >= 2 (one train and one val image), got {num_images}")
  root = os.path.join(out_dir, "VOC2012")
  folders = {k: os.path.join(root, k) for k in ("JPEGImages", "SegmentationClass",
                                                 "SegmentationObject")}
  for folder in folders.values():
    os.makedirs(folder, exist_ok=True)
  lists: dict[str, list[str]] = {"train": [], "val": []}
  present = {c: 0 for c in CLASSES}
  for i in tqdm(range(num_images), desc="composing scenes", disable=not progress, leave=False):
    image_id = f"2012_{i + 1:06d}"
    scene = render_example(i, seed)
    Image.fromarray(scene.image).save(os.path.join(folders["JPEGImages"], image_id + ".jpg"),
                                      quality=90)
    _palette_png(scene.mask, os.path.join(folders["SegmentationClass"], image_id + ".png"))
    # SegmentationObject: visible objects numbered 1, 2, ... in paint order, void as in the mask.
    visible = np.unique(scene.instances[scene.mask != IGNORE_LABEL])
    renumber = np.zeros(len(scene.objects) + 1, np.uint8)
    renumber[visible[visible > 0]] = np.arange(1, (visible > 0).sum() + 1)
    objects = renumber[scene.instances]
    objects[scene.mask == IGNORE_LABEL] = IGNORE_LABEL
    _palette_png(objects, os.path.join(folders["SegmentationObject"], image_id + ".png"))
    for c in np.unique(scene.mask[scene.mask != IGNORE_LABEL]):
      if CLASS_NAMES[c] in present:
        present[CLASS_NAMES[c]] += 1
    lists["val" if (i + 1) % VAL_EVERY == 0 else "train"].append(image_id)
  list_dir = os.path.join(root, "ImageSets", "Segmentation")
  os.makedirs(list_dir, exist_ok=True)
  for name, ids in (("train", lists["train"]), ("val", lists["val"]),
                    ("trainval", sorted(lists["train"] + lists["val"]))):
    with open(os.path.join(list_dir, name + ".txt"), "w") as f:
      f.write("".join(i + "\n" for i in ids))
  with open(os.path.join(out_dir, "README.md"), "w") as f:
    f.write(_README.format(n=num_images, seed=seed, train=len(lists["train"]),
                           val=len(lists["val"]), classes=", ".join(
                               f"{c} ({CLASS_NAMES.index(c)})" for c in CLASSES)))
  return {"num_images": num_images, "splits": {k: len(v) for k, v in lists.items()},
          "images_with": present}


_README = """# PASCAL VOC 2012-format sample set (cut from real photographs)

{n} scenes composed by `hcjax samples voc --seed {seed}` (hcjax/data/samples/voc.py) in VOC
2012's layout: VOC2012/JPEGImages/*.jpg (160x120 or 120x160, quality 90),
SegmentationClass/*.png and SegmentationObject/*.png (palette PNGs, 255 = void band) and
ImageSets/Segmentation/{{train,val,trainval}}.txt ({train} train, {val} val).

Classes (VOC indices): {classes}.
Everything else is background (0). Objects are cut from scikit-image's photographs (astronaut and
cameraman: person; chelsea: cat; stereo_motorcycle: motorbike) or are real shapes filled with a
photographed surface (horse.png's silhouette with a coat from moon.png; a table shape with
coffee.png's wooden table top), pasted over grass, gravel, brick, coins and the rocket launch
site. Masks are exact by construction.

Convert: `hcjax convert voc --src THIS_FOLDER/VOC2012 --out OUT`.
"""

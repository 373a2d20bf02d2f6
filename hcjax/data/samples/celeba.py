"""A deterministic, procedurally rendered CelebA look-alike in CelebA's exact on-disk format.

Cartoon faces (178x218, aligned like img_align_celeba) whose attributes are drawn, so labels are
true by construction: identities fix skin, face shape, nose, hair and sex; every picture of an
identity varies pose, lighting, background, expression and accessories. Landmarks are the true,
rendered positions of the eye centres, nose tip and mouth corners.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from hcjax.data.converters.celeba import ATTRIBUTE_NAMES

WIDTH, HEIGHT = 178, 218
SS = 2  # supersampling factor for anti-aliased edges
CENTER = (89.0, 122.0)  # face centre in the unposed frame
LANDMARK_HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
                   "leftmouth_y rightmouth_x rightmouth_y")

# Drawn so that a look at the picture decides them.
RENDERED_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young")
# "Attractive" is not drawable: it is a fixed function of drawn traits (young, smiling or made up,
# not chubby, not blurry).

SKIN = [(241, 205, 180), (224, 172, 135), (198, 140, 100), (150, 100, 70), (105, 70, 50)]
PALE = (250, 232, 222)
HAIR = {"Black_Hair": (28, 24, 22), "Brown_Hair": (105, 64, 34), "Blond_Hair": (232, 200, 120),
        "Gray_Hair": (178, 178, 182)}
HAIR_RATES = {"Black_Hair": 0.32, "Brown_Hair": 0.28, "Blond_Hair": 0.2, "Gray_Hair": 0.08}


def _identity_traits(seed: int, identity: int) -> dict[str, Any]:
  rng = np.random.default_rng([seed, 1, identity])
  male = rng.random() < 0.45
  young = rng.random() < 0.72
  hair_names = list(HAIR_RATES)
  probs = np.array([HAIR_RATES[h] for h in hair_names])
  if not young:
    probs[hair_names.index("Gray_Hair")] += 0.4
  hair = hair_names[rng.choice(len(hair_names), p=probs / probs.sum())]
  bald = male and not young and rng.random() < 0.35 or male and rng.random() < 0.04
  pale = rng.random() < 0.08
  return {
      "Male": male, "Young": young, "hair": hair if not bald else None, "Bald": bald,
      "skin": PALE if pale else SKIN[rng.integers(len(SKIN))], "Pale_Skin": pale,
      "Chubby": rng.random() < 0.12, "Oval_Face": rng.random() < 0.3,
      "Big_Nose": rng.random() < (0.35 if male else 0.12), "Pointy_Nose": rng.random() < 0.25,
      "Narrow_Eyes": rng.random() < 0.12, "Big_Lips": rng.random() < 0.22,
      "Arched_Eyebrows": (not male) and rng.random() < 0.55 or male and rng.random() < 0.08,
      "Bushy_Eyebrows": rng.random() < (0.3 if male else 0.08),
      "Wavy_Hair": rng.random() < (0.15 if male else 0.45),
      "Receding_Hairline": male and rng.random() < (0.25 if young else 0.5),
      "High_Cheekbones": rng.random() < 0.45,
      "Sideburns_base": male and rng.random() < 0.35,
      "beard_kind": (rng.choice(["none", "none", "shadow", "goatee", "mustache", "both"])
                     if male else "none"),
      "eye_colour": [(60, 40, 25), (40, 70, 110), (50, 90, 50), (25, 25, 25)][rng.integers(4)],
      "shirt": tuple(int(v) for v in rng.integers(30, 230, 3)),
      "face_rx": 37.0 + rng.uniform(-2, 2), "face_ry": 50.0 + rng.uniform(-2, 3),
  }


def _image_attributes(traits: dict[str, Any], rng: np.random.Generator) -> dict[str, bool]:
  male, young = traits["Male"], traits["Young"]
  a: dict[str, bool] = {}
  a["Male"], a["Young"], a["Bald"] = male, young, traits["Bald"]
  for h in HAIR:
    a[h] = traits["hair"] == h
  a["Pale_Skin"] = traits["Pale_Skin"]
  a["Chubby"] = traits["Chubby"]
  a["Double_Chin"] = traits["Chubby"] and not young or traits["Chubby"] and rng.random() < 0.3
  for k in ("Oval_Face", "Big_Nose", "Pointy_Nose", "Narrow_Eyes", "Big_Lips", "Arched_Eyebrows",
            "Bushy_Eyebrows", "Receding_Hairline", "High_Cheekbones"):
    a[k] = traits[k]
  a["Oval_Face"] = a["Oval_Face"] and not a["Chubby"]
  has_hair = traits["hair"] is not None
  a["Wavy_Hair"] = has_hair and traits["Wavy_Hair"]
  a["Straight_Hair"] = has_hair and not traits["Wavy_Hair"] and rng.random() < 0.7
  a["Wearing_Hat"] = rng.random() < 0.06
  a["Bangs"] = has_hair and not a["Wearing_Hat"] and rng.random() < (0.08 if male else 0.3)
  a["Smiling"] = rng.random() < 0.48
  a["Mouth_Slightly_Open"] = rng.random() < (0.6 if a["Smiling"] else 0.3)
  a["Eyeglasses"] = rng.random() < (0.1 if young else 0.25)
  a["Wearing_Lipstick"] = (not male) and rng.random() < 0.75
  a["Heavy_Makeup"] = a["Wearing_Lipstick"] and rng.random() < 0.55
  a["Rosy_Cheeks"] = (not male) and rng.random() < 0.12 or a["Heavy_Makeup"] and rng.random() < 0.2
  a["Wearing_Earrings"] = (not male) and rng.random() < 0.4
  a["Wearing_Necklace"] = (not male) and rng.random() < 0.25
  a["Wearing_Necktie"] = male and rng.random() < 0.15
  kind = traits["beard_kind"]
  shave = rng.random() < 0.2  # sometimes freshly shaven
  a["Mustache"] = not shave and kind in ("mustache", "both")
  a["Goatee"] = not shave and kind in ("goatee", "both")
  a["5_o_Clock_Shadow"] = male and not shave and (kind == "shadow" or rng.random() < 0.08) \
      and not (a["Mustache"] or a["Goatee"])
  a["No_Beard"] = not (a["Mustache"] or a["Goatee"] or a["5_o_Clock_Shadow"])
  a["Sideburns"] = traits["Sideburns_base"] and has_hair and not a["Wearing_Hat"]
  a["Bags_Under_Eyes"] = rng.random() < (0.1 if young else 0.45)
  a["Blurry"] = rng.random() < 0.05
  a["Attractive"] = (young and not a["Chubby"] and not a["Blurry"]
                     and (a["Smiling"] or a["Heavy_Makeup"]))
  return a


class _Pose:
  """Unposed face frame -> supersampled canvas: rotate + scale about the centre, then shift."""

  def __init__(self, rng: np.random.Generator):
    self.angle = math.radians(rng.uniform(-8, 8))
    self.scale = rng.uniform(0.94, 1.06)
    self.shift = rng.uniform(-6, 6, 2)

  def __call__(self, x: float, y: float) -> tuple[float, float]:
    dx, dy = x - CENTER[0], y - CENTER[1]
    c, s = math.cos(self.angle) * self.scale, math.sin(self.angle) * self.scale
    px = CENTER[0] + c * dx - s * dy + self.shift[0]
    py = CENTER[1] + s * dx + c * dy + self.shift[1]
    return px * SS, py * SS

  def points(self, pts) -> list[tuple[float, float]]:
    return [self(x, y) for x, y in pts]

  def pixel(self, x: float, y: float) -> tuple[float, float]:
    """Pixel-centre coordinates in the final 178x218 image."""
    px, py = self(x, y)
    return (px + 0.5) / SS - 0.5, (py + 0.5) / SS - 0.5


def _ellipse(cx, cy, rx, ry, start=0.0, end=360.0, n=40):
  return [(cx + rx * math.cos(math.radians(t)), cy + ry * math.sin(math.radians(t)))
          for t in np.linspace(start, end, n)]


def _shade(colour, factor):
  return tuple(int(max(0, min(255, c * factor))) for c in colour)


def _background(rng: np.random.Generator) -> Image.Image:
  w, h = WIDTH * SS, HEIGHT * SS
  a, b = rng.integers(40, 230, 3), rng.integers(40, 230, 3)
  t = np.linspace(0, 1, h)[:, None, None] if rng.random() < 0.5 else np.linspace(0, 1, w)[None, :, None]
  img = a * (1 - t) + b * t + np.zeros((h, w, 3))
  kind = rng.integers(3)
  if kind == 1:  # stripes
    period = rng.integers(12, 40)
    stripes = (np.arange(w)[None, :] // period % 2)[..., None]
    img = img * (0.85 + 0.15 * stripes)
  elif kind == 2:  # blotches
    small = rng.uniform(0.8, 1.2, (6, 5, 1))
    img = img * np.kron(small, np.ones((h // 6 + 1, w // 5 + 1, 1)))[:h, :w]
  return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def _render(traits: dict[str, Any], a: dict[str, bool], rng: np.random.Generator
            ) -> tuple[Image.Image, list[float], list[int]]:
  pose = _Pose(rng)
  img = _background(rng)
  d = ImageDraw.Draw(img)
  poly = lambda pts, fill, outline=None, width=1: d.polygon(
      pose.points(pts), fill=fill, outline=outline, width=width)
  line = lambda pts, fill, width: d.line(pose.points(pts), fill=fill, width=int(width * SS),
                                         joint="curve")
  cx, cy = CENTER
  rx = traits["face_rx"] * (1.15 if a["Chubby"] else 1.0) * (0.92 if a["Oval_Face"] else 1.0)
  ry = traits["face_ry"] * (1.06 if a["Oval_Face"] else 1.0)
  skin = traits["skin"]
  hair = HAIR.get(traits["hair"] or "", None)
  hair_top = cy - ry - (2 if a["Receding_Hairline"] else 8)

  # Shoulders and clothes.
  poly([(cx - 80, 218), (cx - 55, 184), (cx + 55, 184), (cx + 80, 218)], traits["shirt"])
  poly([(cx - 16, cy + ry - 12), (cx + 16, cy + ry - 12), (cx + 18, 190), (cx - 18, 190)],
       _shade(skin, 0.9))
  if a["Wearing_Necktie"]:
    tie = (170, 20, 30) if rng.random() < 0.5 else (20, 40, 150)
    poly([(cx - 6, 186), (cx + 6, 186), (cx + 9, 218), (cx, 222), (cx - 9, 218)], tie)
    poly([(cx - 14, 182), (cx + 14, 182), (cx + 6, 190), (cx - 6, 190)], (245, 245, 245))
  if a["Wearing_Necklace"]:
    for t in np.linspace(200, 340, 11):
      x, y = cx + 22 * math.cos(math.radians(t)), 180 - 10 * math.sin(math.radians(t))
      poly(_ellipse(x, y, 2.2, 2.2, n=10), (240, 215, 90))

  # Long hair behind the head (women), short back hair (men).
  if hair is not None:
    if not a["Male"]:
      outline = _ellipse(cx, cy - 8, rx + 16, ry + 10, 180, 360)
      left, right = [], []
      for y in np.linspace(cy - 8, cy + ry + 28, 12):
        wave = 4 * math.sin(y / 6) if a["Wavy_Hair"] else 0
        left.append((cx - rx - 14 + wave, y))
        right.append((cx + rx + 14 - wave, y))
      poly(outline + right + [(cx + rx - 4, cy + ry + 28), (cx - rx + 4, cy + ry + 28)]
           + left[::-1], hair)
    else:
      poly(_ellipse(cx, cy - 6, rx + 6, ry + 4, 180, 360) + [(cx + rx + 5, cy + 5),
                                                             (cx - rx - 5, cy + 5)], hair)

  # Ears and earrings.
  for side in (-1, 1):
    ex = cx + side * (rx - 2)
    poly(_ellipse(ex + side * 4, cy + 2, 6, 11), _shade(skin, 0.95))
    if a["Wearing_Earrings"]:
      poly(_ellipse(ex + side * 5, cy + 17, 3.2, 3.2, n=12), (245, 210, 60), (120, 90, 10))

  # Face, chin and jaw.
  face = _ellipse(cx, cy, rx, ry)
  poly(face, skin)
  if a["Double_Chin"]:
    line(_ellipse(cx, cy + ry - 4, rx * 0.45, 8, 20, 160, 12), _shade(skin, 0.75), 1.5)
  if a["5_o_Clock_Shadow"]:
    shadow = _ellipse(cx, cy + 12, rx * 0.92, ry - 12, 10, 170, 24)
    poly(shadow + [(cx + rx * 0.9, cy + 8), (cx - rx * 0.9, cy + 8)], _shade(skin, 0.72))
  if a["Sideburns"]:
    for side in (-1, 1):
      x = cx + side * (rx - 5)
      poly([(x - 3, cy - 18), (x + 3, cy - 18), (x + 3 - side * 2, cy + 14),
            (x - 3 - side * 2, cy + 14)], hair)
  if a["High_Cheekbones"]:
    for side in (-1, 1):
      line([(cx + side * (rx - 6), cy + 4), (cx + side * (rx - 16), cy + 16)],
           _shade(skin, 0.82), 1.2)
  if a["Rosy_Cheeks"]:
    for side in (-1, 1):
      poly(_ellipse(cx + side * 21, cy + 16, 8, 5), (236, 120, 125))
  if not a["Young"]:
    for k in range(3):
      line(_ellipse(cx, cy - 28 + 4 * k, 16, 2, 200, 340, 8), _shade(skin, 0.78), 0.8)

  # Hair on top: hat, baldness, receding hairline, bangs.
  if a["Wearing_Hat"]:
    hat = tuple(int(v) for v in rng.integers(20, 220, 3))
    poly(_ellipse(cx, cy - ry + 10, rx + 6, 30, 180, 360) + [(cx + rx + 6, cy - ry + 10)], hat)
    poly([(cx - rx - 18, cy - ry + 8), (cx + rx + 18, cy - ry + 8), (cx + rx + 18, cy - ry + 14),
          (cx - rx - 18, cy - ry + 14)], _shade(hat, 0.7))
  elif hair is not None:
    top = _ellipse(cx, cy - 10, rx + 3, ry - 2, 185, 355, 30)
    inner = _ellipse(cx, hair_top + 24, rx * (0.55 if a["Receding_Hairline"] else 0.8), 18,
                     345, 195, 20)
    poly(top + inner, hair)
    if a["Bangs"]:
      fringe = [(cx - rx + 6, cy - 34)]
      for k, x in enumerate(np.linspace(cx - rx + 6, cx + rx - 6, 9)):
        fringe.append((x, cy - 22 - (4 if k % 2 else 0)))
      fringe += [(cx + rx - 6, cy - 34), (cx + rx - 10, hair_top + 10), (cx - rx + 10, hair_top + 10)]
      poly(fringe, hair)
  elif a["Bald"]:
    line(_ellipse(cx - 8, cy - ry + 10, 10, 4, 200, 300, 8), _shade(skin, 1.15), 2)

  # Eyebrows, eyes, bags, glasses.
  eye_y, eye_dx = 110.0, 19.0
  brow_colour = hair or (70, 60, 55)
  for side in (-1, 1):
    ex = cx + side * eye_dx
    lift = 5 if a["Arched_Eyebrows"] else 1
    brow = [(ex - 9, eye_y - 9), (ex, eye_y - 9 - lift), (ex + 9, eye_y - 9)]
    line(brow, brow_colour, 3.2 if a["Bushy_Eyebrows"] else 1.4)
    eh = 2.6 if a["Narrow_Eyes"] else 4.6
    if a["Heavy_Makeup"]:
      poly(_ellipse(ex, eye_y - 3, 10, 5.5, 180, 360) + [(ex + 10, eye_y)], (120, 70, 140))
    poly(_ellipse(ex, eye_y, 8, eh), (250, 250, 250), (60, 40, 30))
    poly(_ellipse(ex, eye_y, 3.2, min(3.2, eh), n=16), traits["eye_colour"])
    poly(_ellipse(ex, eye_y, 1.5, min(1.5, eh), n=12), (5, 5, 5))
    if a["Bags_Under_Eyes"]:
      line(_ellipse(ex, eye_y + 5, 7, 3, 20, 160, 10), _shade(skin, 0.7), 1.2)
    if a["Eyeglasses"]:
      line(_ellipse(ex, eye_y, 12, 9, 0, 360, 30), (20, 20, 25), 1.8)
  if a["Eyeglasses"]:
    line([(cx - eye_dx + 12, eye_y), (cx + eye_dx - 12, eye_y)], (20, 20, 25), 1.6)
    for side in (-1, 1):
      line([(cx + side * (eye_dx + 12), eye_y), (cx + side * (rx + 2), eye_y - 2)], (20, 20, 25), 1.4)

  # Nose.
  nose_y = 132.0
  nw = 9 if a["Big_Nose"] else 5.5
  tip = nose_y + (3 if a["Pointy_Nose"] else 0)
  line([(cx - 1, eye_y + 4), (cx - nw * 0.5, tip - 4), (cx - nw, tip), (cx, tip + 1.5),
        (cx + nw, tip), (cx + nw * 0.5, tip - 4)], _shade(skin, 0.65), 1.3)

  # Mouth, lips, facial hair.
  mouth_y, mouth_dx = 152.0, 15.0
  lips = (200, 25, 45) if a["Wearing_Lipstick"] else _shade(skin, 0.7)
  thick = 3.5 if a["Big_Lips"] else 2.0
  curve = 5.0 if a["Smiling"] else 0.5
  # A smile lifts the corners above the middle of the mouth.
  upper = [(cx + t * mouth_dx, mouth_y - curve * t * t) for t in np.linspace(-1, 1, 13)]
  opening = 5.0 if a["Mouth_Slightly_Open"] else 0.0
  lower = [(x, y + opening * (1 - ((x - cx) / mouth_dx) ** 2) + 0.5) for x, y in upper]
  if opening:
    poly(upper + lower[::-1], (70, 20, 25))
    if a["Smiling"]:
      poly([(x, y) for x, y in upper[3:10]] + [(x, y + 2) for x, y in upper[9:2:-1]],
           (245, 245, 240))
  line(upper, lips, thick)
  line(lower, lips, thick)
  if a["Mustache"]:
    poly([(cx - 14, mouth_y - 8), (cx, mouth_y - 10), (cx + 14, mouth_y - 8), (cx + 16, mouth_y - 3),
          (cx, mouth_y - 5), (cx - 16, mouth_y - 3)], hair or (60, 50, 45))
  if a["Goatee"]:
    poly(_ellipse(cx, mouth_y + 17, 9, 9, n=20), hair or (60, 50, 45))

  image = img.resize((WIDTH, HEIGHT), Image.LANCZOS)
  # Lighting: a brightness ramp and a colour cast.
  arr = np.asarray(image, np.float32)
  ramp = np.linspace(rng.uniform(0.75, 1.1), rng.uniform(0.75, 1.1), WIDTH)[None, :, None]
  arr = arr * ramp * rng.uniform(0.92, 1.08, 3)[None, None, :]
  image = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
  if a["Blurry"]:
    image = image.filter(ImageFilter.GaussianBlur(2.2))
  corners = [pose.pixel(cx - eye_dx, eye_y), pose.pixel(cx + eye_dx, eye_y), pose.pixel(cx, tip + 1.5),
             pose.pixel(cx - mouth_dx, upper[0][1]), pose.pixel(cx + mouth_dx, upper[-1][1])]
  landmarks = [float(v) for xy in corners for v in xy]
  box_pts = [pose.pixel(x, y) for x, y in ((cx - rx - 8, hair_top), (cx + rx + 8, hair_top),
                                           (cx - rx - 8, cy + ry + 4), (cx + rx + 8, cy + ry + 4))]
  xs, ys = [p[0] for p in box_pts], [p[1] for p in box_pts]
  bbox = [int(round(min(xs))), int(round(min(ys))), int(round(max(xs) - min(xs))),
          int(round(max(ys) - min(ys)))]
  return image, landmarks, bbox


def render_example(index: int, num_identities: int, seed: int = 0
                   ) -> tuple[Image.Image, dict[str, bool], list[float], list[int], int]:
  """Image `index` (0-based): (picture, attributes, landmarks [10] float, bbox, identity)."""
  identity = index % num_identities + 1
  traits = _identity_traits(seed, identity)
  rng = np.random.default_rng([seed, 2, index])
  attributes = _image_attributes(traits, rng)
  image, landmarks, bbox = _render(traits, attributes, rng)
  return image, attributes, landmarks, bbox, identity


def _partition(identity: int, num_identities: int) -> int:
  """Identity-disjoint 80/10/10 split, as CelebA's."""
  fraction = (identity - 1) / num_identities
  return 0 if fraction < 0.8 else (1 if fraction < 0.9 else 2)


def write_sample_set(out_dir: str, num_images: int = 3000, num_identities: int = 300,
                     seed: int = 0, progress: bool = False) -> dict[str, Any]:
  """Writes img_align_celeba/ and the five annotation files; returns a summary."""
  if num_images < 1 or num_identities < 3:
    raise ValueError(f"need num_images >= 1 and num_identities >= 3, got {num_images}, {num_identities}")
  num_identities = min(num_identities, max(3, num_images // 3))
  image_dir = os.path.join(out_dir, "img_align_celeba")
  os.makedirs(image_dir, exist_ok=True)
  attr_rows, part_rows, lm_rows, id_rows, bbox_rows = [], [], [], [], []
  splits = {0: 0, 1: 0, 2: 0}
  for i in tqdm(range(num_images), desc="rendering faces", disable=not progress, leave=False):
    name = f"{i + 1:06d}.jpg"
    image, attributes, landmarks, bbox, identity = render_example(i, num_identities, seed)
    image.save(os.path.join(image_dir, name), quality=90)
    attr_rows.append(name + " " + " ".join(f"{1 if attributes[n] else -1:2d}" for n in ATTRIBUTE_NAMES))
    split = _partition(identity, num_identities)
    splits[split] += 1
    part_rows.append(f"{name} {split}")
    lm_rows.append(f"{name:<10}" + "".join(f"{int(round(v)):>6d}" for v in landmarks))
    id_rows.append(f"{name} {identity}")
    bbox_rows.append(f"{name:<10}" + "".join(f"{v:>6d}" for v in bbox))
  n = str(num_images)
  _write_lines(os.path.join(out_dir, "list_attr_celeba.txt"),
               [n, " ".join(ATTRIBUTE_NAMES) + " "] + attr_rows)
  _write_lines(os.path.join(out_dir, "list_eval_partition.txt"), part_rows)
  _write_lines(os.path.join(out_dir, "list_landmarks_align_celeba.txt"), [n, LANDMARK_HEADER] + lm_rows)
  _write_lines(os.path.join(out_dir, "identity_CelebA.txt"), id_rows)
  # Boxes are in the aligned image's own coordinates (the real file's are in-the-wild ones).
  _write_lines(os.path.join(out_dir, "list_bbox_celeba.txt"),
               [n, "image_id x_1 y_1 width height"] + bbox_rows)
  with open(os.path.join(out_dir, "README.md"), "w") as f:
    f.write(_README.format(n=num_images, ids=num_identities, seed=seed,
                           rendered=", ".join(RENDERED_ATTRIBUTES)))
  return {"num_images": num_images, "num_identities": num_identities,
          "splits": {"train": splits[0], "validation": splits[1], "test": splits[2]}}


def _write_lines(path: str, lines: list[str]) -> None:
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


_README = """# CelebA-format sample set (rendered)

{n} cartoon faces of {ids} identities, rendered by `hcjax samples celeba --seed {seed}`
(hcjax/data/samples/celeba.py). The layout and file formats are CelebA's (aligned, 178x218):
img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt (identity-disjoint 0/1/2),
list_landmarks_align_celeba.txt (true rendered eye centres, nose tip, mouth corners),
identity_CelebA.txt and list_bbox_celeba.txt (head boxes in the aligned image's coordinates).

Drawn attributes (labels are true by construction): {rendered}.
"Attractive" cannot be drawn: it is a fixed function of drawn traits.
"""

"""A deterministic, procedurally rendered DeepFashion look-alike: the three benchmarks' files.

Garments of 13 DeepFashion categories (upper: Blazer, Blouse, Hoodie, Tank, Tee; lower: Jeans,
Joggers, Shorts, Skirt; full: Coat, Dress, Jumpsuit, Romper) are drawn worn by a simple figure
(head, hair, arms, legs, shoes, a plain second garment) or laid flat, on plain, studio or
patterned backgrounds. Every label is true by construction:
- category and clothes type (1 upper, 2 lower, 3 full; DeepFashion's type codes and names);
- 61 attributes of DeepFashion's five types, each drawn: texture (solid, striped, polka dot,
  floral, plaid, chevron, graphic print, colorblock, camo), fabric (cotton, denim twill, knit
  ribs, leather sheen, lace holes, sheer see-through, satin gloss), shape (sleeve length, fit,
  top length, skirt length, silhouette, leg width), part (neckline, collar, lapel, hood, buttons,
  zipper, pockets, belt, drawstring, ribbed cuffs, ruffle, pleats) and style (the main colour's
  name; summer / sporty / formal / boho are fixed functions of drawn traits, as CelebA's
  "Attractive" in samples/celeba.py). About 4% of the list_attr_img values are 0 (unknown);
- the 8 canonical landmarks (converters/deepfashion.py LANDMARK_NAMES) where the clothes type has
  them, at their true rendered positions: collars at the neckline's ends on the shoulder seam,
  sleeves at the middle of the cuff (sleeveless: the armhole's innermost point), waistlines at
  the waist's sides (lower: the waistband's top corners), hems at the hem's corners (trousers and
  shorts: the middle of each leg opening). "Left" is the wearer's left: on the image's right in a
  frontal view (a mirrored picture swaps the pairs, as a horizontal flip with FLIP_PAIRS does).
  Visibility: 2 truncated when the (rounded) position lies outside the image (the position is still
  the true one), else 1 occluded when at least half of the garment part's own area within 2 px of
  it is covered by something drawn later (an arm, a hand, hair, the second garment, the garment's
  own sleeve), else 0 visible;
- bounding boxes: the garment's whole drawn extent (occluded parts included) clipped to the image,
  x_1 y_1 x_2 y_2 = first and last covered pixel column / row;
- item identities: an item fixes garment, colours, pattern, model (figure) and second garment;
  each view varies pose (arms down, on the hip, across the body; legs), hair over the shoulders,
  a mirrored picture, scale, crop, rotation, a turned (squeezed) or perspective view, background
  and lighting.
Pictures are drawn supersampled (SS x SS) and box-filtered, as samples/celeba.py does.

`write_sample_set(out_dir)` writes the three benchmarks in their original layouts, each a folder
to pass as `hcjax convert deepfashion --benchmark <b> --src <out_dir>/<b>`:
  category/   img/<Title>_<Category>/img_NNNNNNNN.jpg (long side 128), Anno/list_category_cloth.txt,
              list_category_img.txt, list_attr_cloth.txt, list_attr_img.txt, list_bbox.txt,
              list_landmarks.txt; Eval/list_eval_partition.txt (train / val / test 70/15/15)
  inshop/     img/{MEN,WOMEN}/<Category>/id_NNNNNNNN/VV_P_<pose>.jpg (128x128, 2-6 views an item),
              Anno/list_bbox_inshop.txt, list_landmarks_inshop.txt, list_item_inshop.txt;
              Eval/list_eval_partition.txt: 3 items of every 5 train (1, 3, 4, 6, 8, 9, ...),
              the others split into query (the first half of their views) and gallery
  landmarks/  img/img_NNNNNNNN.jpg (long side 160), Anno/list_landmarks.txt, list_bbox.txt;
              Eval/list_eval_partition.txt (train / val / test 70/15/15)
Only the 13 drawn categories are listed in list_category_cloth.txt (labels 1..13; the real file
lists 50: DEEPFASHION_LABELS gives each one's real label) and only the 61 drawn attributes in
list_attr_cloth.txt (the real one lists 1,000; the converter takes any number).
"""

from __future__ import annotations

import dataclasses
import math
import os
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from hcjax.data.converters.deepfashion import (BENCHMARKS, FLIP_PAIRS, LANDMARK_SLOTS,
                                               NUM_LANDMARKS, OCCLUDED, TRUNCATED, VISIBLE)

SS = 2                    # supersampling factor
NUM_IMAGES = 2000         # default total over the three benchmarks
SHARES = {"category": 0.45, "inshop": 0.30, "landmarks": 0.25}
SIZES = {"category": ((128, 128), (112, 128), (96, 128), (128, 112)),  # (width, height)
         "inshop": ((128, 128),),
         "landmarks": ((160, 160), (120, 160), (160, 120))}
_CODES = {"category": 1, "inshop": 2, "landmarks": 3}
UNKNOWN_RATE = 0.04       # list_attr_img values written as 0 (unknown)

CATEGORIES = (("Blazer", 1), ("Blouse", 1), ("Hoodie", 1), ("Tank", 1), ("Tee", 1),
              ("Jeans", 2), ("Joggers", 2), ("Shorts", 2), ("Skirt", 2),
              ("Coat", 3), ("Dress", 3), ("Jumpsuit", 3), ("Romper", 3))
CATEGORY_NAMES = tuple(n for n, _ in CATEGORIES)
# The category's 1-based label in the real 50-line list_category_cloth.txt.
DEEPFASHION_LABELS = {"Blazer": 2, "Blouse": 3, "Hoodie": 10, "Tank": 17, "Tee": 18, "Jeans": 26,
                      "Joggers": 29, "Shorts": 32, "Skirt": 33, "Coat": 39, "Dress": 41,
                      "Jumpsuit": 42, "Romper": 48}
TEXTURES = ("solid", "striped", "polka dot", "floral", "plaid", "chevron", "graphic",
            "colorblock", "camo")
FABRICS = ("cotton", "denim", "knit", "leather", "lace", "sheer", "satin")
SHAPES = ("sleeveless", "short sleeve", "long sleeve", "fitted", "loose", "cropped", "longline",
          "mini", "midi", "maxi", "a-line", "pencil", "skinny", "wide-leg")
PARTS = ("crew neck", "v-neck", "scoop neck", "collar", "lapel", "hood", "buttons", "zipper",
         "pockets", "belt", "drawstring", "ribbed cuffs", "ruffle", "pleated")
COLOURS = {"black": (34, 34, 38), "white": (238, 236, 230), "grey": (135, 137, 142),
           "red": (185, 35, 45), "pink": (236, 150, 178), "orange": (232, 128, 45),
           "yellow": (238, 205, 70), "green": (55, 135, 75), "navy": (32, 42, 90),
           "blue": (55, 105, 190), "purple": (118, 62, 150), "brown": (112, 72, 42),
           "beige": (214, 194, 158)}
STYLES = tuple(COLOURS) + ("summer", "sporty", "formal", "boho")
ATTRIBUTES = tuple([(n, 1) for n in TEXTURES] + [(n, 2) for n in FABRICS] +
                   [(n, 3) for n in SHAPES] + [(n, 4) for n in PARTS] + [(n, 5) for n in STYLES])
ATTRIBUTE_NAMES = tuple(n for n, _ in ATTRIBUTES)

# in-shop: pose type (list_bbox_inshop.txt) -> the word in the image name.
POSE_NAMES = {1: "front", 2: "side", 4: "full", 5: "additional", 6: "flat"}
INSHOP_FOLDERS = {
    "Blazer": ("Suiting", "Jackets_Coats"), "Blouse": ("Shirts_Polos", "Blouses_Shirts"),
    "Hoodie": ("Sweatshirts_Hoodies",) * 2, "Tank": ("Tees_Tanks",) * 2,
    "Tee": ("Tees_Tanks",) * 2, "Jeans": ("Denim",) * 2, "Joggers": ("Pants",) * 2,
    "Shorts": ("Shorts",) * 2, "Skirt": ("Skirts",) * 2, "Coat": ("Jackets_Vests", "Jackets_Coats"),
    "Dress": ("Dresses",) * 2, "Jumpsuit": ("Rompers_Jumpsuits",) * 2,
    "Romper": ("Rompers_Jumpsuits",) * 2}

# --- garment designs ----------------------------------------------------------------------------

# Per category: probability tables of the drawn choices (neck: neckline, parts: independent).
_SPECS: dict[str, dict[str, Any]] = {
    "Blazer": dict(sleeve={"long": 1}, neck={"lapel": 1}, fit={"fitted": .8, "loose": .2},
                   length={"regular": .85, "longline": .15},
                   fabric={"cotton": .6, "knit": .1, "leather": .15, "satin": .15},
                   texture={"solid": .6, "plaid": .2, "striped": .15, "polka dot": .05},
                   parts={"buttons": 1, "pockets": .7}, female=.5),
    "Blouse": dict(sleeve={"long": .6, "short": .4}, neck={"collar": .55, "v-neck": .45},
                   fit={"loose": .75, "fitted": .25}, length={"regular": .85, "longline": .15},
                   fabric={"sheer": .3, "satin": .25, "cotton": .35, "lace": .1},
                   texture={"solid": .3, "floral": .2, "polka dot": .15, "striped": .15,
                            "plaid": .1, "chevron": .1},
                   parts={"buttons": .85, "ruffle": .2, "pockets": .1}, female=.85),
    "Hoodie": dict(sleeve={"long": 1}, neck={"hood": 1}, fit={"loose": .8, "fitted": .2},
                   length={"regular": .8, "cropped": .2}, fabric={"knit": .7, "cotton": .3},
                   texture={"solid": .5, "graphic": .2, "colorblock": .15, "camo": .1,
                            "striped": .05},
                   parts={"drawstring": .8, "ribbed cuffs": 1, "pockets": .75, "zipper": .4},
                   female=.5),
    "Tank": dict(sleeve={"none": 1}, neck={"scoop": .5, "v-neck": .3, "crew": .2},
                 fit={"fitted": .6, "loose": .4}, length={"regular": .7, "cropped": .3},
                 fabric={"cotton": .45, "knit": .25, "satin": .15, "lace": .15},
                 texture={"solid": .35, "striped": .2, "floral": .15, "polka dot": .1,
                          "graphic": .1, "chevron": .1},
                 parts={"ruffle": .15}, female=.7),
    "Tee": dict(sleeve={"short": 1}, neck={"crew": .6, "v-neck": .3, "scoop": .1},
                fit={"fitted": .5, "loose": .5}, length={"regular": .8, "cropped": .2},
                fabric={"cotton": .65, "knit": .35},
                texture={"solid": .3, "striped": .2, "graphic": .25, "polka dot": .05,
                         "floral": .05, "colorblock": .1, "camo": .05},
                parts={"pockets": .15}, female=.5),
    "Jeans": dict(leg={"skinny": .4, "straight": .35, "wide-leg": .25}, fabric={"denim": 1},
                  texture={"solid": .9, "colorblock": .05, "camo": .05},
                  parts={"pockets": 1, "buttons": .85, "belt": .3}, female=.5),
    "Joggers": dict(leg={"tapered": 1}, fabric={"knit": .6, "cotton": .3, "satin": .1},
                    texture={"solid": .6, "camo": .15, "striped": .15, "colorblock": .1},
                    parts={"drawstring": .85, "ribbed cuffs": 1, "pockets": .5}, female=.5),
    "Shorts": dict(leg={"straight": .5, "wide-leg": .3, "skinny": .2}, shorts=True,
                   fabric={"denim": .4, "cotton": .45, "leather": .05, "lace": .05, "knit": .05},
                   texture={"solid": .5, "striped": .15, "floral": .1, "plaid": .1,
                            "polka dot": .05, "camo": .1},
                   parts={"pockets": .7, "buttons": .5, "belt": .2, "drawstring": .15},
                   female=.6),
    "Skirt": dict(length={"mini": .4, "midi": .35, "maxi": .25}, silhouette={"a-line": .65,
                                                                             "pencil": .35},
                  fabric={"cotton": .35, "denim": .15, "leather": .15, "lace": .1, "satin": .15,
                          "sheer": .1},
                  texture={"solid": .4, "floral": .15, "plaid": .15, "polka dot": .1,
                           "striped": .1, "chevron": .1},
                  parts={"pleated": .3, "belt": .2, "buttons": .1, "pockets": .1, "ruffle": .15},
                  female=1),
    "Coat": dict(sleeve={"long": 1}, neck={"lapel": .7, "collar": .3},
                 fit={"loose": .6, "fitted": .4}, length={"knee": 1},
                 fabric={"cotton": .65, "leather": .2, "knit": .15},
                 texture={"solid": .65, "plaid": .25, "camo": .05, "striped": .05},
                 parts={"buttons": 1, "belt": .35, "pockets": .8}, female=.5),
    "Dress": dict(sleeve={"none": .45, "short": .35, "long": .2},
                  neck={"scoop": .3, "v-neck": .3, "crew": .25, "collar": .15},
                  fit={"fitted": .6, "loose": .4}, length={"mini": .35, "midi": .4, "maxi": .25},
                  silhouette={"a-line": .7, "pencil": .3},
                  fabric={"cotton": .3, "satin": .2, "lace": .2, "sheer": .15, "knit": .1,
                          "denim": .05},
                  texture={"solid": .3, "floral": .25, "polka dot": .12, "striped": .12,
                           "plaid": .06, "chevron": .08, "colorblock": .07},
                  parts={"belt": .25, "ruffle": .2, "pleated": .15, "zipper": .05}, female=1),
    "Jumpsuit": dict(sleeve={"none": .4, "short": .3, "long": .3},
                     neck={"v-neck": .4, "crew": .2, "scoop": .2, "collar": .2},
                     fit={"loose": .6, "fitted": .4},
                     leg={"wide-leg": .5, "straight": .3, "skinny": .2},
                     fabric={"cotton": .4, "denim": .2, "satin": .2, "knit": .1, "leather": .1},
                     texture={"solid": .5, "floral": .15, "striped": .15, "polka dot": .1,
                              "camo": .1},
                     parts={"belt": .4, "buttons": .3, "zipper": .2, "pockets": .4}, female=.9),
    "Romper": dict(sleeve={"none": .5, "short": .5},
                   neck={"v-neck": .35, "scoop": .35, "crew": .15, "collar": .15},
                   fit={"loose": .6, "fitted": .4}, leg={"straight": .6, "wide-leg": .4},
                   shorts=True,
                   fabric={"cotton": .5, "denim": .15, "lace": .1, "satin": .15, "knit": .1},
                   texture={"solid": .3, "floral": .3, "striped": .15, "polka dot": .15,
                            "plaid": .1},
                   parts={"belt": .3, "ruffle": .2, "buttons": .2, "pockets": .2}, female=1),
}
_NECK_ATTRIBUTE = {"crew": "crew neck", "v-neck": "v-neck", "scoop": "scoop neck",
                   "collar": "collar", "lapel": "lapel", "hood": "hood"}
_DENIM = {"navy": (42, 62, 110), "blue": (78, 112, 165), "black": (44, 44, 50),
          "white": (226, 228, 230)}
_LEATHER = ("black", "brown", "red", "beige", "navy")
_CAMO = ((88, 98, 58), (158, 150, 108), (96, 72, 46), (44, 50, 36))
_NEUTRAL = ((34, 34, 38), (40, 48, 80), (185, 168, 125), (120, 122, 128), (60, 80, 120),
            (238, 236, 230), (200, 190, 175))
_SKIN = ((241, 205, 180), (224, 172, 135), (198, 140, 100), (150, 100, 70), (105, 70, 50))
_HAIR = ((28, 24, 22), (105, 64, 34), (232, 200, 120), (150, 60, 30), (170, 170, 174))
_SHOES = ((30, 30, 32), (90, 60, 40), (236, 236, 236), (150, 30, 40))


def _pick(rng: np.random.Generator, table: dict[str, float]) -> str:
  keys = list(table)
  p = np.array([table[k] for k in keys], np.float64)
  return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _luma(c) -> float:
  return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _shade(c, f: float) -> tuple[int, int, int]:
  return tuple(int(max(0, min(255, round(v * f)))) for v in c)


@dataclasses.dataclass
class Item:
  """One garment (an in-shop item identity) and the model wearing it."""
  benchmark: str
  index: int                      # 1-based within the benchmark
  seed: int
  category: int                   # 0-based index into CATEGORIES
  design: dict[str, Any]
  figure: dict[str, Any]
  attributes: dict[str, bool]     # the truth, before unknowns are written

  @property
  def category_name(self) -> str:
    return CATEGORIES[self.category][0]

  @property
  def clothes_type(self) -> int:
    return CATEGORIES[self.category][1]


def _category_of(benchmark: str, index: int, seed: int) -> int:
  """Balanced categories: every block of 13 items holds each category once."""
  n = len(CATEGORIES)
  perm = np.random.default_rng([seed, _CODES[benchmark], 99, (index - 1) // n]).permutation(n)
  return int(perm[(index - 1) % n])


def _colours(rng: np.random.Generator, design: dict[str, Any]) -> None:
  fabric, texture = design["fabric"], design["texture"]
  names = list(COLOURS)
  if fabric == "denim":
    name = _pick(rng, {"navy": .45, "blue": .35, "black": .12, "white": .08})
    c1 = _DENIM[name]
  elif fabric == "leather":
    name = _LEATHER[rng.integers(len(_LEATHER))]
    c1 = COLOURS[name]
  elif texture == "camo":
    name, c1 = "green", _CAMO[0]
  else:
    name = names[rng.integers(len(names))]
    c1 = COLOURS[name]
  jitter = rng.uniform(0.93, 1.06, 3)
  c1 = tuple(int(min(255, v * j)) for v, j in zip(c1, jitter))
  others = [n for n in names if abs(_luma(COLOURS[n]) - _luma(c1)) > 60]
  c2 = COLOURS[others[rng.integers(len(others))]]
  rest = [n for n in names if COLOURS[n] not in (c1, c2) and n != name]
  c3 = COLOURS[rest[rng.integers(len(rest))]]
  design.update(colour=name, c1=c1, c2=c2, c3=c3)


def _design(category: str, rng: np.random.Generator) -> dict[str, Any]:
  spec = _SPECS[category]
  ctype = dict(CATEGORIES)[category]
  d: dict[str, Any] = {"category": category, "type": ctype}
  d["sleeve"] = _pick(rng, spec["sleeve"]) if "sleeve" in spec else None
  d["neck"] = _pick(rng, spec["neck"]) if "neck" in spec else None
  d["fit"] = _pick(rng, spec["fit"]) if "fit" in spec else None
  d["length"] = _pick(rng, spec["length"]) if "length" in spec else None
  d["silhouette"] = _pick(rng, spec["silhouette"]) if "silhouette" in spec else None
  d["leg"] = _pick(rng, spec["leg"]) if "leg" in spec else None
  d["shorts"] = bool(spec.get("shorts"))
  d["fabric"] = _pick(rng, spec["fabric"])
  d["texture"] = _pick(rng, spec["texture"])
  parts = {p: bool(rng.random() < q) for p, q in spec.get("parts", {}).items()}
  d["parts"] = {p: parts.get(p, False) for p in ("buttons", "zipper", "pockets", "belt",
                                                  "drawstring", "ribbed cuffs", "ruffle",
                                                  "pleated")}
  if d["texture"] == "graphic":
    d["parts"]["zipper"] = False
  if d["silhouette"] == "pencil":
    if d["length"] == "maxi":
      d["silhouette"] = "a-line"
    d["parts"]["pleated"] = False
  if category == "Blouse" and d["neck"] == "collar":
    d["parts"]["buttons"] = True
  if category == "Dress" and d["neck"] == "collar":
    d["parts"]["buttons"] = True  # a shirt dress
  if d["parts"]["zipper"] and category in ("Dress", "Jumpsuit"):
    d["parts"]["buttons"] = False
  _colours(rng, d)
  # Pattern parameters (in body units; the figure is ~210 units tall).
  d["period"] = float(rng.uniform(4.5, 8.0))
  d["duty"] = float(rng.uniform(0.35, 0.6))
  d["vertical"] = bool(rng.random() < 0.3) or category == "Joggers"
  d["dot"] = float(rng.uniform(5.5, 8.5))
  d["flower"] = float(rng.uniform(9.0, 13.0))
  d["phase"] = rng.uniform(0, 10, 2).tolist()
  d["split"] = float(rng.uniform(22, 40))
  d["camo"] = rng.normal(size=(26, 18)).tolist()
  d["graphic"] = ("star", "circle", "heart", "triangle", "band")[int(rng.integers(5))]
  d["graphic_size"] = float(rng.uniform(7, 11))
  d["buttons_n"] = int(rng.integers(4, 7))
  d["double"] = bool(rng.random() < 0.5)
  d["belt_colour"] = ((30, 28, 26), (92, 58, 32), (165, 120, 70))[int(rng.integers(3))]
  d["hem_drop"] = float(rng.uniform(0, 4))
  d["contrast"] = (240, 240, 236) if _luma(d["c1"]) < 120 else (30, 30, 34)
  return d


def _attributes(d: dict[str, Any]) -> dict[str, bool]:
  a = {n: False for n in ATTRIBUTE_NAMES}
  a[d["texture"]] = True
  a[d["fabric"]] = True
  ctype = d["type"]
  if ctype != 2:
    a[{"none": "sleeveless", "short": "short sleeve", "long": "long sleeve"}[d["sleeve"]]] = True
    a[d["fit"]] = True
    a[_NECK_ATTRIBUTE[d["neck"]]] = True
  if ctype == 1 and d["length"] in ("cropped", "longline"):
    a[d["length"]] = True
  if d["length"] in ("mini", "midi", "maxi"):
    a[d["length"]] = True
  if d["silhouette"]:
    a[d["silhouette"]] = True
  if d["leg"] in ("skinny", "wide-leg") and not d["shorts"]:
    a[d["leg"]] = True
  for p, on in d["parts"].items():
    a[p] = on
  a[d["colour"]] = True
  bare = (d["sleeve"] in ("none", "short") if ctype != 2 else
          d["shorts"] or d["length"] == "mini")
  a["summer"] = bare and d["fabric"] not in ("knit", "leather")
  a["sporty"] = a["hood"] or a["drawstring"] or a["ribbed cuffs"]
  a["formal"] = a["lapel"] or (a["collar"] and a["buttons"] and a["solid"]
                               and d["colour"] in ("white", "black", "navy", "grey", "blue"))
  a["boho"] = a["floral"] and (a["loose"] or a["ruffle"] or a["maxi"])
  return a


def _figure(rng: np.random.Generator, female: bool) -> dict[str, Any]:
  f = {"female": female, "skin": _SKIN[rng.integers(len(_SKIN))],
       "hair": _HAIR[rng.integers(len(_HAIR))],
       "long_hair": bool(rng.random() < (0.75 if female else 0.08)),
       "shoes": _SHOES[rng.integers(len(_SHOES))],
       "other": _NEUTRAL[rng.integers(len(_NEUTRAL))],
       "other_skirt": bool(female and rng.random() < 0.4),
       "untucked": bool(rng.random() < 0.4)}
  if female:
    f.update(sw=rng.uniform(19.5, 21.0), ww=rng.uniform(12.5, 14.5), hw=rng.uniform(18.0, 20.0))
  else:
    f.update(sw=rng.uniform(22.0, 24.0), ww=rng.uniform(15.0, 17.0), hw=rng.uniform(16.5, 18.5))
  f = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in f.items()}
  return f


def make_item(index: int, seed: int = 0, benchmark: str = "category",
              category: int | None = None) -> Item:
  """Item `index` (1-based) of a benchmark: its garment design, attributes and model."""
  if benchmark not in BENCHMARKS:
    raise ValueError(f"benchmark must be one of {list(BENCHMARKS)}, got {benchmark!r}")
  if category is None:
    category = _category_of(benchmark, index, seed)
  rng = np.random.default_rng([seed, _CODES[benchmark], index, 1])
  name = CATEGORIES[category][0]
  design = _design(name, rng)
  figure = _figure(rng, bool(rng.random() < _SPECS[name]["female"]))
  return Item(benchmark, index, seed, category, design, figure, _attributes(design))


# --- geometry (body frame: x right = the wearer's left, y down, neck base at 0) ---------------

NECK_HALF = 4.5
ARM_UPPER, ARM_LOWER = 28.0, 26.0
LEG_LENGTH = 92.0


@dataclasses.dataclass
class Layer:
  pts: np.ndarray                 # [N, 2] body frame (later: canvas)
  role: str                       # fig | other | part | deco
  fill: tuple[int, int, int] | None = None
  part: str = ""                  # part name (role part) or the part a deco belongs to
  paint: Any = None               # texture painter for role part / other


def _ellipse(cx, cy, rx, ry, n=20, angle=0.0) -> np.ndarray:
  t = np.linspace(0, 2 * np.pi, n, endpoint=False)
  x, y = rx * np.cos(t), ry * np.sin(t)
  c, s = math.cos(angle), math.sin(angle)
  return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _mirror_side(right: list[tuple[float, float]]) -> np.ndarray:
  """Right half (from the top centre down to the bottom centre) -> the closed symmetric outline."""
  pts = np.array(right, np.float64)
  left = pts[::-1].copy()
  left[:, 0] *= -1
  if abs(pts[0, 0]) < 1e-9:
    left = left[:-1]
  if abs(pts[-1, 0]) < 1e-9:
    left = left[1:]
  return np.concatenate([pts, left])


def _mirror(pts) -> np.ndarray:
  out = np.array(pts, np.float64).copy()
  out[:, 0] *= -1
  return out


def _stroke(pts, width: float) -> np.ndarray:
  """A polyline as a polygon `width` wide."""
  p = np.asarray(pts, np.float64)
  d = np.gradient(p, axis=0)
  d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
  n = np.stack([-d[:, 1], d[:, 0]], 1) * width / 2
  return np.concatenate([p + n, (p - n)[::-1]])


class _Arm:
  """Shoulder joint -> elbow -> wrist of one side (sg = +1: the wearer's left, image right)."""

  def __init__(self, fig, sg: int, a1: float, a2: float):
    self.sg = sg
    self.j = np.array([sg * (fig["sw"] - 2.0), 7.0])
    self.d1 = np.array([sg * math.sin(a1), math.cos(a1)])
    self.d2 = np.array([sg * math.sin(a2), math.cos(a2)])
    self.e = self.j + ARM_UPPER * self.d1
    self.w = self.e + ARM_LOWER * self.d2
    self.angle = a1

  def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Point at arc length t and its outward normal."""
    if t <= ARM_UPPER:
      p, d = self.j + t * self.d1, self.d1
    else:
      p, d = self.e + (t - ARM_UPPER) * self.d2, self.d2
    n = np.array([d[1], -d[0]]) * self.sg
    if abs(t - ARM_UPPER) < 1e-6:
      m = np.array([self.d1[1] + self.d2[1], -(self.d1[0] + self.d2[0])]) * self.sg
      cos_half = max(0.5, float(np.dot(self.d1, self.d2) + 1) / 2) ** 0.5
      n = m / (np.linalg.norm(m) + 1e-9) / cos_half
    return p, n

  @staticmethod
  def radius(t: float) -> float:
    return float(np.interp(t, [0, ARM_UPPER, ARM_UPPER + ARM_LOWER], [4.2, 3.4, 2.7]))

  def tube(self, t0: float, t1: float, extra: float = 0.0, flare: float = 0.0) -> np.ndarray:
    ts = [t for t in np.linspace(t0, t1, 7)]
    if t0 < ARM_UPPER < t1:
      ts = sorted(set(ts + [ARM_UPPER]))
    outer, inner = [], []
    for t in ts:
      p, n = self.at(t)
      w = self.radius(t) + extra + flare * (t - t0) / max(t1 - t0, 1e-6)
      outer.append(p + n * w)
      inner.append(p - n * w)
    return np.array(outer + inner[::-1])

  def hand(self) -> np.ndarray:
    c = self.w + 3.9 * self.d2
    return _ellipse(c[0], c[1], 2.9, 3.7, 14, math.atan2(self.d2[1], self.d2[0]) - math.pi / 2)


class _Leg:
  def __init__(self, fig, sg: int, b: float):
    self.sg = sg
    self.h = np.array([sg * 0.47 * fig["hw"], 70.0])
    self.d = np.array([sg * math.sin(b), math.cos(b)])
    self.n = np.array([sg * math.cos(b), -math.sin(b)])

  def at(self, t: float) -> np.ndarray:
    return self.h + t * self.d

  def skin(self) -> np.ndarray:
    ts, ws = (0, 46, LEG_LENGTH), (8.2, 5.3, 3.5)
    outer = [self.at(t) + self.n * w for t, w in zip(ts, ws)]
    inner = [self.at(t) - self.n * w for t, w in zip(ts, ws)]
    return np.array(outer + inner[::-1])

  def shoe(self) -> np.ndarray:
    c = self.at(LEG_LENGTH + 3.0) + np.array([self.sg * 1.2, 0])
    return _ellipse(c[0], c[1], 4.8, 3.0, 14)


@dataclasses.dataclass
class _Pose:
  arms: tuple[tuple[float, float], tuple[float, float]]   # (a1, a2) radians for sg = +1, -1
  legs: tuple[float, float]
  hair_front: bool
  flat: bool


def _sample_pose(rng: np.random.Generator, flat: bool, fig) -> _Pose:
  if flat:
    a = math.radians(rng.uniform(35, 55))
    arms = ((a, a), (a + math.radians(rng.uniform(-3, 3)),) * 2)
    b = math.radians(rng.uniform(3, 7))
    return _Pose(arms, (b, b), False, True)
  arms = []
  for _ in range(2):
    kind = _pick(rng, {"down": .6, "hip": .18, "front": .1, "out": .12})
    if kind == "down":
      a1 = rng.uniform(6, 16)
      a2 = a1 + rng.uniform(-6, 4)
    elif kind == "hip":
      a1 = rng.uniform(35, 50)
      a2 = -rng.uniform(40, 70)
    elif kind == "front":
      a1 = rng.uniform(2, 8)
      a2 = -rng.uniform(60, 85)
    else:
      a1 = rng.uniform(20, 32)
      a2 = a1 + rng.uniform(0, 10)
    arms.append((math.radians(a1), math.radians(a2)))
  legs = tuple(math.radians(rng.uniform(1, 6)) for _ in range(2))
  hair_front = fig["long_hair"] and rng.random() < 0.4
  return _Pose(tuple(arms), legs, bool(hair_front), False)


def _neckline(d, fig) -> tuple[list[tuple[float, float]], float]:
  """Right half of the neckline from the centre up to its end; the end's x (collar landmark)."""
  nw = NECK_HALF + 1.5
  kind = d["neck"]
  if kind in ("crew", "hood", "collar"):
    depth, half = (3.5 if kind == "crew" else 3.0), nw
  elif kind == "scoop":
    depth, half = 10.0, nw + 2.5
  elif kind == "v-neck":
    return [(0.0, 13.0), (half := nw + 1.0, 0.0)], half
  else:  # lapel: a deep V (the inner shirt shows)
    depth = 27.0 if d["category"] == "Blazer" else 22.0
    return [(0.0, depth), (nw + 0.5, 0.0)], nw + 0.5
  t = np.linspace(0, np.pi / 2, 6)
  return [(float(half * math.sin(a)), float(depth * math.cos(a))) for a in t], half


def _side(d, fig, y: float) -> float:
  """Half width of a top's body at height y."""
  e = 1.0 if d["fit"] == "fitted" else 4.0
  if d["category"] == "Coat":
    e += 2.5
  return float(np.interp(y, [19, 48, 66, 90, 130],
                         [fig["sw"] - 1.5, fig["ww"] + e, fig["hw"] + e, fig["hw"] + e + 1.5,
                          fig["hw"] + e + 4.0]))


def _top_hem_y(d) -> float:
  if d["category"] == "Coat":
    return 112.0 + d["hem_drop"] * 2
  return {"cropped": 42.0, "regular": 66.0 + d["hem_drop"], "longline": 80.0}[d["length"]]


def _skirt_hem(d, fig) -> tuple[float, float, float]:
  """(hip half width, hem y, hem half width) of a skirt or a dress's skirt."""
  y_hem = {"mini": 92.0, "midi": 122.0, "maxi": 156.0}[d["length"]] + d["hem_drop"]
  if d["silhouette"] == "pencil":
    hip = fig["hw"] + 1.2
    return hip, y_hem, hip - 0.4
  hip = fig["hw"] + 2.5
  return hip, y_hem, hip + 0.3 * (y_hem - 64.0)


def _leg_widths(d) -> tuple[float, float, float]:
  """(knee, hem, hem t) half widths of trouser legs along the leg axis."""
  leg = d["leg"]
  if d["shorts"]:
    t = 24.0 + d["hem_drop"] * 2
    return 0.0, {"skinny": 8.8, "straight": 9.8, "wide-leg": 11.5}[leg], t
  wk, wh = {"skinny": (5.9, 4.3), "straight": (7.2, 6.8), "wide-leg": (9.5, 12.0),
            "tapered": (7.6, 4.6)}[leg]
  return wk, wh, LEG_LENGTH - 1.0


def _trouser_side(d, fig, leg: _Leg, top: list) -> tuple[list, np.ndarray]:
  """Right half of trousers / shorts below `top`; the hem landmark (middle of the leg opening)."""
  wk, wh, th = _leg_widths(d)
  e = 1.5 if d["leg"] != "skinny" else 0.8
  thigh = fig["hw"] + e - 0.47 * fig["hw"]
  pts = list(top) + [(leg.sg * (fig["hw"] + e), 66.0)]
  ts = [12.0] + ([46.0] if th > 50 else []) + [th]
  widths = {12.0: thigh, 46.0: wk, th: wh}
  if d["shorts"]:
    widths[12.0] = max(thigh, wh)
  for t in ts:
    p = leg.at(t) + leg.n * widths[t]
    pts.append((float(p[0]), float(p[1])))
  for t in ts[::-1][:-1]:
    p = leg.at(t) - leg.n * widths[t]
    pts.append((float(p[0]), float(p[1])))
  pts.append((0.0, 80.0))
  return pts, leg.at(th)


def _trousers(d, fig, legs, top) -> tuple[np.ndarray, list[np.ndarray]]:
  """Trousers / shorts hanging from `top` (its right half, from the centre out): the outline
  and the two hem landmarks."""
  rpts, rhem = _trouser_side(d, fig, legs[0], top)
  lpts, lhem = _trouser_side(d, fig, legs[1], _mirror(top).tolist())
  poly = np.concatenate([np.array(rpts[:-1]), [(0.0, 80.0)], np.array(lpts[1:-1])[::-1]])
  return poly, [rhem, lhem]


@dataclasses.dataclass
class _Scene:
  layers: list[Layer]
  landmarks: dict[int, tuple[np.ndarray, str]]   # slot -> (body point, part)
  figure_pts: np.ndarray                          # extent of the whole figure (zoom-out)


def _painter(d, kind: str, frame=None) -> dict[str, Any]:
  """How a layer is painted: design (colours, pattern), kind (body | sleeve | hood: which local
  frame the pattern and the shading follow) and that frame's geometry."""
  return {"design": d, "kind": kind, "frame": frame}


def _plain(colour) -> dict[str, Any]:
  """The design of a plain second garment (shading only)."""
  return {"c1": colour, "c2": colour, "c3": colour, "texture": "solid", "fabric": "cotton",
          "type": 0}


def _build(item: Item, pose: _Pose) -> _Scene:
  d, fig = item.design, item.figure
  ctype, cat = d["type"], d["category"]
  c1 = d["c1"]
  L: list[Layer] = []
  marks: dict[int, tuple[np.ndarray, str]] = {}
  sw, ww, hw = fig["sw"], fig["ww"], fig["hw"]
  arms = [_Arm(fig, sg, *pose.arms[i]) for i, sg in enumerate((1, -1))]
  legs = [_Leg(fig, sg, pose.legs[i]) for i, sg in enumerate((1, -1))]
  skin = fig["skin"]
  flat = pose.flat
  head_c = np.array([0.0, -23.0])
  has_top = ctype in (1, 3)

  def add(pts, role, fill=None, part="", paint=None):
    L.append(Layer(np.asarray(pts, np.float64), role, fill, part, paint))

  # Figure behind the garments.
  if not flat:
    if fig["long_hair"]:
      add(_mirror_side([(0, -36.0), (11.5, -28.0), (12.5, -10.0), (14.0, 10.0), (0, 12.0)]),
          "fig", fig["hair"])
  if d["neck"] == "hood":
    add(_mirror_side([(0, -17.0), (9.5, -14.5), (13.0, -5.0), (13.5, 5.0), (0, 6.0)]), "part",
        None, "hood", _painter(d, "hood"))
  if not flat:
    for leg in legs:
      add(leg.skin(), "fig", skin)
      add(leg.shoe(), "fig", fig["shoes"])
    torso = [(0, -1.0), (NECK_HALF + 1, -1.0), (sw - 0.5, 3.0), (sw + 1.0, 6.0), (sw - 2, 19.0),
             (ww - 0.5, 48.0), (hw - 0.5, 66.0), (hw - 1.5, 76.0), (0, 80.0)]
    add(_mirror_side(torso), "fig", skin)
    add([(-NECK_HALF, -15), (NECK_HALF, -15), (NECK_HALF + 1, 1), (-NECK_HALF - 1, 1)], "fig",
        _shade(skin, 0.93))
    add(_ellipse(head_c[0], head_c[1], 8.6, 10.6, 24), "fig", skin)
    for sg in (1, -1):
      add(_ellipse(sg * 3.3, -24.5, 1.1, 0.8, 8), "fig", (40, 30, 28))
    add(_ellipse(0, -17.0, 2.4, 0.7, 10), "fig", _shade(skin, 0.7))
    hair_top = [(0, -34.5), (5, -33.8), (8.6, -29), (9.4, -22), (7.5, -27), (0, -29)]
    add(_mirror_side(hair_top), "fig", fig["hair"])

  # The second garment under the main one (a top's trousers or skirt).
  other = fig["other"]
  if not flat and ctype == 1:
    od = {"leg": "straight", "shorts": False, "fabric": "cotton", "texture": "solid", "c1": other,
          "silhouette": "a-line", "length": "midi", "hem_drop": 0.0, "category": "other"}
    if fig["other_skirt"]:
      hip, y_hem, hem = _skirt_hem(od, fig)
      poly = _mirror_side([(0, 47.0), (ww + 1.2, 47.0), (hip, 64.0), (hem, y_hem),
                           (hem * 0.55, y_hem + 1.6), (0, y_hem + 2)])
      frame = {"fig": fig}
    else:
      poly, _ = _trousers(od, fig, legs, [(0, 47.0), (ww + 1.2, 47.0)])
      frame = {"fig": fig, "legs": legs}
    add(poly, "other", None, "other_lower", _painter(_plain(other), "body", frame))

  # Inner shirt in a lapel's V.
  if d["neck"] == "lapel" and not flat:
    add(_mirror_side([(0, -1.0), (NECK_HALF + 1.5, -1.0), (9.0, 10.0), (4, 30.0), (0, 32.0)]),
        "other", (236, 236, 232) if _luma(c1) < 170 else (40, 44, 60), "inner")
  if flat and has_top:  # the garment's back, seen through the neckline
    neck, nx = _neckline(d, fig)
    add(_mirror_side([(0, -2.5), (nx + 1.0, -2.5), (nx + 1.0, 0.0)]
                     + [(x, y + 0.8) for x, y in neck[::-1]]), "part", _shade(c1, 0.55), "back")

  # The main garment's body.
  decos: list[Layer] = []

  def deco(pts, fill, part="body"):
    decos.append(Layer(np.asarray(pts, np.float64), "deco", fill, part))

  waist_y = 48.0
  if has_top:
    neck, nx = _neckline(d, fig)
    right = list(neck)
    sleeveless = d["sleeve"] == "none"
    if sleeveless:
      strap = max(nx + 3.5, sw - 6.5)
      inner_x = strap - 1.6
      right += [(strap, 0.5), (strap - 0.8, 6.0), (inner_x, 11.0), (strap + 0.8, 16.0),
                (sw - 2.2, 19.5)]
      for i, sg in enumerate((1, -1)):
        marks[(2, 3)[i]] = (np.array([sg * inner_x, 11.0]), "body")
    else:
      right += [(sw + 0.5, 3.0), (sw - 1.5, 19.0)]
    if ctype == 1 or cat == "Coat":
      y_hem = _top_hem_y(d)
      for y in (48.0, 66.0, 90.0):
        if y < y_hem - 1:
          right.append((_side(d, fig, y), y))
      hem_x = _side(d, fig, y_hem)
      right += [(hem_x, y_hem), (hem_x * 0.55, y_hem + 1.2), (0.0, y_hem + 1.5)]
      hem_marks = [np.array([hem_x, y_hem]), np.array([-hem_x, y_hem])]
      waist_x = _side(d, fig, waist_y)
      body = _mirror_side(right)
    else:
      waist_x = _side(d, fig, waist_y)
      right.append((waist_x, waist_y))
      if cat == "Dress":
        hip, y_hem, hem_x = _skirt_hem(d, fig)
        right += [(hip, 64.0), (hem_x, y_hem), (hem_x * 0.55, y_hem + 1.6), (0.0, y_hem + 2.0)]
        hem_marks = [np.array([hem_x, y_hem]), np.array([-hem_x, y_hem])]
        body = _mirror_side(right)
      else:  # jumpsuit, romper: the top joined to trousers / shorts
        body, hem_marks = _trousers(d, fig, legs, right)
        y_hem = float(hem_marks[0][1])
    if ctype == 3:
      marks[4] = (np.array([waist_x, waist_y]), "body")
      marks[5] = (np.array([-waist_x, waist_y]), "body")
    marks[0] = (np.array([nx, 0.0]), "body")
    marks[1] = (np.array([-nx, 0.0]), "body")
    marks[6] = (hem_marks[0], "body")
    marks[7] = (hem_marks[1], "body")
  else:
    top = [(0.0, 47.0), (ww + 1.2, 47.0)]
    waist_x = ww + 1.2
    if cat == "Skirt":
      hip, y_hem, hem_x = _skirt_hem(d, fig)
      body = _mirror_side(top + [(hip, 64.0), (hem_x, y_hem), (hem_x * 0.55, y_hem + 1.6),
                                 (0.0, y_hem + 2.0)])
      hem_marks = [np.array([hem_x, y_hem]), np.array([-hem_x, y_hem])]
    else:
      body, hem_marks = _trousers(d, fig, legs, top)
      y_hem = float(hem_marks[0][1])
    marks[4] = (np.array([waist_x, 47.0]), "body")
    marks[5] = (np.array([-waist_x, 47.0]), "body")
    marks[6] = (hem_marks[0], "body")
    marks[7] = (hem_marks[1], "body")
    waist_y = 47.0

  frame_legs = legs if (ctype == 2 and cat != "Skirt") or cat in ("Jumpsuit", "Romper") else None
  add(body, "part", None, "body", _painter(d, "body", {"legs": frame_legs, "fig": fig}))

  # Decorations on the body.
  dark = _shade(c1, 0.72)
  light = _shade(c1, 1.25) if _luma(c1) < 200 else _shade(c1, 0.9)
  thread = (214, 150, 62) if d["fabric"] == "denim" else dark
  p = d["parts"]
  if has_top and d["neck"] in ("crew", "v-neck", "scoop", "hood"):
    neck_pts = _neckline(d, fig)[0]
    full = [(-x, y) for x, y in neck_pts[::-1]] + neck_pts[1:]
    deco(_stroke(full, 1.3), dark)
  if has_top and d["neck"] == "collar":
    for sg in (1, -1):
      deco([(sg * 0.6, 4.5), (sg * (NECK_HALF + 1.0), -1.8), (sg * (NECK_HALF + 3.8), 0.5),
            (sg * 7.5, 6.5), (sg * 3.0, 9.5)], light)
  if has_top and d["neck"] == "lapel":
    depth = _neckline(d, fig)[0][0][1]
    for sg in (1, -1):
      deco([(sg * (NECK_HALF + 1.5), -1.2), (sg * (NECK_HALF + 4.5), 2.0),
            (sg * (NECK_HALF + 6.8), 9.0), (sg * (NECK_HALF + 4.8), 10.5),
            (sg * 3.5, depth - 1.0), (sg * 0.3, depth + 0.5), (sg * (NECK_HALF + 1.0), 0.5)],
           _shade(c1, 0.82))
  if p["zipper"]:
    z0 = 3.0 if has_top else 48.0
    z1 = (y_hem if ctype != 3 else waist_y + 16) - 0.5
    deco([(-0.55, z0), (0.55, z0), (0.55, z1), (-0.55, z1)], (178, 178, 184))
    deco([(-1.3, z0 + 1), (1.3, z0 + 1), (1.3, z0 + 4.5), (-1.3, z0 + 4.5)], (205, 205, 210))
  if p["buttons"]:
    btn = d["contrast"]
    if cat in ("Blazer", "Coat") and has_top:
      depth = _neckline(d, fig)[0][0][1] if d["neck"] == "lapel" else 6.0
      ys = np.linspace(depth + 4, min(y_hem - 8, depth + 30), 2 if cat == "Blazer" else 3)
      cols = (-4.5, 4.5) if (cat == "Coat" and d["double"]) else (-1.2,)
      for x in cols:
        for y in ys:
          deco(_ellipse(x, y, 1.3, 1.3, 10), btn)
      deco(_stroke([(0.4, depth), (0.4, y_hem)], 0.45), dark)
    elif has_top:
      y0 = _neckline(d, fig)[0][0][1] + 2.5
      y1 = (y_hem if ctype == 1 else waist_y + (30 if cat == "Dress" else 0)) - 3
      deco(_stroke([(0, y0 - 2), (0, y1 + 2)], 2.0), _shade(c1, 0.9))
      for y in np.linspace(y0, y1, d["buttons_n"]):
        deco(_ellipse(0, y, 0.95, 0.95, 8), btn)
    else:
      deco(_ellipse(0, 49.3, 1.1, 1.1, 8), (190, 180, 150) if d["fabric"] == "denim" else btn)
      if cat == "Skirt":
        for y in np.linspace(53, y_hem - 6, 4):
          deco(_ellipse(0, y, 1.0, 1.0, 8), btn)
  if p["pockets"]:
    if cat in ("Jeans", "Shorts") or (ctype == 2 and cat != "Skirt" and cat != "Joggers"):
      for sg in (1, -1):
        deco(_stroke([(sg * (ww - 3.5), 47.8), (sg * (ww + 0.5), 53), (sg * (hw + 0.8), 57.5)],
                     0.8), thread)
    elif cat == "Joggers":
      for sg in (1, -1):
        deco(_stroke([(sg * (ww - 0.5), 50.0), (sg * (hw + 0.6), 61.0)], 0.8), dark)
    elif cat == "Hoodie":
      y0, y1 = 44.0, min(60.0, y_hem - 3)
      deco(_stroke([(-11, y1), (-8, y0), (8, y0), (11, y1), (-11, y1)], 0.9), dark)
    elif cat in ("Blazer", "Coat"):
      yy = 52.0 if cat == "Blazer" else 62.0
      for sg in (1, -1):
        x0 = sg * 6.5
        deco([(x0, yy), (x0 + sg * 8.5, yy), (x0 + sg * 8.5, yy + 2.6), (x0, yy + 2.6)], dark)
    elif cat == "Skirt":
      for sg in (1, -1):
        deco(_stroke([(sg * 5, 52), (sg * 12, 52), (sg * 12, 60), (sg * 5, 60), (sg * 5, 52)],
                     0.7), dark)
    elif cat in ("Jumpsuit", "Romper"):
      for sg in (1, -1):
        deco(_stroke([(sg * (ww - 1.0), waist_y + 1.5), (sg * (hw + 1.0), 60.0)], 0.8), dark)
    else:  # a chest patch pocket on the wearer's left
      deco(_stroke([(5.5, 12.0), (11.0, 12.0), (11.0, 19.0), (5.5, 19.0), (5.5, 12.0)], 0.8),
           dark)
  if p["belt"]:
    bx = waist_x + 0.2
    y0 = waist_y - 1.2 if ctype != 2 else 47.6
    deco([(-bx, y0), (bx, y0), (bx, y0 + 3.4), (-bx, y0 + 3.4)], d["belt_colour"])
    deco(_stroke([(-1.8, y0 + 0.3), (1.8, y0 + 0.3), (1.8, y0 + 3.1), (-1.8, y0 + 3.1),
                  (-1.8, y0 + 0.3)], 0.7), (215, 190, 90))
  if p["drawstring"]:
    for sg in (1, -1):
      if has_top:
        s = [(sg * 2.2, 3.5), (sg * 2.5, 11.0), (sg * 2.8, 17.0)]
      else:
        s = [(sg * 1.6, 48.0), (sg * 2.0, 54.0), (sg * 2.3, 59.0)]
      deco(_stroke(s, 0.7), (236, 236, 232))
      deco(_ellipse(s[-1][0], s[-1][1] + 0.8, 0.9, 1.2, 8), (236, 236, 232))
  if p["ruffle"] and cat not in ("Jumpsuit", "Romper"):  # a frill along the hem
    half = abs(hem_marks[0][0])
    xs = np.linspace(-half + 0.5, half - 0.5, 15)
    top_edge = [(x, y_hem - 5.5 + 1.2 * math.sin(i * 1.6)) for i, x in enumerate(xs)]
    deco(np.array(top_edge + [(half - 0.5, y_hem), (-half + 0.5, y_hem)]), light)
    for x in xs[1:-1:2]:
      deco(_stroke([(x, y_hem - 4.5), (x * 1.02, y_hem - 0.3)], 0.5), dark)
  elif p["ruffle"]:  # jumpsuits and rompers: frills down the neckline
    for sg in (1, -1):
      deco(_stroke([(sg * (NECK_HALF + 1.0), 0.5), (sg * 5, 9.0)], 0.9), light)
  if p["pleated"]:
    hem_half = abs(hem_marks[0][0])
    top_half = waist_x
    for f in np.linspace(-0.85, 0.85, 9):
      deco(_stroke([(f * top_half, waist_y + 3), (f * hem_half, y_hem - 0.5)], 0.55), dark)
  if p["ribbed cuffs"] and ctype == 1 and cat == "Hoodie":
    hx = abs(hem_marks[0][0])
    hx2 = _side(d, fig, y_hem - 4)
    deco([(-hx2, y_hem - 4), (hx2, y_hem - 4), (hx, y_hem), (-hx, y_hem)], dark)
  if p["ribbed cuffs"] and cat == "Joggers":
    _, wh, th = _leg_widths(d)
    for leg in legs:
      a, b = leg.at(th - 6), leg.at(th)
      deco([a + leg.n * wh, b + leg.n * wh, b - leg.n * wh, a - leg.n * wh], dark)
  if d["texture"] == "graphic" and has_top:
    gy = 27.0 if d["neck"] != "v-neck" else 30.0
    s = d["graphic_size"]
    g = d["graphic"]
    if g == "star":
      t = np.arange(10) * np.pi / 5 - np.pi / 2
      r = np.where(np.arange(10) % 2 == 0, s, s * 0.42)
      deco(np.stack([r * np.cos(t), gy + r * np.sin(t)], 1), d["c2"])
    elif g == "circle":
      deco(_ellipse(0, gy, s * 0.8, s * 0.8, 24), d["c2"])
      deco(_ellipse(0, gy, s * 0.45, s * 0.45, 18), d["c3"])
    elif g == "heart":
      t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
      x = 16 * np.sin(t) ** 3
      y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
      deco(np.stack([x * s / 17, gy + y * s / 17], 1), d["c2"])
    elif g == "triangle":
      deco([(0, gy - s), (s * 0.95, gy + s * 0.7), (-s * 0.95, gy + s * 0.7)], d["c2"])
      deco([(2.0, gy - s * 0.2), (s * 0.5, gy + s * 0.5), (-s * 0.2, gy + s * 0.5)], d["c3"])
    else:  # a chest band with a block: asymmetric, so mirrored views differ
      deco([(-s * 1.1, gy - 2.5), (s * 1.1, gy - 2.5), (s * 1.1, gy + 2.5), (-s * 1.1, gy + 2.5)],
           d["c2"])
      deco([(s * 0.2, gy - 6), (s * 0.9, gy - 6), (s * 0.9, gy + 6), (s * 0.2, gy + 6)], d["c3"])
  L.extend(decos)

  # The second garment over a lower one: a plain top, tucked in or hanging over the waistband.
  if not flat and ctype == 2:
    hem = 45.0 if not fig["untucked"] else 56.0 + 8 * (fig["sw"] % 1.0)
    od = {"fit": "loose", "category": "other", "length": "regular", "hem_drop": 0.0}
    x_h = _side(od, fig, hem) if fig["untucked"] else ww + 0.5
    pts = [(0, 3.5), (NECK_HALF + 1.5, 0.0), (sw + 0.5, 3.0), (sw - 1.5, 19.0)]
    if hem > 48:
      pts.append((_side(od, fig, 48.0), 48.0))
    pts += [(x_h, hem), (0, hem + 1)]
    add(_mirror_side(pts), "other", None, "other_top", _painter(_plain(other), "body",
                                                                 {"fig": fig}))

  # Arms (bare, then sleeve, then hand) and hair over the shoulders.
  for i, arm in enumerate(arms):
    sg = arm.sg
    sleeve = d["sleeve"] if has_top else ("short" if ctype == 2 and not flat else "none")
    if not flat:
      if sleeve not in ("short", "long"):
        add(_ellipse(arm.j[0], arm.j[1], 4.5, 4.5, 14), "fig", skin)
      add(arm.tube(0, ARM_UPPER + ARM_LOWER), "fig", skin)
    if sleeve in ("short", "long"):
      length = 13.0 if sleeve == "short" else ARM_UPPER + ARM_LOWER - 1.5
      if has_top:
        ease = 1.0 if d["fit"] == "fitted" else 2.2
        flare = 1.2 if cat == "Blouse" and sleeve == "long" else 0.0
      else:
        ease, flare = 1.6, 0.4
      tube = arm.tube(0.0, length, ease, flare)
      n = len(tube) // 2
      outer, inner = tube[1:n], tube[n:]
      pts = np.concatenate([[[sg * (sw + 0.5), 3.0]], outer, inner, [[sg * (sw - 6.0), 3.0]]])
      if has_top:
        part = "sleeve+" if sg > 0 else "sleeve-"
        add(pts, "part", None, part, _painter(d, "sleeve", {"arm": arm}))
        cuff, _ = arm.at(length)
        marks[2 if sg > 0 else 3] = (cuff, part)
        if p["ribbed cuffs"]:
          rib = arm.tube(length - 4.0, length, ease + flare)
          L.append(Layer(rib, "deco", dark, part))
      else:
        add(pts, "other", None, "other_top",
            _painter(_plain(other), "sleeve", {"arm": arm}))
    if not flat:
      add(arm.hand(), "fig", skin)
  if not flat and pose.hair_front:
    for sg in (1, -1):
      add([(sg * 4.6, -14.0), (sg * 9.8, -16.0), (sg * 11.5, 14.0), (sg * 6.0, 13.0)], "fig",
          fig["hair"])
  figure_pts = np.array([[-sw - 20, -36.0], [sw + 20, -36.0], [-hw - 14, 168.0],
                         [hw + 14, 168.0]])
  return _Scene(L, marks, figure_pts)


# --- painting -----------------------------------------------------------------------------------

_NOISE = np.random.default_rng(1234).normal(size=(64, 64)).astype(np.float32)


def _tile(u, v, scale=2.0):
  """Fixed noise at garment coordinates: the same weave in every view of an item."""
  i = np.floor(v * scale).astype(np.int64) % 64
  return _NOISE[i, np.floor(u * scale).astype(np.int64) % 64]


def _hash(i, j, k=0.0):
  x = np.sin(i * 12.9898 + j * 78.233 + k * 37.719) * 43758.5453
  return x - np.floor(x)


def _bilinear(grid: np.ndarray, fu, fv):
  gh, gw = grid.shape
  fu = np.clip(fu, 0, gw - 1.001)
  fv = np.clip(fv, 0, gh - 1.001)
  i0, j0 = np.floor(fv).astype(np.int64), np.floor(fu).astype(np.int64)
  a, b = fv - i0, fu - j0
  return (grid[i0, j0] * (1 - a) * (1 - b) + grid[i0 + 1, j0] * a * (1 - b)
          + grid[i0, j0 + 1] * (1 - a) * b + grid[i0 + 1, j0 + 1] * a * b)


def _pattern(d, u, v, sleeve: bool) -> np.ndarray:
  """RGB [..., 3] of the garment's texture at garment coordinates (u across, v down)."""
  c1, c2, c3 = (np.array(c, np.float32) for c in (d["c1"], d["c2"], d["c3"]))
  kind = d.get("texture", "solid")
  shape = u.shape + (3,)
  px, py = d.get("phase", (0.0, 0.0))
  if kind == "striped":
    t = ((u if d["vertical"] else v) + px) / d["period"]
    on = (t - np.floor(t)) < d["duty"]
    return np.where(on[..., None], c2, c1)
  if kind == "polka dot":
    s = d["dot"]
    row = np.floor((v + py) / s)
    uu = u + px + (row % 2) * s / 2
    du = uu - (np.floor(uu / s) + 0.5) * s
    dv = (v + py) - (row + 0.5) * s
    on = du * du + dv * dv < (0.22 * s) ** 2
    return np.where(on[..., None], c2, c1)
  if kind == "floral":
    s = d["flower"]
    i, j = np.floor((v + py) / s), np.floor((u + px) / s)
    h1, h2, h3 = _hash(i, j), _hash(i, j, 1.0), _hash(i, j, 2.0)
    cu = (j + 0.25 + 0.5 * h1) * s - px
    cv = (i + 0.25 + 0.5 * h2) * s - py
    du, dv = u - cu, v - cv
    r = np.sqrt(du * du + dv * dv)
    th = np.arctan2(dv, du)
    rad = 0.33 * s * (0.55 + 0.45 * np.abs(np.cos(2.5 * th + 6.28 * h3)))
    out = np.broadcast_to(c1, shape).copy()
    leaf = (np.abs(du - 0.3 * s * (h3 - 0.5)) < 0.06 * s) & (dv > 0) & (dv < 0.45 * s)
    out[leaf] = (0.5 * c1 + 0.5 * np.array((60, 120, 60), np.float32))
    out[r < rad] = c2
    out[r < 0.1 * s] = c3
    return out
  if kind == "plaid":
    p = d["period"] * 2.2
    a = ((v + py) / p) % 1.0 < 0.38
    b = ((u + px) / p) % 1.0 < 0.38
    w = a.astype(np.float32) * 0.5 + b.astype(np.float32) * 0.5
    out = c1 * (1 - w[..., None]) + c2 * w[..., None]
    line = (np.abs(((v + py) / p + 0.69) % 1.0 - 0.5) < 0.035) | (
        np.abs(((u + px) / p + 0.69) % 1.0 - 0.5) < 0.035)
    out[line] = c3
    return out
  if kind == "chevron":
    pu = d["period"] * 1.6
    zig = np.abs(((u + px) / pu) % 1.0 - 0.5) * pu * 0.9
    t = (v + py + zig) / d["period"]
    on = (t - np.floor(t)) < d["duty"]
    return np.where(on[..., None], c2, c1)
  if kind == "colorblock":
    if sleeve:
      return np.broadcast_to(c2, shape).copy()
    on = v > d["split"] if d["type"] != 2 else u > 0
    return np.where(on[..., None], c2 if d["type"] != 2 else c3, c1)
  if kind == "camo":
    grid = np.asarray(d["camo"], np.float32)
    n = _bilinear(grid, (u + 70) / 8.0, (v + 30) / 8.0)
    n = n + 0.5 * _bilinear(grid[::-1], (u + 70) / 4.0, (v + 30) / 4.0)
    idx = np.digitize(n, (-0.5, 0.1, 0.6))
    return np.array(_CAMO, np.float32)[idx]
  return np.broadcast_to(c1, shape).copy()


def _fabric(d, u, v, rgb, shade, uc) -> tuple[np.ndarray, np.ndarray | None]:
  fabric = d.get("fabric", "cotton")
  f = shade
  alpha = None
  add = 0.0
  if fabric == "denim":
    f = f * (0.9 + 0.07 * np.sin(2 * np.pi * (u + v) / 1.4) + 0.04 * _tile(u, v, 3.0)
             + 0.08 * np.exp(-(uc * 1.6) ** 2))
  elif fabric == "knit":
    f = f * (0.9 + 0.1 * np.abs(np.sin(np.pi * u / 1.2)))
  elif fabric == "leather":
    f = f * 0.92
    add = (110.0 * np.exp(-((uc - 0.35) / 0.13) ** 2) * (0.6 + 0.4 * np.sin(v / 9.0)))[..., None]
  elif fabric == "satin":
    f = f * (0.82 + 0.3 * np.cos(2 * np.pi * (u / 11.0 + v / 90.0)) ** 8)
  elif fabric == "lace":
    s = 2.6
    du = u - (np.floor(u / s) + 0.5) * s
    row = np.floor(v / s)
    dv = v - (row + 0.5) * s
    hole = du * du + dv * dv < 0.75 ** 2
    alpha = np.where(hole, 0.0, 1.0).astype(np.float32)
    f = f * 1.05
  elif fabric == "sheer":
    alpha = np.full(u.shape, 0.58, np.float32)
  else:
    f = f * (1.0 + 0.025 * _tile(u, v))
  out = rgb * f[..., None] + add
  return out, alpha


def _paint(paint, bx, by) -> tuple[np.ndarray, np.ndarray | None]:
  """Texture (float RGB) and alpha of a painted layer at body coordinates (bx, by)."""
  d, kind, frame = paint["design"], paint["kind"], paint["frame"]
  if kind == "sleeve":
    arm: _Arm = frame["arm"]
    rx, ry = bx - arm.j[0], by - arm.j[1]
    v = rx * arm.d1[0] + ry * arm.d1[1]
    u = (rx * arm.d1[1] - ry * arm.d1[0]) * arm.sg
    width = np.interp(v, [0, ARM_UPPER, ARM_UPPER + ARM_LOWER], [6.4, 5.6, 4.9])
    uc = np.clip(u / width, -1, 1)
    pu, pv = u, v
  elif kind == "hood":
    u, v = bx, by
    uc = np.clip(bx / 14.0, -1, 1)
    pu, pv = u, v
  else:
    u, v = bx, by
    fig = frame["fig"] if frame else None
    legs = frame.get("legs") if frame else None
    if fig is not None:
      half = np.interp(by, [0, 19, 48, 66, 120, 170],
                       [fig["sw"] + 2, fig["sw"], fig["ww"] + 4, fig["hw"] + 4, fig["hw"] + 14,
                        fig["hw"] + 24])
      uc = np.clip(bx / half, -1, 1)
      if legs is not None:
        best = None
        for leg in legs:
          t = np.clip((by - leg.h[1]) / leg.d[1], 0, None)
          ax = leg.h[0] + t * leg.d[0]
          dist = np.abs(bx - ax) / 9.0
          best = dist if best is None else np.minimum(best, dist)
        uc = np.where(by > 80, np.clip(best, -1, 1), uc)
    else:
      uc = np.clip(bx / 30.0, -1, 1)
    pu, pv = u, v
  shade = 0.8 + 0.2 * np.sqrt(np.clip(1 - uc * uc, 0, 1))
  if kind == "hood":
    shade = shade * 0.85
  rgb = _pattern(d, pu, pv, kind == "sleeve") if d.get("texture") else np.broadcast_to(
      np.array(d["c1"], np.float32), u.shape + (3,))
  if d.get("texture") == "graphic" or d.get("texture") is None:
    rgb = np.broadcast_to(np.array(d["c1"], np.float32), u.shape + (3,))
  return _fabric(d, pu, pv, rgb, shade, np.abs(uc))


# --- views --------------------------------------------------------------------------------------

@dataclasses.dataclass
class View:
  image: Image.Image
  landmarks: np.ndarray          # float32 [8, 2] (x, y), pixel centres at integers
  visibility: np.ndarray         # int64 [8]: 0 visible, 1 occluded, 2 truncated (or absent)
  present: np.ndarray            # int64 [8]
  bbox: np.ndarray               # int64 [4] x1 y1 x2 y2 (inclusive pixels)
  variation_type: int
  pose_type: int
  mirrored: bool
  to_body: np.ndarray            # [3, 3]: homogeneous image pixel (x, y, 1) -> body frame
  garment_mask: np.ndarray | None = None   # float32 [H, W]: visible garment coverage, 0..1

  def rounded_landmarks(self) -> np.ndarray:
    return np.round(self.landmarks).astype(np.int64)


def _apply(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
  p = np.asarray(pts, np.float64)
  q = p @ h[:, :2].T + h[:, 2]
  return q[:, :2] / q[:, 2:3]


def _inside(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
  """Even-odd point-in-polygon for [P, 2] points."""
  x, y = pts[:, 0:1], pts[:, 1:2]
  x0, y0 = poly[:, 0][None], poly[:, 1][None]
  x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
  cond = (y0 > y) != (y1 > y)
  with np.errstate(divide="ignore", invalid="ignore"):
    xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
  return (cond & (x < xc)).sum(1) % 2 == 1


def _background(rng: np.random.Generator, w: int, h: int, kind: str) -> Image.Image:
  """A w x h backdrop (drawn at the output size; the caller upsamples it)."""
  if kind == "studio":
    v = rng.uniform(222, 250)
    tint = rng.uniform(0.97, 1.02, 3)
    g = np.linspace(1.0, rng.uniform(0.9, 1.0), h)[:, None, None]
    img = np.full((h, w, 3), v, np.float32) * tint * g
  elif kind == "table":
    base = np.array([(225, 205, 170), (200, 200, 200), (240, 238, 232), (120, 90, 60)][
        rng.integers(4)], np.float32)
    y = np.arange(h, dtype=np.float32)[:, None]
    grain = 1 + 0.04 * np.sin(y / rng.uniform(2, 5) + 3 * np.sin(np.arange(w)[None] / 37.0))
    img = base * grain[..., None] * np.ones((h, w, 1), np.float32)
  else:
    a, b = rng.uniform(40, 235, 3), rng.uniform(40, 235, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    img = (a * (1 - t) + b * t) * np.ones((1, w, 1))
    style = rng.integers(4)
    if style == 1:  # wall and floor
      floor = int(h * rng.uniform(0.6, 0.9))
      img[floor:] *= rng.uniform(0.55, 0.8)
    elif style == 2:  # striped wallpaper
      period = int(rng.integers(5, 15))
      img *= (0.88 + 0.12 * (np.arange(w)[None, :] // period % 2))[..., None]
    elif style == 3:  # blotches (foliage, crowds)
      small = Image.fromarray(rng.integers(30, 230, (5, 4, 3)).astype(np.uint8))
      img = 0.5 * img + 0.5 * np.asarray(small.resize((w, h), Image.BILINEAR), np.float32)
  return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


_VARIATION_RATES = {"category": {1: .55, 2: .25, 3: .1, 4: .07, 5: .03},
                    "landmarks": {1: .35, 2: .25, 3: .15, 4: .15, 5: .1}}


def _pose_types(item: Item, rng: np.random.Generator, view: int) -> int:
  if item.benchmark == "inshop":
    if view == 0:
      return 1
    return int(_pick(rng, {"1": .25, "2": .25, "4": .2, "5": .15, "6": .15}))
  rate_flat = 0.08 if item.benchmark == "category" else 0.1
  r = rng.random()
  return 6 if r < rate_flat else (4 if r < rate_flat + 0.07 else 1)


def render_view(item: Item, view: int = 0, *, size: tuple[int, int] | None = None,
                pose_type: int | None = None, variation_type: int | None = None,
                masks: bool = False) -> View:
  """Picture `view` of `item`: (width, height) `size` (default: the benchmark's, drawn at random);
  pose type 1 front, 2 side, 4 full figure, 5 zoom-in, 6 flat (default: drawn); variation
  1 normal, 2 medium pose, 3 large pose, 4 medium zoom-in, 5 large zoom-in (default: drawn).
  masks: also return the visible garment coverage (for tests and pictures)."""
  rng = np.random.default_rng([item.seed, _CODES[item.benchmark], item.index, view, 5])
  sizes = SIZES[item.benchmark]
  w, h = size if size is not None else sizes[int(rng.integers(len(sizes)))]
  if pose_type is None:
    pose_type = _pose_types(item, rng, view)
  if variation_type is None:
    if item.benchmark == "inshop":
      variation_type = {1: _pick(rng, {"1": .7, "2": .3}), 2: _pick(rng, {"2": .6, "3": .4}),
                        4: "1", 5: _pick(rng, {"4": .6, "5": .4}), 6: "1"}[pose_type]
      variation_type = int(variation_type)
    elif pose_type == 6:
      variation_type = int(_pick(rng, {"1": .8, "2": .2}))
    elif pose_type == 4:
      variation_type = 1
    else:
      rates = _VARIATION_RATES[item.benchmark]
      variation_type = int(_pick(rng, {str(k): v for k, v in rates.items()}))
  if pose_type == 2 and variation_type == 1:
    variation_type = 2
  flat = pose_type == 6
  pose = _sample_pose(rng, flat, item.figure)
  mirrored = bool(rng.random() < 0.3)
  scene = _build(item, pose)

  # View transform: body -> image (edge-based pixel coordinates, 0..w).
  rot = {1: 4, 2: 12, 3: 22, 4: 6, 5: 6}[variation_type]
  theta = math.radians(rng.uniform(-rot, rot))
  if variation_type in (2, 3) and rng.random() < 0.7:
    theta = math.copysign(max(abs(theta), math.radians(rot * 0.6)), theta)
  squeeze = {1: (0.94, 1.0), 2: (0.8, 0.92), 3: (0.66, 0.8), 4: (0.9, 1.0), 5: (0.9, 1.0)}[
      variation_type]
  if pose_type == 2:
    squeeze = (0.62, 0.78)
  kx = rng.uniform(*squeeze)
  persp = {1: 0.0, 2: 0.0008, 3: 0.0015, 4: 0.0005, 5: 0.0005}[variation_type]
  px, py = rng.uniform(-persp, persp, 2)
  garment = np.concatenate([l.pts for l in scene.layers if l.role in ("part", "deco")])
  target = scene.figure_pts if pose_type == 4 else garment
  centre = (target.min(0) + target.max(0)) / 2
  c, s = math.cos(theta), math.sin(theta)
  g = (np.array([[1, 0, 0], [0, 1, 0], [px, py, 1]]) @
       np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @
       np.diag([kx * (-1 if mirrored else 1), 1.0, 1.0]) @
       np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1]]))
  posed = _apply(g, target)
  lo, hi = posed.min(0), posed.max(0)
  bw, bh = hi - lo
  if variation_type in (4, 5):
    zoom = rng.uniform(1.25, 1.6) if variation_type == 4 else rng.uniform(1.7, 2.3)
    scale = zoom * min(w / bw, h / bh)
    focus = (lo + hi) / 2 + rng.uniform(-0.22, 0.22, 2) * (bw, bh)
    off = np.array([w / 2, h / 2]) - focus * scale
  else:
    margin = rng.uniform(1.08, 1.2) if pose_type == 4 else rng.uniform(1.12, 1.45)
    scale = min(w / (bw * margin), h / (bh * margin))
    slack = np.array([w, h]) - (hi - lo) * scale
    off = -lo * scale + slack * rng.uniform(0.2, 0.8, 2)
  to_img = np.array([[scale, 0, off[0]], [0, scale, off[1]], [0, 0, 1]]) @ g
  to_canvas = np.diag([SS, SS, 1.0]) @ to_img
  to_canvas[:2] -= 0.5 * to_canvas[2:3]  # PIL's pixel centres sit at integer coordinates
  from_canvas = np.linalg.inv(to_canvas)

  # Draw.
  bg_kind = ("table" if flat else "studio") if item.benchmark == "inshop" else (
      "table" if flat and rng.random() < 0.5 else "scene")
  canvas = _background(rng, w, h, bg_kind).resize((w * SS, h * SS), Image.BILINEAR)
  draw = ImageDraw.Draw(canvas)
  gmask = Image.new("L", canvas.size, 0) if masks else None
  gdraw = ImageDraw.Draw(gmask) if masks else None
  garment_started = False
  cw, ch = canvas.size
  polys = []
  for layer in scene.layers:
    poly = _apply(to_canvas, layer.pts)
    polys.append(poly)
    flat_xy = poly.ravel().tolist()
    garment_layer = layer.role in ("part", "deco")
    if layer.paint is None:
      draw.polygon(flat_xy, fill=layer.fill)
    else:
      x0, y0 = np.floor(poly.min(0)).astype(int) - 1
      x1, y1 = np.ceil(poly.max(0)).astype(int) + 2
      x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cw), min(y1, ch)
      if x1 > x0 and y1 > y0:
        m = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(m).polygon((poly - (x0, y0)).ravel().tolist(), fill=255)
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float64),
                             np.arange(y0, y1, dtype=np.float64))
        hom = (from_canvas[:, 0, None, None] * gx + from_canvas[:, 1, None, None] * gy
               + from_canvas[:, 2, None, None])
        bx, by = hom[0] / hom[2], hom[1] / hom[2]
        rgb, alpha = _paint(layer.paint, bx, by)
        tex = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        if alpha is not None:
          m = Image.fromarray((np.asarray(m, np.float32) * alpha).astype(np.uint8))
        canvas.paste(tex, (int(x0), int(y0)), m)
    if gdraw is not None and (garment_layer or garment_started):
      gdraw.polygon(flat_xy, fill=255 if garment_layer else 0)
    garment_started |= garment_layer

  # Landmarks: true positions, occlusion by what was drawn later, truncation by the frame.
  order = {}
  for i, layer in enumerate(scene.layers):
    if layer.role == "part":
      order.setdefault(layer.part, i)
  ring = [(0.0, 0.0)] + [(r * math.cos(a + r), r * math.sin(a + r)) for r in (0.7, 1.4, 2.1)
                         for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
  ring = np.array(ring) * SS
  boxes = np.array([np.concatenate([p.min(0), p.max(0)]) for p in polys])
  xy = np.zeros((NUM_LANDMARKS, 2), np.float32)
  vis = np.full(NUM_LANDMARKS, TRUNCATED, np.int64)
  present = np.zeros(NUM_LANDMARKS, np.int64)
  for slot in LANDMARK_SLOTS[item.design["type"]]:
    point, part = scene.landmarks[slot]
    pc = _apply(to_canvas, point[None])[0]
    samples = pc + ring
    own = _inside(polys[order[part]], samples)
    own[0] = True
    covered = np.zeros(len(samples), bool)
    lo, hi = samples.min(0), samples.max(0)
    for i in range(order[part] + 1, len(scene.layers)):
      layer = scene.layers[i]
      if layer.role == "deco":
        continue
      if (boxes[i, :2] > hi).any() or (boxes[i, 2:] < lo).any():
        continue
      covered |= _inside(polys[i], samples)
    p_img = _apply(to_img, point[None])[0] - 0.5
    xy[slot] = p_img
    present[slot] = 1
    rx, ry = np.round(p_img)
    if not (0 <= rx <= w - 1 and 0 <= ry <= h - 1):
      vis[slot] = TRUNCATED
    else:
      vis[slot] = OCCLUDED if covered[own].mean() >= 0.5 else VISIBLE
  if mirrored:
    for a, b in FLIP_PAIRS:
      xy[[a, b]] = xy[[b, a]]
      vis[[a, b]] = vis[[b, a]]
      present[[a, b]] = present[[b, a]]

  gpts = _apply(to_img, garment)
  x1b, y1b = np.floor(gpts.min(0))
  x2b, y2b = np.ceil(gpts.max(0)) - 1
  bbox = np.array([np.clip(x1b, 0, w - 1), np.clip(y1b, 0, h - 1), np.clip(x2b, 0, w - 1),
                   np.clip(y2b, 0, h - 1)], np.int64)

  image = canvas.reduce(SS)
  arr = np.asarray(image, np.float32)
  light = rng.uniform(0.88, 1.1) if item.benchmark != "inshop" else rng.uniform(0.96, 1.04)
  ramp = np.linspace(1 - rng.uniform(0, 0.1), 1 + rng.uniform(0, 0.1), w)
  if rng.random() < 0.5:
    ramp = ramp[::-1]
  arr = arr * light * ramp[None, :, None] * rng.uniform(0.96, 1.04, 3)
  arr = arr + 2.0 * rng.standard_normal(arr.shape, np.float32)
  image = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
  mask = None
  if gmask is not None:
    mask = np.asarray(gmask.reduce(SS), np.float32) / 255.0
  return View(image, xy, vis, present, bbox, variation_type, pose_type, mirrored,
              np.linalg.inv(to_img) @ np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]]), mask)


# --- writing ------------------------------------------------------------------------------------

def _title(item: Item) -> str:
  d = item.design
  words = [d["texture"].title().replace(" ", "-"), d["fabric"].title(), item.category_name]
  if d["texture"] == "solid":
    words[0] = d["colour"].title()
  return "_".join(words)


def _split_of(index: int) -> str:
  """70 / 15 / 15 train / val / test, spread over every 20 consecutive images."""
  r = (index - 1) % 20
  return "val" if r in (3, 9, 16) else ("test" if r in (6, 13, 19) else "train")


def _landmark_fields(view: View, clothes_type: int) -> list[str]:
  fields = [str(clothes_type), str(view.variation_type)]
  lm = view.rounded_landmarks()
  for slot in LANDMARK_SLOTS[clothes_type]:
    fields.append(f"{view.visibility[slot]} {lm[slot, 0]:03d} {lm[slot, 1]:03d}")
  return fields


def _write_list(path: str, header: str, rows: Sequence[tuple[str, Sequence[str]]]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  width = max((len(n) for n, _ in rows), default=10) + 2
  with open(path, "w") as f:
    f.write(f"{len(rows)}\n{header}\n")
    for name, values in rows:
      f.write(name.ljust(width) + "  ".join(values) + "\n")


_LANDMARK_HEADER = ("image_name  clothes_type  variation_type  " + "  ".join(
    f"landmark_visibility_{k}  landmark_location_x_{k}  landmark_location_y_{k}"
    for k in range(1, NUM_LANDMARKS + 1)))


def _bbox_fields(view: View) -> list[str]:
  return [f"{v:03d}" for v in view.bbox.tolist()]


def _write_category(root: str, n: int, seed: int, bar) -> dict[str, Any]:
  rows: dict[str, list] = {k: [] for k in ("cat", "attr", "bbox", "lm", "part")}
  folders: dict[str, int] = {}
  splits = {"train": 0, "val": 0, "test": 0}
  for i in range(1, n + 1):
    item = make_item(i, seed, "category")
    view = render_view(item, 0)
    folder = _title(item)
    folders[folder] = folders.get(folder, 0) + 1
    name = f"img/{folder}/img_{folders[folder]:08d}.jpg"
    _save(view.image, os.path.join(root, name))
    rng = np.random.default_rng([seed, 1, i, 77])
    unknown = rng.random(len(ATTRIBUTE_NAMES)) < UNKNOWN_RATE
    values = [0 if unknown[k] else (1 if item.attributes[a] else -1)
              for k, a in enumerate(ATTRIBUTE_NAMES)]
    split = _split_of(i)
    splits[split] += 1
    rows["cat"].append((name, [str(item.category + 1)]))
    rows["attr"].append((name, [" ".join(f"{v:2d}" for v in values)]))
    rows["bbox"].append((name, _bbox_fields(view)))
    rows["lm"].append((name, _landmark_fields(view, item.clothes_type)))
    rows["part"].append((name, [split]))
    bar.update(1)
  anno = os.path.join(root, "Anno")
  os.makedirs(anno, exist_ok=True)
  with open(os.path.join(anno, "list_category_cloth.txt"), "w") as f:
    f.write(f"{len(CATEGORIES)}\ncategory_name  category_type\n")
    f.writelines(f"{c:<29}{t}\n" for c, t in CATEGORIES)
  with open(os.path.join(anno, "list_attr_cloth.txt"), "w") as f:
    f.write(f"{len(ATTRIBUTES)}\nattribute_name  attribute_type\n")
    f.writelines(f"{a:<45}{t}\n" for a, t in ATTRIBUTES)
  _write_list(os.path.join(anno, "list_category_img.txt"), "image_name  category_label",
              rows["cat"])
  _write_list(os.path.join(anno, "list_attr_img.txt"), "image_name  attribute_labels",
              rows["attr"])
  _write_list(os.path.join(anno, "list_bbox.txt"), "image_name  x_1  y_1  x_2  y_2",
              rows["bbox"])
  _write_list(os.path.join(anno, "list_landmarks.txt"), _LANDMARK_HEADER, rows["lm"])
  _write_list(os.path.join(root, "Eval", "list_eval_partition.txt"),
              "image_name  evaluation_status", rows["part"])
  return {"images": n, "splits": splits, "categories": len(CATEGORIES),
          "attributes": len(ATTRIBUTES)}


def _write_inshop(root: str, n: int, seed: int, bar) -> dict[str, Any]:
  bbox_rows, lm_rows, part_rows, items = [], [], [], []
  splits = {"train": 0, "query": 0, "gallery": 0}
  written, k = 0, 0
  train_items = 0
  while written < n:
    k += 1
    rng = np.random.default_rng([seed, 2, k, 3])
    views = int(min(rng.integers(2, 7), n - written))
    test = k % 5 in (0, 2) and views >= 2
    item = make_item(k, seed, "inshop")
    gender = "WOMEN" if item.figure["female"] else "MEN"
    folder = INSHOP_FOLDERS[item.category_name][item.figure["female"]]
    item_id = f"id_{k:08d}"
    items.append(item_id)
    train_items += not test
    for v in range(views):
      view = render_view(item, v)
      name = (f"img/{gender}/{folder}/{item_id}/{v + 1:02d}_{view.pose_type}_"
              f"{POSE_NAMES[view.pose_type]}.jpg")
      _save(view.image, os.path.join(root, name))
      status = "train" if not test else ("query" if v < views // 2 else "gallery")
      splits[status] += 1
      bbox_rows.append((name, [str(item.clothes_type), str(view.pose_type)] + _bbox_fields(view)))
      lm_rows.append((name, _landmark_fields(view, item.clothes_type)))
      part_rows.append((name, [item_id, status]))
      bar.update(1)
    written += views
  anno = os.path.join(root, "Anno")
  _write_list(os.path.join(anno, "list_bbox_inshop.txt"),
              "image_name  clothes_type  pose_type  x_1  y_1  x_2  y_2", bbox_rows)
  _write_list(os.path.join(anno, "list_landmarks_inshop.txt"), _LANDMARK_HEADER, lm_rows)
  with open(os.path.join(anno, "list_item_inshop.txt"), "w") as f:
    f.write(f"{len(items)}\n" + "".join(f"{i}\n" for i in items))
  _write_list(os.path.join(root, "Eval", "list_eval_partition.txt"),
              "image_name  item_id  evaluation_status", part_rows)
  return {"images": n, "items": len(items), "train_items": train_items, "splits": splits}


def _write_landmarks(root: str, n: int, seed: int, bar) -> dict[str, Any]:
  lm_rows, bbox_rows, part_rows = [], [], []
  splits = {"train": 0, "val": 0, "test": 0}
  for i in range(1, n + 1):
    item = make_item(i, seed, "landmarks")
    view = render_view(item, 0)
    name = f"img/img_{i:08d}.jpg"
    _save(view.image, os.path.join(root, name))
    split = _split_of(i)
    splits[split] += 1
    lm_rows.append((name, _landmark_fields(view, item.clothes_type)))
    bbox_rows.append((name, _bbox_fields(view)))
    part_rows.append((name, [split]))
    bar.update(1)
  anno = os.path.join(root, "Anno")
  _write_list(os.path.join(anno, "list_landmarks.txt"), _LANDMARK_HEADER, lm_rows)
  _write_list(os.path.join(anno, "list_bbox.txt"), "image_name  x_1  y_1  x_2  y_2", bbox_rows)
  _write_list(os.path.join(root, "Eval", "list_eval_partition.txt"),
              "image_name  evaluation_status", part_rows)
  return {"images": n, "splits": splits}


def _save(image: Image.Image, path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, quality=90)


def write_sample_set(out_dir: str, *, num_images: int = NUM_IMAGES, seed: int = 0,
                     progress: bool = False, benchmark: str | None = None) -> dict[str, Any]:
  """Writes <out_dir>/{category,inshop,landmarks}/ (or only `benchmark`'s folder, with all
  `num_images`); returns a summary. num_images is shared 45 / 30 / 25% between the three."""
  names = BENCHMARKS if benchmark is None else (benchmark,)
  if benchmark is not None and benchmark not in BENCHMARKS:
    raise ValueError(f"benchmark must be one of {list(BENCHMARKS)} or None, got {benchmark!r}")
  shares = {b: SHARES[b] / sum(SHARES[n] for n in names) for b in names}
  counts = {b: int(round(num_images * shares[b])) for b in names}
  counts[names[0]] += num_images - sum(counts.values())
  if min(counts.values()) < 2:
    raise ValueError(f"num_images={num_images} is too small: every benchmark needs >= 2 images "
                     f"(got {counts})")
  writers = {"category": _write_category, "inshop": _write_inshop,
             "landmarks": _write_landmarks}
  summary: dict[str, Any] = {"num_images": num_images, "seed": seed}
  with tqdm(total=num_images, desc="rendering garments", disable=not progress,
            leave=False) as bar:
    for b in names:
      root = os.path.join(out_dir, b)
      os.makedirs(root, exist_ok=True)
      summary[b] = writers[b](root, counts[b], seed, bar)
  categories = ", ".join(f"{c} ({t})" for c, t in CATEGORIES)
  attributes = "; ".join(f"{t}: " + ", ".join(a for a, k in ATTRIBUTES if k == i + 1)
                         for i, t in enumerate(("texture", "fabric", "shape", "part", "style")))
  with open(os.path.join(out_dir, "README.md"), "w") as f:
    f.write(_README.format(
        n=num_images, seed=seed, counts=", ".join(f"{b} {counts[b]}" for b in names),
        categories=textwrap.fill(f"Categories (type: 1 upper, 2 lower, 3 full): {categories}.",
                                 96, break_on_hyphens=False),
        attributes=textwrap.fill(f"Attributes: {attributes}.", 96, break_on_hyphens=False)))
  return summary


_README = """# DeepFashion-format sample set (rendered)

{n} pictures of procedurally drawn garments ({counts}), written by
`hcjax samples deepfashion --seed {seed}` (hcjax/data/samples/deepfashion.py), in the original
layouts of three DeepFashion benchmarks. Convert each folder with
`hcjax convert deepfashion --benchmark <category|inshop|landmarks> --src <this folder>/<benchmark>`.

- category/: Category and Attribute Prediction (img/, Anno/list_category_cloth.txt,
  list_category_img.txt, list_attr_cloth.txt, list_attr_img.txt, list_bbox.txt,
  list_landmarks.txt, Eval/list_eval_partition.txt train/val/test)
- inshop/: In-shop Clothes Retrieval (img/MEN|WOMEN/<Category>/id_NNNNNNNN/VV_P_<pose>.jpg;
  Anno/list_bbox_inshop.txt, list_landmarks_inshop.txt, list_item_inshop.txt;
  Eval/list_eval_partition.txt: train items, query/gallery items disjoint from them)
- landmarks/: Fashion Landmark Detection (img/img_NNNNNNNN.jpg; Anno/list_landmarks.txt,
  list_bbox.txt; Eval/list_eval_partition.txt train/val/test)

All labels are true by construction: categories (name, DeepFashion clothes type), attributes,
the 8 landmarks with visibility (0 visible, 1 occluded, 2 truncated: outside the picture, the
position still the true one), boxes, item identities. "Left" landmarks are the wearer's left (on
the picture's right in a frontal view). Only the drawn categories and attributes are listed (the
real files list 50 and 1,000); about 4% of list_attr_img values are 0 (unknown).

{categories}

{attributes}
Colour names and summer / sporty / formal / boho are style attributes; the four words are fixed
functions of drawn traits.
"""

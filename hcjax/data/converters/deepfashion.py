"""DeepFashion (three benchmarks) original files -> sharded TFRecords per split.

One converter, three layouts (`benchmark=`), each read from its folder (`src`) as distributed:
  category   Category and Attribute Prediction: img/..., Anno/ (or Anno_coarse/)
             list_category_cloth.txt, list_category_img.txt, list_attr_cloth.txt,
             list_attr_img.txt, list_bbox.txt, list_landmarks.txt; Eval/list_eval_partition.txt
             (`image train|val|test`)
  inshop     In-shop Clothes Retrieval: img/..., Anno/list_bbox_inshop.txt (`image clothes_type
             pose_type x1 y1 x2 y2`), Anno/list_landmarks_inshop.txt, Anno/list_item_inshop.txt
             (optional: count, then one item id a line, no header); Eval/list_eval_partition.txt
             (`image item_id train|query|gallery`)
  landmarks  Fashion Landmark Detection (FLD): img/..., Anno/list_landmarks.txt, Anno/list_bbox.txt;
             Eval/list_eval_partition.txt (`image train|val|test`); list_joints.txt is not read
Every list file: line 1 the number of rows (checked against the rows), line 2 the column names
(not checked: their spacing varies), then one row per image, fields separated by whitespace.
In list_category_cloth.txt / list_attr_cloth.txt the name may hold spaces ("abstract chevron"):
the last field is the type, the name everything before it. Image paths are `src/<image name>`.

Landmark rows are `image clothes_type variation_type` and one (visibility, x, y) triple per
landmark of the clothes type, in the type's own order: upper (1) 6 = collars, sleeves, hems;
lower (2) 4 = waistlines, hems; full (3) 8 = collars, sleeves, waistlines, hems (left before
right). Rows padded to 8 triples with trailing `0 0 0` are accepted too (the FLD documentation
lists 8 triples, the mmfashion scripts pad short rows). Visibility: 0 visible, 1 occluded,
2 truncated. Each row goes into 8 canonical slots (LANDMARK_NAMES, LANDMARK_SLOTS); a slot
the type lacks has present 0, visibility 2 and (0, 0).

Per example (tf.train.Example; fields every benchmark writes unless noted):
  image                JPEG bytes, the original file
  id                   bytes, the image name as listed ("img/Anorak_X/img_00000001.jpg")
  split                bytes: train | validation | test (val in the files) | query | gallery
  image_size           int64[2] height, width (from the JPEG header)
  category             int64[1] 0-based category (list_category_img's label - 1); -1 without one
  category_type        int64[1] the image's clothes type (its landmark row): 1 upper, 2 lower,
                       3 full
  variation_type       int64[1] 1 normal / 2 medium / 3 large pose, 4 medium / 5 large zoom-in
  attributes           category only: bytes, int8[A] (A listed; 1000 in DeepFashion):
                       1 / -1 / 0 unknown, exactly the list_attr_img values (np.frombuffer(b, np.int8))
  bbox                 float32[4] x1 y1 x2 y2 in image pixels
  landmarks            float32[16] (x, y) of the 8 canonical slots
  landmark_visibility  int64[8] 0 visible, 1 occluded, 2 truncated or absent
  landmark_present     int64[8] 1 when the clothes type has that landmark
  item_id              int64[1] inshop: index of the item in list_item_inshop.txt (or in the sorted
                       item ids when that file is absent); -1 otherwise
`parse_example` turns a decoded Example back into these arrays (landmarks as [8, 2]).
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PIL import Image

from hcjax.data import tfrecord
from hcjax.data.converters import common
from hcjax.data.errors import AnnotationError, ImageDecodeError, MissingDataError

BENCHMARKS = ("category", "inshop", "landmarks")
LANDMARK_NAMES = ("left_collar", "right_collar", "left_sleeve", "right_sleeve",
                  "left_waistline", "right_waistline", "left_hem", "right_hem")
NUM_LANDMARKS = len(LANDMARK_NAMES)
CLOTHES_TYPE_NAMES = {1: "upper", 2: "lower", 3: "full"}
# Canonical slots of each clothes type's landmarks, in the order its rows list them.
LANDMARK_SLOTS = {1: (0, 1, 2, 3, 6, 7), 2: (4, 5, 6, 7), 3: (0, 1, 2, 3, 4, 5, 6, 7)}
# Left/right slots swapped by a horizontal flip.
FLIP_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7))
VISIBLE, OCCLUDED, TRUNCATED = 0, 1, 2
VISIBILITY_NAMES = ("visible", "occluded", "truncated")
VARIATION_TYPE_NAMES = {1: "normal pose", 2: "medium pose", 3: "large pose",
                        4: "medium zoom-in", 5: "large zoom-in"}
POSE_TYPE_NAMES = {1: "frontal", 2: "side", 3: "back", 4: "zoom-out", 5: "zoom-in",
                   6: "stand-alone"}
ATTRIBUTE_TYPE_NAMES = ("texture", "fabric", "shape", "part", "style")  # types 1..5
# Partition status -> split name (val is called validation everywhere in hcjax).
SPLIT_NAMES = {"category": {"train": "train", "val": "validation", "test": "test"},
               "landmarks": {"train": "train", "val": "validation", "test": "test"},
               "inshop": {"train": "train", "query": "query", "gallery": "gallery"}}
_ATTRIBUTE_CODES = {"1": 1, "-1": -1, "0": 0}


@dataclasses.dataclass
class Record:
  id: str                       # image name as listed, relative to src
  split: str
  path: str
  bbox: np.ndarray              # float32[4]
  landmarks: np.ndarray         # float32[8, 2]
  visibility: np.ndarray        # int64[8]
  present: np.ndarray           # int64[8]
  category_type: int
  variation_type: int
  category: int = -1
  attributes: bytes | None = None
  item_id: int = -1


@dataclasses.dataclass
class Landmarks:
  clothes_type: int
  variation_type: int
  xy: np.ndarray                # float32[8, 2]
  visibility: np.ndarray        # int64[8]
  present: np.ndarray           # int64[8]
  padded: bool


# --- list files ---------------------------------------------------------------------------------

def _lines(path: str):
  """(1-based line number, stripped text) of each non-blank line."""
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      text = line.strip()
      if text:
        yield number, text


def _head(path: str, what: str, lines, header: bool = True) -> int:
  """Consumes the count line (and the header line); returns the count."""
  try:
    line, text = next(lines)
  except StopIteration:
    raise AnnotationError(path, 1, "empty file") from None
  fields = text.split()
  if len(fields) != 1:
    raise AnnotationError(path, line, f"first line must hold the number of rows, got "
                          f"{text[:80]!r}")
  count = common.parse_int(path, line, fields[0], f"{what} count")
  if header:
    try:
      next(lines)
    except StopIteration:
      raise AnnotationError(path, line + 1, "missing header line (column names)") from None
  return count


def _check_count(path: str, count: int, found: int, what: str) -> None:
  if count != found:
    plural = what[:-1] + "ies" if what.endswith("y") else what + "s"
    raise AnnotationError(path, 1, f"count line says {count} {plural} but the file lists {found}")


def read_image_list(path: str, parse_row: Callable[[int, list[str]], Any], what: str = "image"
                    ) -> dict[str, tuple[int, Any]]:
  """{image name: (line, parse_row(line, other fields))} of a count/header/rows list file.

  Rows are parsed as they are read (list_attr_img.txt holds 289,222 x 1,000 values).
  """
  common.require_file(path, f"DeepFashion list {os.path.basename(path)}")
  lines = _lines(path)
  count = _head(path, what, lines)
  rows: dict[str, tuple[int, Any]] = {}
  for line, text in lines:
    fields = text.split()
    if fields[0] in rows:
      raise AnnotationError(path, line, f"{fields[0]} listed twice (first on line "
                            f"{rows[fields[0]][0]})")
    rows[fields[0]] = (line, parse_row(line, fields[1:]))
  _check_count(path, count, len(rows), what)
  return rows


def read_named_types(path: str, what: str, types: tuple[int, ...]) -> list[tuple[str, int]]:
  """[(name, type)] of list_category_cloth.txt / list_attr_cloth.txt, in file order.

  The type is the last field; the name is everything before it (names may hold spaces).
  """
  common.require_file(path, f"DeepFashion list {os.path.basename(path)}")
  lines = _lines(path)
  count = _head(path, what, lines)
  out, seen = [], {}
  for line, text in lines:
    parts = text.rsplit(None, 1)
    if len(parts) != 2:
      raise AnnotationError(path, line, f"expected `<{what} name> <type>`, got {text[:80]!r}")
    name, type_text = parts[0].strip(), parts[1]
    kind = common.parse_int(path, line, type_text, f"type of {what} {name!r}", types)
    if name in seen:
      raise AnnotationError(path, line, f"{what} {name!r} listed twice (first on line "
                            f"{seen[name]})")
    seen[name] = line
    out.append((name, kind))
  _check_count(path, count, len(out), what)
  return out


def read_items(path: str) -> list[str]:
  """Item ids of list_item_inshop.txt (count line, then one id a line; an `item_id` header
  line, which the official file lacks, is skipped)."""
  lines = _lines(path)
  count = _head(path, "item", lines, header=False)
  items, seen = [], {}
  for line, text in lines:
    fields = text.split()
    if len(fields) != 1:
      raise AnnotationError(path, line, f"expected one item id, got {len(fields)} fields")
    if not items and not seen and fields[0] == "item_id":
      continue
    if fields[0] in seen:
      raise AnnotationError(path, line, f"item {fields[0]} listed twice (first on line "
                            f"{seen[fields[0]]})")
    seen[fields[0]] = line
    items.append(fields[0])
  _check_count(path, count, len(items), "item")
  return items


# --- row parsers --------------------------------------------------------------------------------

def _expect(path: str, line: int, fields: list[str], n: int, what: str) -> None:
  if len(fields) != n:
    raise AnnotationError(path, line, f"expected an image name and {what} ({n} values), got "
                          f"{len(fields)} values")


def parse_bbox(path: str, line: int, fields: list[str]) -> np.ndarray:
  """x1 y1 x2 y2 -> float32[4]; x1 <= x2 and y1 <= y2."""
  x1, y1, x2, y2 = (common.parse_int(path, line, v, f"bbox {n}", None)
                    for v, n in zip(fields, ("x_1", "y_1", "x_2", "y_2")))
  if x2 < x1 or y2 < y1:
    raise AnnotationError(path, line, f"bbox x_1 y_1 x_2 y_2 = {x1} {y1} {x2} {y2}: the "
                          "second corner must not lie left of or above the first")
  return np.array([x1, y1, x2, y2], np.float32)


def parse_landmarks(path: str, line: int, fields: list[str]) -> Landmarks:
  """`clothes_type variation_type (visibility x y) x n` -> canonical 8 slots."""
  if len(fields) < 2:
    raise AnnotationError(path, line, "expected an image name, clothes type, variation type and "
                          f"landmark triples, got {len(fields) + 1} fields")
  clothes = common.parse_int(path, line, fields[0], "clothes type", tuple(CLOTHES_TYPE_NAMES))
  variation = common.parse_int(path, line, fields[1], "variation type",
                               tuple(VARIATION_TYPE_NAMES))
  slots = LANDMARK_SLOTS[clothes]
  values = fields[2:]
  padded = False
  if len(values) == 3 * NUM_LANDMARKS and len(slots) < NUM_LANDMARKS:
    extra = values[3 * len(slots):]
    if all(_is_zero(v) for v in extra):
      values, padded = values[:3 * len(slots)], True
  if len(values) != 3 * len(slots):
    raise AnnotationError(
        path, line, f"clothes type {clothes} ({CLOTHES_TYPE_NAMES[clothes]}) has {len(slots)} "
        f"landmarks: expected {3 + 3 * len(slots)} fields (image, clothes type, variation type, "
        f"{len(slots)} x visibility x y), got {len(fields) + 1}")
  xy = np.zeros((NUM_LANDMARKS, 2), np.float32)
  visibility = np.full(NUM_LANDMARKS, TRUNCATED, np.int64)
  present = np.zeros(NUM_LANDMARKS, np.int64)
  for j, slot in enumerate(slots):
    name = LANDMARK_NAMES[slot]
    visibility[slot] = common.parse_int(path, line, values[3 * j], f"{name} visibility",
                                        (VISIBLE, OCCLUDED, TRUNCATED))
    xy[slot, 0] = common.parse_int(path, line, values[3 * j + 1], f"{name} x")
    xy[slot, 1] = common.parse_int(path, line, values[3 * j + 2], f"{name} y")
    present[slot] = 1
  return Landmarks(clothes, variation, xy, visibility, present, padded)


def _is_zero(text: str) -> bool:
  try:
    return int(text) == 0
  except ValueError:
    return False


def parse_attributes(path: str, line: int, fields: list[str], names: list[str]) -> bytes:
  """A list_attr_img row -> int8 bytes of {1, -1, 0}."""
  if len(fields) != len(names):
    raise AnnotationError(path, line, f"expected an image name and {len(names)} attribute values, "
                          f"got {len(fields)} values")
  codes = [_ATTRIBUTE_CODES.get(v) for v in fields]
  if None in codes:
    i = codes.index(None)
    raise AnnotationError(path, line, f"attribute {i + 1} ({names[i]!r}) must be 1, -1 or 0 "
                          f"(unknown), got {fields[i]!r}")
  return np.array(codes, np.int8).tobytes()


# --- the three layouts --------------------------------------------------------------------------

def _anno_dir(src: str, benchmark: str) -> str:
  names = ("Anno", "Anno_coarse") if benchmark == "category" else ("Anno",)
  for name in names:
    if os.path.isdir(os.path.join(src, name)):
      return os.path.join(src, name)
  raise MissingDataError(f"no {' or '.join(n + '/' for n in names)} folder under {src} (point "
                         f"--src at the {benchmark} benchmark's folder; see "
                         "data/deepfashion/README.md)")


def _partition(path: str, benchmark: str) -> dict[str, tuple[int, Any]]:
  statuses = SPLIT_NAMES[benchmark]

  def row(line, fields):
    n = 2 if benchmark == "inshop" else 1
    _expect(path, line, fields, n, "item id and status" if n == 2 else "evaluation status")
    if fields[-1] not in statuses:
      raise AnnotationError(path, line, f"evaluation status must be one of {list(statuses)}, got "
                            f"{fields[-1]!r}")
    return (fields[0], statuses[fields[-1]]) if n == 2 else statuses[fields[-1]]

  return read_image_list(path, row)


def _lookup(table: dict[str, tuple[int, Any]], name: str, table_path: str, part_path: str,
            line: int) -> Any:
  if name not in table:
    raise AnnotationError(part_path, line, f"{name} has no row in {table_path}")
  return table[name][1]


def read_annotations(src: str, benchmark: str) -> tuple[dict[str, list[Record]], dict[str, Any]]:
  """Parses every list file strictly; returns records per split (partition order) and metadata."""
  if benchmark not in BENCHMARKS:
    raise ValueError(f"benchmark must be one of {list(BENCHMARKS)}, got {benchmark!r}")
  anno = _anno_dir(src, benchmark)
  part_path = common.require_file(os.path.join(src, "Eval", "list_eval_partition.txt"),
                                  "DeepFashion partition file Eval/list_eval_partition.txt")
  meta: dict[str, Any] = {}
  suffix = "_inshop" if benchmark == "inshop" else ""
  bbox_path = os.path.join(anno, f"list_bbox{suffix}.txt")
  lm_path = os.path.join(anno, f"list_landmarks{suffix}.txt")
  for path in (bbox_path, lm_path):
    common.require_file(path, f"DeepFashion list {os.path.basename(path)}")

  tables: dict[str, dict[str, tuple[int, Any]]] = {}
  if benchmark == "inshop":
    def bbox_row(line, fields):
      _expect(bbox_path, line, fields, 6, "clothes type, pose type and x_1 y_1 x_2 y_2")
      clothes = common.parse_int(bbox_path, line, fields[0], "clothes type",
                                 tuple(CLOTHES_TYPE_NAMES))
      common.parse_int(bbox_path, line, fields[1], "pose type", tuple(POSE_TYPE_NAMES))
      return clothes, parse_bbox(bbox_path, line, fields[2:])
  else:
    def bbox_row(line, fields):
      _expect(bbox_path, line, fields, 4, "x_1 y_1 x_2 y_2")
      return None, parse_bbox(bbox_path, line, fields)
  tables[bbox_path] = read_image_list(bbox_path, bbox_row)
  tables[lm_path] = read_image_list(lm_path, lambda line, f: parse_landmarks(lm_path, line, f))

  cat_path = attr_path = None
  if benchmark == "category":
    categories = read_named_types(os.path.join(anno, "list_category_cloth.txt"), "category",
                                  tuple(CLOTHES_TYPE_NAMES))
    attributes = read_named_types(os.path.join(anno, "list_attr_cloth.txt"), "attribute",
                                  tuple(range(1, len(ATTRIBUTE_TYPE_NAMES) + 1)))
    attr_names = [n for n, _ in attributes]
    cat_path = os.path.join(anno, "list_category_img.txt")
    attr_path = os.path.join(anno, "list_attr_img.txt")

    def cat_row(line, fields):
      _expect(cat_path, line, fields, 1, "category label")
      label = common.parse_int(cat_path, line, fields[0], "category label")
      if not 1 <= label <= len(categories):
        raise AnnotationError(cat_path, line, f"category label must be in 1..{len(categories)} "
                              f"(the rows of list_category_cloth.txt), got {label}")
      return label - 1

    tables[cat_path] = read_image_list(cat_path, cat_row)
    tables[attr_path] = read_image_list(
        attr_path, lambda line, f: parse_attributes(attr_path, line, f, attr_names))
    meta.update(category_names=[n for n, _ in categories],
                category_types=[t for _, t in categories],
                attribute_names=attr_names, attribute_types=[t for _, t in attributes])

  partition = _partition(part_path, benchmark)

  items: list[str] | None = None
  item_path = os.path.join(anno, "list_item_inshop.txt")
  if benchmark == "inshop":
    if os.path.isfile(item_path):
      items = read_items(item_path)
      meta["item_file"] = os.path.abspath(item_path)
    else:
      items = sorted({item for _, (item, _) in partition.values()})
    meta["item_names"] = items
  item_index = {name: i for i, name in enumerate(items or ())}

  stats: dict[str, Any] = {"num_padded_landmark_rows": 0, "num_type_mismatch": 0,
                           "num_unknown_attribute_values": 0}
  records: dict[str, list[Record]] = {s: [] for s in SPLIT_NAMES[benchmark].values()}
  for name, (line, status) in partition.items():
    item = -1
    if benchmark == "inshop":
      item_name, split = status
      if item_name not in item_index:
        raise AnnotationError(part_path, line, f"item {item_name} of {name} is not listed in "
                              f"{item_path}")
      item = item_index[item_name]
    else:
      split = status
    clothes, bbox = _lookup(tables[bbox_path], name, bbox_path, part_path, line)
    lm: Landmarks = _lookup(tables[lm_path], name, lm_path, part_path, line)
    stats["num_padded_landmark_rows"] += lm.padded
    if clothes is not None and clothes != lm.clothes_type:
      stats["num_type_mismatch"] += 1
    record = Record(name, split, os.path.join(src, name), bbox, lm.xy, lm.visibility, lm.present,
                    lm.clothes_type, lm.variation_type, item_id=item)
    if benchmark == "category":
      record.category = _lookup(tables[cat_path], name, cat_path, part_path, line)
      record.attributes = _lookup(tables[attr_path], name, attr_path, part_path, line)
      stats["num_unknown_attribute_values"] += record.attributes.count(0)
      if meta["category_types"][record.category] != lm.clothes_type:
        stats["num_type_mismatch"] += 1
    records[split].append(record)
  meta["unpartitioned"] = {os.path.basename(p): sum(n not in partition for n in t)
                           for p, t in tables.items()}
  meta["annotation_stats"] = stats
  return records, meta


# --- encoding -----------------------------------------------------------------------------------

def image_size(data: bytes, path: str) -> tuple[int, int]:
  """(height, width) from the image header (nothing is decoded)."""
  try:
    with Image.open(io.BytesIO(data)) as img:
      width, height = img.size
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise ImageDecodeError(f"{path}: cannot read the image header: {e}") from e
  return height, width


def encode(record: Record) -> bytes:
  image = common.read_bytes(record.path, "image listed in the partition")
  features: dict[str, Any] = {
      "image": image,
      "id": record.id,
      "split": record.split,
      "image_size": np.array(image_size(image, record.path), np.int64),
      "category": np.array([record.category], np.int64),
      "category_type": np.array([record.category_type], np.int64),
      "variation_type": np.array([record.variation_type], np.int64),
      "bbox": record.bbox.astype(np.float32),
      "landmarks": record.landmarks.astype(np.float32).reshape(-1),
      "landmark_visibility": record.visibility,
      "landmark_present": record.present,
      "item_id": np.array([record.item_id], np.int64),
  }
  if record.attributes is not None:
    features["attributes"] = record.attributes
  return tfrecord.encode_example(features)


def parse_example(features: Mapping[str, Any]) -> dict[str, Any]:
  """A decoded record (tfrecord.decode_example) -> numpy arrays of fixed shapes (module doc)."""
  out = {
      "image": features["image"][0],
      "id": features["id"][0].decode(),
      "split": features["split"][0].decode(),
      "image_size": np.asarray(features["image_size"], np.int64),
      "category": int(features["category"][0]),
      "category_type": int(features["category_type"][0]),
      "variation_type": int(features["variation_type"][0]),
      "bbox": np.asarray(features["bbox"], np.float32),
      "landmarks": np.asarray(features["landmarks"], np.float32).reshape(NUM_LANDMARKS, 2),
      "landmark_visibility": np.asarray(features["landmark_visibility"], np.int64),
      "landmark_present": np.asarray(features["landmark_present"], np.int64),
      "item_id": int(features["item_id"][0]),
  }
  if "attributes" in features:
    out["attributes"] = np.frombuffer(features["attributes"][0], np.int8).copy()
  return out


def convert(src: str, out: str, *, benchmark: str, shards: int = 8, progress: bool = True,
            skip_missing: bool = False) -> dict[str, Any]:
  """Writes <split>-NNNNN-of-NNNNN.tfrecord per split and dataset_info.json under `out`.

  benchmark: category | inshop | landmarks. skip_missing: leave out (and count) partitioned
  images whose file is missing instead of stopping. Every list file, and that every image
  exists, is checked before the first record is written.
  """
  if benchmark not in BENCHMARKS:
    raise ValueError(f"benchmark must be one of {list(BENCHMARKS)}, got {benchmark!r}")
  if not isinstance(shards, int) or shards < 1:
    raise ValueError(f"--shards must be >= 1, got {shards}")
  if not os.path.isdir(src):
    raise MissingDataError(f"DeepFashion folder not found: {src}")
  records, meta = read_annotations(src, benchmark)
  part_path = os.path.join(src, "Eval", "list_eval_partition.txt")
  skipped: dict[str, list[str]] = {}
  for split, split_records in records.items():
    kept = []
    for record in split_records:
      if os.path.isfile(record.path):
        kept.append(record)
      elif skip_missing:
        skipped.setdefault(split, []).append(record.id)
      else:
        raise MissingDataError(f"{part_path}: image {record.id} is missing: {record.path}")
    records[split] = kept
  if not any(records.values()):
    raise MissingDataError(f"none of the partitioned images was found under {src}")

  os.makedirs(out, exist_ok=True)
  file_counts: dict[str, int] = {}
  splits: dict[str, Any] = {}
  for split, split_records in records.items():
    if not split_records:
      continue
    counts = common.write_split(out, split, split_records, encode, shards, progress)
    file_counts.update(counts)
    splits[split] = {"num_examples": len(split_records), "files": sorted(counts),
                     "num_skipped_missing": len(skipped.get(split, [])),
                     "skipped_examples": skipped.get(split, [])[:5],
                     "clothes_type_counts": [sum(r.category_type == t for r in split_records)
                                             for t in CLOTHES_TYPE_NAMES]}
    if benchmark == "category":
      splits[split]["category_counts"] = np.bincount(
          [r.category for r in split_records], minlength=len(meta["category_names"])).tolist()
    if benchmark == "inshop":
      splits[split]["num_items"] = len({r.item_id for r in split_records})
  if benchmark == "inshop":
    gallery_items = {r.item_id for r in records["gallery"]}
    query = records["query"]
    meta["retrieval"] = {
        "num_query": len(query), "num_gallery": len(records["gallery"]),
        "num_query_items": len({r.item_id for r in query}),
        "num_gallery_items": len(gallery_items),
        "num_query_without_gallery": sum(r.item_id not in gallery_items for r in query)}
  features = {
      "image": "JPEG bytes (the original file)", "id": "bytes, image name as listed",
      "split": "bytes", "image_size": "int64[2] height width",
      "category": "int64[1] 0-based, -1 without one",
      "category_type": "int64[1] clothes type 1 upper 2 lower 3 full",
      "variation_type": "int64[1] 1..5 (variation_type_names)",
      "bbox": "float32[4] x1 y1 x2 y2",
      "landmarks": "float32[16] x y of the 8 landmark_names slots",
      "landmark_visibility": "int64[8] 0 visible 1 occluded 2 truncated/absent",
      "landmark_present": "int64[8] 1 when the clothes type has the landmark",
      "item_id": "int64[1] index into item_names (inshop), -1 otherwise"}
  if benchmark == "category":
    features["attributes"] = "bytes: int8[num_attributes] 1 positive -1 negative 0 unknown"
  info = {
      "dataset": "deepfashion",
      "benchmark": benchmark,
      "source": os.path.abspath(src),
      "landmark_names": list(LANDMARK_NAMES),
      "landmark_slots": {str(t): list(s) for t, s in LANDMARK_SLOTS.items()},
      "flip_pairs": [list(p) for p in FLIP_PAIRS],
      "clothes_type_names": {str(k): v for k, v in CLOTHES_TYPE_NAMES.items()},
      "variation_type_names": {str(k): v for k, v in VARIATION_TYPE_NAMES.items()},
      "visibility_names": list(VISIBILITY_NAMES),
      "splits": splits,
      "features": features,
      **meta,
  }
  if benchmark == "category":
    info["attribute_type_names"] = list(ATTRIBUTE_TYPE_NAMES)
    info["num_attributes"] = len(meta["attribute_names"])
  if benchmark == "inshop":
    info["num_items"] = len(meta["item_names"])
  common.write_info(out, info, file_counts)
  return info

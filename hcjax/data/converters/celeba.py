"""CelebA (aligned) original files -> sharded TFRecords per split.

Reads img_align_celeba/*.jpg, list_attr_celeba.txt, list_eval_partition.txt,
list_landmarks_align_celeba.txt, identity_CelebA.txt and (optionally) list_bbox_celeba.txt.
Image bytes are stored as they are (no re-encoding). Per example:
  image (JPEG bytes), filename, attributes int64[40] in {0, 1}, landmarks int64[10]
  (left eye x y, right eye, nose, left mouth, right mouth), identity int64[1] (-1 if unknown),
  bbox int64[4] (x_1 y_1 width height; only when the bbox file is given).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from hcjax.data import tfrecord
from hcjax.data.converters import common
from hcjax.data.errors import AnnotationError, MissingDataError

SPLITS = {0: "train", 1: "validation", 2: "test"}
LANDMARK_NAMES = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
# Mirror pairs among the 5 landmarks for horizontal flips.
FLIP_PAIRS = ((0, 1), (3, 4))
ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")


@dataclasses.dataclass
class Record:
  filename: str
  attributes: np.ndarray      # [40] in {0, 1}
  landmarks: np.ndarray       # [10]
  identity: int = -1
  bbox: np.ndarray | None = None
  path: str = ""


def _counted_table(path: str, num_values: int, what: str, header_check=None
                   ) -> tuple[list[str], dict[str, tuple[int, list[str]]]]:
  """Files with a count line, a header line, then `name v1 .. vN` rows."""
  lines = common.numbered_lines(path)
  try:
    line, fields = next(lines)
  except StopIteration:
    raise AnnotationError(path, 1, "empty file") from None
  if len(fields) != 1:
    raise AnnotationError(path, line, f"first line must hold the {what} count, got {' '.join(fields)!r}")
  count = common.parse_int(path, line, fields[0], f"{what} count")
  try:
    line, header = next(lines)
  except StopIteration:
    raise AnnotationError(path, 2, "missing header line") from None
  if header_check is not None:
    header_check(line, header)
  rows: dict[str, tuple[int, list[str]]] = {}
  for line, fields in lines:
    if len(fields) != num_values + 1:
      raise AnnotationError(
          path, line, f"expected an image name and {num_values} values, got {len(fields)} fields")
    if fields[0] in rows:
      raise AnnotationError(path, line, f"{fields[0]} listed twice")
    rows[fields[0]] = (line, fields[1:])
  if len(rows) != count:
    raise AnnotationError(path, 1, f"count line says {count} {what}s but the file lists {len(rows)}")
  return header, rows


def _plain_table(path: str) -> dict[str, tuple[int, str]]:
  """Files of `name value` rows without count or header."""
  rows = {}
  for line, fields in common.numbered_lines(path):
    if len(fields) != 2:
      raise AnnotationError(path, line, f"expected `image value`, got {len(fields)} fields")
    if fields[0] in rows:
      raise AnnotationError(path, line, f"{fields[0]} listed twice")
    rows[fields[0]] = (line, fields[1])
  return rows


def read_annotations(src: str) -> tuple[list[str], dict[int, list[Record]]]:
  """Parses all annotation files strictly; returns attribute names and records per split."""
  attr_path = common.require_file(os.path.join(src, "list_attr_celeba.txt"), "CelebA attribute file")
  part_path = common.require_file(os.path.join(src, "list_eval_partition.txt"), "CelebA partition file")
  lm_path = common.require_file(
      os.path.join(src, "list_landmarks_align_celeba.txt"), "CelebA aligned landmark file")
  id_path = os.path.join(src, "identity_CelebA.txt")
  bbox_path = os.path.join(src, "list_bbox_celeba.txt")

  names, attr_rows = _counted_table(attr_path, len(ATTRIBUTE_NAMES), "image",
                                    header_check=lambda line, h: _check_names(attr_path, line, h))
  _, lm_rows = _counted_table(lm_path, 10, "image")
  partitions = _plain_table(part_path)
  identities = _plain_table(id_path) if os.path.isfile(id_path) else None
  boxes = None
  if os.path.isfile(bbox_path):
    _, boxes = _counted_table(bbox_path, 4, "image")

  records: dict[int, list[Record]] = {k: [] for k in SPLITS}
  for filename, (line, values) in attr_rows.items():
    attributes = np.array(
        [common.parse_int(attr_path, line, v, f"attribute {names[i]}", (-1, 1))
         for i, v in enumerate(values)], np.int64)
    if filename not in partitions:
      raise AnnotationError(attr_path, line, f"{filename} has no row in {part_path}")
    p_line, p_value = partitions[filename]
    split = common.parse_int(part_path, p_line, p_value, "partition", tuple(SPLITS))
    if filename not in lm_rows:
      raise AnnotationError(attr_path, line, f"{filename} has no row in {lm_path}")
    l_line, l_values = lm_rows[filename]
    landmarks = np.array([common.parse_int(lm_path, l_line, v, "landmark") for v in l_values], np.int64)
    record = Record(filename, (attributes > 0).astype(np.int64), landmarks,
                    path=os.path.join(src, "img_align_celeba", filename))
    if identities is not None:
      if filename not in identities:
        raise AnnotationError(attr_path, line, f"{filename} has no row in {id_path}")
      i_line, i_value = identities[filename]
      record.identity = common.parse_int(id_path, i_line, i_value, "identity")
    if boxes is not None:
      if filename not in boxes:
        raise AnnotationError(attr_path, line, f"{filename} has no row in {bbox_path}")
      b_line, b_values = boxes[filename]
      record.bbox = np.array([common.parse_int(bbox_path, b_line, v, "bbox") for v in b_values],
                             np.int64)
    records[split].append(record)
  return names, records


def _check_names(path: str, line: int, header: list[str]) -> None:
  if tuple(header) != ATTRIBUTE_NAMES:
    wrong = next((i for i, (a, b) in enumerate(zip(header, ATTRIBUTE_NAMES)) if a != b),
                 min(len(header), len(ATTRIBUTE_NAMES)))
    raise AnnotationError(
        path, line, f"attribute header must list the 40 CelebA names in order; "
        f"{len(header)} names given, first difference at position {wrong + 1}")


def encode(record: Record) -> bytes:
  image = common.read_bytes(record.path, "image listed in the annotations")
  features: dict[str, Any] = {
      "image": image,
      "filename": record.filename,
      "attributes": record.attributes,
      "landmarks": record.landmarks,
      "identity": np.array([record.identity], np.int64),
  }
  if record.bbox is not None:
    features["bbox"] = record.bbox
  return tfrecord.encode_example(features)


def convert(src: str, out: str, *, shards: int = 8, progress: bool = True) -> dict[str, Any]:
  """Writes {train,validation,test}-NNNNN-of-NNNNN.tfrecord and dataset_info.json under `out`."""
  if not os.path.isdir(os.path.join(src, "img_align_celeba")):
    raise MissingDataError(f"no img_align_celeba/ folder under {src}")
  if shards < 1:
    raise ValueError(f"--shards must be >= 1, got {shards}")
  names, records = read_annotations(src)
  os.makedirs(out, exist_ok=True)
  file_counts: dict[str, int] = {}
  splits = {}
  for split_id, split in SPLITS.items():
    if not records[split_id]:
      continue
    counts = common.write_split(out, split, records[split_id], encode, shards, progress)
    file_counts.update(counts)
    splits[split] = {"num_examples": len(records[split_id]), "files": sorted(counts)}
  info = {
      "dataset": "celeba",
      "source": os.path.abspath(src),
      "attribute_names": list(names),
      "landmark_names": list(LANDMARK_NAMES),
      "splits": splits,
      "features": {
          "image": "JPEG bytes (as in img_align_celeba)", "filename": "bytes",
          "attributes": "int64[40], 1 = attribute present", "landmarks": "int64[10]",
          "identity": "int64[1], -1 when unknown", "bbox": "int64[4] x_1 y_1 width height (optional)",
      },
  }
  common.write_info(out, info, file_counts)
  return info

"""PASCAL VOC 2012 segmentation original files -> sharded TFRecords per split.

Reads VOC2012/JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNGs whose pixel values
are the class indices, 255 = void) and ImageSets/Segmentation/{train,val}.txt. With `sbd`, the
train split becomes the usual "train_aug" set: VOC train + SBD (Hariharan et al. 2011) train and
val, minus every VOC val image. Image bytes are stored as they are (no re-encoding). Per example:
  image (JPEG bytes), mask (PNG bytes, single-channel "L" class indices, 255 void), id (bytes),
  height int64[1], width int64[1].
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import os
from typing import Any

import numpy as np
from PIL import Image

from hcjax.data import tfrecord
from hcjax.data.converters import common
from hcjax.data.errors import AnnotationError, ImageDecodeError, MissingDataError

SPLITS = ("train", "val")
CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")
IGNORE_LABEL = 255


def _color_map(n: int = 256) -> np.ndarray:
  """The VOC devkit's colour map: the bits of the index, interleaved over r, g, b from the top."""
  palette = np.zeros((n, 3), np.uint8)
  for i in range(n):
    c, rgb = i, [0, 0, 0]
    for j in range(8):
      for k in range(3):
        rgb[k] |= ((c >> k) & 1) << (7 - j)
      c >>= 3
    palette[i] = rgb
  return palette


PALETTE = _color_map()  # [256, 3] uint8; PALETTE[255] = (224, 224, 192), the void colour.
# The colours a coloured (RGB) mask may use: the 21 classes and void.
_VALID = np.array(list(range(len(CLASS_NAMES))) + [IGNORE_LABEL], np.uint8)
_VALID_KEYS = (PALETTE[_VALID].astype(np.int64) @ np.array([1 << 16, 1 << 8, 1]))
_ORDER = np.argsort(_VALID_KEYS)


def colorize(mask: np.ndarray) -> np.ndarray:
  """[H, W] uint8 class indices -> [H, W, 3] uint8 in VOC colours, for looking at masks."""
  return PALETTE[np.asarray(mask, np.uint8)]


def _check_labels(mask: np.ndarray, path: str) -> np.ndarray:
  """Any integer [H, W] array -> uint8, or an error naming the first pixel that is no VOC label."""
  bad = ((mask >= len(CLASS_NAMES)) & (mask != IGNORE_LABEL)) | (mask < 0)
  if bad.any():
    y, x = np.argwhere(bad)[0]
    raise ImageDecodeError(
        f"{path}: label {int(mask[y, x])} at row {y}, column {x} is not a VOC class "
        f"(0..{len(CLASS_NAMES) - 1}, or {IGNORE_LABEL} for void)")
  return mask.astype(np.uint8)


def read_mask(path: str) -> np.ndarray:
  """A mask file -> [H, W] uint8 class indices (255 void), checked to hold only VOC labels.

  Palette ("P") and grey ("L", as in SegmentationClassAug) PNGs hold the indices themselves;
  RGB masks are mapped back through PALETTE, and a colour that is no class is an error.
  """
  try:
    with Image.open(path) as img:
      img.load()
      mode = img.mode
      array = np.array(img.convert("RGB") if mode == "RGBA" else img)
  except FileNotFoundError:
    raise MissingDataError(f"mask not found: {path}") from None
  except (OSError, ValueError, SyntaxError, EOFError) as e:
    raise ImageDecodeError(f"{path}: cannot decode mask: {e}") from e
  if mode in ("P", "L"):
    return _check_labels(array, path)
  if mode not in ("RGB", "RGBA"):
    raise ImageDecodeError(
        f"{path}: mask has image mode {mode!r}; expected a palette (P), grey (L) or RGB PNG")
  keys = array.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
  sorted_keys = _VALID_KEYS[_ORDER]
  pos = np.searchsorted(sorted_keys, keys).clip(0, len(sorted_keys) - 1)
  found = sorted_keys[pos] == keys
  if not found.all():
    y, x = np.argwhere(~found)[0]
    raise ImageDecodeError(f"{path}: colour {tuple(int(v) for v in array[y, x])} at row {y}, "
                           f"column {x} is not a VOC class colour")
  return _VALID[_ORDER][pos]


def read_sbd_mask(path: str) -> np.ndarray:
  """An SBD cls/<id>.mat file -> [H, W] uint8 class indices (its GTcls.Segmentation)."""
  try:
    from scipy import io as sio  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise MissingDataError(
        f"reading SBD .mat files ({path}) needs scipy (pip install scipy), or use the "
        "pre-converted SegmentationClassAug/ PNGs with --sbd") from None
  try:
    mask = np.asarray(sio.loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"]
                      .Segmentation)
  except FileNotFoundError:
    raise MissingDataError(f"SBD mask not found: {path}") from None
  except (KeyError, AttributeError):
    raise ImageDecodeError(f"{path}: no GTcls.Segmentation in this .mat file") from None
  except (OSError, ValueError, TypeError, NotImplementedError) as e:
    raise ImageDecodeError(f"{path}: cannot read the .mat file: {e}") from e
  if mask.ndim != 2 or mask.dtype.kind not in "iuf" or not np.array_equal(mask, np.round(mask)):
    raise ImageDecodeError(f"{path}: GTcls.Segmentation must be a 2-D array of class indices, "
                           f"got {mask.dtype} {mask.shape}")
  return _check_labels(mask, path)


def encode_mask(mask: np.ndarray) -> bytes:
  """[H, W] uint8 class indices -> single-channel ("L") PNG bytes."""
  buf = io.BytesIO()
  Image.fromarray(np.asarray(mask, np.uint8), "L").save(buf, format="PNG")
  return buf.getvalue()


@dataclasses.dataclass
class Record:
  id: str
  image_path: str
  mask_path: str
  sbd_mat: bool = False  # mask_path is an SBD .mat file


def read_list(path: str) -> list[tuple[int, str]]:
  """(line, id) of a list: one id per line, or DeepLab's `/JPEGImages/<id>.jpg /Seg.../<id>.png`."""
  common.require_file(path, "image list")
  ids, seen = [], {}
  for line, fields in common.numbered_lines(path):
    if len(fields) == 2:  # DeepLab-style train_aug.txt: image path, mask path
      image_id = os.path.splitext(os.path.basename(fields[0]))[0]
      if os.path.splitext(os.path.basename(fields[1]))[0] != image_id:
        raise AnnotationError(path, line,
                              f"image {fields[0]} and mask {fields[1]} name different ids")
    elif len(fields) == 1:
      image_id = fields[0]
    else:
      raise AnnotationError(path, line, f"expected one image id per line, got {len(fields)} fields")
    if "/" in image_id or "\\" in image_id or image_id.endswith((".jpg", ".png")):
      raise AnnotationError(path, line,
                            f"expected an image id such as 2007_000032, got {image_id!r}")
    if image_id in seen:
      raise AnnotationError(path, line, f"{image_id} listed twice (first on line {seen[image_id]})")
    seen[image_id] = line
    ids.append((line, image_id))
  if not ids:
    raise AnnotationError(path, 1, "the list names no images")
  return ids


def _find_root(src: str) -> str:
  """The VOC2012 folder: `src` itself, or src/VOC2012, or src/VOCdevkit/VOC2012."""
  for root in (src, os.path.join(src, "VOC2012"), os.path.join(src, "VOCdevkit", "VOC2012")):
    if os.path.isdir(os.path.join(root, "JPEGImages")):
      return root
  raise MissingDataError(f"no JPEGImages/ folder under {src} (point --src at VOCdevkit/VOC2012)")


def _sbd_layout(sbd: str) -> tuple[str, str, list[str]]:
  """(folder, "mat" | "png", list files) of an SBD download or of SegmentationClassAug."""
  for root in (sbd, os.path.join(sbd, "dataset")):  # benchmark_RELEASE/dataset
    if os.path.isdir(os.path.join(root, "cls")):
      if importlib.util.find_spec("scipy") is None:  # fail before writing anything
        raise MissingDataError(f"reading SBD's .mat files under {root} needs scipy (pip install "
                               "scipy), or use the pre-converted SegmentationClassAug/ PNGs")
      return root, "mat", [os.path.join(root, "train.txt"), os.path.join(root, "val.txt")]
  if os.path.isdir(os.path.join(sbd, "SegmentationClassAug")):
    for name in ("train_aug.txt", os.path.join("ImageSets", "Segmentation", "train_aug.txt")):
      if os.path.isfile(os.path.join(sbd, name)):
        return sbd, "png", [os.path.join(sbd, name)]
    raise MissingDataError(f"SegmentationClassAug/ found but no train_aug.txt under {sbd}")
  raise MissingDataError(f"no SBD cls/ folder (benchmark_RELEASE/dataset) and no "
                         f"SegmentationClassAug/ folder under {sbd}")


def _require(path: str, list_path: str, line: int, what: str) -> str:
  if not os.path.isfile(path):
    raise MissingDataError(f"{list_path}, line {line} names an image whose {what} is missing: {path}")
  return path


def read_splits(src: str, sbd: str | None = None) -> tuple[dict[str, list[Record]], dict[str, Any]]:
  """Parses the lists strictly and checks every listed file exists; returns records per split."""
  root = _find_root(src)
  if not os.path.isdir(os.path.join(root, "SegmentationClass")):
    raise MissingDataError(f"no SegmentationClass/ folder under {root}")
  lists = {s: os.path.join(root, "ImageSets", "Segmentation", f"{s}.txt") for s in SPLITS}
  ids = {s: read_list(common.require_file(lists[s], f"VOC {s} list")) for s in SPLITS}
  train_ids = {i for _, i in ids["train"]}
  for line, image_id in ids["val"]:
    if image_id in train_ids:
      raise AnnotationError(lists["val"], line, f"{image_id} is also in {lists['train']}")

  def voc_record(list_path, line, image_id):
    return Record(image_id,
                  _require(os.path.join(root, "JPEGImages", image_id + ".jpg"), list_path, line,
                           "JPEG"),
                  _require(os.path.join(root, "SegmentationClass", image_id + ".png"), list_path,
                           line, "mask"))

  records = {s: [voc_record(lists[s], line, i) for line, i in ids[s]] for s in SPLITS}
  stats: dict[str, Any] = {}
  if sbd is not None:
    if not os.path.isdir(sbd):
      raise MissingDataError(f"--sbd folder not found: {sbd}")
    sbd_root, kind, sbd_lists = _sbd_layout(sbd)
    val_ids = {i for _, i in ids["val"]}
    sbd_ids, added, excluded = set(), 0, 0
    for list_path in sbd_lists:
      for line, image_id in read_list(common.require_file(list_path, "SBD list")):
        if image_id in sbd_ids:
          continue  # SBD's train and val are disjoint; tolerate a repeat across the two lists
        sbd_ids.add(image_id)
        if image_id in val_ids:
          excluded += 1
          continue
        if image_id in train_ids:
          continue
        image = os.path.join(root, "JPEGImages", image_id + ".jpg")
        if not os.path.isfile(image) and os.path.isfile(
            os.path.join(sbd_root, "img", image_id + ".jpg")):  # SBD's own copy of the VOC image
          image = os.path.join(sbd_root, "img", image_id + ".jpg")
        _require(image, list_path, line, "JPEG")
        mask = (os.path.join(sbd_root, "cls", image_id + ".mat") if kind == "mat" else
                os.path.join(sbd_root, "SegmentationClassAug", image_id + ".png"))
        records["train"].append(
            Record(image_id, image, _require(mask, list_path, line, "SBD mask"), kind == "mat"))
        added += 1
    stats = {"sbd": os.path.abspath(sbd_root), "sbd_format": kind, "voc_train": len(train_ids),
             "sbd_images": len(sbd_ids), "sbd_added": added, "sbd_in_voc_val_dropped": excluded}
  return records, stats


def _jpeg_size(path: str, data: bytes) -> tuple[int, int]:
  try:
    with Image.open(io.BytesIO(data)) as img:
      if img.format != "JPEG":
        raise ImageDecodeError(f"{path}: expected a JPEG, found {img.format}")
      return img.size
  except (OSError, ValueError, SyntaxError) as e:
    if isinstance(e, ImageDecodeError):
      raise
    raise ImageDecodeError(f"{path}: cannot decode image: {e}") from e


def encode(record: Record) -> bytes:
  image = common.read_bytes(record.image_path, "image")
  width, height = _jpeg_size(record.image_path, image)
  mask = read_sbd_mask(record.mask_path) if record.sbd_mat else read_mask(record.mask_path)
  if mask.shape != (height, width):
    raise ImageDecodeError(
        f"{record.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
        f"{record.image_path} is {width}x{height}")
  return tfrecord.encode_example({
      "image": image, "mask": encode_mask(mask), "id": record.id,
      "height": np.array([height], np.int64), "width": np.array([width], np.int64),
  })


def convert(src: str, out: str, *, shards: int = 8, sbd: str | None = None,
            progress: bool = True) -> dict[str, Any]:
  """Writes {train,val}-NNNNN-of-NNNNN.tfrecord and dataset_info.json under `out`."""
  if shards < 1:
    raise ValueError(f"--shards must be >= 1, got {shards}")
  records, stats = read_splits(src, sbd)
  os.makedirs(out, exist_ok=True)
  file_counts: dict[str, int] = {}
  splits = {}
  for split in SPLITS:
    counts = common.write_split(out, split, records[split], encode, shards, progress)
    file_counts.update(counts)
    splits[split] = {"num_examples": len(records[split]), "files": sorted(counts)}
  info = {
      "dataset": "voc",
      "source": os.path.abspath(_find_root(src)),
      "class_names": list(CLASS_NAMES),
      "palette": PALETTE.tolist(),
      "ignore_label": IGNORE_LABEL,
      "splits": splits,
      "features": {
          "image": "JPEG bytes (as in JPEGImages)",
          "mask": "PNG bytes, single-channel uint8 class indices, 255 = void",
          "id": "bytes, e.g. 2007_000032", "height": "int64[1]", "width": "int64[1]",
      },
  }
  if stats:
    info["train_aug"] = stats
  common.write_info(out, info, file_counts)
  return info

"""CelebA-Spoof original files -> sharded TFRecords of face crops, one set of files per split.

Reads (paths relative to --src, the CelebA_Spoof folder):
  Data/<split>/<subject>/{live,spoof}/<name>.jpg|png      the images
  Data/<split>/<subject>/{live,spoof}/<name>_BB.txt       first line `x y w h score`: the face box
                                                          in the image resized to 224x224
  metas/intra_test/{train,test}_label.json                {"Data/train/<subject>/live/<name>.jpg":
                                                          [44 ints], ...}; or `protocol=`: another
                                                          folder of <split>_label.json lists
Label vector (44 ints): [0:40] the 40 CelebA attributes (celeba.ATTRIBUTE_NAMES, 0/1), [40] spoof
type 0..10 (SPOOF_TYPE_NAMES), [41] illumination 0..4, [42] environment 0..2, [43] 0 live / 1 spoof.
Every entry is checked (length, ranges, [43] = the live/spoof folder, spoof type 0 iff live); a bad
one is an AnnotationError naming the json file, the entry and its line. Each split's name is its
file's prefix (train_label.json -> "train"). Splits must be subject-disjoint: a subject (the
numeric <subject> folder, a CelebA identity) listed in two splits is an AnnotationError.

The face crop, in pixels of the original image (after its EXIF orientation, as cv2.imread sees it):
  face box  x, y, w, h = int(v * real_w / 224) / int(v * real_h / 224) of the integer parts of the
            _BB.txt values: exactly the box the authors' intra_dataset_code/client.py crops;
  crop      the face box grown by margin * w left and right and margin * h above and below (each
            rounded half up to whole pixels; margin = DEFAULT_MARGIN = 0.2 of the box size per
            side: 1.4x the box), then clamped to the image. margin=0 gives client.py's crop
            (client.py differs only for a box that starts left of/above the image and is
            wider/taller than it).
The detector box stays in the record, so a task can cut the tight face out of the wider crop.

Optional geometric maps (AENet's depth / reflection supervision; never released by the authors):
a PNG of the image's size, found beside the image as <name>_depth.png / <name>_reflection.png,
or, when `depth=` / `reflection=` name a folder, at <folder>/<the id with .png as extension>
(the folder mirrors the Data/ tree). Present maps are cropped with the image; absent ones are
simply absent from that record (spoof images have no depth, live ones no reflection).

Per example (tf.train.Example):
  image       JPEG bytes of the RGB crop (quality 95), or the original file's bytes when the crop is
              the whole image and the file is an RGB JPEG without EXIF rotation
  labels      int64[44] (layout above)
  id          bytes, the image path relative to --src ("Data/test/9980/spoof/497049.png")
  subject     int64[1]
  box         float32[4] x, y, w, h of the crop in original pixels (integers)
  face_box    float32[4] x, y, w, h of the scaled detector box in original pixels (integers; may
              reach outside the image)
  face_score  float32[1] the detector score from _BB.txt
  image_size  int64[2] height, width of the original (oriented) image
  depth       PNG bytes ("L" or "I;16"), cropped like the image; only when present
  reflection  PNG bytes (RGB), cropped like the image; only when present
"""

from __future__ import annotations

import dataclasses
import glob
import io
import json
import math
import os
import re
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from hcjax.data import tfrecord
from hcjax.data.converters import common
from hcjax.data.converters.celeba import ATTRIBUTE_NAMES
from hcjax.data.errors import AnnotationError, ImageDecodeError, MissingDataError

SPOOF_TYPE_NAMES = ("Live", "Photo", "Poster", "A4", "Face Mask", "Upper Body Mask", "Region Mask",
                    "PC", "Pad", "Phone", "3D Mask")
ILLUMINATION_NAMES = ("Live", "Normal", "Strong", "Back", "Dark")
ENVIRONMENT_NAMES = ("Live", "Indoor", "Outdoor")
LIVE_SPOOF_NAMES = ("live", "spoof")
NUM_LABELS = 44
SPOOF_TYPE, ILLUMINATION, ENVIRONMENT, LIVE_SPOOF = 40, 41, 42, 43
# (first index, number of classes) of each label group.
LABEL_RANGES = {"attributes": (0, 2), "spoof_type": (SPOOF_TYPE, len(SPOOF_TYPE_NAMES)),
                "illumination": (ILLUMINATION, len(ILLUMINATION_NAMES)),
                "environment": (ENVIRONMENT, len(ENVIRONMENT_NAMES)),
                "live_spoof": (LIVE_SPOOF, len(LIVE_SPOOF_NAMES))}
BB_SIZE = 224  # _BB.txt boxes are in the coordinates of the image resized to 224x224.
DEFAULT_MARGIN = 0.2
JPEG_QUALITY = 95
DEFAULT_PROTOCOL = os.path.join("metas", "intra_test")
LABEL_SUFFIX = "_label.json"
IMAGE_EXTENSIONS = (".jpg", ".png")
MAP_SUFFIXES = {"depth": "_depth.png", "reflection": "_reflection.png"}
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@dataclasses.dataclass
class Record:
  id: str                     # path relative to src, the json key
  subject: int
  labels: np.ndarray          # int64[44]
  image_path: str
  bb_path: str
  bb: tuple[float, float, float, float, float] | None = None  # x y w h score (224 coordinates)
  maps: dict[str, str] = dataclasses.field(default_factory=dict)  # "depth"/"reflection" -> path


# --- label lists --------------------------------------------------------------------------------

class _Object(list):
  """A JSON object as its (key, value) pairs in file order (duplicates kept, to be reported)."""


def _entry_line(text: str, key: str) -> int:
  """The line of `key` in the json text (1 when it cannot be found, e.g. odd escaping)."""
  for needle in (json.dumps(key), json.dumps(key).replace("/", "\\/")):
    pos = text.find(needle)
    if pos >= 0:
      return text.count("\n", 0, pos) + 1
  return 1


def _check_entry(path: str, text: str, key: Any, value: Any) -> tuple[int, np.ndarray]:
  """(subject, labels[44]) of one json entry, or an AnnotationError naming file, entry, line."""
  def fail(reason: str):
    raise AnnotationError(path, _entry_line(text, key), f"entry {key!r}: {reason}")

  parts = key.split("/")
  if (len(parts) != 5 or parts[0] != "Data" or parts[1] in ("", ".", "..")
      or parts[3] not in LIVE_SPOOF_NAMES
      or not parts[4].lower().endswith(IMAGE_EXTENSIONS) or parts[4].startswith(".")):
    fail("expected an image path Data/<split>/<subject>/live|spoof/<name>.jpg|png")
  if not parts[2].isdigit():
    fail(f"the subject folder must be a number, got {parts[2]!r}")
  if isinstance(value, _Object):
    fail(f"expected a list of {NUM_LABELS} integer labels, got an object")
  if not isinstance(value, list) or len(value) != NUM_LABELS:
    got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
    fail(f"expected a list of {NUM_LABELS} integer labels, got {got}")
  for i, v in enumerate(value):
    # JSON true/false are no labels (bool is an int subclass).
    if type(v) is not int:  # pylint: disable=unidiomatic-typecheck
      fail(f"label {i} must be an integer, got {v!r}")
  for i in range(40):
    if value[i] not in (0, 1):
      fail(f"attribute {i} ({ATTRIBUTE_NAMES[i]}) must be 0 or 1, got {value[i]}")
  for name, (index, count) in LABEL_RANGES.items():
    if name != "attributes" and not 0 <= value[index] < count:
      fail(f"label {index} ({name}) must be in 0..{count - 1}, got {value[index]}")
  labels = np.asarray(value, np.int64)
  folder = parts[3]
  if labels[LIVE_SPOOF] != LIVE_SPOOF_NAMES.index(folder):
    fail(f"label 43 says {LIVE_SPOOF_NAMES[labels[LIVE_SPOOF]]} ({labels[LIVE_SPOOF]}) but the "
         f"image is in a {folder}/ folder")
  if (labels[SPOOF_TYPE] == 0) != (labels[LIVE_SPOOF] == 0):
    fail(f"spoof type {labels[SPOOF_TYPE]} ({SPOOF_TYPE_NAMES[labels[SPOOF_TYPE]]}) contradicts "
         f"live/spoof label {labels[LIVE_SPOOF]} (spoof type 0 = Live iff live)")
  return int(parts[2]), labels


def read_label_file(path: str) -> list[tuple[str, int, np.ndarray]]:
  """(id, subject, labels) of every entry of a *_label.json file, in file order, all checked."""
  common.require_file(path, "CelebA-Spoof label list")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    top = json.loads(text, object_pairs_hook=_Object)
  except json.JSONDecodeError as e:
    raise AnnotationError(path, e.lineno, f"not valid JSON: {e.msg} (column {e.colno})") from None
  if not isinstance(top, _Object):
    raise AnnotationError(path, 1, "expected a JSON object {image path: [44 labels], ...}, got "
                          f"a {type(top).__name__}")
  if not top:
    raise AnnotationError(path, 1, "the list names no images")
  entries, seen = [], set()
  for key, value in top:
    if key in seen:
      raise AnnotationError(path, _entry_line(text, key), f"entry {key!r} listed twice")
    seen.add(key)
    subject, labels = _check_entry(path, text, key, value)
    entries.append((key, subject, labels))
  return entries


def find_label_files(src: str, protocol: str | None = None) -> dict[str, str]:
  """{split: <split>_label.json} of the protocol folder (default metas/intra_test under src).

  `protocol` is a folder, or a path relative to src such as "metas/protocol1".
  """
  if protocol is None:
    folder = os.path.join(src, DEFAULT_PROTOCOL)
  elif os.path.isdir(protocol):
    folder = protocol
  elif os.path.isdir(os.path.join(src, protocol)):
    folder = os.path.join(src, protocol)
  else:
    raise MissingDataError(f"protocol folder not found: {protocol} (nor under {src})")
  if not os.path.isdir(folder):
    raise MissingDataError(f"no {DEFAULT_PROTOCOL}/ folder with the label lists under {src}")
  files = {}
  for path in sorted(glob.glob(os.path.join(glob.escape(folder), "*" + LABEL_SUFFIX))):
    split = os.path.basename(path)[:-len(LABEL_SUFFIX)]
    if not _SPLIT_NAME.match(split):
      raise MissingDataError(f"{path}: a split name (the part before {LABEL_SUFFIX}) may only hold "
                             f"letters, digits and _, got {split!r}")
    files[split] = path
  if not files:
    raise MissingDataError(f"no *{LABEL_SUFFIX} label lists in {folder}")
  return dict(sorted(files.items(), key=lambda kv: (kv[0] != "train", kv[0])))


# --- boxes --------------------------------------------------------------------------------------

def read_bb(path: str) -> tuple[float, float, float, float, float]:
  """x y w h score from the first line of a _BB.txt file (224x224 coordinates), checked."""
  try:
    with open(path, encoding="utf-8") as f:
      first = f.readline()
  except FileNotFoundError:
    raise MissingDataError(f"face box file is missing: {path}") from None
  except UnicodeDecodeError:
    raise AnnotationError(path, 1, "not a text file") from None
  fields = first.split()
  if len(fields) != 5:
    raise AnnotationError(path, 1, f"expected `x y w h score`, got {len(fields)} fields "
                          f"{first.strip()[:80]!r}")
  values = []
  for name, text in zip(("x", "y", "w", "h", "score"), fields):
    try:
      value = float(text)
    except ValueError:
      raise AnnotationError(path, 1, f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value):
      raise AnnotationError(path, 1, f"{name} must be finite, got {text!r}")
    values.append(value)
  if int(values[2]) < 1 or int(values[3]) < 1:
    raise AnnotationError(path, 1, f"box width and height must be >= 1 (224x224 pixels), got "
                          f"w {fields[2]} h {fields[3]}")
  return tuple(values)  # type: ignore[return-value]


def face_box(bb, width: int, height: int) -> tuple[int, int, int, int]:
  """The _BB.txt box in original pixels (x, y, w, h), with client.py's integer arithmetic."""
  x, y, w, h = (int(v) for v in bb[:4])
  return (int(x * (width / BB_SIZE)), int(y * (height / BB_SIZE)),
          int(w * (width / BB_SIZE)), int(h * (height / BB_SIZE)))


def crop_box(face: tuple[int, int, int, int], width: int, height: int,
             margin: float) -> tuple[int, int, int, int]:
  """(x0, y0, x1, y1), x1/y1 exclusive: the face box grown by margin·size per side, clamped."""
  x, y, w, h = face
  mx, my = math.floor(margin * w + 0.5), math.floor(margin * h + 0.5)
  return max(0, x - mx), max(0, y - my), min(width, x + w + mx), min(height, y + h + my)


# --- reading the split --------------------------------------------------------------------------

def _map_path(src: str, image_id: str, kind: str, folder: str | None) -> str:
  if folder is None:
    return os.path.join(src, os.path.splitext(image_id)[0] + MAP_SUFFIXES[kind])
  return os.path.join(folder, os.path.splitext(image_id)[0] + ".png")


def read_splits(src: str, protocol: str | None = None, *, skip_missing: bool = False,
                depth: str | None = None, reflection: str | None = None,
                progress: bool = False) -> tuple[dict[str, list[Record]], dict[str, Any]]:
  """Records per split (label lists, files and _BB.txt all checked) and per-split statistics.

  A missing image or _BB.txt is a MissingDataError, or with skip_missing a counted skip.
  """
  label_files = find_label_files(src, protocol)
  for kind, folder in (("depth", depth), ("reflection", reflection)):
    if folder is not None and not os.path.isdir(folder):
      raise MissingDataError(f"{kind} map folder not found: {folder}")
  records: dict[str, list[Record]] = {}
  stats: dict[str, Any] = {}
  owner: dict[int, tuple[str, str, str]] = {}  # subject -> (split, label file, an id)
  for split, path in label_files.items():
    entries = read_label_file(path)
    text = None
    split_records, skipped = [], []
    for image_id, subject, labels in entries:
      if subject in owner and owner[subject][0] != split:
        other_split, other_path, other_id = owner[subject]
        if text is None:
          with open(path, encoding="utf-8") as f:
            text = f.read()
        raise AnnotationError(
            path, _entry_line(text, image_id),
            f"entry {image_id!r}: subject {subject} is also in split {other_split!r} "
            f"({other_id!r} in {other_path}); splits must be subject-disjoint")
      owner.setdefault(subject, (split, path, image_id))
      image_path = os.path.join(src, image_id)
      bb_path = os.path.splitext(image_path)[0] + "_BB.txt"
      missing = next((p for p in (image_path, bb_path) if not os.path.isfile(p)), None)
      if missing is not None:
        if skip_missing:
          skipped.append(image_id)
          continue
        what = "face box file" if missing == bb_path else "image"
        raise MissingDataError(f"{path}: entry {image_id!r}: {what} not found: {missing}")
      record = Record(image_id, subject, labels, image_path, bb_path)
      for kind, folder in (("depth", depth), ("reflection", reflection)):
        map_path = _map_path(src, image_id, kind, folder)
        if os.path.isfile(map_path):
          record.maps[kind] = map_path
      split_records.append(record)
    for record in tqdm(split_records, desc=f"{split:>10} boxes", unit="img", disable=not progress,
                       leave=False):
      record.bb = read_bb(record.bb_path)
    records[split] = split_records
    live = sum(int(r.labels[LIVE_SPOOF] == 0) for r in split_records)
    stats[split] = {
        "num_examples": len(split_records), "num_live": live,
        "num_spoof": len(split_records) - live,
        "num_subjects": len({r.subject for r in split_records}),
        "num_depth": sum("depth" in r.maps for r in split_records),
        "num_reflection": sum("reflection" in r.maps for r in split_records),
        "num_skipped_missing": len(skipped), "skipped_examples": skipped[:5],
        "label_file": os.path.abspath(path),
    }
  for kind, folder in (("depth", depth), ("reflection", reflection)):
    if folder is not None and not any(s[f"num_{kind}"] for s in stats.values()):
      example = _map_path(src, "Data/<split>/<subject>/live/<name>.jpg", kind, folder)
      raise MissingDataError(f"the {kind} folder {folder} holds no map for any listed image "
                             f"(expected e.g. {example})")
  return records, stats


# --- encoding -----------------------------------------------------------------------------------

def _open_image(path: str, what: str) -> tuple[bytes, Image.Image, bool]:
  """(file bytes, decoded image with its EXIF orientation applied, whether that rotated it)."""
  data = common.read_bytes(path, what)
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      rotated = img.getexif().get(0x0112, 1) not in (0, 1)  # 0x0112: EXIF Orientation
      oriented = ImageOps.exif_transpose(img) if rotated else img.copy()
      oriented.format = img.format
  except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
    raise ImageDecodeError(f"{path}: cannot decode {what}: {e}") from e
  return data, oriented, rotated


def _png(image: Image.Image) -> bytes:
  buf = io.BytesIO()
  image.save(buf, format="PNG")
  return buf.getvalue()


def encode(record: Record, margin: float = DEFAULT_MARGIN) -> bytes:
  """One record -> a serialized tf.train.Example with the cropped face (see the module doc)."""
  data, image, rotated = _open_image(record.image_path, "image listed in the labels")
  width, height = image.size
  bb = record.bb if record.bb is not None else read_bb(record.bb_path)
  face = face_box(bb, width, height)
  x0, y0, x1, y1 = crop_box(face, width, height, margin)
  if x1 <= x0 or y1 <= y0:
    raise AnnotationError(record.bb_path, 1, f"face box {' '.join(f'{v:g}' for v in bb[:4])} "
                          f"(x y w h {face} in pixels) lies outside the {width}x{height} image "
                          f"{record.image_path}")
  whole = (x0, y0, x1, y1) == (0, 0, width, height)
  if whole and not rotated and image.format == "JPEG" and image.mode == "RGB":
    jpeg = data
  else:
    buf = io.BytesIO()
    image.crop((x0, y0, x1, y1)).convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    jpeg = buf.getvalue()
  features: dict[str, Any] = {
      "image": jpeg,
      "labels": record.labels,
      "id": record.id,
      "subject": np.array([record.subject], np.int64),
      "box": np.array([x0, y0, x1 - x0, y1 - y0], np.float32),
      "face_box": np.array(face, np.float32),
      "face_score": np.array([bb[4]], np.float32),
      "image_size": np.array([height, width], np.int64),
  }
  for kind, path in sorted(record.maps.items()):
    _, geometry, _ = _open_image(path, f"{kind} map")
    if geometry.size != (width, height):
      raise ImageDecodeError(f"{path}: {kind} map is {geometry.size[0]}x{geometry.size[1]} but its "
                             f"image {record.image_path} is {width}x{height}")
    if kind == "depth":
      geometry = geometry if geometry.mode in ("L", "I;16") else geometry.convert("L")
    else:
      geometry = geometry.convert("RGB")
    features[kind] = _png(geometry.crop((x0, y0, x1, y1)))
  return tfrecord.encode_example(features)


def convert(src: str, out: str, *, shards: int = 8, margin: float = DEFAULT_MARGIN,
            progress: bool = True, protocol: str | None = None, skip_missing: bool = False,
            depth: str | None = None, reflection: str | None = None) -> dict[str, Any]:
  """Writes <split>-NNNNN-of-NNNNN.tfrecord per label list and dataset_info.json under `out`.

  protocol: folder of <split>_label.json lists (default src/metas/intra_test); skip_missing:
  leave out (and count) listed images whose file or _BB.txt is missing instead of stopping;
  depth / reflection: folders of geometric maps (default: <name>_depth.png beside the image).
  Everything is checked before the first record is written.
  """
  if not os.path.isdir(os.path.join(src, "Data")):
    raise MissingDataError(f"no Data/ folder under {src} (point --src at CelebA_Spoof)")
  if not isinstance(shards, int) or shards < 1:
    raise ValueError(f"--shards must be >= 1, got {shards}")
  if not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
    raise ValueError(f"--margin must be a fraction >= 0 of the face box size, got {margin!r}")
  records, stats = read_splits(src, protocol, skip_missing=skip_missing, depth=depth,
                               reflection=reflection, progress=progress)
  if not any(records.values()):
    raise MissingDataError(f"none of the listed images was found under {src} (all skipped)")
  os.makedirs(out, exist_ok=True)
  file_counts: dict[str, int] = {}
  splits = {}
  for split, split_records in records.items():
    if not split_records:
      continue
    counts = common.write_split(out, split, split_records,
                                lambda r: encode(r, margin), shards, progress)
    file_counts.update(counts)
    splits[split] = {**stats[split], "files": sorted(counts)}
  info = {
      "dataset": "celeba_spoof",
      "source": os.path.abspath(src),
      "margin": float(margin),
      "attribute_names": list(ATTRIBUTE_NAMES),
      "spoof_type_names": list(SPOOF_TYPE_NAMES),
      "illumination_names": list(ILLUMINATION_NAMES),
      "environment_names": list(ENVIRONMENT_NAMES),
      "live_spoof_names": list(LIVE_SPOOF_NAMES),
      "label_index": {"attributes": [0, 40], "spoof_type": SPOOF_TYPE,
                      "illumination": ILLUMINATION, "environment": ENVIRONMENT,
                      "live_spoof": LIVE_SPOOF},
      "splits": splits,
      "features": {
          "image": f"JPEG bytes of the RGB face crop (quality {JPEG_QUALITY})",
          "labels": "int64[44]: 40 attributes, spoof type, illumination, environment, live/spoof",
          "id": "bytes, image path relative to the source", "subject": "int64[1]",
          "box": "float32[4] crop x y w h in original pixels",
          "face_box": "float32[4] detector box x y w h in original pixels",
          "face_score": "float32[1] detector score", "image_size": "int64[2] height width",
          "depth": "PNG bytes cropped like the image (optional)",
          "reflection": "PNG bytes cropped like the image (optional)",
      },
  }
  common.write_info(out, info, file_counts)
  return info

"""UCF-101 videos (or Vimeo-90K triplets, or DVF's UCF-101 test set) -> TFRecords of frame triplets.

Deep Voxel Flow learns to synthesise the middle frame of three from the outer two, so every
example is one triplet. Three source layouts (auto-detected from --src, or --layout):
  ucf101    <src>/<Class>/v_<Class>_gXX_cYY.avi (decoded with PyAV), or frame folders
            <src>/<Class>/v_<Class>_gXX_cYY/ holding the frames as .png/.jpg sorted by name; the
            official lists (ucfTrainTestlist/classInd.txt, trainlist0N.txt, testlist0N.txt) pick
            the videos of "train" and "test". Triplets are frames (i, i+gap, i+2*gap), i = 0,
            stride, 2*stride, ...; near-static ones (PSNR(frame0, frame2) > static_psnr) are
            dropped, as DVF's users found necessary. --dvf-test replaces the test split by DVF's
            379 test triplets with their motion masks.
  vimeo     Vimeo-90K triplets: <src>/sequences/<5 digits>/<4 digits>/im1.png, im2.png, im3.png,
            <src>/tri_trainlist.txt and tri_testlist.txt ("00001/0001" a line).
  dvf_test  DVF's UCF-101 test set alone (split "test"): <src>/<n>/frame_00.png, frame_01_gt.png,
            frame_02.png, motion_mask.png (the masks may live in a separate tree, --dvf-masks).
Per example: frame0, frame1, frame2 (decoded video frames as PNG, lossless since PSNR is the
metric; frames read from PNG/JPEG files as their original bytes), id (bytes), height and width
(int64[1]), and only where the source has one, motion_mask (PNG "L", 255 = motion, 0 = static).
Videos are decoded front to back, one at a time (or one per worker process), holding only the
frames a pending triplet needs, and each video's records are written before the next is read.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import multiprocessing
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from hcjax.data import tfrecord
from hcjax.data.converters import common
from hcjax.data.errors import AnnotationError, ImageDecodeError, MissingDataError

SPLITS = ("train", "test")
LAYOUTS = ("ucf101", "vimeo", "dvf_test")
# Start a triplet every 8 frames (0.32 s at 25 fps): neighbouring triplets differ, and UCF-101's
# 9.5k train videos (about 190 frames each) give about 220k triplets before static ones are
# dropped, the order of the ~240k DVF reports training on (unverified).
DEFAULT_STRIDE = 8
DEFAULT_GAP = 1  # consecutive frames, as in DVF's test triplets
DEFAULT_STATIC_PSNR = 30.0  # dB; the threshold of the fork that made DVF's numbers reproducible
AUTO = "auto"  # static_psnr: DEFAULT_STATIC_PSNR for UCF-101 videos, no filter for Vimeo-90K
PNG_COMPRESS_LEVEL = 1  # 3x faster than zlib's default for ~20% larger files; pixels identical
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS_FOLDER = "ucfTrainTestlist"
VIMEO_LISTS = {"train": "tri_trainlist.txt", "test": "tri_testlist.txt"}
DVF_FRAMES = (("frame_00.png",), ("frame_01_gt.png", "frame_01.png"), ("frame_02.png",))
DVF_MASK = "motion_mask.png"
DVF_MASKS_FOLDER = "motion_masks_ucf101_interp"  # DVF's separate download of the masks
_UCF_ENTRY = re.compile(r"^[^/\\]+/[^/\\]+\.avi$", re.IGNORECASE)
_VIMEO_ID = re.compile(r"^\d+/\d+$")

T = TypeVar("T")


class OptionError(ValueError):
  """An option that does not apply to this layout, or an invalid value (the CLI's usage error)."""


@dataclasses.dataclass(frozen=True)
class Extraction:
  """How a video is cut into triplets."""
  stride: int = DEFAULT_STRIDE
  gap: int = DEFAULT_GAP
  static_psnr: float | None = DEFAULT_STATIC_PSNR  # None: keep every triplet
  max_per_video: int | None = None


@dataclasses.dataclass(frozen=True)
class Source:
  """What triplets are read from: a video file, a frame folder, or one ready-made triplet."""
  id: str
  kind: str                            # "video" | "frames" | "triplet"
  path: str                            # the video file or folder (the triplet's folder)
  frames: tuple[str, ...] = ()         # kind "triplet": the three frame files
  mask: str | None = None              # kind "triplet": its motion mask, if any


@dataclasses.dataclass
class Stats:
  """Per split: what was read and what was dropped, for dataset_info.json."""
  sources: int = 0
  candidates: int = 0          # triplets before any filter
  dropped_static: int = 0      # PSNR(frame0, frame2) above the threshold
  dropped_cap: int = 0         # beyond max_triplets_per_video
  too_short: int = 0           # videos with fewer than 2 * gap + 1 frames
  shorter_than_header: int = 0  # videos that decoded to fewer frames than their header says
  triplets: int = 0

  def add(self, other: Stats) -> None:
    for field in dataclasses.fields(self):
      setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


# --- frames ---------------------------------------------------------------------------------------

def psnr(a: np.ndarray, b: np.ndarray) -> float:
  """PSNR in dB of two uint8 images (inf when equal)."""
  mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
  return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def encode_png(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG",
                                                    compress_level=PNG_COMPRESS_LEVEL)
  return buf.getvalue()


def _decode_file(path: str, data: bytes, formats: Sequence[str] = ("PNG", "JPEG"),
                 mode: str = "RGB") -> np.ndarray:
  try:
    with Image.open(io.BytesIO(data)) as img:
      if img.format not in formats:
        raise ImageDecodeError(f"{path}: expected {' or '.join(formats)}, found {img.format}")
      img.load()
      if mode == "L" and img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = Image.fromarray(np.clip(np.rint(np.asarray(img, np.float64) / 257), 0, 255)
                              .astype(np.uint8))
      return np.asarray(img.convert(mode))
  except ImageDecodeError:
    raise
  except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
    raise ImageDecodeError(f"{path}: cannot decode image: {e}") from e


class _Frame:
  """One frame: pixels and encoded bytes, each worked out once, only when asked for."""

  def __init__(self, where: str, pixels: np.ndarray | None = None, path: str | None = None):
    self.where = where  # for messages: the file, or "video.avi, frame 12"
    self._pixels = pixels
    self._path = path
    self._data: bytes | None = None

  @property
  def data(self) -> bytes:
    if self._data is None:
      self._data = (encode_png(self._pixels) if self._path is None
                    else common.read_bytes(self._path, "frame"))
    return self._data

  @property
  def pixels(self) -> np.ndarray:
    if self._pixels is None:
      self._pixels = _decode_file(self.where, self.data)
    return self._pixels


def _video_frames(path: str, stats: Stats) -> Iterator[_Frame]:
  """Decodes a video file frame by frame (PyAV); an unreadable one is an ImageDecodeError."""
  import av  # pylint: disable=g-import-not-at-top
  try:
    container = av.open(path)
  except av.FFmpegError as e:
    if isinstance(e, FileNotFoundError):
      raise MissingDataError(f"video not found: {path}") from None
    raise ImageDecodeError(f"{path}: cannot open the video: {e}") from e
  with container:
    if not container.streams.video:
      raise ImageDecodeError(f"{path}: holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    expected = int(stream.frames or 0)
    index, size = 0, None
    try:
      for frame in container.decode(stream):
        pixels = frame.to_ndarray(format="rgb24")
        if size is None:
          size = pixels.shape
        elif pixels.shape != size:
          raise ImageDecodeError(f"{path}: frame {index} is {pixels.shape[1]}x{pixels.shape[0]} "
                                 f"but frame 0 is {size[1]}x{size[0]}")
        yield _Frame(f"{path}, frame {index}", pixels=pixels)
        index += 1
    except av.FFmpegError as e:
      raise ImageDecodeError(f"{path}: cannot decode frame {index}: {e}") from e
  if index == 0:
    raise ImageDecodeError(f"{path}: no frame could be decoded")
  if index < expected:
    stats.shorter_than_header += 1
    logging.warning("%s: decoded %d frames, the header says %d (truncated?)", path, index,
                    expected)


def _natural_key(name: str) -> list[Any]:
  """frame_2.png before frame_10.png; zero-padded names sort as they are."""
  return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def frame_files(folder: str) -> list[str]:
  """The frames of a frame folder: .png/.jpg/.jpeg files sorted by name (numbers as numbers)."""
  names = [n for n in os.listdir(folder)
           if n.lower().endswith(FRAME_EXTENSIONS) and not n.startswith(".")]
  return [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]


def triplet_starts(num_frames: int, stride: int, gap: int) -> list[int]:
  """First frames of the triplets a video of `num_frames` frames gives (before any filter)."""
  return list(range(0, max(num_frames - 2 * gap, 0), stride))


def _triplets(frames: Iterable[T], stride: int, gap: int) -> Iterator[tuple[int, T, T, T]]:
  """(start, frames start, start + gap, start + 2 gap) for start = 0, stride, ...; streaming:
  only frames some pending triplet still needs are held."""
  held: dict[int, T] = {}
  for f, frame in enumerate(frames):
    if any(f >= k * gap and (f - k * gap) % stride == 0 for k in range(3)):
      held[f] = frame
    start = f - 2 * gap
    if start >= 0 and start % stride == 0:
      yield start, held[start], held[start + gap], frame
    for k in [k for k in held if k <= start]:
      del held[k]


def _check_sizes(frames: Sequence[_Frame]) -> tuple[int, int]:
  h, w = frames[0].pixels.shape[:2]
  for other in frames[1:]:
    if other.pixels.shape[:2] != (h, w):
      oh, ow = other.pixels.shape[:2]
      raise ImageDecodeError(f"{other.where}: frame is {ow}x{oh} but {frames[0].where} is "
                             f"{w}x{h}; the frames of a triplet must have one size")
  return h, w


def _example(id_: str, frames: Sequence[_Frame], mask: bytes | None) -> bytes:
  h, w = _check_sizes(frames)
  features = {"frame0": frames[0].data, "frame1": frames[1].data, "frame2": frames[2].data,
              "id": id_, "height": np.array([h], np.int64), "width": np.array([w], np.int64)}
  if mask is not None:
    features["motion_mask"] = mask
  return tfrecord.encode_example(features)


def read_motion_mask(path: str) -> np.ndarray:
  """A motion mask file -> [H, W] uint8, 255 = motion (a 0/1 mask is scaled to 0/255)."""
  mask = _decode_file(path, common.read_bytes(path, "motion mask"), formats=("PNG", "JPEG", "BMP"),
                      mode="L")
  if mask.size and mask.max() == 1:
    mask = mask * np.uint8(255)
  return mask


def _video_records(source: Source, ex: Extraction, stats: Stats) -> Iterator[bytes]:
  def frames(counts: Stats) -> Iterator[_Frame]:
    if source.kind == "video":
      return _video_frames(source.path, counts)
    return (_Frame(p, path=p) for p in frame_files(source.path))

  def static(f0: _Frame, f1: _Frame, f2: _Frame) -> bool:
    _check_sizes((f0, f1, f2))
    return ex.static_psnr is not None and psnr(f0.pixels, f2.pixels) > ex.static_psnr

  chosen: set[int] | None = None
  dropped: set[int] = set()
  if ex.max_per_video is not None:  # a first pass decides which triplets to keep, evenly spread
    kept = []
    for start, f0, f1, f2 in _triplets(frames(Stats()), ex.stride, ex.gap):
      (dropped.add if static(f0, f1, f2) else kept.append)(start)
    if len(kept) > ex.max_per_video:
      stats.dropped_cap += len(kept) - ex.max_per_video
      kept = [kept[j * len(kept) // ex.max_per_video] for j in range(ex.max_per_video)]
    chosen = set(kept)
  count = 0
  for start, f0, f1, f2 in _triplets(frames(stats), ex.stride, ex.gap):
    count += 1
    stats.candidates += 1
    if start in dropped or (chosen is None and static(f0, f1, f2)):
      stats.dropped_static += 1
      continue
    if chosen is not None and start not in chosen:
      continue  # counted in dropped_cap
    stats.triplets += 1
    yield _example(f"{source.id}/{start:06d}", (f0, f1, f2), None)
  if count == 0:
    stats.too_short += 1


def _source_records(job: tuple[Source, Extraction]) -> tuple[list[bytes], Stats]:
  """All records of one source (a worker's unit of work), with its stats."""
  source, ex = job
  stats = Stats(sources=1)
  if source.kind != "triplet":
    return list(_video_records(source, ex, stats)), stats
  frames = [_Frame(p, path=p) for p in source.frames]
  stats.candidates = 1
  _check_sizes(frames)
  if ex.static_psnr is not None and psnr(frames[0].pixels, frames[2].pixels) > ex.static_psnr:
    stats.dropped_static = 1
    return [], stats
  mask = None
  if source.mask is not None:
    pixels = read_motion_mask(source.mask)
    h, w = frames[0].pixels.shape[:2]
    if pixels.shape != (h, w):
      raise ImageDecodeError(f"{source.mask}: motion mask is {pixels.shape[1]}x{pixels.shape[0]} "
                             f"but {frames[0].where} is {w}x{h}")
    mask = encode_png(pixels)
  stats.triplets = 1
  return [_example(source.id, frames, mask)], stats


# --- lists and layouts ----------------------------------------------------------------------------

def detect_layout(src: str) -> str:
  """"vimeo" (sequences/ or tri_*list.txt), "dvf_test" (numbered triplet folders) or "ucf101"."""
  if os.path.isdir(os.path.join(src, "sequences")) or any(
      os.path.isfile(os.path.join(src, name)) for name in VIMEO_LISTS.values()):
    return "vimeo"
  if _dvf_folders(src):
    return "dvf_test"
  return "ucf101"


def find_splits_dir(src: str, splits_dir: str | None = None) -> str:
  """--splits, else <src>/ucfTrainTestlist, else <src>/../ucfTrainTestlist."""
  if splits_dir is not None:
    if not os.path.isdir(splits_dir):
      raise MissingDataError(f"--splits folder not found: {splits_dir}")
    return splits_dir
  for folder in (os.path.join(src, SPLITS_FOLDER),
                 os.path.join(os.path.dirname(os.path.abspath(src)), SPLITS_FOLDER)):
    if os.path.isdir(folder):
      return folder
  raise MissingDataError(
      f"no {SPLITS_FOLDER}/ folder in {src} or next to it: get the official split lists "
      "(UCF101TrainTestSplits-RecognitionTask.zip) and pass --splits DIR")


def read_class_index(path: str) -> dict[int, str]:
  """classInd.txt: `1 ApplyEyeMakeup` a line -> {1: "ApplyEyeMakeup", ...}."""
  common.require_file(path, "UCF-101 class index")
  classes: dict[int, str] = {}
  for line, fields in common.numbered_lines(path):
    if len(fields) != 2:
      raise AnnotationError(path, line, f"expected `INDEX CLASS`, got {len(fields)} fields")
    index = common.parse_int(path, line, fields[0], "the class index")
    if index in classes:
      raise AnnotationError(path, line, f"class index {index} given twice")
    if fields[1] in classes.values():
      raise AnnotationError(path, line, f"class {fields[1]} given twice")
    classes[index] = fields[1]
  if not classes:
    raise AnnotationError(path, 1, "the class index names no classes")
  return classes


def read_ucf_list(path: str, classes: dict[int, str] | None = None) -> list[tuple[int, str]]:
  """(line, "Class/v_Class_gXX_cYY.avi") of trainlist0N.txt (`entry label`) or testlist0N.txt."""
  common.require_file(path, "UCF-101 split list")
  names = set(classes.values()) if classes else None
  entries, seen = [], {}
  for line, fields in common.numbered_lines(path):
    if len(fields) > 2:
      raise AnnotationError(path, line, f"expected `Class/v_Class_gXX_cYY.avi [label]`, got "
                            f"{len(fields)} fields")
    entry = fields[0]
    if not _UCF_ENTRY.match(entry):
      raise AnnotationError(path, line, f"expected a video such as "
                            f"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi, got {entry!r}")
    folder = entry.split("/")[0]
    if names is not None and folder not in names:
      raise AnnotationError(path, line, f"class {folder!r} is not in classInd.txt")
    if len(fields) == 2:
      label = common.parse_int(path, line, fields[1], "the class label")
      if classes is not None and classes.get(label) != folder:
        raise AnnotationError(path, line, f"label {label} is class {classes.get(label)!r} in "
                              f"classInd.txt, but the video is in {folder}/")
    if entry in seen:
      raise AnnotationError(path, line, f"{entry} listed twice (first on line {seen[entry]})")
    seen[entry] = line
    entries.append((line, entry))
  if not entries:
    raise AnnotationError(path, 1, "the list names no videos")
  return entries


def _ucf_source(root: str, entry: str, list_path: str, line: int) -> Source:
  """The .avi of a list entry, or else its frame folder (same name without .avi)."""
  video = os.path.join(root, *entry.split("/"))
  folder = os.path.splitext(video)[0]
  video_id = os.path.splitext(entry)[0]
  if os.path.isfile(video):
    return Source(video_id, "video", video)
  if os.path.isdir(folder):
    return Source(video_id, "frames", folder)
  raise MissingDataError(f"{list_path}, line {line}: {entry} is missing (neither {video} nor "
                         f"the frame folder {folder}/ exists)")


def ucf_sources(src: str, splits_dir: str | None = None, split_number: int = 1,
                test: bool = True) -> tuple[dict[str, list[Source]], dict[str, str]]:
  """Sources of "train" (and "test") from the official lists; and the list files read."""
  lists_dir = find_splits_dir(src, splits_dir)
  class_file = os.path.join(lists_dir, "classInd.txt")
  classes = read_class_index(class_file) if os.path.isfile(class_file) else None
  files = {"train": os.path.join(lists_dir, f"trainlist{split_number:02d}.txt")}
  if test:
    files["test"] = os.path.join(lists_dir, f"testlist{split_number:02d}.txt")
  entries = {split: read_ucf_list(path, classes) for split, path in files.items()}
  if test:
    train = {e: line for line, e in entries["train"]}
    for line, entry in entries["test"]:
      if entry in train:
        raise AnnotationError(files["test"], line, f"{entry} is also in {files['train']} "
                              f"(line {train[entry]})")
  sources = {split: [_ucf_source(src, e, files[split], line) for line, e in entries[split]]
             for split in files}
  return sources, {**files, **({"classes": class_file} if classes else {})}


def read_vimeo_list(path: str) -> list[tuple[int, str]]:
  """(line, "00001/0001") of tri_trainlist.txt / tri_testlist.txt; blank lines are skipped."""
  ids, seen = [], {}
  for line, fields in common.numbered_lines(path):
    if len(fields) != 1 or not _VIMEO_ID.match(fields[0]):
      raise AnnotationError(path, line, f"expected a sequence such as 00001/0001, got "
                            f"{' '.join(fields)!r}")
    if fields[0] in seen:
      raise AnnotationError(path, line, f"{fields[0]} listed twice (first on line "
                            f"{seen[fields[0]]})")
    seen[fields[0]] = line
    ids.append((line, fields[0]))
  if not ids:
    raise AnnotationError(path, 1, "the list names no sequences")
  return ids


def vimeo_sources(src: str) -> tuple[dict[str, list[Source]], dict[str, str]]:
  """Sources of the splits whose list file is present (the test-only download has one)."""
  files = {s: os.path.join(src, name) for s, name in VIMEO_LISTS.items()
           if os.path.isfile(os.path.join(src, name))}
  if not files:
    raise MissingDataError(f"neither {' nor '.join(VIMEO_LISTS.values())} in {src}")
  sources: dict[str, list[Source]] = {}
  seen: dict[str, str] = {}
  for split, path in files.items():
    sources[split] = []
    for line, seq in read_vimeo_list(path):
      if seq in seen:
        raise AnnotationError(path, line, f"{seq} is also in {seen[seq]}")
      seen[seq] = path
      folder = os.path.join(src, "sequences", *seq.split("/"))
      frames = tuple(os.path.join(folder, f"im{k}.png") for k in (1, 2, 3))
      for frame in frames:
        if not os.path.isfile(frame):
          raise MissingDataError(f"{path}, line {line}: {seq} is missing {frame}")
      sources[split].append(Source(seq, "triplet", folder, frames))
  return sources, files


def _dvf_folders(folder: str) -> list[str]:
  """Numbered subfolders holding frame_00.png, in numeric order (1, 11, 21, ... in DVF's set)."""
  if not os.path.isdir(folder):
    return []
  names = [n for n in os.listdir(folder) if n.isdigit()
           and os.path.isfile(os.path.join(folder, n, DVF_FRAMES[0][0]))]
  return sorted(names, key=int)


def dvf_sources(folder: str, masks: str | None = None) -> list[Source]:
  """DVF's test triplets; motion masks from the triplet folders, `masks`/<n>/, or the sibling
  motion_masks_ucf101_interp/ of DVF's separate download. All or none must have one."""
  if not os.path.isdir(folder):
    raise MissingDataError(f"DVF test folder not found: {folder}")
  if masks is not None and not os.path.isdir(masks):
    raise MissingDataError(f"motion mask folder not found: {masks}")
  names = _dvf_folders(folder)
  if not names:
    raise MissingDataError(f"{folder} holds no numbered triplet folders (1/, 11/, ...) with "
                           f"{DVF_FRAMES[0][0]}")
  mask_roots = [masks] if masks is not None else [
      folder, os.path.join(os.path.dirname(os.path.abspath(folder)), DVF_MASKS_FOLDER)]
  sources = []
  for name in names:
    triplet = os.path.join(folder, name)
    frames = []
    for choices in DVF_FRAMES:
      found = [os.path.join(triplet, c) for c in choices
               if os.path.isfile(os.path.join(triplet, c))]
      if not found:
        raise MissingDataError(f"{triplet}: no {' or '.join(choices)}")
      frames.append(found[0])
    mask = next((os.path.join(root, name, DVF_MASK) for root in mask_roots
                 if os.path.isfile(os.path.join(root, name, DVF_MASK))), None)
    sources.append(Source(name, "triplet", triplet, tuple(frames), mask))
  with_mask = [s for s in sources if s.mask is not None]
  if (with_mask or masks is not None) and len(with_mask) != len(sources):
    missing = next(s for s in sources if s.mask is None)
    raise MissingDataError(f"no {DVF_MASK} for triplet {missing.path} (looked in "
                           f"{', '.join(os.path.join(r, missing.id) for r in mask_roots)}); "
                           "every triplet needs its mask, or none")
  if not with_mask:
    logging.warning("%s: no motion masks found; the records will have none", folder)
  return sources


# --- writing --------------------------------------------------------------------------------------

def _write_split(out: str, split: str, sources: Sequence[Source], ex: Extraction,
                 num_shards: int, imap, progress: bool) -> tuple[dict[str, int], Stats]:
  """Sources in order, in contiguous runs, one run per file; records stream from the sources."""
  num_shards = max(1, min(num_shards, len(sources)))
  bounds = [len(sources) * i // num_shards for i in range(num_shards + 1)]
  results = imap(_source_records, ((s, ex) for s in sources))
  unit = "triplet" if sources and sources[0].kind == "triplet" else "video"
  bar = tqdm(total=len(sources), desc=f"{split:>10}", unit=unit, disable=not progress, leave=False)
  counts: dict[str, int] = {}
  total = Stats()
  for i, name in enumerate(common.shard_names(split, num_shards)):
    with tfrecord.RecordWriter(os.path.join(out, name)) as writer:
      for _ in range(bounds[i], bounds[i + 1]):
        records, stats = next(results)
        for record in records:
          writer.write(record)
        total.add(stats)
        bar.update(1)
    counts[name] = writer.count
  bar.close()
  return counts, total


def _check_positive(name: str, value: int | None) -> None:
  if value is not None and (not isinstance(value, int) or value < 1):
    raise OptionError(f"{name} must be an integer >= 1, got {value!r}")


def convert(src: str, out: str, *, shards: int = 8, layout: str | None = None,
            splits_dir: str | None = None, split_number: int = 1, stride: int | None = None,
            gap: int | None = None, static_psnr: float | str | None = AUTO,
            max_triplets_per_video: int | None = None, dvf_test: str | None = None,
            dvf_masks: str | None = None, workers: int = 1,
            progress: bool = True) -> dict[str, Any]:
  """Writes {train,test}-NNNNN-of-NNNNN.tfrecord and dataset_info.json under `out`; returns the
  latter's contents.

  stride / gap default to DEFAULT_STRIDE / DEFAULT_GAP; static_psnr AUTO means 30 dB for
  UCF-101 videos and no filter for Vimeo-90K, None keeps every triplet; DVF's test triplets are
  never dropped (a benchmark keeps all its triplets). `workers` > 1 decodes videos in that many
  processes; the output is the same.
  """
  for name, value in (("--shards", shards), ("--stride", stride), ("--gap", gap),
                      ("--max-triplets-per-video", max_triplets_per_video),
                      ("--workers", workers)):
    _check_positive(name, value)
  if split_number not in (1, 2, 3):
    raise OptionError(f"--split-number must be 1, 2 or 3, got {split_number!r}")
  if static_psnr != AUTO and static_psnr is not None:
    try:
      static_psnr = float(static_psnr)
    except (TypeError, ValueError):
      raise OptionError(f"--static-psnr must be a number of dB (or none), got {static_psnr!r}"
                        ) from None
    if math.isnan(static_psnr):
      raise OptionError("--static-psnr must be a number of dB (or none), got nan")
  if not os.path.isdir(src):
    raise MissingDataError(f"--src folder not found: {src}")
  layout = layout or detect_layout(src)
  if layout not in LAYOUTS:
    raise OptionError(f"--layout must be one of {LAYOUTS}, got {layout!r}")
  if layout != "ucf101":
    given = [n for n, v in (("--stride", stride), ("--gap", gap), ("--max-triplets-per-video",
             max_triplets_per_video), ("--dvf-test", dvf_test), ("--splits", splits_dir)) if v]
    if given:
      raise OptionError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} only for "
                        f"UCF-101 videos (--layout ucf101), not for the {layout} layout")
  if layout != "dvf_test" and dvf_masks is not None and dvf_test is None:
    raise OptionError("--dvf-masks goes with --dvf-test (or --layout dvf_test)")

  keep_all = Extraction(static_psnr=None)
  if layout == "ucf101":
    ex = Extraction(stride or DEFAULT_STRIDE, gap or DEFAULT_GAP,
                    DEFAULT_STATIC_PSNR if static_psnr == AUTO else static_psnr,
                    max_triplets_per_video)
    sources, lists = ucf_sources(src, splits_dir, split_number, test=dvf_test is None)
    extraction = {"train": ex, "test": ex}
    if dvf_test is not None:
      sources["test"] = dvf_sources(dvf_test, dvf_masks)
      lists["test"] = dvf_test
      extraction["test"] = keep_all
  elif layout == "vimeo":
    sources, lists = vimeo_sources(src)
    ex = Extraction(static_psnr=None if static_psnr == AUTO else static_psnr)
    extraction = {split: ex for split in sources}
  else:
    if static_psnr not in (AUTO, None):
      raise OptionError("--static-psnr does not apply to DVF's test set: a benchmark keeps all "
                       "its triplets")
    sources, lists = {"test": dvf_sources(src, dvf_masks)}, {"test": src}
    extraction = {"test": keep_all}

  os.makedirs(out, exist_ok=True)
  file_counts: dict[str, int] = {}
  splits: dict[str, Any] = {}
  stats: dict[str, Any] = {}
  pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
  try:
    imap = (lambda f, jobs: pool.imap(f, jobs, chunksize=1)) if pool else map
    for split in (s for s in SPLITS if s in sources):
      counts, split_stats = _write_split(out, split, sources[split], extraction[split], shards,
                                         imap, progress)
      file_counts.update(counts)
      splits[split] = {"num_examples": sum(counts.values()), "files": sorted(counts)}
      stats[split] = dataclasses.asdict(split_stats)
  finally:
    if pool is not None:
      pool.terminate()
  has_masks = {split: any(s.mask is not None for s in sources[split]) for split in splits}
  info = {
      "dataset": {"ucf101": "ucf101", "vimeo": "vimeo90k_triplet",
                  "dvf_test": "ucf101_dvf_test"}[layout],
      "layout": layout,
      "source": os.path.abspath(src),
      "lists": {k: os.path.abspath(v) for k, v in lists.items()},
      "splits": splits,
      "extraction": {split: (dataclasses.asdict(extraction[split])
                             if sources[split][0].kind != "triplet" else
                             {"static_psnr": extraction[split].static_psnr})
                     for split in splits},
      "stats": stats,
      "motion_masks": has_masks,
      "features": {
          "frame0": "encoded image bytes: PNG for frames decoded from videos, else the frame "
                    "file's own PNG/JPEG bytes", "frame1": "as frame0 (the middle frame)",
          "frame2": "as frame0",
          "id": "bytes: Class/v_Class_gXX_cYY/NNNNNN (0-based first frame), a Vimeo sequence "
                "00001/0001 or a DVF triplet folder number",
          "height": "int64[1]", "width": "int64[1]",
          "motion_mask": "PNG bytes, single-channel, 255 = motion, 0 = static (only where the "
                         "source has masks: see motion_masks)",
      },
  }
  if layout == "ucf101":
    info["split_number"] = split_number
  common.write_info(out, info, file_counts)
  return {**info, "file_counts": file_counts}  # as dataset_info.json holds it

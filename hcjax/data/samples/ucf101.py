"""A deterministic UCF-101 look-alike: real photographs under layered, known motion.

Each clip is a camera moving over a photograph shipped with scikit-image (rocket launch site,
coffee table, street with a motorcycle, tinted grass/gravel/brick/coins), with one or two photo
cut-outs (astronaut, cameraman, chelsea, motorcycle, horse, table; see samples/voc.py) in front,
moving along straight lines, some growing or shrinking, the later one occluding the earlier.
Motion is known exactly: the camera maps output pixel x at frame t to the world point
cx(t) + z(t) (x - pivot) (pan/tilt: cx moves; zoom: z = exp(±k t)), and a cut-out's texel u is
shown at c(t) + s(t) (u - u_centre). Every layer is resampled bilinearly from a raster at least as
fine as the frame (magnified, never minified, so no aliasing), cut-outs with premultiplied alpha.
Clips are written in UCF-101's frame-folder layout with pseudo action classes named after the
camera motion (PanLeft: the camera turns left, so the scene moves right), UCF-101-style split
lists (the test videos are whole groups, g01, as UCF-101's split 1 tests on g01-g07), and
DVF-style test triplets from the test videos with exact motion masks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from hcjax.data.converters import ucf101 as converter
from hcjax.data.errors import MissingDataError
from hcjax.data.pipeline import INFO_FILE
from hcjax.data.samples import voc as voc_samples

FRAME_SIZE = (96, 128)  # (H, W): /8 for DVF's three poolings, small enough for CPU training
NUM_FRAMES = 12
NUM_VIDEOS = 60         # 48 train, 12 test videos: ~450 train triplets, 36 test triplets
CLASSES = ("PanLeft", "PanRight", "StaticCamera", "TiltDown", "TiltUp", "ZoomIn", "ZoomOut")
NUM_GROUPS = 5          # gXX; video v is group v % 5 + 1, class (v // 5) % 7, clip v // 35 + 1
TEST_GROUPS = (1,)
DVF_EVERY = 4           # DVF-style test triplets start at frames 0, 4, 8, ... of each test video
SAMPLE_STRIDE = 1       # build() extracts every triplet of the (short) training clips
UCF_DIR, LISTS_DIR, DVF_DIR = "UCF-101", converter.SPLITS_FOLDER, "dvf_test"
SAMPLE_INFO = "sample_info.json"  # written last: its presence means the set is complete

BACKGROUNDS = ("rocket", "coffee", "street", "grass", "gravel", "brick", "coins")
_TINTS = {"grass": (0.55, 0.9, 0.4), "gravel": (1.0, 0.94, 0.84), "brick": (1.05, 0.78, 0.72),
          "coins": (0.95, 0.95, 0.9)}
# Cut-out kinds of samples/voc.py and how often each is drawn: people most.
SPRITES = {"astronaut": 0.25, "cameraman": 0.25, "chelsea": 0.125, "motorcycle": 0.125,
           "horse": 0.125, "table": 0.125}
_EPS = 1e-6


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
  """A background photograph, RGB uint8 (all ship with scikit-image: nothing is downloaded)."""
  try:
    from skimage import data  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise MissingDataError("the UCF-101 sample set is made from scikit-image's photographs: "
                           "pip install scikit-image") from None
  if name == "street":
    return data.stereo_motorcycle()[1]  # the right view; the left one gives the motorcycle
  photo = getattr(data, name)()
  if photo.ndim == 2:
    photo = np.clip(np.stack([photo] * 3, -1) * np.array(_TINTS.get(name, (1, 1, 1))), 0, 255)
  return np.asarray(photo, np.uint8)


def _bilinear(raster: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
  """raster [h, w, c] sampled at float (ys, xs), pixel centres at integers, edges clamped."""
  h, w = raster.shape[:2]
  ys = np.clip(ys, 0, h - 1)
  xs = np.clip(xs, 0, w - 1)
  y0 = np.minimum(np.floor(ys).astype(np.int64), h - 2) if h > 1 else np.zeros(ys.shape, np.int64)
  x0 = np.minimum(np.floor(xs).astype(np.int64), w - 2) if w > 1 else np.zeros(xs.shape, np.int64)
  fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
  y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
  top = raster[y0, x0] * (1 - fx) + raster[y0, x1] * fx
  bottom = raster[y1, x0] * (1 - fx) + raster[y1, x1] * fx
  return top * (1 - fy) + bottom * fy


def _grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  ys, xs = np.mgrid[0:size[0], 0:size[1]]
  return ys.astype(np.float64), xs.astype(np.float64)


@dataclasses.dataclass
class Camera:
  """Output pixel (y, x) at frame t shows world point centre(t) + zoom(t) * ((y, x) - pivot)."""
  world: np.ndarray           # [h, w, 3] float64 raster; raster px = `unit` world units
  origin: tuple[float, float]  # world point at raster pixel (0, 0)
  unit: float
  pivot: tuple[float, float]
  velocity: tuple[float, float]  # of centre(t), world units (= output px at zoom 1) per frame
  zoom_rate: float               # zoom(t) = exp(zoom_rate * t); < 0 zooms in

  def centre(self, t: float) -> np.ndarray:
    return np.array(self.pivot) + t * np.array(self.velocity)

  def zoom(self, t: float) -> float:
    return float(np.exp(self.zoom_rate * t))

  def world_point(self, t: float, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, z = self.centre(t), self.zoom(t)
    return c[0] + z * (ys - self.pivot[0]), c[1] + z * (xs - self.pivot[1])

  def position(self, t: float, wy: np.ndarray, wx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where world point (wy, wx) appears at frame t (output pixels)."""
    c, z = self.centre(t), self.zoom(t)
    return self.pivot[0] + (wy - c[0]) / z, self.pivot[1] + (wx - c[1]) / z

  def render(self, t: float, size: tuple[int, int]) -> np.ndarray:
    wy, wx = self.world_point(t, *_grid(size))
    return _bilinear(self.world, (wy - self.origin[0]) / self.unit,
                     (wx - self.origin[1]) / self.unit)


@dataclasses.dataclass
class Layer:
  """A photo cut-out: raster texel u shows at centre(t) + scale(t) * (u - raster centre)."""
  kind: str
  rgb: np.ndarray    # [h, w, 3] uint8
  alpha: np.ndarray  # [h, w] bool: exact outline
  start: tuple[float, float]     # centre at frame 0 (y, x), output pixels
  velocity: tuple[float, float]  # output pixels per frame
  scale0: float                  # scale(t) = scale0 * exp(growth * t) >= 1 (magnified only)
  growth: float

  def centre(self, t: float) -> np.ndarray:
    return np.array(self.start) + t * np.array(self.velocity)

  def scale(self, t: float) -> float:
    return float(self.scale0 * np.exp(self.growth * t))

  @property
  def _uc(self) -> np.ndarray:
    return (np.array(self.alpha.shape, np.float64) - 1) / 2

  def texel(self, t: float, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s, uc = self.centre(t), self.scale(t), self._uc
    return uc[0] + (ys - c[0]) / s, uc[1] + (xs - c[1]) / s

  def position(self, t: float, uy: np.ndarray, ux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where texel (uy, ux) appears at frame t (output pixels)."""
    c, s, uc = self.centre(t), self.scale(t), self._uc
    return c[0] + s * (uy - uc[0]), c[1] + s * (ux - uc[1])

  def render(self, t: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(coverage [H, W] in [0, 1], premultiplied colour [H, W, 3]) at frame t."""
    uy, ux = self.texel(t, *_grid(size))
    # One transparent texel all round, so coverage falls to exactly 0 outside the outline.
    alpha = np.pad(self.alpha.astype(np.float64), 1)[..., None]
    premult = np.pad(self.rgb.astype(np.float64), ((1, 1), (1, 1), (0, 0))) * alpha
    sampled = _bilinear(np.concatenate([alpha, premult], -1), uy + 1, ux + 1)
    cover = sampled[..., 0]
    cover = np.where(cover < _EPS, 0.0, np.where(cover > 1 - _EPS, 1.0, cover))
    return cover, sampled[..., 1:] * (cover > 0)[..., None]


@dataclasses.dataclass
class Clip:
  """One video: its name in UCF-101's scheme, its camera and layers, and a renderer."""
  name: str       # v_PanLeft_g01_c01
  action: str
  group: int
  clip: int
  camera: Camera
  layers: list[Layer]  # bottom to top
  num_frames: int
  size: tuple[int, int]

  @property
  def split(self) -> str:
    return "test" if self.group in TEST_GROUPS else "train"

  def frame(self, t: int) -> np.ndarray:
    image = self.camera.render(t, self.size)
    for layer in self.layers:
      cover, premult = layer.render(t, self.size)
      image = image * (1 - cover[..., None]) + premult
    return np.clip(np.round(image), 0, 255).astype(np.uint8)

  def motion_mask(self, t0: int, t2: int) -> np.ndarray:
    """[H, W] bool: pixels where, at any frame t0..t2, a visible layer moves between t0 and t2.

    Elsewhere every frame t0..t2 shows the same static surfaces, so the pixel never changes.
    """
    ys, xs = _grid(self.size)
    mask = np.zeros(self.size, bool)
    for t in range(t0, t2 + 1):
      above = np.ones(self.size)  # how much of each pixel the layers above leave visible
      for layer in reversed(self.layers):
        cover, _ = layer.render(t, self.size)
        uy, ux = layer.texel(t, ys, xs)
        (ay, ax), (by, bx) = layer.position(t0, uy, ux), layer.position(t2, uy, ux)
        mask |= (cover * above > 0) & ((ay != by) | (ax != bx))
        above = above * (1 - cover)
      wy, wx = self.camera.world_point(t, ys, xs)
      (ay, ax), (by, bx) = self.camera.position(t0, wy, wx), self.camera.position(t2, wy, wx)
      mask |= (above > 0) & ((ay != by) | (ax != bx))
    return mask


def video_name(index: int) -> tuple[str, int, int]:
  """(class, group, clip) of video `index`; groups cycle fastest: any 5 videos hold a test one."""
  group = index % NUM_GROUPS + 1
  action = CLASSES[(index // NUM_GROUPS) % len(CLASSES)]
  return action, group, index // (NUM_GROUPS * len(CLASSES)) + 1


def _camera(rng: np.random.Generator, action: str, background: str, size: tuple[int, int],
            num_frames: int) -> Camera:
  h, w = size
  speed = rng.uniform(0.75, 3.0)
  velocity = {"PanLeft": (0.0, -speed), "PanRight": (0.0, speed), "TiltUp": (-speed, 0.0),
              "TiltDown": (speed, 0.0)}.get(action, (0.0, 0.0))
  zoom_rate = {"ZoomIn": -1.0, "ZoomOut": 1.0}.get(action, 0.0) * rng.uniform(0.015, 0.035)
  pivot = (rng.uniform(0.3, 0.7) * (h - 1), rng.uniform(0.3, 0.7) * (w - 1))
  camera = Camera(np.zeros((1, 1, 3)), (0.0, 0.0), 1.0, pivot, velocity, zoom_rate)
  # The world region all frames see, at the resolution of the most zoomed-out frame.
  corners = (np.array([0.0, 0, h - 1, h - 1]), np.array([0.0, w - 1, 0, w - 1]))
  points = [camera.world_point(t, *corners) for t in (0, num_frames - 1)]
  wy = np.concatenate([p[0] for p in points])
  wx = np.concatenate([p[1] for p in points])
  unit = max(camera.zoom(0), camera.zoom(num_frames - 1))
  margin = 2
  raster = (int(np.ceil((wy.max() - wy.min()) / unit)) + 2 * margin + 1,
            int(np.ceil((wx.max() - wx.min()) / unit)) + 2 * margin + 1)
  photo = _photo(background)
  # pylint: disable=protected-access
  window = voc_samples._window(rng, photo, raster[1] / raster[0], 0.45)
  world = voc_samples._resize(np.ascontiguousarray(window), raster)
  # pylint: enable=protected-access
  if rng.random() < 0.5:
    world = world[:, ::-1]
  camera.world = world.astype(np.float64) * rng.uniform(0.85, 1.1)
  camera.origin = (wy.min() - margin * unit, wx.min() - margin * unit)
  camera.unit = unit
  return camera


def _path(rng: np.random.Generator, speed: float, size: tuple[int, int], num_frames: int,
          near: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
  """(start, velocity) of a straight path whose centre stays inside the frame's middle part; if
  `near` is given the path passes near that point halfway through (so the layers overlap)."""
  h, w = size
  low, high = np.array([0.2 * h, 0.15 * w]), np.array([0.8 * h, 0.85 * w])
  angle = rng.uniform(0, 2 * np.pi)
  velocity = speed * np.array([np.sin(angle), np.cos(angle)])
  travel = np.abs(velocity) * (num_frames - 1)
  velocity = velocity * min(1.0, float(np.min((high - low) / np.maximum(travel, 1e-9))))
  travel = velocity * (num_frames - 1)
  first, last = np.minimum(0, travel), np.maximum(0, travel)  # path extent relative to start
  lo, hi = low - first, high - last
  if near is None:
    start = rng.uniform(lo, hi)
  else:
    start = near + rng.uniform(-0.15, 0.15, 2) * np.array([h, w]) - travel / 2
  return np.clip(start, lo, hi), velocity


def _layers(rng: np.random.Generator, action: str, size: tuple[int, int], num_frames: int,
            kinds: list[str]) -> list[Layer]:
  h, w = size
  layers: list[Layer] = []
  for i, kind in enumerate(kinds):
    # Moving cameras often follow the first subject: it stays put in the frame.
    tracked = i == 0 and action != "StaticCamera" and rng.random() < 0.25
    speed = 0.0 if tracked else rng.uniform(1.0, 3.5)
    growth = rng.uniform(-0.02, 0.02) if rng.random() < 0.35 else 0.0
    base_h, base_w = voc_samples._shape(kind)  # pylint: disable=protected-access
    display_h = h * (rng.uniform(0.45, 0.8) if i == 0 else rng.uniform(0.35, 0.6))
    display_h = min(display_h, 0.7 * w * base_h / base_w)
    smallest = min(1.0, float(np.exp(growth * (num_frames - 1))))
    raster = (max(8, int(round(display_h * smallest))),
              max(8, int(round(display_h * smallest * base_w / base_h))))
    rgb, alpha = voc_samples.cutout(kind, rng, raster)
    if rng.random() < 0.5:
      rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    start, velocity = _path(rng, speed, size, num_frames,
                            None if not layers else layers[0].centre((num_frames - 1) / 2))
    layers.append(Layer(kind, np.ascontiguousarray(rgb), np.ascontiguousarray(alpha),
                        (float(start[0]), float(start[1])),
                        (float(velocity[0]), float(velocity[1])),
                        display_h / raster[0], growth))
  return layers


def render_clip(index: int, seed: int = 0, *, num_frames: int = NUM_FRAMES,
                size: tuple[int, int] = FRAME_SIZE) -> Clip:
  """Video `index` (0-based) of the sample set for `seed`; clips of one (class, group) share
  their setting (background photo and cut-out kinds), as UCF-101's groups share actors."""
  action, group, clip = video_name(index)
  setting = np.random.default_rng([seed, CLASSES.index(action), group])
  background = BACKGROUNDS[setting.integers(len(BACKGROUNDS))]
  names = list(SPRITES)
  p = np.array([SPRITES[k] for k in names])
  kinds = [names[i] for i in setting.choice(len(names), size=2, replace=False, p=p / p.sum())]
  rng = np.random.default_rng([seed, index, 1])
  kinds = kinds[:int(rng.choice([1, 2], p=[0.4, 0.6]))]
  camera = _camera(rng, action, background, size, num_frames)
  layers = _layers(rng, action, size, num_frames, kinds)
  return Clip(f"v_{action}_g{group:02d}_c{clip:02d}", action, group, clip, camera, layers,
              num_frames, size)


def _save_png(array: np.ndarray, path: str) -> None:
  Image.fromarray(array).save(path, format="PNG")


def dvf_starts(num_frames: int) -> list[int]:
  return list(range(0, num_frames - 2, DVF_EVERY))


def write_sample_set(out_dir: str, *, num_videos: int = NUM_VIDEOS, seed: int = 0,
                     num_frames: int = NUM_FRAMES, size: tuple[int, int] = FRAME_SIZE,
                     progress: bool = False) -> dict[str, Any]:
  """Writes UCF-101/, ucfTrainTestlist/ (split 1), dvf_test/ and README.md under out_dir."""
  if num_videos < 2:
    raise ValueError(f"need num_videos >= 2 (a train and a test video), got {num_videos}")
  if num_frames < 3:
    raise ValueError(f"need num_frames >= 3 (one triplet), got {num_frames}")
  os.makedirs(out_dir, exist_ok=True)
  if os.path.exists(os.path.join(out_dir, SAMPLE_INFO)):  # a set of ours: replace it whole, or
    os.remove(os.path.join(out_dir, SAMPLE_INFO))         # stale DVF folders would be converted
    for folder in (UCF_DIR, LISTS_DIR, DVF_DIR):
      shutil.rmtree(os.path.join(out_dir, folder), ignore_errors=True)
  clips = []
  for index in tqdm(range(num_videos), desc="rendering clips", disable=not progress, leave=False):
    clip = render_clip(index, seed, num_frames=num_frames, size=size)
    folder = os.path.join(out_dir, UCF_DIR, clip.action, clip.name)
    os.makedirs(folder, exist_ok=True)
    frames = [clip.frame(t) for t in range(num_frames)]
    for t, frame in enumerate(frames):
      _save_png(frame, os.path.join(folder, f"frame_{t + 1:04d}.png"))
    clips.append((clip, frames))
  if not any(c.split == "test" for c, _ in clips) or not any(c.split == "train" for c, _ in clips):
    raise ValueError(f"num_videos={num_videos} gives no train or no test video")
  # Split lists as UCF-101's: sorted by class, group, clip; classInd in CLASSES order.
  ordered = sorted(clips, key=lambda cf: (CLASSES.index(cf[0].action), cf[0].group, cf[0].clip))
  lists = os.path.join(out_dir, LISTS_DIR)
  os.makedirs(lists, exist_ok=True)
  with open(os.path.join(lists, "classInd.txt"), "w") as f:
    f.write("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)))
  with open(os.path.join(lists, "trainlist01.txt"), "w") as f:
    f.write("".join(f"{c.action}/{c.name}.avi {CLASSES.index(c.action) + 1}\n"
                    for c, _ in ordered if c.split == "train"))
  with open(os.path.join(lists, "testlist01.txt"), "w") as f:
    f.write("".join(f"{c.action}/{c.name}.avi\n" for c, _ in ordered if c.split == "test"))
  # DVF-style test triplets, numbered 1, 11, 21, ... like DVF's.
  dvf, number = [], 1
  for clip, frames in ordered:
    if clip.split != "test":
      continue
    for start in dvf_starts(num_frames):
      folder = os.path.join(out_dir, DVF_DIR, str(number))
      os.makedirs(folder, exist_ok=True)
      for name, t in (("frame_00", start), ("frame_01_gt", start + 1), ("frame_02", start + 2)):
        _save_png(frames[t], os.path.join(folder, name + ".png"))
      mask = clip.motion_mask(start, start + 2)
      _save_png((mask * 255).astype(np.uint8), os.path.join(folder, "motion_mask.png"))
      dvf.append({"folder": str(number), "video": f"{clip.action}/{clip.name}", "start": start,
                  "moving": round(float(mask.mean()), 4)})
      number += 10
  summary = {
      "num_videos": num_videos, "num_frames": num_frames, "frame_size": list(size), "seed": seed,
      "classes": list(CLASSES),
      "splits": {s: sum(c.split == s for c, _ in clips) for s in ("train", "test")},
      "dvf_test_triplets": len(dvf),
  }
  with open(os.path.join(out_dir, "README.md"), "w") as f:
    f.write(_README.format(n=num_videos, f=num_frames, h=size[0], w=size[1], seed=seed,
                           **summary["splits"], dvf=len(dvf)))
  videos = [{"video": f"{c.action}/{c.name}", "split": c.split, "background_velocity":
             list(c.camera.velocity), "zoom_rate": c.camera.zoom_rate,
             "layers": [{"kind": l.kind, "velocity": list(l.velocity), "growth": l.growth}
                        for l in c.layers]} for c, _ in ordered]
  with open(os.path.join(out_dir, SAMPLE_INFO + ".incomplete"), "w") as f:
    json.dump({**summary, "videos": videos, "dvf_test": dvf}, f, indent=1)
  os.replace(os.path.join(out_dir, SAMPLE_INFO + ".incomplete"), os.path.join(out_dir, SAMPLE_INFO))
  return summary


def build(samples_dir: str, tfrecord_dir: str, *, num_videos: int = NUM_VIDEOS, seed: int = 0,
          shards: int = 4, num_frames: int = NUM_FRAMES, stride: int = SAMPLE_STRIDE,
          progress: bool = False) -> dict[str, Any]:
  """Writes the sample set under samples_dir unless it is complete there, and converts it into
  tfrecord_dir unless that holds a conversion: splits "train" (triplets of the train videos at
  `stride`, near-static ones dropped) and "test" (the DVF-style triplets, with motion masks).
  Returns tfrecord_dir's dataset_info.json."""
  marker = os.path.join(samples_dir, SAMPLE_INFO)
  if os.path.exists(marker):
    with open(marker) as f:
      made = json.load(f)
    wanted = {"num_videos": num_videos, "num_frames": num_frames, "seed": seed,
              "frame_size": list(FRAME_SIZE)}
    if any(made.get(k) != v for k, v in wanted.items()):
      from hcjax.errors import ConfigError  # pylint: disable=g-import-not-at-top
      raise ConfigError(f"{samples_dir} holds a UCF-101 sample set made with "
                        f"{ {k: made.get(k) for k in wanted} }, not {wanted}; delete it or use "
                        "another samples_dir")
  else:
    write_sample_set(samples_dir, num_videos=num_videos, seed=seed, num_frames=num_frames,
                     progress=progress)
  info_path = os.path.join(tfrecord_dir, INFO_FILE)
  if os.path.exists(info_path):
    with open(info_path) as f:
      return json.load(f)
  return converter.convert(os.path.join(samples_dir, UCF_DIR), tfrecord_dir, shards=shards,
                           stride=stride, dvf_test=os.path.join(samples_dir, DVF_DIR),
                           progress=progress)


_README = """# UCF-101-format sample set (real photographs under known motion)

{n} clips of {f} frames, {w}x{h}, made by `hcjax samples ucf101 --seed {seed}`
(hcjax/data/samples/ucf101.py), in UCF-101's frame-folder layout:

  UCF-101/<Class>/v_<Class>_gXX_cYY/frame_0001.png ...   {train} train + {test} test videos
  ucfTrainTestlist/classInd.txt, trainlist01.txt, testlist01.txt   (test = group g01)
  dvf_test/<n>/frame_00.png, frame_01_gt.png, frame_02.png, motion_mask.png   {dvf} triplets
  sample_info.json   every clip's camera and layer motion

Classes name the camera motion: PanLeft / PanRight (the camera turns, the scene moves the other
way), TiltUp / TiltDown, ZoomIn / ZoomOut, StaticCamera (only the cut-outs move). Backgrounds are
scikit-image photographs (rocket, coffee, the street of stereo_motorcycle, tinted grass, gravel,
brick, coins); in front move one or two cut-outs (astronaut, camera, chelsea, motorcycle, a
horse silhouette, a table), along straight lines, sometimes growing or shrinking, occluding each
other. motion_mask.png is 255 where a visible surface moves between frame_00 and frame_02
(exact, from the renderer); elsewhere the three frames are identical.

Convert (every triplet of the short clips: --stride 1):
  hcjax convert ucf101 --src THIS_FOLDER/UCF-101 --dvf-test THIS_FOLDER/dvf_test --stride 1 \\
      --out OUT
"""

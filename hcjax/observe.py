"""Everything a run reports: TensorBoard events, metrics.jsonl, pictures, progress, NaN guard.

Only the chief process writes. Files in the workdir:
  tensorboard/     TensorBoard events (tensorboardX; no TensorFlow needed)
  metrics.jsonl    one JSON object per `scalars` call: {"step", "split", "time", **values}
  config.json      the run's config, sorted keys
  pictures/        {name}_{step:07d}.png
  log.txt          `text` records and the non-finite report

On resume (start_step > 0, or an earlier run's files in the workdir) the records after start_step
are dropped from metrics.jsonl and hidden in TensorBoard, so a resumed run reads like an
uninterrupted one.
"""

from __future__ import annotations

import collections
import datetime
import functools
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

_RESERVED = ("step", "split", "time")


class NonFiniteError(FloatingPointError):
  """A monitored quantity became NaN or inf; the message names the step and the quantities."""


# --- rates ----------------------------------------------------------------------------------------

class RateMeter:
  """Steps per second over a sliding window of recent steps.

  The first recorded step only opens the window, so the time before it (compilation, restoring a
  checkpoint) never counts.
  """

  def __init__(self, window: int = 100):
    if window < 1:
      raise ValueError(f"window must be >= 1, got {window}")
    self._marks: collections.deque[tuple[float, int]] = collections.deque(maxlen=window + 1)

  def update(self, step: int, now: float | None = None) -> None:
    self._marks.append((time.monotonic() if now is None else now, int(step)))

  def steps_per_sec(self) -> float | None:
    if len(self._marks) < 2:
      return None
    (t0, s0), (t1, s1) = self._marks[0], self._marks[-1]
    if t1 <= t0 or s1 <= s0:
      return None
    return (s1 - s0) / (t1 - t0)


def format_duration(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m{secs:02d}s"
  if minutes:
    return f"{minutes}m{secs:02d}s"
  return f"{secs}s"


# --- value conversion -----------------------------------------------------------------------------

def _scalar(value: Any) -> float | None:
  """float(value) for Python/numpy/jax scalars and 1-element arrays; None for anything else."""
  try:
    array = np.asarray(value)
  except Exception:  # pylint: disable=broad-except
    return None
  if array.size != 1 or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
    return None
  return float(array.reshape(()))


def _json_default(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, (set, frozenset)):
    return sorted(value, key=repr)
  if hasattr(value, "to_dict"):
    return value.to_dict()
  return str(value)


def _to_uint8_picture(picture: np.ndarray) -> np.ndarray:
  """[H, W], [H, W, 1|3|4] uint8 or float in [0, 1] -> uint8 [H, W, 3|4]."""
  picture = np.asarray(picture)
  if picture.ndim == 2:
    picture = picture[..., None]
  if picture.ndim != 3 or picture.shape[-1] not in (1, 3, 4):
    raise ValueError(f"a picture must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], "
                     f"got shape {picture.shape}")
  if picture.dtype != np.uint8:
    if np.issubdtype(picture.dtype, np.floating) or picture.dtype == bool:
      picture = np.nan_to_num(picture.astype(np.float32)).clip(0.0, 1.0) * 255.0 + 0.5
    picture = np.clip(picture, 0, 255).astype(np.uint8)
  if picture.shape[-1] == 1:
    picture = np.repeat(picture, 3, axis=-1)
  return picture


def _atomic_write(path: str, text: str) -> None:
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


# --- the observer ---------------------------------------------------------------------------------

class Observer:
  """The trainer's one reporting object. Cheap per step; writes only on the chief.

  progress=None shows a tqdm bar when this is the chief and stderr is a terminal; otherwise the
  chief prints one status line (step, step/s, examples/s, ETA) to stderr every log_interval_s.
  """

  def __init__(self, workdir: str, *, config: Mapping[str, Any] | None = None,
               is_chief: bool = True, total_steps: int | None = None,
               global_batch_size: int | None = None, start_step: int = 0,
               progress: bool | None = None, log_interval_s: float = 60.0,
               rate_window: int = 100, tensorboard_flush_s: int = 30):
    self.workdir = workdir
    self.is_chief = bool(is_chief)
    self.total_steps = int(total_steps) if total_steps else None
    self.global_batch_size = int(global_batch_size) if global_batch_size else None
    self.start_step = int(start_step)
    self.log_interval_s = float(log_interval_s)
    self._meter = RateMeter(rate_window)
    self._created = time.monotonic()
    self._first_step_at: float | None = None
    self._last_log = self._created
    self._step = self.start_step
    self._latest_loss: float | None = None
    self._warned_keys: set[str] = set()
    self._closed = False
    self._writer = None
    self._metrics_file = None
    self._bar = None

    if progress is None:
      isatty = getattr(sys.stderr, "isatty", None)
      progress = bool(isatty and isatty())
    self._use_bar = self.is_chief and progress

    if not self.is_chief:
      return
    os.makedirs(workdir, exist_ok=True)
    self._drop_records_after(self.start_step)
    self._metrics_file = open(os.path.join(workdir, "metrics.jsonl"), "a")
    tb_dir = os.path.join(workdir, "tensorboard")
    earlier = os.path.isdir(tb_dir) and any("tfevents" in n for n in os.listdir(tb_dir))
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    # The purge marker hides events an earlier run wrote after start_step. Event file names carry
    # only whole seconds, so a run restarted within the same second would overwrite its
    # predecessor's file; the nanosecond suffix keeps them apart and in order.
    self._writer = SummaryWriter(tb_dir, purge_step=self.start_step + 1 if earlier else None,
                                 flush_secs=tensorboard_flush_s,
                                 filename_suffix=f".{time.time_ns():020d}")
    if config is not None:
      self.write_config(config)
    if self._use_bar:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=self.total_steps, initial=self.start_step, unit="step",
                       dynamic_ncols=True, file=sys.stderr, desc="train")

  # -- files --

  def _drop_records_after(self, step: int) -> None:
    """Forgets what a crashed or earlier run logged past `step`; keeps only complete lines."""
    path = os.path.join(self.workdir, "metrics.jsonl")
    if not os.path.exists(path):
      return
    with open(path) as f:
      lines = f.readlines()
    kept = []
    for line in lines:
      try:
        record = json.loads(line)
      except ValueError:
        continue  # a line cut short by a crash
      if line.endswith("\n") and isinstance(record, dict) and record.get("step", 0) <= step:
        kept.append(line)
    if len(kept) != len(lines):
      _atomic_write(path, "".join(kept))

  def write_config(self, config: Mapping[str, Any]) -> None:
    if not self.is_chief:
      return
    if hasattr(config, "to_dict"):
      config = config.to_dict()
    text = json.dumps(config, indent=2, sort_keys=True, default=_json_default)
    _atomic_write(os.path.join(self.workdir, "config.json"), text + "\n")

  # -- per step --

  def step(self, step: int) -> None:
    """Advances the bar and the rate meter; called every step, so it stays cheap."""
    now = time.monotonic()
    self._meter.update(step, now)
    previous, self._step = self._step, int(step)
    if not self.is_chief:
      return
    if self._bar is not None:
      if self._step > previous:
        self._bar.update(self._step - previous)
      return
    if self._first_step_at is None:
      self._first_step_at = now
      self._last_log = now
      self._print(f"step {self._step}: first step after {now - self._created:.1f}s "
                  f"(includes compilation)")
      return
    if now - self._last_log >= self.log_interval_s:
      self._last_log = now
      self._print(self.status_line())

  def status_line(self) -> str:
    """'step 120/1000 (12.0%)  3.21 step/s  102.7 examples/s  ETA 4m35s  loss 0.6931'."""
    parts = [f"step {self._step}"]
    if self.total_steps:
      parts[0] += f"/{self.total_steps} ({100.0 * self._step / self.total_steps:.1f}%)"
    rate = self._meter.steps_per_sec()
    if rate is not None:
      parts.append(f"{rate:.3g} step/s")
      if self.global_batch_size:
        parts.append(f"{rate * self.global_batch_size:.4g} examples/s")
      if self.total_steps:
        parts.append(f"ETA {format_duration(max(0, self.total_steps - self._step) / rate)}")
    else:
      parts.append("- step/s")
      if self.total_steps:
        parts.append("ETA -")
    if self._latest_loss is not None:
      parts.append(f"loss {self._latest_loss:.4g}")
    return "  ".join(parts)

  def _print(self, line: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {line}", file=sys.stderr, flush=True)

  # -- records --

  def scalars(self, step: int, values: Mapping[str, Any], split: str = "train") -> None:
    floats: dict[str, float] = {}
    for key, value in values.items():
      if key in _RESERVED:
        raise ValueError(f"metric name {key!r} clashes with the record field of that name; "
                         f"rename it")
      number = _scalar(value)
      if number is None:
        if key not in self._warned_keys:
          self._warned_keys.add(key)
          logger.warning("metric %s/%s is not a scalar (%s); not recorded", split, key,
                         type(value).__name__)
        continue
      floats[key] = number
    if split == "train" and "loss" in floats:
      self._latest_loss = floats["loss"]
    if not self.is_chief:
      return
    for key, number in floats.items():
      self._writer.add_scalar(f"{split}/{key}", number, int(step))
    record = {"step": int(step), "split": split, "time": time.time(), **floats}
    self._metrics_file.write(json.dumps(record) + "\n")
    self._metrics_file.flush()
    if self._bar is not None and split == "train":
      postfix = {}
      if self._latest_loss is not None:
        postfix["loss"] = f"{self._latest_loss:.4g}"
      rate = self._meter.steps_per_sec()
      if rate is not None and self.global_batch_size:
        postfix["ex/s"] = f"{rate * self.global_batch_size:.4g}"
      self._bar.set_postfix(postfix, refresh=False)

  def image(self, step: int, name: str, picture: np.ndarray) -> str | None:
    """Writes a PNG and a TensorBoard image; returns the PNG's path (None off the chief)."""
    if not self.is_chief:
      return None
    picture = _to_uint8_picture(picture)
    folder = os.path.join(self.workdir, "pictures")
    os.makedirs(folder, exist_ok=True)
    safe = re.sub(r"[^\w.-]+", "_", name).strip("_") or "picture"
    path = os.path.join(folder, f"{safe}_{int(step):07d}.png")
    Image.fromarray(picture).save(path)
    self._writer.add_image(name, picture, int(step), dataformats="HWC")
    self._writer.flush()
    return path

  def text(self, step: int, name: str, text: str) -> None:
    if not self.is_chief:
      return
    self._writer.add_text(name, text, int(step))
    self._log_line(step, name, text)

  def _log_line(self, step: int, name: str, text: str) -> None:
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    with open(os.path.join(self.workdir, "log.txt"), "a") as f:
      f.write(f"{stamp} step {int(step)} {name}: {text}\n")

  def check_finite(self, step: int, values: Mapping[str, Any]) -> None:
    """Raises NonFiniteError naming the step and every NaN/inf quantity (on every process)."""
    bad = []
    for key, value in values.items():
      try:
        array = np.asarray(value, dtype=np.float64)
      except (TypeError, ValueError):
        continue
      if not np.all(np.isfinite(array)):
        shown = float(array.reshape(())) if array.size == 1 else "non-finite entries"
        bad.append(f"{key}={shown}")
    if not bad:
      return
    message = (f"step {int(step)}: non-finite {', '.join(bad)}; stopping the run (try a lower "
               f"learning rate or gradient clipping, or check the input data)")
    if self.is_chief and not self._closed:
      self._log_line(step, "non_finite", message)
      self._writer.add_text("non_finite", message, int(step))
      self._writer.flush()
    raise NonFiniteError(message)

  # -- lifetime --

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    elif self.is_chief and self._first_step_at is not None:
      self._print(self.status_line())
    if self._writer is not None:
      self._writer.flush()
      self._writer.close()
      self._writer = None
    if self._metrics_file is not None:
      self._metrics_file.close()
      self._metrics_file = None

  def __enter__(self) -> Observer:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


# --- pictures -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
  return ImageFont.load_default()


def _line_height(font) -> int:
  return int(font.getbbox("Ag|")[3]) + 2


def _text_width(font, line: str) -> int:
  return int(math.ceil(font.getbbox(line)[2])) if line else 0


Color = tuple[int, int, int]


def draw_text_panel(lines: Sequence[str], colors: Sequence[Color] | None, width: int, height: int,
                    *, background: Color = (255, 255, 255), default_color: Color = (0, 0, 0),
                    margin: int = 2) -> np.ndarray:
  """Lines of text, each in its own colour, on a uint8 [height, width, 3] panel; clipped to fit."""
  panel = Image.new("RGB", (int(width), int(height)), tuple(background))
  draw = ImageDraw.Draw(panel)
  font = _font()
  step = _line_height(font)
  for i, line in enumerate(lines):
    y = margin + i * step
    if y >= height:
      break
    color = tuple(colors[i]) if colors is not None and i < len(colors) else tuple(default_color)
    draw.text((margin, y), line, fill=color, font=font)
  return np.asarray(panel, dtype=np.uint8)


def image_grid(images: np.ndarray, captions: Sequence[str] | None = None, cols: int = 8,
               caption_height: int | None = None, *,
               caption_colors: Sequence[Sequence[Color] | Color] | None = None,
               pad: int = 2, background: Color = (255, 255, 255)) -> np.ndarray:
  """Images in a grid with a (multi-line) caption under each, for TensorBoard and PNGs.

  Cells are as wide as the wider of the image and its longest caption line, so captions are never
  cut sideways. caption_colors[i] is one RGB per caption line (or one RGB for the whole caption).
  The grid has min(cols, N) columns and ceil(N / cols) rows, `pad` pixels between and around cells.
  """
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or len(images) == 0:
    raise ValueError(f"image_grid needs images [N, H, W, C] with N >= 1, got {images.shape}")
  images = np.stack([_to_uint8_picture(x)[..., :3] for x in images])
  n, h, w, _ = images.shape
  if captions is not None and len(captions) != n:
    raise ValueError(f"{len(captions)} captions for {n} images")
  if caption_colors is not None and len(caption_colors) != n:
    raise ValueError(f"{len(caption_colors)} caption_colors entries for {n} images")
  cols = max(1, min(int(cols), n))
  rows = -(-n // cols)

  font = _font()
  caption_lines = [str(c).split("\n") for c in captions] if captions is not None else None
  cell_w = w
  if caption_lines:
    widest = max(_text_width(font, line) for lines in caption_lines for line in lines)
    cell_w = max(w, widest + 4)
    if caption_height is None:
      caption_height = max(len(lines) for lines in caption_lines) * _line_height(font) + 4
  caption_height = int(caption_height or 0) if caption_lines else 0
  cell_h = h + caption_height

  grid = np.empty((rows * cell_h + (rows + 1) * pad, cols * cell_w + (cols + 1) * pad, 3), np.uint8)
  grid[...] = np.asarray(background, np.uint8)
  for i in range(n):
    r, c = divmod(i, cols)
    y, x = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
    left = x + (cell_w - w) // 2
    grid[y:y + h, left:left + w] = images[i]
    if caption_lines and caption_height > 0:
      colors = None
      if caption_colors is not None:
        colors = caption_colors[i]
        if len(colors) == 3 and all(isinstance(v, (int, np.integer)) for v in colors):
          colors = [colors] * len(caption_lines[i])
      grid[y + h:y + cell_h, x:x + cell_w] = draw_text_panel(
          caption_lines[i], colors, cell_w, caption_height, background=background)
  return grid

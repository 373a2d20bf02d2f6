"""`hcjax interpolate` and `hcjax slowmo`: in-between frames from a trained Deep Voxel Flow run.

  hcjax interpolate --workdir W a.png b.png -o mid.png [--t 0.5] [--flow flow.png]
  hcjax slowmo --workdir W in.mp4 --factor 4 -o out.mp4   (or out.gif)

The net predicts DVF's voxel flow and mask for the middle of two frames; other times t come from
the same flow under DVF's linear-motion assumption (hcjax.ops.sampling.voxel_flow_synthesize).
Frames of any size run at their size padded (edge pixels repeated) to a multiple of the net's
stride; each frame size compiles once. Videos are read and written with PyAV (any container and
codec FFmpeg knows); GIFs through Pillow.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

from hcjax.data import ImageDecodeError, MissingDataError
from hcjax.errors import ConfigError

GIF_SUFFIXES = (".gif",)


class Interpolator:
  """A trained interpolation run: frame pairs -> frames at times in (0, 1)."""

  def __init__(self, workdir: str, step: int | None = None):
    import jax  # pylint: disable=g-import-not-at-top
    from hcjax import train  # pylint: disable=g-import-not-at-top
    config = train.inference_config(workdir, "frame_synthesis")
    if config.model.get("mode", "interpolate") != "interpolate":
      raise ConfigError(f"{workdir} was trained to {config.model.mode}, not to interpolate")
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
      raise ConfigError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first")
    self.task, self.model, _, state = train.restore_for_inference(config, workdir, step)
    self.variables = {"params": state.params, "batch_stats": state.batch_stats}
    self._jit = jax.jit(self._run, static_argnames=("times",))

  def _run(self, variables, pair, times: tuple[float, ...]):
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from hcjax.ops import sampling  # pylint: disable=g-import-not-at-top
    x = self.task.model_inputs({"image": pair})
    out = self.model.apply(variables, x, train=False)
    frame0, frame1 = x[..., 0:3], x[..., 3:6]
    frames = [sampling.voxel_flow_synthesize(frame0, frame1, out["flow"], out["mask"], t=t)
              for t in times]
    frames = jnp.clip(jnp.round((jnp.stack(frames, 1) + 1.0) * 127.5), 0, 255)
    return frames.astype(jnp.uint8), out["flow"], out["mask"]

  def __call__(self, frame0: np.ndarray, frame1: np.ndarray, times: Sequence[float] = (0.5,)
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [H, W, 3] x 2 -> (frames uint8 [T, H, W, 3], flow in pixels [H, W, 2], mask [H, W])."""
    if frame0.shape != frame1.shape:
      raise ImageDecodeError(f"the two frames differ in size: {frame0.shape[1]}x"
                             f"{frame0.shape[0]} and {frame1.shape[1]}x{frame1.shape[0]}")
    times = tuple(float(t) for t in times)
    if not all(0.0 < t < 1.0 for t in times):
      raise ConfigError(f"interpolation times must lie strictly between 0 and 1, got {times}")
    h, w = frame0.shape[:2]
    m = self.task.multiple
    ph, pw = -(-h // m) * m, -(-w // m) * m
    pair = np.pad(np.concatenate([frame0, frame1], -1), ((0, ph - h), (0, pw - w), (0, 0)),
                  mode="edge")
    frames, flow, mask = self._jit(self.variables, pair[None], times=times)
    from hcjax.ops import sampling  # pylint: disable=g-import-not-at-top
    pixels = np.asarray(sampling.flow_to_pixels(flow), np.float32)[0]
    return (np.asarray(frames[0, :, :h, :w]), pixels[:h, :w],
            np.asarray(mask[0, :h, :w, 0]))


def _ensure_parent(path: str) -> None:
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)


def interpolate_main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="hcjax interpolate",
      description="The frame between two frames, from a trained Deep Voxel Flow workdir.")
  parser.add_argument("frames", nargs=2, metavar="FRAME", help="the two frames (PNG or JPEG)")
  parser.add_argument("--workdir", required=True, help="a frame_synthesis training run")
  parser.add_argument("-o", "--out", required=True, help="output PNG")
  parser.add_argument("--t", type=float, default=0.5,
                      help="time of the output between the frames, in (0, 1); default 0.5")
  parser.add_argument("--flow", help="also write a PNG of the flow (colour wheel) and the mask")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  args = parser.parse_args(argv)
  if not 0.0 < args.t < 1.0:
    raise ConfigError(f"--t must lie strictly between 0 and 1, got {args.t}")
  from hcjax.segment import read_image  # pylint: disable=g-import-not-at-top
  frame0, frame1 = (read_image(p) for p in args.frames)
  interpolator = Interpolator(args.workdir, args.step)
  frames, flow, mask = interpolator(frame0, frame1, (args.t,))
  _ensure_parent(args.out)
  Image.fromarray(frames[0]).save(args.out, format="PNG")
  if args.flow:
    from hcjax.tasks.frame_synthesis import flow_to_rgb  # pylint: disable=g-import-not-at-top
    gray = np.repeat(np.rint(mask * 255).astype(np.uint8)[..., None], 3, -1)
    _ensure_parent(args.flow)
    Image.fromarray(np.concatenate([flow_to_rgb(flow), gray], 1)).save(args.flow, format="PNG")
  speed = float(np.hypot(flow[..., 0], flow[..., 1]).max())
  print(f"{args.frames[0]} + {args.frames[1]} -> {args.out}  t={args.t:g}  "
        f"{frame0.shape[1]}x{frame0.shape[0]}  largest motion {2 * speed:.1f} px between frames")
  return 0


# --- video input / output -------------------------------------------------------------------------

def read_video(path: str) -> tuple[Iterator[np.ndarray], float, int | None]:
  """(uint8 [H, W, 3] frames, frames per second, frame count or None) of a video or GIF."""
  if not os.path.isfile(path):
    raise MissingDataError(f"video not found: {path}")
  if path.lower().endswith(GIF_SUFFIXES):
    try:
      gif = Image.open(path)
      count = getattr(gif, "n_frames", 1)
      duration = gif.info.get("duration", 40) or 40
    except OSError as e:
      raise ImageDecodeError(f"cannot read {path}: {e}") from None

    def gif_frames():
      with gif:
        for i in range(count):
          gif.seek(i)
          yield np.asarray(gif.convert("RGB"))
    return gif_frames(), 1000.0 / duration, count
  import av  # pylint: disable=g-import-not-at-top
  try:
    container = av.open(path)
    stream = container.streams.video[0]
  except (av.error.FFmpegError, IndexError) as e:
    raise ImageDecodeError(f"cannot read a video stream from {path}: {e}") from None
  fps = float(stream.average_rate or stream.guessed_rate or 25)
  count = stream.frames or None

  def video_frames():
    try:
      for frame in container.decode(stream):
        yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
      raise ImageDecodeError(f"{path}: cannot decode a frame: {e}") from None
    finally:
      container.close()
  return video_frames(), fps, count


class VideoWriter:
  """Frames -> a video file (H.264 .mp4, MPEG-4 .avi, ...) or an animated GIF."""

  def __init__(self, path: str, fps: float):
    self.path, self.fps = path, fps
    self.gif = path.lower().endswith(GIF_SUFFIXES)
    self._frames: list[Image.Image] = []
    self._container = self._stream = None

  def write(self, frame: np.ndarray) -> None:
    if self.gif:
      self._frames.append(Image.fromarray(frame))
      return
    import av  # pylint: disable=g-import-not-at-top
    from fractions import Fraction  # pylint: disable=g-import-not-at-top
    if self._container is None:
      _ensure_parent(self.path)
      self._container = av.open(self.path, mode="w")
      codec = "mpeg4" if self.path.lower().endswith(".avi") else "libx264"
      self._stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(
          1001))
      # yuv420p (what players expect) needs even sizes: the frame is padded by one edge pixel.
      self._stream.height = frame.shape[0] + frame.shape[0] % 2
      self._stream.width = frame.shape[1] + frame.shape[1] % 2
      self._stream.pix_fmt = "yuv420p"
    h, w = self._stream.height, self._stream.width
    frame = np.pad(frame, ((0, h - frame.shape[0]), (0, w - frame.shape[1]), (0, 0)), mode="edge")
    for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
      self._container.mux(packet)

  def close(self) -> None:
    if self.gif:
      if self._frames:
        _ensure_parent(self.path)
        self._frames[0].save(self.path, save_all=True, append_images=self._frames[1:],
                             duration=max(10, int(round(1000.0 / self.fps))), loop=0)
      return
    if self._container is not None:
      for packet in self._stream.encode():
        self._container.mux(packet)
      self._container.close()


def slowmo_main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="hcjax slowmo",
      description="Slow motion: FACTOR - 1 synthesised frames between every two frames of a "
                  "video, from a trained Deep Voxel Flow workdir.")
  parser.add_argument("video", help="input video (.mp4, .avi, .mov, ... or .gif)")
  parser.add_argument("--workdir", required=True, help="a frame_synthesis training run")
  parser.add_argument("-o", "--out", required=True, help="output video (.mp4, .avi or .gif)")
  parser.add_argument("--factor", type=int, default=4, help="frames out per frame in (>= 2)")
  parser.add_argument("--fps", type=float, default=None,
                      help="output frame rate (default: the input's, so the video plays FACTOR "
                           "times slower; the input's x FACTOR keeps its duration)")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)
  if args.factor < 2:
    raise ConfigError(f"--factor must be >= 2, got {args.factor}")
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  frames, fps, count = read_video(args.video)
  interpolator = Interpolator(args.workdir, args.step)
  times = tuple(k / args.factor for k in range(1, args.factor))
  writer = VideoWriter(args.out, args.fps or fps)
  written, previous = 0, None
  bar = tqdm(total=count, unit="frame", desc="slowmo", disable=args.quiet)
  try:
    for frame in frames:
      if previous is not None:
        if frame.shape != previous.shape:
          raise ImageDecodeError(f"{args.video}: the frame size changes mid-video")
        for middle in interpolator(previous, frame, times)[0]:
          writer.write(middle)
          written += 1
      writer.write(frame)
      written += 1
      previous = frame
      bar.update(1)
  finally:
    bar.close()
    writer.close()
  if previous is None:
    raise ImageDecodeError(f"{args.video} holds no frames")
  print(f"{args.video} -> {args.out}: {written} frames at {args.fps or fps:g} fps "
        f"(x{args.factor})")
  return 0

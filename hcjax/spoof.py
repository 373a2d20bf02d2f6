"""`hcjax spoof`: is a face live or a presentation attack? From a trained anti_spoofing workdir.

  hcjax spoof --workdir W image.jpg [--bbox x,y,w,h] [--margin M]
  hcjax spoof --workdir W a.jpg b.png --bbox 10,20,100,120 --bbox 0,0,64,64

The face is cut out as in training: the face box grown by the run's margin (or --margin) per
side, clamped to the image, resized to the model's input without keeping the aspect ratio. The
face box is --bbox (x, y, w, h in the image's pixels; once for every image, or once per image),
else a CelebA-Spoof `<name>_BB.txt` beside the image (`x y w h score` in the image resized to
224x224, scaled as the converter does), else the whole image. Images are read with their EXIF
orientation applied, as the converter reads them. Prints the spoof probability, the verdict at
the run's threshold and, when the model has those heads, the most likely spoof type,
illumination and environment with their probabilities.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

from hcjax.data import ImageDecodeError, MissingDataError
from hcjax.errors import ConfigError

TASK = "anti_spoofing"


def _parse(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="hcjax spoof",
      description="Spoof probability (and spoof type, illumination, environment) of faces, "
                  "from a trained anti_spoofing workdir.")
  parser.add_argument("images", nargs="+", help="JPEG or PNG files")
  parser.add_argument("--workdir", required=True, help="a training run's directory")
  parser.add_argument("--bbox", action="append", default=None, metavar="X,Y,W,H",
                      help="face box in the image's pixels; once for all images or once per "
                           "image (default: <name>_BB.txt beside the image, else the whole image)")
  parser.add_argument("--margin", type=float, default=None,
                      help="context around the face box per side, as a fraction of its size "
                           "(default: the run's config.input.margin)")
  parser.add_argument("--threshold", type=float, default=None,
                      help="spoof probability at and above which a face is called spoof "
                           "(default: the run's config.metrics.threshold)")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  return parser.parse_args(argv)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
  """"x,y,w,h" -> four finite numbers with w, h > 0; anything else is a ConfigError."""
  parts = [p.strip() for p in text.split(",")]
  try:
    values = tuple(float(p) for p in parts)
  except ValueError:
    values = ()
  if len(values) != 4 or not all(math.isfinite(v) for v in values):
    raise ConfigError(f"--bbox must be x,y,w,h (four numbers, pixels), got {text!r}")
  if values[2] <= 0 or values[3] <= 0:
    raise ConfigError(f"--bbox width and height must be > 0, got {text!r}")
  return values  # type: ignore[return-value]


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] with the EXIF orientation applied; a missing or bad file names its path."""
  if not os.path.isfile(path):
    raise MissingDataError(f"image not found: {path}")
  try:
    with Image.open(path) as img:
      img.load()
      return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
  except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
    raise ImageDecodeError(f"{path}: cannot decode image: {e}") from None


def face_box(path: str, width: int, height: int, bbox: tuple[float, float, float, float] | None
             ) -> tuple[tuple[int, int, int, int], str]:
  """(x, y, w, h) in pixels and where it came from: --bbox, <name>_BB.txt, or the whole image."""
  from hcjax.data.converters import celeba_spoof  # pylint: disable=g-import-not-at-top
  if bbox is not None:
    x, y, w, h = (int(round(v)) for v in bbox)
    if x >= width or y >= height or x + max(w, 1) <= 0 or y + max(h, 1) <= 0:
      raise ConfigError(f"--bbox {x},{y},{w},{h} lies outside the {width}x{height} image {path}")
    return (x, y, max(w, 1), max(h, 1)), "--bbox"
  bb_path = os.path.splitext(path)[0] + "_BB.txt"
  if os.path.isfile(bb_path):
    return celeba_spoof.face_box(celeba_spoof.read_bb(bb_path), width, height), \
        os.path.basename(bb_path)
  return (0, 0, width, height), "whole image"


def main(argv: Sequence[str]) -> int:
  args = _parse(argv)
  for path in args.images:  # fail on a typo before the model is loaded
    if not os.path.isfile(path):
      raise MissingDataError(f"image not found: {path}")
  boxes = [parse_bbox(b) for b in (args.bbox or [])]
  if len(boxes) not in (0, 1, len(args.images)):
    raise ConfigError(f"give --bbox once (for every image) or once per image: "
                      f"{len(boxes)} boxes for {len(args.images)} images")
  if args.margin is not None and (not math.isfinite(args.margin) or args.margin < 0):
    raise ConfigError(f"--margin must be a fraction >= 0 of the face box size, got {args.margin}")
  if args.threshold is not None and not 0 < args.threshold < 1:
    raise ConfigError(f"--threshold must be in (0, 1), got {args.threshold}")

  from hcjax import train  # pylint: disable=g-import-not-at-top
  config = train.inference_config(args.workdir, TASK)
  if not os.path.isdir(os.path.join(args.workdir, "checkpoints")):
    raise ConfigError(f"no checkpoint in {os.path.join(args.workdir, 'checkpoints')}; train first")
  import jax  # pylint: disable=g-import-not-at-top
  task, model, _, state = train.restore_for_inference(config, args.workdir, args.step)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  threshold = task.threshold if args.threshold is None else args.threshold

  @jax.jit
  def predict(variables, image):
    return task.predict(model.apply(variables, task.model_inputs({"image": image}), train=False))

  from hcjax.tasks.anti_spoofing import CLASS_NAMES  # pylint: disable=g-import-not-at-top
  for i, path in enumerate(args.images):
    image = read_image(path)
    h, w = image.shape[:2]
    bbox = boxes[0] if len(boxes) == 1 else boxes[i] if boxes else None
    face, source = face_box(path, w, h, bbox)
    region = task.face_region(face, w, h, args.margin)
    out = jax.device_get(predict(variables, task.model_image(image, region)[None]))
    p = float(out["spoof"][0])
    verdict = "SPOOF" if p >= threshold else "LIVE"
    x0, y0, x1, y1 = region
    print(f"{path}: spoof probability {p:.4f} -> {verdict} (threshold {threshold:g}); face "
          f"{face[0]},{face[1]},{face[2]},{face[3]} from {source}, crop {x0},{y0},{x1 - x0},"
          f"{y1 - y0}")
    parts = []
    for name, names in CLASS_NAMES.items():
      if name in out:
        k = int(np.argmax(out[name][0]))
        parts.append(f"{name.replace('_', ' ')} {names[k]} {float(out[name][0, k]):.3f}")
    if parts:
      print("  " + "   ".join(parts))
  return 0

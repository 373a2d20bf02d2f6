"""`hcjax segment`: label maps (or overlays) of images from a trained segmentation workdir.

  hcjax segment --workdir W image.jpg -o out.png [--no-crf] [--overlay]
  hcjax segment --workdir W a.jpg b.jpg -o out_dir/

Each image is placed at the top-left of a canvas padded with the mean colour, exactly as in
evaluation. Images that fit config.input.eval_size share that canvas, so one compiled program
serves them all; a larger image runs at its own size rounded up to a multiple of 32 (the model is
fully convolutional; each such size compiles once). The labels are cropped back to the image and
written as a palette PNG whose pixel values are the class indices (VOC colours), or with --overlay
as the image blended 50% with those colours.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from hcjax.data import ImageDecodeError, MissingDataError, transforms
from hcjax.errors import ConfigError

SIZE_MULTIPLE = 32  # canvases of larger images are rounded up to this (the nets' total stride)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="hcjax segment",
      description="Semantic label maps of images from a trained segmentation workdir.")
  parser.add_argument("images", nargs="+", help="JPEG or PNG files")
  parser.add_argument("--workdir", required=True, help="a training run's directory")
  parser.add_argument("-o", "--out", required=True,
                      help="output PNG for one image, or a folder (one IMAGE_NAME.png per input)")
  parser.add_argument("--no-crf", action="store_true",
                      help="the unary net's labels, without the CRF / MRF")
  parser.add_argument("--overlay", action="store_true",
                      help="write the image blended with the label colours instead of the labels")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  return parser.parse_args(argv)


def load_config(workdir: str):
  """The run's own config, set up for inference; it must be a segmentation run."""
  from hcjax import train  # pylint: disable=g-import-not-at-top
  return train.inference_config(workdir, "segmentation")


def output_paths(images: Sequence[str], out: str) -> list[str]:
  """One output per image: `out` itself for one image, else out/STEM.png."""
  if len(images) == 1 and not (os.path.isdir(out) or out.endswith(os.sep)):
    return [out]
  stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
  clash = sorted({s for s in stems if stems.count(s) > 1})
  if clash:
    raise ConfigError(f"several inputs are named {clash[0]!r}; they would overwrite each other "
                      f"in {out}")
  return [os.path.join(out, s + ".png") for s in stems]


def canvas_size(height: int, width: int, eval_size: int) -> tuple[int, int]:
  """The padded (height, width) an image runs at: the eval canvas when it fits."""
  if height <= eval_size and width <= eval_size:
    return eval_size, eval_size
  up = lambda n: max(eval_size, -(-n // SIZE_MULTIPLE) * SIZE_MULTIPLE)
  return up(height), up(width)


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3]; a missing or undecodable file names its path."""
  if not os.path.isfile(path):
    raise MissingDataError(f"image not found: {path}")
  with open(path, "rb") as f:
    data = f.read()
  try:
    return transforms.decode_image(data)
  except ImageDecodeError as e:
    raise ImageDecodeError(f"{path}: {e}") from None


def main(argv: Sequence[str]) -> int:
  args = _parse(argv)
  for path in args.images:  # fail on a typo before the model is loaded
    if not os.path.isfile(path):
      raise MissingDataError(f"image not found: {path}")
  outputs = output_paths(args.images, args.out)
  config = load_config(args.workdir)
  if not os.path.isdir(os.path.join(args.workdir, "checkpoints")):
    raise ConfigError(f"no checkpoint in {os.path.join(args.workdir, 'checkpoints')}; train first")

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from hcjax import train  # pylint: disable=g-import-not-at-top
  task, model, _, state = train.restore_for_inference(config, args.workdir, args.step)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  key = "unary" if args.no_crf else "logits"

  @jax.jit
  def labels_fn(variables, image):
    out = model.apply(variables, task.model_inputs({"image": image}), train=False)
    return jnp.argmax(out[key], axis=-1).astype(jnp.uint8)

  for src, dst in zip(args.images, outputs):
    image = read_image(src)
    h, w = image.shape[:2]
    canvas = task.pad({"image": image}, canvas_size(h, w, task.eval_size))["image"]
    labels = np.asarray(labels_fn(variables, canvas[None]))[0, :h, :w]
    if os.path.dirname(dst):
      os.makedirs(os.path.dirname(dst), exist_ok=True)
    if args.overlay:
      Image.fromarray(task.overlay(image, labels)).save(dst, format="PNG")
    else:
      png = Image.frombytes("P", (w, h), np.ascontiguousarray(labels).tobytes())
      png.putpalette(task.palette.reshape(-1).tolist())
      png.save(dst, format="PNG")
    print(f"{src} -> {dst}  {w}x{h}  {task.label_summary(labels)}")
  return 0

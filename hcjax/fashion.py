"""`hcjax fashion` and `hcjax retrieve`: using a trained FashionNet workdir (configs/fashionnet.py);
`hcjax fashion` also serves the landmark cascade (configs/fld.py).

  hcjax fashion --workdir W image.jpg [more.jpg ...] [-o out.png | -o out_dir/] [--bbox x1 y1 x2 y2]
      prints the top-3 categories, the top attributes and the predicted landmarks of each image,
      and writes the image with its predicted landmarks drawn (dots; crosses when predicted not
      visible) to a PNG.
  hcjax retrieve --workdir W --gallery DIR query.jpg [-k 5] [-o strip.png]
      embeds every image under DIR and the query, ranks the gallery by cosine similarity and
      writes a PNG strip: the query, then the top-k with their similarities.
  hcjax retrieve --workdir W --evaluate
      in-shop retrieval top-k accuracy of the run's query split against its gallery split.

Images go through the evaluation preprocessing: the garment box (--bbox, else the whole image)
grown by config.input.bbox_margin to a square, resized to the input size. Landmarks are always
the model's predictions, mapped back to the original image.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from hcjax.data import MissingDataError
from hcjax.errors import ConfigError
from hcjax.segment import read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
THUMB = 128


def load(workdir: str, step: int | None = None, tasks=("fashion",)):
  """(task, predict_fn) of a trained workdir of one of `tasks`; predict_fn(uint8 [B, S, S, 3])
  -> dict of numpy arrays (task.predict)."""
  from hcjax import train  # pylint: disable=g-import-not-at-top
  config = train.inference_config(workdir, tasks)
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise ConfigError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first")
  import jax  # pylint: disable=g-import-not-at-top
  task, model, _, state = train.restore_for_inference(config, workdir, step)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  fn = jax.jit(lambda v, x: task.predict(model.apply(v, task.model_inputs({"image": x}),
                                                     train=False)))
  return task, lambda images: jax.tree.map(np.asarray, fn(variables, np.asarray(images)))


def prepare(task, image: np.ndarray, bbox=None) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [S, S, 3] network input, the 3x3 crop matrix) of an image and its garment box."""
  from hcjax.tasks.fashion import crop_matrix  # pylint: disable=g-import-not-at-top
  h, w = image.shape[:2]
  box = np.asarray(bbox if bbox is not None else (0, 0, w - 1, h - 1), np.float32)
  m = crop_matrix(box, task.size, task.margin)
  return task.crop(image, {}, m)["image"].astype(np.uint8), m


def to_image_coordinates(landmarks: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
  """[K, 2] normalised input coordinates -> (x, y) pixel-centre coordinates of the original."""
  edge = np.asarray(landmarks, np.float64) * size
  inv = np.linalg.inv(matrix)
  return edge @ inv[:2, :2].T + inv[:2, 2] - 0.5


def _batched(predict, task, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
  """predict over any number of inputs, padded to a multiple of the device count."""
  import jax  # pylint: disable=g-import-not-at-top
  n, step = len(inputs), jax.device_count()
  outs = []
  for i in range(0, n, step):
    chunk = inputs[i:i + step]
    pad = step - len(chunk)
    batch = np.stack(chunk + [np.zeros_like(chunk[0])] * pad)
    out = predict(batch)
    outs.append({k: v[:len(chunk)] for k, v in out.items()})
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _outputs(images: Sequence[str], out: str | None, suffix: str) -> list[str]:
  if out is None:
    return [os.path.splitext(p)[0] + suffix for p in images]
  if len(images) == 1 and not (os.path.isdir(out) or out.endswith(os.sep)):
    return [out]
  stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
  if len(set(stems)) < len(stems):
    raise ConfigError(f"several inputs share a name; they would overwrite each other in {out}")
  return [os.path.join(out, s + ".png") for s in stems]


def _save(array: np.ndarray, path: str) -> None:
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, format="PNG")


def fashion_main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="hcjax fashion",
      description="Category, attributes and landmarks of garment images (a FashionNet "
                  "workdir), or the landmarks alone (a configs/fld.py cascade workdir).")
  parser.add_argument("images", nargs="+", help="JPEG or PNG files")
  parser.add_argument("--workdir", required=True, help="a training run's directory")
  parser.add_argument("-o", "--out", default=None,
                      help="output PNG (one image) or folder; default IMAGE_landmarks.png")
  parser.add_argument("--bbox", type=float, nargs=4, default=None, metavar=("X1", "Y1", "X2", "Y2"),
                      help="the garment's box (default: the whole image)")
  parser.add_argument("--top-attributes", type=int, default=5)
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  args = parser.parse_args(argv)
  for path in args.images:
    if not os.path.isfile(path):
      raise MissingDataError(f"image not found: {path}")
  outputs = _outputs(args.images, args.out, "_landmarks.png")
  task, predict = load(args.workdir, args.step, tasks=("fashion", "fashion_landmarks"))
  from hcjax.data.converters.deepfashion import LANDMARK_NAMES  # pylint: disable=g-import-not-at-top
  originals = [read_image(p) for p in args.images]
  prepared = [prepare(task, im, args.bbox) for im in originals]
  pred = _batched(predict, task, [x for x, _ in prepared])
  for i, (src, dst) in enumerate(zip(args.images, outputs)):
    image, matrix = originals[i], prepared[i][1]
    print(f"{src}:")
    if "category" in pred:
      cats, attrs = task.names()
      p = pred["category"][i]
      top = np.argsort(-p, kind="stable")[:3]
      print("  category:   " + ", ".join(f"{cats[c]} {p[c]:.2f}" for c in top))
      a = pred["attributes"][i]
      top = np.argsort(-a, kind="stable")[:args.top_attributes]
      print("  attributes: " + ", ".join(f"{attrs[c]} {a[c]:.2f}" for c in top))
    xy = to_image_coordinates(pred["landmarks"][i], matrix, task.size)
    visible = pred["visibility"][i].argmax(-1) == 0
    print("  landmarks:  " + ", ".join(
        f"{n} ({x:.0f}, {y:.0f}){'' if v else '?'}" for n, (x, y), v in
        zip(LANDMARK_NAMES, xy, visible)))
    h, w = image.shape[:2]
    normalised = (xy + 0.5) / np.array([w, h])
    zoom = max(1, 256 // max(h, w))
    big = np.repeat(np.repeat(image, zoom, 0), zoom, 1)
    _save(task.draw_landmarks(big, normalised, visible, radius=max(2, 2 * zoom)), dst)
    print(f"  -> {dst}")
  return 0


def list_gallery(folder: str) -> list[str]:
  if not os.path.isdir(folder):
    raise MissingDataError(f"gallery folder not found: {folder}")
  paths = sorted(os.path.join(root, f) for root, _, files in os.walk(folder) for f in files
                 if f.lower().endswith(IMAGE_EXTENSIONS))
  if not paths:
    raise MissingDataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
  return paths


def _thumb(image: np.ndarray) -> np.ndarray:
  img = Image.fromarray(image)
  img.thumbnail((THUMB, THUMB))
  canvas = np.full((THUMB, THUMB, 3), 255, np.uint8)
  a = np.asarray(img)
  top, left = (THUMB - a.shape[0]) // 2, (THUMB - a.shape[1]) // 2
  canvas[top:top + a.shape[0], left:left + a.shape[1]] = a[..., :3]
  return canvas


def retrieve_main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="hcjax retrieve",
      description="Nearest gallery images of a query garment (a FashionNet workdir).")
  parser.add_argument("query", nargs="?", help="query image")
  parser.add_argument("--workdir", required=True, help="a training run's directory")
  parser.add_argument("--gallery", help="folder of gallery images (searched recursively)")
  parser.add_argument("-k", "--top", type=int, default=5)
  parser.add_argument("-o", "--out", default=None, help="output PNG strip (default "
                      "QUERY_retrieved.png)")
  parser.add_argument("--evaluate", action="store_true",
                      help="top-k retrieval accuracy of the run's query split vs its gallery")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  args = parser.parse_args(argv)
  if args.evaluate:
    from hcjax.tasks.fashion import evaluate_retrieval_workdir  # pylint: disable=g-import-not-at-top
    metrics = evaluate_retrieval_workdir(args.workdir, args.step)
    print("  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0
  if not args.query or not args.gallery:
    parser.error("a query image and --gallery are needed (or --evaluate)")
  if args.top < 1:
    raise ConfigError(f"-k must be >= 1, got {args.top}")
  if not os.path.isfile(args.query):
    raise MissingDataError(f"image not found: {args.query}")
  gallery = list_gallery(args.gallery)
  out = args.out or os.path.splitext(args.query)[0] + "_retrieved.png"
  task, predict = load(args.workdir, args.step)
  query_image = read_image(args.query)
  images = [read_image(p) for p in gallery]
  emb = _batched(predict, task, [prepare(task, im)[0] for im in [query_image] + images])
  emb = emb["embedding"]
  emb = emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
  sims = emb[1:] @ emb[0]
  order = np.argsort(-sims, kind="stable")[:args.top]
  from hcjax.observe import image_grid  # pylint: disable=g-import-not-at-top
  cells = [_thumb(query_image)] + [_thumb(images[j]) for j in order]
  captions = ["query\n" + os.path.basename(args.query)[:18]] + [
      f"#{r + 1} sim {sims[j]:.3f}\n{os.path.relpath(gallery[j], args.gallery)[-18:]}"
      for r, j in enumerate(order)]
  _save(image_grid(np.stack(cells), captions, cols=len(cells)), out)
  for r, j in enumerate(order):
    print(f"{r + 1:3d}  {sims[j]:.4f}  {gallery[j]}")
  print(f"-> {out}")
  return 0

"""Semantic segmentation (PASCAL VOC): a fully convolutional unary net plus a CRF or MRF head.

config.data: dataset ("voc"), dir (converted TFRecords), samples_dir / make_samples /
num_sample_images / sample_seed (build the embedded sample set when `dir` holds no data), shards,
eval_split ("val" | "train").
config.input: crop_size (square training crop), min_scale / max_scale (random rescale before the
crop), flip (random mirror), eval_size (eval images sit at the top-left of an eval_size square
canvas, padded with the mean colour and the void label, so every real pixel counts exactly once;
it must be at least the largest image side, 500 for VOC).
config.model: name ("crf_rnn" | "dpn"), dtype, and that model's keyword arguments:
  crf_rnn: width, fc_width, use_crf, train_iterations, eval_iterations, theta_alpha, theta_beta,
           theta_gamma, spatial_weight, bilateral_weight, crf_method;
  dpn:     width, fc_width, stage, window, context_kernel, mixtures, pairwise_stride,
           appearance_sigma, position_sigma.
config.loss: aux_unary_weight (an extra cross-entropy on the unary logits; 0 = off).

The model sees float32 RGB in 0..255 and normalises itself (the CRF needs the raw colours); it
returns {"unary": [B, H, W, L], "logits": [B, H, W, L]}. Eval metrics come from confusion matrices
summed over the split: miou (VOC's mean IoU), pixel_accuracy, mean_class_accuracy and loss of the
final logits, miou_unary / pixel_accuracy_unary of the unary's, iou/<class> for every class in the
truth or the prediction. Predictions (and the export's output) are softmax probabilities.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from hcjax.data import ImageDecodeError, MissingDataError, transforms
from hcjax.data.pipeline import INFO_FILE
from hcjax.metrics import segmentation as seg_metrics
from hcjax.tasks.base import Task, TaskConfigError

# Padding colour: the ImageNet mean the VGG nets subtract (hcjax.models.vgg.IMAGENET_MEAN · 255),
# so padding is ~0 after their normalisation.
MEAN_RGB = (124, 116, 104)
# dataset -> (module with CLASS_NAMES, PALETTE, IGNORE_LABEL and convert, sample-set module).
DATASETS = {"voc": ("hcjax.data.converters.voc", "hcjax.data.samples.voc")}
SPLITS = ("train", "val")
MODELS = {"crf_rnn": "hcjax.models.crf_rnn:CrfRnn", "dpn": "hcjax.models.dpn:DPN"}
# The keyword arguments each model takes from config.model (besides name and dtype).
MODEL_KWARGS = {
    "crf_rnn": ("width", "fc_width", "use_crf", "train_iterations", "eval_iterations",
                "theta_alpha", "theta_beta", "theta_gamma", "spatial_weight", "bilateral_weight",
                "crf_method"),
    "dpn": ("width", "fc_width", "stage", "window", "context_kernel", "mixtures",
            "pairwise_stride", "appearance_sigma", "position_sigma"),
}
DPN_STAGES = ("unary", "triple", "context", "joint")
DTYPES = ("float32", "bfloat16", "float16")
VISUALIZED = 6           # examples in the eval picture
PICTURE_MAX_SIDE = 256   # larger eval canvases are subsampled in the picture
PICTURE_MIN_SIDE = 96    # smaller ones are enlarged


def decode_mask(data: bytes) -> np.ndarray:
  """PNG bytes of a class-index image ("L" or palette "P" mode) -> uint8 [H, W] indices.

  A palette PNG (as VOC ships them) must not go through a colour conversion: its pixel values are
  already the class indices.
  """
  try:
    with Image.open(io.BytesIO(bytes(data))) as img:
      img.load()
      if img.mode not in ("L", "P"):
        raise ValueError(f"a mask must be a single-channel (L or P) image, got mode {img.mode}")
      return np.array(img, np.uint8)
  except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
    raise ImageDecodeError(f"cannot decode mask ({len(data)} bytes): {e}") from e


class SegmentationTask(Task):

  def __init__(self, config):
    super().__init__(config)
    dataset = config.data.get("dataset", "voc")
    if dataset not in DATASETS:
      raise TaskConfigError(
          f"config.data.dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    info = importlib.import_module(DATASETS[dataset][0])
    self.class_names = list(info.CLASS_NAMES)
    self.num_classes = len(self.class_names)
    self.palette = np.asarray(info.PALETTE, np.uint8).reshape(256, 3)
    self.ignore_label = int(info.IGNORE_LABEL)

    inp = config.input
    self.crop_size = int(inp.crop_size)
    self.eval_size = int(inp.get("eval_size", 512))
    if self.crop_size < 8 or self.eval_size < 8:
      raise TaskConfigError(f"config.input.crop_size and eval_size must be >= 8, got "
                            f"{self.crop_size} and {self.eval_size}")
    self.min_scale = float(inp.get("min_scale", 1.0))
    self.max_scale = float(inp.get("max_scale", 1.0))
    if not 0 < self.min_scale <= self.max_scale:
      raise TaskConfigError(f"config.input needs 0 < min_scale <= max_scale, got "
                            f"{self.min_scale} and {self.max_scale}")
    self.flip = bool(inp.get("flip", True))

    m = config.model
    if m.get("name") not in MODELS:
      raise TaskConfigError(
          f"config.model.name must be one of {sorted(MODELS)}, got {m.get('name')!r}")
    if m.get("dtype", "float32") not in DTYPES:
      raise TaskConfigError(f"config.model.dtype must be one of {DTYPES}, got {m.dtype!r}")
    allowed = MODEL_KWARGS[m.name]
    unknown = sorted(set(m.keys()) - set(allowed) - {"name", "dtype"})
    if unknown:
      raise TaskConfigError(f"config.model.{unknown[0]} is not an argument of the {m.name} model; "
                            f"it takes {', '.join(allowed)}")
    if m.name == "dpn" and m.get("stage", "joint") not in DPN_STAGES:
      raise TaskConfigError(f"config.model.stage must be one of {DPN_STAGES}, got {m.stage!r}")
    if int(m.get("width", 64)) < 1:
      raise TaskConfigError(f"config.model.width must be >= 1, got {m.width!r}")
    self.aux_unary_weight = float(config.get("loss", {}).get("aux_unary_weight", 0.0))
    if self.aux_unary_weight < 0:
      raise TaskConfigError(
          f"config.loss.aux_unary_weight must be >= 0, got {self.aux_unary_weight}")

  # --- data -----------------------------------------------------------------------------------

  def prepare_data(self) -> None:
    data = self.config.data
    if os.path.exists(os.path.join(data.dir, INFO_FILE)):
      return
    dataset = data.get("dataset", "voc")
    if not data.get("make_samples", False):
      raise MissingDataError(
          f"config.data.dir={data.dir!r} holds no converted {dataset.upper()} (no {INFO_FILE}); "
          f"run `hcjax convert {dataset} --src VOCdevkit/VOC2012 --out {data.dir}` "
          f"(see data/{dataset}/README.md)")
    converter = importlib.import_module(DATASETS[dataset][0])
    samples = importlib.import_module(DATASETS[dataset][1])
    src = os.path.join(data.samples_dir, "VOC2012")
    if not os.path.isdir(os.path.join(src, "SegmentationClass")):
      logging.info("writing the %s-format sample set to %s", dataset.upper(), data.samples_dir)
      samples.write_sample_set(data.samples_dir, num_images=int(data.num_sample_images),
                               seed=int(data.get("sample_seed", 0)), progress=False)
    logging.info("converting %s to TFRecords in %s", src, data.dir)
    converter.convert(src, data.dir, shards=int(data.get("shards", 4)), progress=False)

  def data_pattern(self, split: str) -> str:
    name = self.config.data.get("eval_split", "val") if split == "eval" else "train"
    if name not in SPLITS:
      raise TaskConfigError(f"config.data.eval_split must be one of {SPLITS}, got {name!r}")
    return os.path.join(self.config.data.dir, f"{name}-*.tfrecord")

  def preprocess(self, features: dict[str, Any], rng: np.random.Generator, *,
                 train: bool) -> dict[str, np.ndarray]:
    image = transforms.decode_image(features["image"][0])
    mask = decode_mask(features["mask"][0])
    if mask.shape != image.shape[:2]:
      raise ImageDecodeError(f"mask {mask.shape[1]}x{mask.shape[0]} does not match image "
                             f"{image.shape[1]}x{image.shape[0]} (width x height)")
    sample = {"image": image, "mask": mask}
    if train:
      sample = self._augment(sample, rng)
    else:
      h, w = mask.shape
      if h > self.eval_size or w > self.eval_size:
        name = features.get("id", [b"?"])[0]
        name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        raise TaskConfigError(
            f"eval image {name!r} is {w}x{h}, larger than config.input.eval_size="
            f"{self.eval_size}; set eval_size to at least the largest image side")
      sample = self.pad(sample, (self.eval_size, self.eval_size))
    return {"image": sample["image"], "mask": sample["mask"].astype(np.int32)}

  def _augment(self, sample: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, Any]:
    """Random scale, crop and mirror as one warp, so image and mask go through the same map."""
    h, w = sample["mask"].shape
    size = self.crop_size
    s = rng.uniform(self.min_scale, self.max_scale)
    sh, sw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    # A uniform crop position; an image smaller than the crop lands at a random place in it.
    top = int(rng.integers(min(0, sh - size), max(0, sh - size) + 1))
    left = int(rng.integers(min(0, sw - size), max(0, sw - size) + 1))
    matrix = (transforms.translation_matrix(-left, -top)
              @ transforms.scale_matrix(sw / w, sh / h))
    if self.flip and rng.random() < 0.5:
      matrix = np.array([[-1, 0, size], [0, 1, 0], [0, 0, 1]], np.float64) @ matrix
    return transforms.affine(sample, matrix, (size, size), mask_fill=self.ignore_label,
                             fill=MEAN_RGB)

  def pad(self, sample: Mapping[str, np.ndarray], size: tuple[int, int]) -> dict[str, Any]:
    """The image at the top-left of a `size` (height, width) canvas: mean colour, void label."""
    return transforms.crop(sample, 0, 0, size[0], size[1], mask_fill=self.ignore_label,
                           fill=MEAN_RGB)

  # --- model ----------------------------------------------------------------------------------

  def build_model(self):
    m = self.config.model
    module, cls = MODELS[m.name].split(":")
    model_cls = getattr(importlib.import_module(module), cls)
    kwargs = {k: m[k] for k in MODEL_KWARGS[m.name] if k in m}
    return model_cls(num_classes=self.num_classes, dtype=jnp.dtype(m.get("dtype", "float32")),
                     **kwargs)

  def input_spec(self) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((self.eval_size, self.eval_size, 3), jnp.uint8)

  def model_inputs(self, batch):
    return batch["image"].astype(jnp.float32)  # 0..255: the model normalises itself

  # --- objectives and metrics -----------------------------------------------------------------

  def _pixel_ce(self, logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-pixel cross-entropy [B, H, W] and the non-void mask (void pixels get label 0)."""
    valid = (labels != self.ignore_label) & (labels >= 0) & (labels < self.num_classes)
    safe = jnp.where(valid, labels, 0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
    return jnp.where(valid, ce, 0.0), valid

  def loss(self, outputs, batch):
    labels = batch["mask"]
    ce, valid = self._pixel_ce(outputs["logits"], labels)
    count = jnp.maximum(valid.sum(), 1)  # a crop of void only contributes nothing, not NaN
    loss = ce.sum() / count
    correct = (jnp.argmax(outputs["logits"], -1) == labels) & valid
    aux = {"pixel_accuracy": correct.sum() / count, "ce": loss}
    if self.aux_unary_weight:
      ce_unary, _ = self._pixel_ce(outputs["unary"], labels)
      aux["ce_unary"] = ce_unary.sum() / count
      loss = loss + self.aux_unary_weight * aux["ce_unary"]
    return loss, aux

  def eval_statistics(self, outputs, batch):
    labels = batch["mask"]
    real = batch["_mask"][:, None, None] > 0  # padding examples count nowhere
    stats = {}
    for key, name in (("logits", "confusion"), ("unary", "confusion_unary")):
      stats[name] = seg_metrics.confusion_matrix(
          labels, jnp.argmax(outputs[key], -1), self.num_classes, ignore_label=self.ignore_label,
          weights=real)
    ce, valid = self._pixel_ce(outputs["logits"], labels)
    stats["ce_sum"] = jnp.where(real, ce, 0.0).sum()
    stats["pixels"] = (valid & real).sum()
    stats["examples"] = batch["_mask"].sum()
    return stats

  def summarize(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    cm, cm_unary = totals["confusion"], totals["confusion_unary"]
    out = {"miou": seg_metrics.mean_iou(cm),
           "miou_unary": seg_metrics.mean_iou(cm_unary),
           "pixel_accuracy": seg_metrics.pixel_accuracy(cm),
           "pixel_accuracy_unary": seg_metrics.pixel_accuracy(cm_unary),
           "mean_class_accuracy": seg_metrics.mean_class_accuracy(cm),
           "loss": float(totals["ce_sum"]) / max(float(totals["pixels"]), 1.0),
           "pixels": float(totals["pixels"]),
           "examples": float(totals["examples"])}
    for name, value in zip(self.class_names, seg_metrics.iou_from_confusion(cm)):
      if np.isfinite(value):  # NaN: in neither the truth nor the prediction; no IoU to report
        out[f"iou/{name}"] = float(value)
    return out

  def predict(self, outputs):
    return jax.nn.softmax(outputs["logits"].astype(jnp.float32), axis=-1)

  def export_metadata(self) -> dict[str, Any]:
    e = self.eval_size
    return {"task": "segmentation", "model": self.config.model.name,
            "outputs": f"softmax probabilities [B, {e}, {e}, {self.num_classes}]",
            "class_names": self.class_names, "ignore_label": self.ignore_label,
            "palette": self.palette.tolist(),
            "input": f"uint8 RGB [B, {e}, {e}, 3]: the image at the top-left, padded with the "
                     f"mean colour {list(MEAN_RGB)}; crop the output back to the image"}

  # --- pictures -------------------------------------------------------------------------------

  def colorize(self, labels: np.ndarray) -> np.ndarray:
    """[H, W] class indices -> uint8 [H, W, 3] palette colours (void has its own colour)."""
    return self.palette[np.asarray(labels).astype(np.int64) & 255]

  def overlay(self, image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image blended with the label colours: uint8 [H, W, 3]."""
    blend = (1 - alpha) * np.asarray(image, np.float32) + alpha * self.colorize(labels)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)

  def label_summary(self, labels: np.ndarray, top: int = 3) -> str:
    """The largest non-void classes, e.g. "person cat"."""
    counts = np.bincount(labels[labels < self.num_classes].ravel(), minlength=self.num_classes)
    order = [c for c in np.argsort(-counts, kind="stable") if counts[c] > 0][:top]
    return " ".join(self.class_names[c][:11] for c in order) or "(void)"

  def visualize(self, batch, predictions) -> np.ndarray | None:
    """Rows of image | truth | prediction (50% overlays), captioned with per-image IoU."""
    from hcjax.observe import image_grid  # pylint: disable=g-import-not-at-top
    real = np.flatnonzero(np.asarray(batch.get("_mask", np.ones(len(batch["image"])))) > 0)
    if not len(real):
      return None
    shown = real[:VISUALIZED]
    # Crop the padding away: the canvas down to the last row / column holding a label.
    labelled = np.asarray(batch["mask"]) != self.ignore_label
    rows = np.flatnonzero(labelled[shown].any(axis=(0, 2)))
    cols = np.flatnonzero(labelled[shown].any(axis=(0, 1)))
    h = int(rows[-1]) + 1 if len(rows) else labelled.shape[1]
    w = int(cols[-1]) + 1 if len(cols) else labelled.shape[2]
    # Big canvases are subsampled, small ones enlarged (nearest), to a readable size.
    step = max(1, -(-max(h, w) // PICTURE_MAX_SIDE))
    zoom = max(1, PICTURE_MIN_SIDE // max(h, w))
    fit = lambda a: np.repeat(np.repeat(a[:h:step, :w:step], zoom, 0), zoom, 1)
    cells, captions, colors = [], [], []
    for i in shown:
      mask = np.asarray(batch["mask"][i])
      pred = np.asarray(predictions[i]).argmax(-1)
      cm = seg_metrics.confusion_matrix(mask, pred, self.num_classes,
                                        ignore_label=self.ignore_label)
      iou, acc = seg_metrics.mean_iou(cm), seg_metrics.pixel_accuracy(cm)
      # This example's own padding (beyond its last labelled row / column) shows no prediction.
      padding = np.ones(mask.shape, bool)
      rows, cols = np.flatnonzero(labelled[i].any(1)), np.flatnonzero(labelled[i].any(0))
      if len(rows):
        padding[:rows[-1] + 1, :cols[-1] + 1] = False
      image, truth, pred, padding = (fit(a) for a in (
          np.asarray(batch["image"][i], np.uint8), mask, pred, padding))
      predicted = np.where(padding[..., None], image, self.overlay(image, pred))
      cells += [image, self.overlay(image, truth), predicted]
      captions += ["image", "truth: " + self.label_summary(truth),
                   f"IoU {iou:.2f} acc {acc:.2f}\n"
                   + self.label_summary(np.where(padding, self.ignore_label, pred))]
      good = np.isfinite(iou) and iou >= 0.5
      colors += [(0, 0, 0), (0, 0, 0), (40, 160, 40) if good else (200, 30, 30)]
    return image_grid(np.stack(cells), captions, cols=3, caption_colors=colors)

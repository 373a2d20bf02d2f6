"""CelebA face attributes: 40 binary attributes from a face, a ResNet or LNets+ANet.

config.data: dir (converted TFRecords), samples_dir / make_samples / num_sample_images (build
the embedded sample set when `dir` holds no data), eval_split, true_box ("bbox": the records'
bbox, as in the rendered sample set whose boxes are in aligned coordinates; "landmarks": a head
box derived from the 5 aligned landmarks, for real CelebA whose list_bbox_celeba.txt is in
in-the-wild coordinates; only used when the input carries boxes).
config.input: image_size, crop (the square face region of the 178x218 aligned image),
placement ("aligned": that centre crop, the default; "wild": the face placed at a random size
and position in the input, see `_place`), face_fraction (lo, hi) for "wild".
config.model: name ("resnet", the default, or "lnets_anet").
  resnet:      depth, width, stem, dtype.
  lnets_anet:  stage (lnet | anet | joint), lnet_widths, anet_widths, anet_grids, feature_dim,
               patch_size, patches, threshold, upsample, dropout, dtype (hcjax/models/
               face_attributes.py); config.loss: classifier (logistic | hinge), lnet_weight.

With boxes in the input (placement "wild" or model "lnets_anet") each example also carries
"box" [4] (x0, y0, x1, y1, pixel edges of the input), and LNets+ANet reports localisation:
the fraction of examples whose predicted box has IoU >= 0.5 with the true one, the mean IoU and
the fraction of the 5 true landmarks inside the predicted box.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from PIL import Image

from hcjax.data import MissingDataError, transforms
from hcjax.data.converters import celeba
from hcjax.data.pipeline import INFO_FILE
from hcjax.tasks.base import Task, TaskConfigError

MEAN = np.array([0.5, 0.5, 0.5], np.float32)
STD = np.array([0.5, 0.5, 0.5], np.float32)
SPLIT_FILES = {"train": "train", "validation": "validation", "test": "test"}
MODELS = ("resnet", "lnets_anet")
PLACEMENTS = ("aligned", "wild")
TRUE_BOXES = ("bbox", "landmarks")
CLASSIFIER_LOSSES = ("logistic", "hinge")
STAGES = ("lnet", "anet", "joint")
# The head box (x0, y0, x1, y1) relative to the 5 aligned landmarks, in units of d, the distance
# from the eyes' midpoint to the mouth corners' midpoint: centre = their midpoint + (0, CENTRE_DY)
# d, size BOX_W x BOX_H d. Fitted to the rendered sample set's true head boxes (hair to chin).
CENTRE_DY, BOX_W, BOX_H = -0.234, 2.47, 3.05
# The constant-box baseline of "wild" placement: a centred box of the mean face fraction, this
# wide for its height (the sample set's mean head box is 0.81 as wide as high).
CONSTANT_BOX_ASPECT = 0.81


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
  """[5, 2] aligned CelebA landmarks -> a head box [4] (x0, y0, x1, y1), pixel edges."""
  pts = np.asarray(landmarks, np.float64).reshape(5, 2)
  eyes, mouth = pts[:2].mean(0), pts[3:].mean(0)
  d = max(float(np.linalg.norm(mouth - eyes)), 1.0)
  cx, cy = (eyes + mouth) / 2 + 0.5  # pixel centres -> edges
  cy += CENTRE_DY * d
  return np.array([cx - BOX_W * d / 2, cy - BOX_H * d / 2, cx + BOX_W * d / 2, cy + BOX_H * d / 2],
                  np.float32)


def box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Intersection over union of boxes [..., 4] (x0, y0, x1, y1); 0 where both are empty."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  iw = jnp.maximum(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0)
  ih = jnp.maximum(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0)
  inter = iw * ih
  area = lambda x: jnp.maximum(x[..., 2] - x[..., 0], 0) * jnp.maximum(x[..., 3] - x[..., 1], 0)
  union = area(a) + area(b) - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)


def points_in_box(points: jax.Array, box: jax.Array) -> jax.Array:
  """points [..., K, 2] pixel centres, box [..., 4] pixel edges -> [..., K] bool."""
  x, y = points[..., 0] + 0.5, points[..., 1] + 0.5
  b = box[..., None, :]
  return (x >= b[..., 0]) & (x <= b[..., 2]) & (y >= b[..., 1]) & (y <= b[..., 3])


class FaceAttributesTask(Task):

  def __init__(self, config):
    super().__init__(config)
    self.attribute_names = list(celeba.ATTRIBUTE_NAMES)
    size = int(config.input.image_size)
    if size < 16:
      raise TaskConfigError(f"config.input.image_size must be >= 16, got {size}")
    self.image_size = size
    m = config.model
    self.model_name = m.get("name", "resnet")
    if self.model_name not in MODELS:
      raise TaskConfigError(f"config.model.name must be one of {MODELS}, got {self.model_name!r}")
    inp = config.input
    self.placement = inp.get("placement", "aligned")
    if self.placement not in PLACEMENTS:
      raise TaskConfigError(f"config.input.placement must be one of {PLACEMENTS}, got "
                            f"{self.placement!r}")
    lo, hi = (float(v) for v in inp.get("face_fraction", (0.4, 0.8)))
    if not 0 < lo <= hi <= 1:
      raise TaskConfigError(f"config.input.face_fraction must be (lo, hi) with 0 < lo <= hi <= 1, "
                            f"got {tuple(inp.get('face_fraction'))!r}")
    self.face_fraction = (lo, hi)
    self.true_box = config.data.get("true_box", "landmarks")
    if self.true_box not in TRUE_BOXES:
      raise TaskConfigError(f"config.data.true_box must be one of {TRUE_BOXES}, got "
                            f"{self.true_box!r}")
    # Examples carry their true box (and the metrics use it) unless this is the plain baseline.
    self.with_boxes = self.model_name != "resnet" or self.placement != "aligned"
    if self.model_name == "lnets_anet":
      self._check_lnets_anet(config)
      return
    from hcjax.models import resnet  # pylint: disable=g-import-not-at-top
    if m.depth not in resnet.STAGES:
      raise TaskConfigError(f"config.model.depth must be one of {sorted(resnet.STAGES)}, got {m.depth!r}")
    if m.get("stem", "imagenet") not in resnet.STEMS:
      raise TaskConfigError(f"config.model.stem must be one of {resnet.STEMS}, got {m.stem!r}")
    if m.get("dtype", "float32") not in ("float32", "bfloat16", "float16"):
      raise TaskConfigError(f"config.model.dtype must be float32, bfloat16 or float16, got {m.dtype!r}")
    if int(m.width) < 1:
      raise TaskConfigError(f"config.model.width must be >= 1, got {m.width!r}")

  def _check_lnets_anet(self, config) -> None:
    m = config.model
    self.stage = m.get("stage", "joint")
    if self.stage not in STAGES:
      raise TaskConfigError(f"config.model.stage must be one of {STAGES}, got {self.stage!r}")
    if m.get("dtype", "float32") not in ("float32", "bfloat16", "float16"):
      raise TaskConfigError(f"config.model.dtype must be float32, bfloat16 or float16, got {m.dtype!r}")
    for key in ("lnet_widths", "anet_widths"):
      widths = tuple(m.get(key, (8,)))
      if not widths or any(int(w) < 1 for w in widths):
        raise TaskConfigError(f"config.model.{key} must be positive integers, got {widths!r}")
    if len(tuple(m.get("lnet_widths", (8,) * 3))) < 3:
      raise TaskConfigError("config.model.lnet_widths needs at least 3 layers (two pool)")
    grids = [tuple(g) for g in m.get("anet_grids", ((1, 1),))]
    if len(grids) != len(tuple(m.get("anet_widths", ()))) or any(
        len(g) != 2 or min(g) < 1 for g in grids):
      raise TaskConfigError(f"config.model.anet_grids must give one (rows, cols) >= 1 per "
                            f"anet_widths layer, got {grids!r}")
    patch = int(m.get("patch_size", 48))
    last = patch // 2 ** (len(grids) - 1)
    if last < max(max(g) for g in grids):
      raise TaskConfigError(f"config.model.patch_size={patch} leaves a {last}x{last} map for "
                            f"the last ANet layer, smaller than its grid")
    patches = [tuple(p) for p in m.get("patches", ((0.0, 0.0, 1.0),))]
    if not patches or any(len(p) != 3 or p[2] <= 0 for p in patches):
      raise TaskConfigError(f"config.model.patches must be (dx, dy, scale > 0) triples, got "
                            f"{patches!r}")
    if not 0 < float(m.get("threshold", 0.5)) < 1:
      raise TaskConfigError(f"config.model.threshold must be in (0, 1), got {m.threshold!r}")
    if int(m.get("upsample", 1)) < 1:
      raise TaskConfigError(f"config.model.upsample must be >= 1, got {m.upsample!r}")
    loss = config.get("loss", {})
    if loss.get("classifier", "logistic") not in CLASSIFIER_LOSSES:
      raise TaskConfigError(f"config.loss.classifier must be one of {CLASSIFIER_LOSSES}, got "
                            f"{loss.get('classifier')!r}")
    if self.image_size % 8:
      raise TaskConfigError(f"config.input.image_size must be a multiple of 8 for LNet, got "
                            f"{self.image_size}")

  # --- data -----------------------------------------------------------------------------------

  def prepare_data(self) -> None:
    data = self.config.data
    if os.path.exists(os.path.join(data.dir, INFO_FILE)):
      return
    if not data.get("make_samples", False):
      raise MissingDataError(
          f"config.data.dir={data.dir!r} holds no converted CelebA (no {INFO_FILE}); run "
          f"`hcjax convert celeba --src CELEBA_DIR --out {data.dir}` (see data/celeba/README.md)")
    from hcjax.data.samples import celeba as samples  # pylint: disable=g-import-not-at-top
    if not os.path.exists(os.path.join(data.samples_dir, "list_attr_celeba.txt")):
      logging.info("writing the CelebA-format sample set to %s", data.samples_dir)
      samples.write_sample_set(data.samples_dir, num_images=int(data.num_sample_images),
                               seed=int(data.get("sample_seed", 0)))
    logging.info("converting %s to TFRecords in %s", data.samples_dir, data.dir)
    celeba.convert(data.samples_dir, data.dir, shards=int(data.get("shards", 4)), progress=False)

  def data_pattern(self, split: str) -> str:
    name = self.config.data.get("eval_split", "validation") if split == "eval" else "train"
    if name not in SPLIT_FILES:
      raise TaskConfigError(f"config.data.eval_split must be one of {sorted(SPLIT_FILES)}, got {name!r}")
    return os.path.join(self.config.data.dir, f"{SPLIT_FILES[name]}-*.tfrecord")

  def preprocess(self, features: dict[str, Any], rng: np.random.Generator, *,
                 train: bool) -> dict[str, np.ndarray]:
    if self.with_boxes:
      return self._preprocess_with_box(features, rng, train=train)
    image = transforms.decode_image(features["image"][0])
    sample = {"image": image,
              "landmarks": features["landmarks"].reshape(5, 2).astype(np.float32)}
    h, w = image.shape[:2]
    crop = min(int(self.config.input.get("crop", 178)), h, w)
    top, left = (h - crop) // 2, (w - crop) // 2
    if train:  # Small translation / scale jitter; attributes are invariant to a mirror image.
      jitter = max(1, crop // 16)
      top += int(rng.integers(-jitter, jitter + 1))
      left += int(rng.integers(-jitter, jitter + 1))
      sample = transforms.crop(sample, top, left, crop, crop)
      sample = transforms.random_flip(sample, rng, flip_pairs=celeba.FLIP_PAIRS)
      sample = transforms.color_jitter(sample, rng, brightness=0.2, contrast=0.2, saturation=0.2)
    else:
      sample = transforms.crop(sample, top, left, crop, crop)
    sample = transforms.resize(sample, (self.image_size, self.image_size))
    return {
        "image": sample["image"],  # uint8: 4x less to move; normalised on the device
        "landmarks": sample["landmarks"].astype(np.float32),
        "attributes": features["attributes"].astype(np.int32),
    }

  def _true_box(self, features: dict[str, Any], landmarks: np.ndarray) -> np.ndarray:
    if self.true_box == "landmarks":
      return landmark_box(landmarks)
    if "bbox" not in features:
      raise MissingDataError(
          "config.data.true_box='bbox' but a record has no bbox (convert with "
          "list_bbox_celeba.txt in aligned coordinates, or set config.data.true_box='landmarks')")
    x, y, w, h = (float(v) for v in np.asarray(features["bbox"]).reshape(4))
    return np.array([x, y, x + w, y + h], np.float32)

  def _place(self, image: np.ndarray, landmarks: np.ndarray, box: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face "in the wild": a square window of the aligned image around the face, whose
    longer box side is a fraction f ~ U(face_fraction) of the window, at a uniform position that
    keeps the box inside, resized (antialiased) to image_size. Outside the aligned image the
    border pixels repeat (no mirrored second face). Eval examples get the same draw every time:
    the pipeline's per-example seed."""
    size = self.image_size
    side = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)
    window = max(int(round(side / rng.uniform(*self.face_fraction))), 1)
    left = int(np.floor(rng.uniform(min(box[2] - window, box[0]), box[0]) + 0.5))
    top = int(np.floor(rng.uniform(min(box[3] - window, box[1]), box[1]) + 0.5))
    h, w = image.shape[:2]
    pads = (max(0, -top), max(0, top + window - h), max(0, -left), max(0, left + window - w))
    if any(pads):
      image = np.pad(image, ((pads[0], pads[1]), (pads[2], pads[3]), (0, 0)), mode="edge")
    y0, x0 = top + pads[0], left + pads[2]
    crop = image[y0:y0 + window, x0:x0 + window]
    out = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR))
    scale = size / window
    landmarks = (landmarks + 0.5 - np.array([left, top], np.float32)) * scale - 0.5
    box = (box - np.array([left, top, left, top], np.float32)) * scale
    return out, landmarks.astype(np.float32), np.clip(box, 0, size).astype(np.float32)

  def _preprocess_with_box(self, features: dict[str, Any], rng: np.random.Generator, *,
                           train: bool) -> dict[str, np.ndarray]:
    image = transforms.decode_image(features["image"][0])
    landmarks = features["landmarks"].reshape(5, 2).astype(np.float32)
    box = self._true_box(features, landmarks)
    if self.placement == "wild":
      image, landmarks, box = self._place(image, landmarks, box, rng)
      sample = {"image": image, "landmarks": landmarks, "boxes": box[None]}
    else:  # The centre crop of the baseline (with its train-time jitter).
      sample = {"image": image, "landmarks": landmarks, "boxes": box[None]}
      h, w = image.shape[:2]
      crop = min(int(self.config.input.get("crop", 178)), h, w)
      top, left = (h - crop) // 2, (w - crop) // 2
      if train:
        jitter = max(1, crop // 16)
        top += int(rng.integers(-jitter, jitter + 1))
        left += int(rng.integers(-jitter, jitter + 1))
      sample = transforms.crop(sample, top, left, crop, crop)
      sample = transforms.resize(sample, (self.image_size, self.image_size))
    if train:  # Attributes are invariant to a mirror image.
      sample = transforms.random_flip(sample, rng, flip_pairs=celeba.FLIP_PAIRS)
      sample = transforms.color_jitter(sample, rng, brightness=0.2, contrast=0.2, saturation=0.2)
    return {
        "image": sample["image"],
        "landmarks": sample["landmarks"].astype(np.float32),
        "box": sample["boxes"][0].astype(np.float32),
        "attributes": features["attributes"].astype(np.int32),
    }

  # --- model ----------------------------------------------------------------------------------

  def build_model(self):
    m = self.config.model
    if self.model_name == "lnets_anet":
      from hcjax.models import face_attributes  # pylint: disable=g-import-not-at-top
      return face_attributes.LNetsANet(
          num_outputs=len(self.attribute_names), stage=self.stage,
          lnet_widths=tuple(int(w) for w in m.lnet_widths),
          anet_widths=tuple(int(w) for w in m.anet_widths),
          anet_grids=tuple(tuple(int(v) for v in g) for g in m.anet_grids),
          feature_dim=int(m.feature_dim), patch_size=int(m.patch_size),
          patches=tuple(tuple(float(v) for v in p) for p in m.patches),
          threshold=float(m.threshold), upsample=int(m.get("upsample", 4)),
          dropout=float(m.get("dropout", 0.0)), dtype=jnp.dtype(m.get("dtype", "float32")))
    from hcjax.models.resnet import ResNet  # pylint: disable=g-import-not-at-top
    return ResNet(depth=int(m.depth), num_outputs=len(self.attribute_names), width=int(m.width),
                  stem=m.get("stem", "imagenet"), dtype=jnp.dtype(m.get("dtype", "float32")))

  def input_spec(self) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((self.image_size, self.image_size, 3), jnp.uint8)

  def model_inputs(self, batch):
    return (batch["image"].astype(jnp.float32) / 255.0 - MEAN) / STD

  # --- objectives and metrics -----------------------------------------------------------------

  def loss(self, outputs, batch):
    labels = batch["attributes"].astype(jnp.float32)
    if isinstance(outputs, dict):
      return self._lnets_anet_loss(outputs, labels)
    logits = outputs.astype(jnp.float32)
    loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    accuracy = ((logits > 0) == (labels > 0.5)).mean()
    return loss, {"accuracy": accuracy}

  def _classifier_loss(self, logits, labels):
    """Mean over examples and attributes of the per-attribute linear classifiers' loss."""
    logits = logits.astype(jnp.float32)
    if self.config.get("loss", {}).get("classifier", "logistic") == "hinge":
      return jax.nn.relu(1.0 - (2.0 * labels - 1.0) * logits).mean()  # linear SVMs
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()

  def _lnets_anet_loss(self, outputs, labels):
    """lnet: LNet's attribute loss; anet: ANet's (LNet frozen by the optimizer); joint: both."""
    aux = {}
    total = jnp.zeros((), jnp.float32)
    if self.stage in ("lnet", "joint"):
      aux["lnet_loss"] = self._classifier_loss(outputs["lnet_logits"], labels)
      weight = float(self.config.get("loss", {}).get("lnet_weight", 1.0))
      total = total + (weight if self.stage == "joint" else 1.0) * aux["lnet_loss"]
    if self.stage in ("anet", "joint"):
      aux["anet_loss"] = self._classifier_loss(outputs["logits"], labels)
      total = total + aux["anet_loss"]
    aux["accuracy"] = ((outputs["logits"] > 0) == (labels > 0.5)).mean()
    return total, aux

  def eval_statistics(self, outputs, batch):
    mask = batch["_mask"][:, None]
    labels = batch["attributes"] > 0
    if isinstance(outputs, dict):
      extra = self._localisation_statistics(outputs, batch)
      extra["lnet_correct"] = (((outputs["lnet_logits"] > 0) == labels) * mask).sum(0)
      outputs = outputs["logits"]
    elif "box" in batch:
      extra = self._localisation_statistics({}, batch)
    else:
      extra = {}
    correct = ((outputs > 0) == labels) * mask
    logits = outputs.astype(jnp.float32)
    bce = optax.sigmoid_binary_cross_entropy(logits, labels.astype(jnp.float32)) * mask
    return {"correct": correct.sum(0), "positives": (labels * mask).sum(0),
            "count": mask.sum(), "bce": bce.sum(), **extra}

  def constant_box(self) -> np.ndarray:
    """The baseline box of "wild" placement: centred, of the mean face fraction's size."""
    size = float(self.image_size)
    h = size * sum(self.face_fraction) / 2
    w = h * CONSTANT_BOX_ASPECT
    return np.array([(size - w) / 2, (size - h) / 2, (size + w) / 2, (size + h) / 2], np.float32)

  def _localisation_statistics(self, outputs, batch):
    """Sums over real examples: boxes with IoU >= 0.5, IoU, landmarks inside the box; the same
    for the constant box ("wild" placement only)."""
    mask = batch["_mask"].astype(jnp.float32)
    true = batch["box"]
    out = {}
    if "box" in outputs:
      iou = box_iou(outputs["box"], true)
      inside = points_in_box(batch["landmarks"], outputs["box"]).astype(jnp.float32).mean(-1)
      out.update({"loc_hits": ((iou >= 0.5) * mask).sum(), "loc_iou": (iou * mask).sum(),
                  "loc_landmarks_in_box": (inside * mask).sum()})
    if self.placement == "wild":
      const = jnp.broadcast_to(jnp.asarray(self.constant_box()), true.shape)
      iou = box_iou(const, true)
      out.update({"const_hits": ((iou >= 0.5) * mask).sum(), "const_iou": (iou * mask).sum()})
    return out

  def summarize(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    count = max(float(totals["count"]), 1.0)
    accuracy = np.asarray(totals["correct"], np.float64) / count
    positive_rate = np.asarray(totals["positives"], np.float64) / count
    majority = np.maximum(positive_rate, 1 - positive_rate)  # best constant guess on this split
    out = {"mean_accuracy": float(accuracy.mean()),
           "majority_baseline": float(majority.mean()),
           "loss": float(totals["bce"]) / count / len(self.attribute_names),
           "examples": float(totals["count"])}
    rendered = self._rendered_indices()
    if rendered:
      out["mean_accuracy_rendered"] = float(accuracy[rendered].mean())
      out["majority_baseline_rendered"] = float(majority[rendered].mean())
    if "lnet_correct" in totals:
      lnet_accuracy = np.asarray(totals["lnet_correct"], np.float64) / count
      out["lnet_mean_accuracy"] = float(lnet_accuracy.mean())
    if "loc_hits" in totals:
      out["localization_accuracy"] = float(totals["loc_hits"]) / count
      out["localization_mean_iou"] = float(totals["loc_iou"]) / count
      out["landmarks_in_box"] = float(totals["loc_landmarks_in_box"]) / count
    if "const_hits" in totals:
      out["constant_box_localization_accuracy"] = float(totals["const_hits"]) / count
      out["constant_box_mean_iou"] = float(totals["const_iou"]) / count
    for name, value in zip(self.attribute_names, accuracy):
      out[f"accuracy/{name}"] = float(value)
    return out

  def _rendered_indices(self) -> list[int]:
    """Attributes the sample renderer draws; real CelebA has no such notion."""
    if not self.config.data.get("make_samples", False):
      return []
    from hcjax.data.samples import celeba as samples  # pylint: disable=g-import-not-at-top
    return [self.attribute_names.index(n) for n in samples.RENDERED_ATTRIBUTES]

  def predict(self, outputs):
    if isinstance(outputs, dict):
      return {"probabilities": jax.nn.sigmoid(outputs["logits"].astype(jnp.float32)),
              "box": outputs["box"]}
    return jax.nn.sigmoid(outputs.astype(jnp.float32))

  def export_metadata(self) -> dict[str, Any]:
    if self.with_boxes:
      what = ("a face placed at a random size and position (placement 'wild')"
              if self.placement == "wild" else
              f"the centre {self.config.input.get('crop', 178)}x"
              f"{self.config.input.get('crop', 178)} crop of a 178x218 aligned face, resized")
      meta = {"task": "face_attributes", "model": self.model_name,
              "attribute_names": self.attribute_names,
              "input": f"uint8 RGB [B, {self.image_size}, {self.image_size}, 3]: {what}"}
      if self.model_name == "lnets_anet":
        meta["outputs"] = ("{'probabilities': sigmoid [B, 40], 'box': [B, 4] face box "
                           "(x0, y0, x1, y1) in input pixel edges, from LNet's response map}")
      else:
        meta["outputs"] = "sigmoid probabilities [B, 40]"
      return meta
    return {"task": "face_attributes", "outputs": "sigmoid probabilities [B, 40]",
            "attribute_names": self.attribute_names,
            "input": f"uint8 RGB [B, {self.image_size}, {self.image_size}, 3]: the centre "
                     f"{self.config.input.get('crop', 178)}x{self.config.input.get('crop', 178)} "
                     f"crop of a 178x218 aligned face, resized"}

  def visualize(self, batch, predictions) -> np.ndarray:
    from hcjax.observe import image_grid  # pylint: disable=g-import-not-at-top
    n = min(12, len(batch["image"]))
    images = np.asarray(batch["image"][:n], np.uint8)
    if isinstance(predictions, dict):  # LNets+ANet: the true box green, LNet's box yellow.
      scale = max(1, -(-128 // images.shape[1]))  # at least 128 px, so that boxes show
      images = np.stack([draw_boxes(images[i], [
          (np.asarray(batch["box"][i]), (40, 200, 40)),
          (np.asarray(predictions["box"][i]), (255, 220, 0))], scale=scale) for i in range(n)])
      predictions = predictions["probabilities"]
    captions, colors = [], []
    shown = [self.attribute_names.index(a) for a in (
        "Male", "Smiling", "Eyeglasses", "Blond_Hair", "Black_Hair", "Wearing_Hat", "Bald")]
    for i in range(n):
      lines, line_colors = [], []
      for a in shown:
        p = float(predictions[i, a])
        truth = bool(batch["attributes"][i, a])
        lines.append(f"{self.attribute_names[a][:11]:<11} {p:.2f} {'T' if truth else 'F'}")
        line_colors.append((40, 160, 40) if (p > 0.5) == truth else (200, 30, 30))
      captions.append("\n".join(lines))
      colors.append(line_colors)
    return image_grid(images, captions, cols=min(6, n), caption_colors=colors)


def draw_boxes(image: np.ndarray, boxes, scale: int = 1) -> np.ndarray:
  """uint8 [H, W, 3], enlarged `scale` x (nearest), with 1-pixel rectangles
  [(box (x0, y0, x1, y1) in the input's pixel edges, RGB), ...]."""
  from PIL import ImageDraw  # pylint: disable=g-import-not-at-top
  image = np.asarray(image, np.uint8)
  if scale > 1:
    image = image.repeat(scale, axis=0).repeat(scale, axis=1)
  picture = Image.fromarray(image)
  draw = ImageDraw.Draw(picture)
  h, w = image.shape[:2]
  for box, colour in boxes:
    x0, y0, x1, y1 = (float(v) * scale for v in box)
    x0, x1 = min(max(x0, 0), w - 1), min(max(x1 - 1, 0), w - 1)
    y0, y1 = min(max(y0, 0), h - 1), min(max(y1 - 1, 0), h - 1)
    draw.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=tuple(colour))
  return np.asarray(picture)

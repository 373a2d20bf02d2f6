"""Face anti-spoofing on CelebA-Spoof with AENet: live/spoof plus semantic and geometric heads.

config.data: dir (TFRecords of `hcjax convert celeba_spoof`), samples_dir / make_samples /
num_sample_images / sample_seed / shards (build the embedded sample set when `dir` holds no data),
eval_split (a split name of the conversion, "test" for the intra-dataset benchmark).
config.input: image_size (square model input), margin (context around the detector's face box
per side, as a fraction of its size, like the converter's), flip (random mirror), jitter (random
scale and shift of the face crop, as a fraction of its size; train only).
config.model: depth, width, stem, dtype (the ResNet), semantic / geometric (which heads exist:
the ablations of configs/aenet.py), geometry_stage, map_size.
config.loss: the weight of each term: live_spoof, attributes, spoof_type, illumination,
environment, depth, reflection; geometric_maps ("auto" | "on" | "off", below).
config.metrics: score_bins, logit_range, threshold (below).

The image: the stored face crop is cut down to the face box grown by `margin` (clamped to the
stored crop; with the converter's margin it is that crop) and resized to image_size, as the
authors' client.py does (no aspect ratio kept). The model sees RGB in [0, 1].

Loss (mean over the batch): CE(live/spoof) + attributes · BCE(40, mean over attributes) +
spoof_type · CE(11) + illumination · CE(5) + environment · CE(3) + depth · MSE(depth) +
reflection · MSE(reflection). Defaults 1, 1, 0.1, 0.01, 0.01, 0.1, 0.1 (REFERENCES.md;
environment, absent from the released model, gets illumination's weight). Geometric targets
(map_size x map_size, in [0, 1]): a live image's depth is its depth map, a spoof image's is zero;
a spoof image's reflection is its reflection map, a live image's is zero. A live image without a
depth map (or a spoof image without a reflection map) has no target: its term has weight 0 and
each MSE is a mean over the examples that have one. With geometric_maps="auto" a map kind that
the train split of the conversion does not hold at all (dataset_info.json counts 0) switches
that loss off, with one logged warning: zero targets on one class only would teach nothing;
"on" forces both losses on, "off" both off.

Eval metrics (summed over batches as the trainer does): the ranking metrics of
hcjax.metrics.spoofing (auc, eer, tpr_at_fpr_*, apcer / bpcer / acer at `threshold` and at the
EER) come from per-class histograms of the live/spoof logit margin l_spoof - l_live (a monotone
function of the spoof probability, so every ranking metric is the same) in score_bins equal bins
over [-logit_range, logit_range], ends open. Each example's score is its bin's centre: exact up
to ties inside one bin (1/512 logit wide by default, i.e. a spoof probability p known to
p(1-p)/1024), and exact for the threshold 0.5, which is a bin edge. Also accuracy (live/spoof at
0.5), spoof_type / illumination / environment accuracy, attribute_mean_accuracy, the losses.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from hcjax.data import CorruptRecordError, ImageDecodeError, MissingDataError, transforms
from hcjax.data.converters import celeba_spoof as cs
from hcjax.data.pipeline import INFO_FILE
from hcjax.metrics import spoofing
from hcjax.tasks.base import Task, TaskConfigError

LOSS_DEFAULTS = {"live_spoof": 1.0, "attributes": 1.0, "spoof_type": 0.1, "illumination": 0.01,
                 "environment": 0.01, "depth": 0.1, "reflection": 0.1}
CLASS_HEADS = {"spoof_type": cs.SPOOF_TYPE, "illumination": cs.ILLUMINATION,
               "environment": cs.ENVIRONMENT}  # single-label heads -> their label index
CLASS_NAMES = {"spoof_type": cs.SPOOF_TYPE_NAMES, "illumination": cs.ILLUMINATION_NAMES,
               "environment": cs.ENVIRONMENT_NAMES}
MAP_CHANNELS = {"depth": 1, "reflection": 3}
# Which class carries each map's real target (the other class's target is zero).
MAP_CLASS = {"depth": 0, "reflection": 1}
GEOMETRIC_MAPS = ("auto", "on", "off")
DTYPES = ("float32", "bfloat16", "float16")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")
VISUALIZED = 12
PICTURE_MIN_SIDE = 96
GOOD, BAD = (40, 160, 40), (200, 30, 30)


def _resize(array: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
  """[h, w, C] -> [size, size, C] through PIL (anti-aliased when shrinking); dtype kept."""
  if array.dtype == np.uint8 and array.shape[2] == 3:
    return np.asarray(Image.fromarray(array).resize((size, size), resample))
  planes = [np.asarray(Image.fromarray(np.ascontiguousarray(array[:, :, c], np.float32))
                       .resize((size, size), resample)) for c in range(array.shape[2])]
  return np.stack(planes, axis=-1).astype(array.dtype)


def _record_id(features: Mapping[str, Any]) -> str:
  value = features.get("id", [b"?"])
  value = value[0] if len(value) else b"?"
  return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class AntiSpoofingTask(Task):

  def __init__(self, config):
    super().__init__(config)
    inp = config.input
    self.image_size = int(inp.image_size)
    if self.image_size < 16:
      raise TaskConfigError(f"config.input.image_size must be >= 16, got {self.image_size}")
    self.margin = float(inp.get("margin", cs.DEFAULT_MARGIN))
    if not math.isfinite(self.margin) or self.margin < 0:
      raise TaskConfigError(f"config.input.margin must be a fraction >= 0, got {inp.margin!r}")
    self.jitter = float(inp.get("jitter", 0.0))
    if not 0 <= self.jitter < 0.5:
      raise TaskConfigError(f"config.input.jitter must be in [0, 0.5), got {inp.jitter!r}")
    self.flip = bool(inp.get("flip", True))

    from hcjax.models import aenet, resnet  # pylint: disable=g-import-not-at-top
    m = config.model
    if m.get("depth", 18) not in resnet.STAGES:
      raise TaskConfigError(f"config.model.depth must be one of {sorted(resnet.STAGES)}, got "
                            f"{m.depth!r}")
    if m.get("stem", "imagenet") not in resnet.STEMS:
      raise TaskConfigError(f"config.model.stem must be one of {resnet.STEMS}, got {m.stem!r}")
    if m.get("dtype", "float32") not in DTYPES:
      raise TaskConfigError(f"config.model.dtype must be one of {DTYPES}, got {m.dtype!r}")
    if int(m.get("width", 64)) < 1:
      raise TaskConfigError(f"config.model.width must be >= 1, got {m.width!r}")
    if m.get("geometry_stage", "stage4") not in aenet.FEATURE_STAGES:
      raise TaskConfigError(f"config.model.geometry_stage must be one of "
                            f"{aenet.FEATURE_STAGES}, got {m.geometry_stage!r}")
    self.map_size = int(m.get("map_size", 14))
    if self.map_size < 1:
      raise TaskConfigError(f"config.model.map_size must be >= 1, got {self.map_size}")
    self.semantic = bool(m.get("semantic", True))
    self.geometric = bool(m.get("geometric", True))

    loss = config.get("loss", {})
    unknown = sorted(set(loss.keys()) - set(LOSS_DEFAULTS) - {"geometric_maps"})
    if unknown:
      raise TaskConfigError(f"config.loss.{unknown[0]} is not a loss term; the terms are "
                            f"{', '.join(LOSS_DEFAULTS)} (and geometric_maps)")
    self.weights = {k: float(loss.get(k, v)) for k, v in LOSS_DEFAULTS.items()}
    for k, v in self.weights.items():
      if not math.isfinite(v) or v < 0:
        raise TaskConfigError(f"config.loss.{k} must be a weight >= 0, got {v}")
    self.geometric_maps = loss.get("geometric_maps", "auto")
    if self.geometric_maps not in GEOMETRIC_MAPS:
      raise TaskConfigError(f"config.loss.geometric_maps must be one of {GEOMETRIC_MAPS}, got "
                            f"{self.geometric_maps!r}")

    metrics = config.get("metrics", {})
    self.score_bins = int(metrics.get("score_bins", 2 ** 14))
    if self.score_bins < 2 or self.score_bins % 2:
      raise TaskConfigError(f"config.metrics.score_bins must be even and >= 2 (0.5 must be a "
                            f"bin edge), got {self.score_bins}")
    self.logit_range = float(metrics.get("logit_range", 16.0))
    if not math.isfinite(self.logit_range) or self.logit_range <= 0:
      raise TaskConfigError(f"config.metrics.logit_range must be > 0, got {self.logit_range}")
    self.threshold = float(metrics.get("threshold", spoofing.DEFAULT_THRESHOLD))
    if not 0 < self.threshold < 1:
      raise TaskConfigError(f"config.metrics.threshold must be in (0, 1), got {self.threshold}")
    self._map_losses: dict[str, bool] | None = None

  # --- data -----------------------------------------------------------------------------------

  def prepare_data(self) -> None:
    data = self.config.data
    if not os.path.exists(os.path.join(data.dir, INFO_FILE)):
      if not data.get("make_samples", False):
        raise MissingDataError(
            f"config.data.dir={data.dir!r} holds no converted CelebA-Spoof (no {INFO_FILE}); run "
            f"`hcjax convert celeba_spoof --src CelebA_Spoof --out {data.dir}` "
            f"(see data/celeba_spoof/README.md)")
      samples = importlib.import_module("hcjax.data.samples.celeba_spoof")
      if not os.path.isdir(os.path.join(data.samples_dir, cs.DEFAULT_PROTOCOL)):
        logging.info("writing the CelebA-Spoof-format sample set to %s", data.samples_dir)
        samples.write_sample_set(data.samples_dir, num_images=int(data.num_sample_images),
                                 seed=int(data.get("sample_seed", 0)), progress=False)
      logging.info("converting %s to TFRecords in %s", data.samples_dir, data.dir)
      cs.convert(data.samples_dir, data.dir, shards=int(data.get("shards", 4)), progress=False)
    self.map_losses()  # the warning about missing maps, once, before training starts

  def dataset_info(self) -> dict[str, Any]:
    path = os.path.join(self.config.data.dir, INFO_FILE)
    if not os.path.exists(path):
      raise MissingDataError(
          f"no {path}: config.loss.geometric_maps='auto' reads which maps the data holds from "
          f"the converted data (set it to 'on' or 'off' to decide without data)")
    with open(path) as f:
      return json.load(f)

  def map_losses(self) -> dict[str, bool]:
    """{"depth": on?, "reflection": on?}: the model's heads, the config, and the data's maps."""
    if self._map_losses is None:
      if not self.geometric or self.geometric_maps == "off":
        self._map_losses = {k: False for k in MAP_CHANNELS}
      elif self.geometric_maps == "on":
        self._map_losses = {k: True for k in MAP_CHANNELS}
      else:
        split = self.dataset_info().get("splits", {}).get("train", {})
        self._map_losses = {}
        for kind in MAP_CHANNELS:
          count = int(split.get(f"num_{kind}", 0))
          self._map_losses[kind] = count > 0
          if not count:
            logging.warning(
                "the train split of %s holds no %s maps: the %s loss is off (AENet's geometric "
                "supervision needs <name>_%s.png maps beside the images; see "
                "data/celeba_spoof/README.md)", self.config.data.dir, kind, kind, kind)
    return self._map_losses

  def data_pattern(self, split: str) -> str:
    name = self.config.data.get("eval_split", "test") if split == "eval" else "train"
    if not _SPLIT_NAME.match(str(name)):
      raise TaskConfigError(f"config.data.eval_split must be a split name (letters, digits, _), "
                            f"got {name!r}")
    return os.path.join(self.config.data.dir, f"{name}-*.tfrecord")

  def face_region(self, face: tuple[int, int, int, int], width: int, height: int,
                  margin: float | None = None) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the face box (x, y, w, h) grown by margin per side, clamped: the
    converter's crop rule, so training and `hcjax spoof` cut faces alike."""
    margin = self.margin if margin is None else margin
    x0, y0, x1, y1 = cs.crop_box(tuple(int(v) for v in face), width, height, margin)
    if x1 <= x0 or y1 <= y0:
      raise ImageDecodeError(f"face box {tuple(face)} lies outside the {width}x{height} image")
    return x0, y0, x1, y1

  def model_image(self, image: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """uint8 [H, W, 3] and a region (x0, y0, x1, y1) -> the uint8 [S, S, 3] model input."""
    x0, y0, x1, y1 = region
    return _resize(np.ascontiguousarray(image[y0:y1, x0:x1]), self.image_size,
                   Image.Resampling.BILINEAR)

  def _jitter(self, region, width: int, height: int, rng: np.random.Generator):
    """The region scaled and shifted at random (train only): faces are never framed alike."""
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    s = math.exp(rng.uniform(math.log(1 - self.jitter), math.log(1 + self.jitter)))
    cx = (x0 + x1) / 2 + rng.uniform(-self.jitter, self.jitter) * w
    cy = (y0 + y1) / 2 + rng.uniform(-self.jitter, self.jitter) * h
    nx0 = min(max(0, int(round(cx - s * w / 2))), width - 1)
    ny0 = min(max(0, int(round(cy - s * h / 2))), height - 1)
    nx1 = max(nx0 + 1, min(width, int(round(cx + s * w / 2))))
    ny1 = max(ny0 + 1, min(height, int(round(cy + s * h / 2))))
    return nx0, ny0, nx1, ny1

  def preprocess(self, features: dict[str, Any], rng: np.random.Generator, *,
                 train: bool) -> dict[str, np.ndarray]:
    labels = np.asarray(features.get("labels", []), np.int64).reshape(-1)
    if labels.size != cs.NUM_LABELS:
      raise CorruptRecordError(None, None, f"{_record_id(features)!r}: expected "
                               f"{cs.NUM_LABELS} labels, got {labels.size}")
    image = transforms.decode_image(features["image"][0])
    h, w = image.shape[:2]
    # The detector's face box in the stored crop's pixels.
    box = np.asarray(features["box"], np.float64).reshape(4)
    face = np.asarray(features["face_box"], np.float64).reshape(4)
    face = (int(face[0] - box[0]), int(face[1] - box[1]), int(face[2]), int(face[3]))
    region = self.face_region(face, w, h)
    if train and self.jitter:
      region = self._jitter(region, w, h, rng)
    mirror = bool(train and self.flip and rng.random() < 0.5)
    out = {"image": self.model_image(image, region)}
    live_spoof = int(labels[cs.LIVE_SPOOF])
    for kind, channels in MAP_CHANNELS.items():
      target = np.zeros((self.map_size, self.map_size, channels), np.float32)
      weight = 1.0
      if live_spoof == MAP_CLASS[kind]:  # this class's map is real; the other class's is zero
        weight = 0.0
        if features.get(kind):
          data = transforms.decode_image(features[kind][0], channels=channels)
          if data.shape[:2] != (h, w):
            raise ImageDecodeError(f"{_record_id(features)!r}: {kind} map is {data.shape[1]}x"
                                   f"{data.shape[0]} but its image is {w}x{h}")
          x0, y0, x1, y1 = region
          crop = np.ascontiguousarray(data[y0:y1, x0:x1], np.float32) / 255.0
          target = _resize(crop, self.map_size, Image.Resampling.BOX)
          weight = 1.0
      out[kind] = target
      out[f"{kind}_weight"] = np.float32(weight)
    if mirror:
      for key in ("image", "depth", "reflection"):
        out[key] = np.ascontiguousarray(out[key][:, ::-1])
    out["live_spoof"] = np.int32(live_spoof)
    out["attributes"] = labels[:40].astype(np.int32)
    for name, index in CLASS_HEADS.items():
      out[name] = np.int32(labels[index])
    return out

  # --- model ----------------------------------------------------------------------------------

  def build_model(self):
    from hcjax.models.aenet import AENet  # pylint: disable=g-import-not-at-top
    m = self.config.model
    return AENet(depth=int(m.get("depth", 18)), width=int(m.get("width", 64)),
                 stem=m.get("stem", "imagenet"), semantic=self.semantic,
                 geometric=self.geometric, geometry_stage=m.get("geometry_stage", "stage4"),
                 map_size=self.map_size, dtype=jnp.dtype(m.get("dtype", "float32")))

  def input_spec(self) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((self.image_size, self.image_size, 3), jnp.uint8)

  def model_inputs(self, batch):
    return batch["image"].astype(jnp.float32) / 255.0  # [0, 1], as the released AENet

  # --- objectives and metrics -----------------------------------------------------------------

  def _terms(self, outputs, batch) -> dict[str, jax.Array]:
    """Per-example loss terms [B] (and the map terms' weights), before the λs."""
    f32 = lambda x: x.astype(jnp.float32)
    terms = {"live_spoof": optax.softmax_cross_entropy_with_integer_labels(
        f32(outputs["live_spoof"]), batch["live_spoof"])}
    if self.semantic:
      terms["attributes"] = optax.sigmoid_binary_cross_entropy(
          f32(outputs["attributes"]), f32(batch["attributes"])).mean(-1)
      for name in CLASS_HEADS:
        terms[name] = optax.softmax_cross_entropy_with_integer_labels(
            f32(outputs[name]), batch[name])
    if self.geometric:
      for kind in MAP_CHANNELS:
        terms[kind] = jnp.square(f32(outputs[kind]) - f32(batch[kind])).mean(axis=(1, 2, 3))
    return terms

  def loss(self, outputs, batch):
    terms = self._terms(outputs, batch)
    maps_on = self.map_losses() if self.geometric else {}
    total = jnp.zeros((), jnp.float32)
    aux = {}
    for name, per_example in terms.items():
      if name in MAP_CHANNELS:  # a mean over the examples that have a target
        weight = batch[f"{name}_weight"].astype(jnp.float32)
        value = (per_example * weight).sum() / jnp.maximum(weight.sum(), 1.0)
        aux[f"{name}_mse"] = value  # logged even when switched off
        if not maps_on[name]:
          continue
      else:
        value = per_example.mean()
        aux[f"{name}_loss"] = value
      total = total + self.weights[name] * value
    predicted = jnp.argmax(outputs["live_spoof"], -1)
    aux["accuracy"] = (predicted == batch["live_spoof"]).mean()
    return total, aux

  def score_bin(self, margin: jax.Array) -> jax.Array:
    """Histogram bin of each logit margin l_spoof - l_live; the ends collect what lies beyond."""
    r, n = self.logit_range, self.score_bins
    margin = jnp.nan_to_num(margin.astype(jnp.float32), nan=0.0, posinf=r, neginf=-r)
    index = jnp.floor((margin + r) * (n / (2 * r))).astype(jnp.int32)
    return jnp.clip(index, 0, n - 1)

  def bin_scores(self) -> np.ndarray:
    """float64 [score_bins] spoof probability of each bin's centre."""
    r, n = self.logit_range, self.score_bins
    centres = -r + (np.arange(n, dtype=np.float64) + 0.5) * (2 * r / n)
    return 1.0 / (1.0 + np.exp(-centres))

  def eval_statistics(self, outputs, batch):
    real = batch["_mask"].astype(jnp.float32)
    labels = batch["live_spoof"].astype(jnp.int32)
    logits = outputs["live_spoof"].astype(jnp.float32)
    margin = logits[:, 1] - logits[:, 0]
    hist = jnp.zeros((2, self.score_bins), jnp.float32).at[labels, self.score_bin(margin)].add(real)
    terms = self._terms(outputs, batch)
    stats = {"score_histogram": hist, "examples": real.sum(),
             "correct": (((margin >= 0).astype(jnp.int32) == labels) * real).sum(),
             "live_spoof_loss": (terms["live_spoof"] * real).sum()}
    if self.semantic:
      correct = (outputs["attributes"] > 0) == (batch["attributes"] > 0)
      stats["attributes_correct"] = (correct * real[:, None]).sum(0)
      stats["attributes_loss"] = (terms["attributes"] * real).sum()
      for name in CLASS_HEADS:
        hit = jnp.argmax(outputs[name], -1) == batch[name]
        stats[f"{name}_correct"] = (hit * real).sum()
        stats[f"{name}_loss"] = (terms[name] * real).sum()
    if self.geometric:
      for kind in MAP_CHANNELS:
        weight = batch[f"{kind}_weight"].astype(jnp.float32) * real
        stats[f"{kind}_se"] = (terms[kind] * weight).sum()
        stats[f"{kind}_count"] = weight.sum()
    return stats

  def summarize(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    count = max(float(totals["examples"]), 1.0)
    hist = np.rint(np.asarray(totals["score_histogram"], np.float64)).astype(np.int64)
    num_live, num_spoof = int(hist[0].sum()), int(hist[1].sum())
    out = {"examples": float(totals["examples"]), "num_live": float(num_live),
           "num_spoof": float(num_spoof), "accuracy": float(totals["correct"]) / count,
           "loss": float(totals["live_spoof_loss"]) / count}
    if num_live and num_spoof:
      centres = self.bin_scores()
      scores = np.concatenate([np.repeat(centres, hist[0]), np.repeat(centres, hist[1])])
      labels = np.concatenate([np.zeros(num_live, np.int64), np.ones(num_spoof, np.int64)])
      out.update(spoofing.summary(scores, labels, threshold=self.threshold))
    else:
      logging.warning("the eval split holds %d live and %d spoof examples: no ranking metrics",
                      num_live, num_spoof)
    if "attributes_correct" in totals:
      out["attribute_mean_accuracy"] = float(np.mean(totals["attributes_correct"])) / count
      out["attributes_loss"] = float(totals["attributes_loss"]) / count
      for name in CLASS_HEADS:
        out[f"{name}_accuracy"] = float(totals[f"{name}_correct"]) / count
        out[f"{name}_loss"] = float(totals[f"{name}_loss"]) / count
    for kind in MAP_CHANNELS:
      if f"{kind}_se" in totals and float(totals[f"{kind}_count"]) > 0:
        out[f"{kind}_mse"] = float(totals[f"{kind}_se"]) / float(totals[f"{kind}_count"])
    return out

  def predict(self, outputs):
    f32 = lambda x: x.astype(jnp.float32)
    live_spoof = jax.nn.softmax(f32(outputs["live_spoof"]), -1)
    out = {"spoof": live_spoof[:, 1], "live_spoof": live_spoof}
    if "attributes" in outputs:
      out["attributes"] = jax.nn.sigmoid(f32(outputs["attributes"]))
    for name in CLASS_HEADS:
      if name in outputs:
        out[name] = jax.nn.softmax(f32(outputs[name]), -1)
    for kind in MAP_CHANNELS:
      if kind in outputs:
        out[kind] = f32(outputs[kind])
    return out

  def export_metadata(self) -> dict[str, Any]:
    s, m = self.image_size, self.map_size
    outputs = {"spoof": "[B] spoof probability", "live_spoof": "[B, 2] softmax (live, spoof)"}
    if self.semantic:
      outputs["attributes"] = "[B, 40] sigmoid probabilities (attribute_names)"
      for name in CLASS_HEADS:
        outputs[name] = f"[B, {len(CLASS_NAMES[name])}] softmax ({name}_names)"
    if self.geometric:
      outputs["depth"] = f"[B, {m}, {m}, 1] in [0, 1]"
      outputs["reflection"] = f"[B, {m}, {m}, 3] in [0, 1]"
    return {"task": "anti_spoofing", "outputs": outputs,
            "attribute_names": list(cs.ATTRIBUTE_NAMES),
            **{f"{name}_names": list(v) for name, v in CLASS_NAMES.items()},
            "margin": self.margin, "threshold": self.threshold,
            "input": f"uint8 RGB [B, {s}, {s}, 3]: the detector's face box grown by "
                     f"{self.margin} of its size per side (clamped to the image), resized to "
                     f"{s}x{s} without keeping the aspect ratio"}

  # --- pictures -------------------------------------------------------------------------------

  def visualize(self, batch, predictions) -> np.ndarray | None:
    """Faces captioned with the spoof probability (green right, red wrong at the threshold) and
    the predicted spoof type, beside the predicted depth map (and the reflection map, when its
    loss is on) when the model has geometric heads."""
    from hcjax.observe import image_grid  # pylint: disable=g-import-not-at-top
    real = np.flatnonzero(np.asarray(batch.get("_mask", np.ones(len(batch["image"])))) > 0)
    if not len(real):
      return None
    s = self.image_size
    zoom = max(1, -(-PICTURE_MIN_SIDE // s))
    shown_maps = [k for k in MAP_CHANNELS if k in predictions
                  and (k == "depth" or (self._map_losses or {}).get(k, True))]
    cells, captions, colors = [], [], []
    for i in real[:VISUALIZED]:
      parts = [np.asarray(batch["image"][i], np.uint8)]
      for kind in shown_maps:
        pred = np.asarray(predictions[kind][i], np.float32)
        pred = np.broadcast_to(pred, pred.shape[:2] + (3,))
        rep = -(-s // pred.shape[0])
        pred = np.repeat(np.repeat(pred, rep, 0), rep, 1)[:s, :s]
        parts.append(np.clip(np.rint(pred * 255), 0, 255).astype(np.uint8))
      cell = np.concatenate(parts, 1)
      cells.append(np.repeat(np.repeat(cell, zoom, 0), zoom, 1))
      label = int(batch["live_spoof"][i])
      p = float(predictions["spoof"][i])
      lines = [f"spoof {p:.2f}  truth {cs.LIVE_SPOOF_NAMES[label]}"]
      line_colors = [GOOD if (p >= self.threshold) == (label == 1) else BAD]
      if "spoof_type" in predictions:
        k, truth = int(np.argmax(predictions["spoof_type"][i])), int(batch["spoof_type"][i])
        lines.append(f"type {cs.SPOOF_TYPE_NAMES[k]} (truth {cs.SPOOF_TYPE_NAMES[truth]})")
        line_colors.append(GOOD if k == truth else BAD)
      captions.append("\n".join(lines))
      colors.append(line_colors)
    return image_grid(np.stack(cells), captions, cols=min(4, len(cells)), caption_colors=colors)

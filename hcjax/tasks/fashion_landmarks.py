"""Fashion landmark detection with the Deep Fashion Alignment cascade (hcjax.models.
fashion_alignment) on DeepFashion's Fashion Landmark Detection benchmark (FLD, the converter's
"landmarks" layout) or on the landmarks of the Category and Attribute benchmark.

The data side is the fashion task's (hcjax.tasks.fashion.FashionTask, subclassed): the same
config.data / config.input keys, the same crop of the garment's bbox and train augmentation
(scale, shift, flip swapping left/right landmarks) as ONE affine map that moves the landmarks,
their visibility and presence with the image; landmarks leaving the crop become truncated.
Labels per example: landmarks float32 [8, 2] (x, y) in [0, 1] of the input (edge coordinates),
visibility int32 [8] (0 visible, 1 occluded, 2 truncated), present int32 [8].

config.data: benchmark ("landmarks" | "category"), dir, samples_dir / make_samples /
num_sample_images / sample_seed / shards (the rendered sample set, built and converted when `dir`
holds no data), eval_split ("validation" | "test" | "train"), mean_shape_baseline (default True:
report the constant mean-shape predictor beside the model).
config.input: size, bbox_margin, min_scale, max_scale, shift, flip (as the fashion task).
config.model: num_stages, num_clusters, width, fc_width, max_offset, pool_window, pool_grid,
dropout_rate, kmeans_max_count, batch_norm, routing, dtype (FashionAlignment's arguments).
config.loss (weights): landmarks, visibility, pseudo_label.

Loss = sum over stages s of [ w_l L2(landmarks_s; visible & present)
                              + w_v CE(visibility_s; present) + w_p CE(pseudo-label_s) ],
L2 the mean over valid landmarks of the squared distance in normalised coordinates; the
pseudo-labels are the model's own online clusters (an example without a valid landmark has
none and is left out). The model gets the true landmarks in training (model_inputs), for its
clustering and its routing; at inference it works from the image alone. The stage errors logged
in training go through the true branch (routing by the true pseudo-label), so they are lower than
the evaluation's, which route by the predicted one.

Eval (every example once, the trainer's sum-only contract): normalised error and detection rate
(radius 10 px of the input frame; hcjax.metrics.fashion) of every stage, so the report shows what
each refinement adds; the final stage also per landmark and with soft routing; visibility
accuracy; pseudo-label accuracy per stage; and the same landmark metrics for the mean shape of
the train split (eval preprocessing, per landmark slot over its valid landmarks), the constant
predictor any model must beat. The mean shape is computed once from the train records (bbox and
landmarks only, no image decoding) and cached in data.dir.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hcjax.data import transforms
from hcjax.data.converters import deepfashion as df
from hcjax.data.pipeline import INFO_FILE
from hcjax.metrics import fashion as fm
from hcjax.tasks.base import Task, TaskConfigError, loss_weights
from hcjax.tasks.fashion import DTYPES, FashionTask

BENCHMARKS = ("landmarks", "category")
MODEL_KWARGS = ("num_stages", "num_clusters", "width", "fc_width", "max_offset", "pool_window",
                "pool_grid", "dropout_rate", "kmeans_max_count", "batch_norm", "routing")
LOSS_WEIGHTS = {"landmarks": 10.0, "visibility": 0.5, "pseudo_label": 0.5}
MEAN_SHAPE_FILE = "mean_shape_{size}_{margin}.json"
VISUALIZED = 6


class FashionLandmarksTask(FashionTask):

  def __init__(self, config):  # pylint: disable=super-init-not-called
    Task.__init__(self, config)  # The fashion task's own checks are for its heads, not these.
    self.benchmark = config.data.get("benchmark", "landmarks")
    if self.benchmark not in BENCHMARKS:
      raise TaskConfigError(f"config.data.benchmark must be one of {BENCHMARKS}, got "
                            f"{self.benchmark!r}")
    self._read_input(config.input)
    m = config.model
    if m.get("dtype", "float32") not in DTYPES:
      raise TaskConfigError(f"config.model.dtype must be one of {DTYPES}, got {m.dtype!r}")
    unknown = sorted(set(m.keys()) - set(MODEL_KWARGS) - {"dtype"})
    if unknown:
      raise TaskConfigError(f"config.model.{unknown[0]} is not an argument of FashionAlignment; "
                            f"it takes {', '.join(MODEL_KWARGS)}, dtype")
    for key, low in (("num_stages", 1), ("num_clusters", 1), ("width", 1), ("fc_width", 1),
                     ("pool_grid", 1)):
      if key in m and int(m[key]) < low:
        raise TaskConfigError(f"config.model.{key} must be >= {low}, got {m[key]}")
    if float(m.get("max_offset", 0.25)) <= 0:
      raise TaskConfigError(f"config.model.max_offset must be > 0, got {m.max_offset}")
    if float(m.get("kmeans_max_count", 0.0)) < 0:
      raise TaskConfigError(f"config.model.kmeans_max_count must be >= 0 (0 = no cap), got "
                            f"{m.kmeans_max_count}")
    self.num_stages = int(m.get("num_stages", 3))
    self.num_clusters = int(m.get("num_clusters", 8))
    self.weights = loss_weights(config.get("loss", {}), LOSS_WEIGHTS)
    self.two_views = False
    self._mean_shape: np.ndarray | None = None

  # --- data -----------------------------------------------------------------------------------

  def prepare_data(self) -> None:
    super().prepare_data()
    self.mean_shape()

  def positive_weights(self) -> np.ndarray:
    """No attributes here (the fashion task's prepare_data asks)."""
    return np.ones(0, np.float32)

  def preprocess(self, features: dict[str, Any], rng: np.random.Generator, *,
                 train: bool) -> dict[str, np.ndarray]:
    ex = df.parse_example(features)
    return self._view(transforms.decode_image(ex["image"]), ex, rng, train)

  def mean_shape(self) -> np.ndarray | None:
    """float32 [8, 2]: each slot's mean over the valid landmarks of the train split (eval view);
    None without converted data or when config.data.mean_shape_baseline is False."""
    if self._mean_shape is not None:
      return self._mean_shape
    data = self.config.data
    if not data.get("mean_shape_baseline", True):
      return None
    path = os.path.join(data.dir, MEAN_SHAPE_FILE.format(size=self.size, margin=self.margin))
    if os.path.exists(path):
      with open(path) as f:
        self._mean_shape = np.asarray(json.load(f)["mean_shape"], np.float32)
      return self._mean_shape
    if not os.path.exists(os.path.join(data.dir, INFO_FILE)):
      return None
    from hcjax.data import pipeline, tfrecord  # pylint: disable=g-import-not-at-top
    total = np.zeros((df.NUM_LANDMARKS, 2), np.float64)
    count = np.zeros(df.NUM_LANDMARKS, np.float64)
    stand_in = np.zeros((1, 1, 3), np.uint8)  # The crop depends on the bbox only.
    for name in pipeline.list_files(self.data_pattern("train")):
      for record in tfrecord.read_records(name):
        view = self._view(stand_in, df.parse_example(tfrecord.decode_example(record)), None,
                          train=False)
        valid = fm.landmark_valid(view["visibility"], view["present"])
        total += np.where(valid[:, None], view["landmarks"], 0.0)
        count += valid
    shape = np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], 0.5)
    self._mean_shape = shape.astype(np.float32)
    try:
      with open(path + ".incomplete", "w") as f:
        json.dump({"mean_shape": self._mean_shape.tolist(), "valid_landmarks": count.tolist()}, f)
      os.replace(path + ".incomplete", path)
    except OSError:
      pass  # a read-only data dir: recomputed next time
    return self._mean_shape

  # --- model ----------------------------------------------------------------------------------

  def build_model(self):
    from hcjax.models import fashion_alignment  # pylint: disable=g-import-not-at-top
    m = self.config.model
    kwargs = {k: m[k] for k in MODEL_KWARGS if k in m}
    return fashion_alignment.FashionAlignment(dtype=jnp.dtype(m.get("dtype", "float32")),
                                              **kwargs)

  def model_inputs(self, batch):
    """{"image"} alone for inference and export; with the true landmarks when the batch has
    them (training needs them; at evaluation they only give the true pseudo-labels)."""
    inputs = {"image": batch["image"].astype(jnp.float32)}
    if all(k in batch for k in ("landmarks", "visibility", "present")):
      inputs["landmarks"] = batch["landmarks"]
      inputs["landmark_valid"] = fm.landmark_valid(batch["visibility"], batch["present"])
    return inputs

  # --- objectives and metrics -----------------------------------------------------------------

  def loss(self, outputs, batch):
    w = self.weights
    aux = {}
    valid = fm.landmark_valid(batch["visibility"], batch["present"])
    n_valid = jnp.maximum(valid.sum(), 1)
    present = batch["present"] > 0
    n_present = jnp.maximum(present.sum(), 1)
    total = jnp.zeros((), jnp.float32)
    stages = outputs["stages"].astype(jnp.float32)                      # [B, S, 8, 2]
    for s in range(stages.shape[1]):
      # Masked targets are replaced, not multiplied by 0: whatever they hold never reaches the
      # loss or its gradient.
      pred = stages[:, s]
      target = jnp.where(valid[..., None], batch["landmarks"], jax.lax.stop_gradient(pred))
      d2 = jnp.sum((pred - target) ** 2, -1)
      l2 = jnp.where(valid, d2, 0).sum() / n_valid
      aux[f"stage{s + 1}_error"] = jnp.where(valid, jnp.sqrt(d2 + 1e-12), 0).sum() / n_valid
      vce = optax.softmax_cross_entropy_with_integer_labels(
          outputs["stage_visibility"][:, s].astype(jnp.float32), batch["visibility"])
      vce = jnp.where(present, vce, 0).sum() / n_present
      total += w["landmarks"] * l2 + w["visibility"] * vce
      aux["visibility_ce"] = aux.get("visibility_ce", 0.0) + vce
      if s == stages.shape[1] - 1:
        aux["landmark_l2"], aux["landmark_error"] = l2, aux[f"stage{s + 1}_error"]
      if "pseudo_labels" in outputs:
        labels = outputs["pseudo_labels"][:, s]
        has = labels >= 0
        logits = outputs["pseudo_logits"][:, s].astype(jnp.float32)
        pce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(has, labels, 0))
        pce = jnp.where(has, pce, 0).sum() / jnp.maximum(has.sum(), 1)
        total += w["pseudo_label"] * pce
        aux["pseudo_label_ce"] = aux.get("pseudo_label_ce", 0.0) + pce
        aux[f"stage{s + 1}_pseudo_accuracy"] = (
            ((jnp.argmax(logits, -1) == labels) & has).sum() / jnp.maximum(has.sum(), 1))
        # Clusters the batch's examples fall in: a collapse to one shows here.
        aux[f"stage{s + 1}_clusters_hit"] = (
            (labels[:, None] == jnp.arange(logits.shape[-1])[None]).any(0).sum())
    return total, aux

  def _landmark_stats(self, landmarks, batch, valid, mask):
    size = float(self.size)
    return fm.landmark_statistics(landmarks.astype(jnp.float32) * size, batch["landmarks"] * size,
                                  valid, jnp.asarray([size, size]), mask=mask)

  def eval_statistics(self, outputs, batch):
    mask = batch["_mask"]
    valid = fm.landmark_valid(batch["visibility"], batch["present"])
    stats = {}
    stages = outputs["stages"]
    for s in range(stages.shape[1]):
      stats.update({f"stage{s + 1}/{k}": v for k, v in self._landmark_stats(
          stages[:, s], batch, valid, mask).items()})
    stats.update({f"soft/{k}": v for k, v in self._landmark_stats(
        outputs["landmarks_soft"], batch, valid, mask).items()})
    shape = self.mean_shape()
    if shape is not None:
      constant = jnp.broadcast_to(jnp.asarray(shape), stages[:, 0].shape)
      stats.update({f"baseline/{k}": v for k, v in self._landmark_stats(
          constant, batch, valid, mask).items()})
    real = mask[:, None] > 0
    present = (batch["present"] > 0) & real
    stats["visibility_correct"] = (
        (jnp.argmax(outputs["visibility"], -1) == batch["visibility"]) & present).sum()
    stats["visibility_count"] = present.sum()
    if "pseudo_labels" in outputs:
      labels = outputs["pseudo_labels"]                                  # [B, S]
      has = (labels >= 0) & real
      hit = (jnp.argmax(outputs["pseudo_logits"], -1) == labels) & has
      stats["pseudo_correct"], stats["pseudo_count"] = hit.sum(0), has.sum(0)
    stats["examples"] = mask.sum()
    return stats

  def summarize(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    group = lambda p: {k[len(p) + 1:]: v for k, v in totals.items() if k.startswith(p + "/")}
    out = {}
    last = f"stage{self.num_stages}"
    lm = fm.landmark_metrics(group(last), df.LANDMARK_NAMES)
    out.update({f"landmark_{k}": v for k, v in lm.items()})
    for s in range(1, self.num_stages + 1):
      m = fm.landmark_metrics(group(f"stage{s}"))
      out[f"stage{s}_normalized_error"] = m["normalized_error"]
      out[f"stage{s}_detection_rate"] = m["detection_rate"]
    for name in ("soft", "baseline"):
      if group(name):
        m = fm.landmark_metrics(group(name))
        out[f"{name}_normalized_error"] = m["normalized_error"]
        out[f"{name}_detection_rate"] = m["detection_rate"]
    count = float(totals["visibility_count"])
    out["visibility_accuracy"] = (float(totals["visibility_correct"]) / count if count
                                  else float("nan"))
    if "pseudo_count" in totals:
      correct = np.asarray(totals["pseudo_correct"], np.float64).reshape(-1)
      counts = np.asarray(totals["pseudo_count"], np.float64).reshape(-1)
      for s, (c, n) in enumerate(zip(correct, counts), start=1):
        out[f"stage{s}_pseudo_accuracy"] = float(c / n) if n else float("nan")
    out["examples"] = float(totals["examples"])
    return out

  def predict(self, outputs):
    return {"landmarks": outputs["landmarks"].astype(jnp.float32),
            "visibility": jax.nn.softmax(outputs["visibility"].astype(jnp.float32), -1),
            "stages": outputs["stages"].astype(jnp.float32),
            "pseudo_labels": jax.nn.softmax(outputs["pseudo_logits"].astype(jnp.float32), -1)}

  def export_metadata(self) -> dict[str, Any]:
    s = self.size
    return {"task": "fashion_landmarks", "benchmark": self.benchmark,
            "landmark_names": list(df.LANDMARK_NAMES), "num_stages": self.num_stages,
            "num_clusters": self.num_clusters,
            "input": f"uint8 RGB [B, {s}, {s}, 3]: the garment's bbox square (margin "
                     f"{self.margin}) resized",
            "outputs": "landmarks [B, 8, 2] (x, y) in [0, 1] of the input (the last stage); "
                       "visibility [B, 8, 3] probabilities (visible, occluded, truncated); "
                       "stages [B, S, 8, 2] every stage's landmarks; pseudo_labels [B, S, K] "
                       "cluster probabilities"}

  # --- pictures -------------------------------------------------------------------------------

  def visualize(self, batch, predictions) -> np.ndarray | None:
    """One row per example, one column per stage: predicted landmarks (dots; crosses when the
    last stage predicts them not visible) and the true ones (rings), captioned with the error."""
    from hcjax.observe import image_grid  # pylint: disable=g-import-not-at-top
    real = np.flatnonzero(np.asarray(batch.get("_mask", np.ones(len(batch["image"])))) > 0)
    if not len(real):
      return None
    zoom = max(1, 128 // self.size)
    cells, captions = [], []
    for i in real[:VISUALIZED]:
      valid = fm.landmark_valid(np.asarray(batch["visibility"][i]), np.asarray(batch["present"][i]))
      visible = np.asarray(predictions["visibility"][i]).argmax(-1) == 0
      truth = np.asarray(batch["landmarks"][i], np.float64)
      image = np.asarray(batch["image"][i], np.uint8)
      if zoom > 1:
        image = np.repeat(np.repeat(image, zoom, 0), zoom, 1)
      for s, stage in enumerate(np.asarray(predictions["stages"][i], np.float64), start=1):
        cells.append(self.draw_landmarks(image, stage, visible, truth=truth, truth_valid=valid))
        err = np.linalg.norm(stage - truth, axis=-1)[valid]
        captions.append(f"stage {s}\nerror {err.mean():.3f}" if err.size else f"stage {s}")
    return image_grid(np.stack(cells), captions, cols=self.num_stages)

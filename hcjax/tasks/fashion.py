"""DeepFashion with FashionNet: category, attributes, landmarks and in-shop retrieval.

config.data: benchmark ("category" | "inshop"), dir (TFRecords of hcjax.data.converters.deepfashion),
samples_dir / make_samples / num_sample_images / sample_seed (build the rendered sample set and
convert it when `dir` holds no data), shards, eval_split (category: "validation" | "test";
inshop: "query").
config.input: size (square network input), bbox_margin (the crop is the bbox's centre square of
side max(w, h) · (1 + 2·margin)), min_scale / max_scale (train: that side times a random factor),
shift (train: random shift of the crop centre, a fraction of the side), flip (train: random
mirror, swapping left/right landmarks, their visibility and presence: FLIP_PAIRS).
Every geometric change is one affine map through hcjax.data.transforms.affine, so landmarks and
the box move with the image. Landmarks that leave the crop become truncated (visibility 2).
Evaluation is deterministic (no jitter, no flip). At test time the model PREDICTS the landmarks
it pools around; ground truth is never fed to the model.
config.model: trunk ("vgg16" | "resnet50"), width, fc_width, embedding_dim, num_categories,
num_attributes, num_items (0 = no ID softmax), pool_window, pool_grid, dropout_rate, batch_norm
(VGG16-BN), dtype.
config.loss (weights): category, attributes, landmarks, visibility, triplet, item; triplet_margin;
max_positive_weight (cap of the attribute positive weights).

Labels per example: category (0-based, -1 none), attributes int32 [A] in {1, 0 unknown, -1},
landmarks float32 [8, 2] (x, y) normalised to [0, 1] of the input (edge coordinates: pixel
centre j is at (j + 0.5) / size), visibility int32 [8] (0 visible, 1 occluded, 2 truncated),
present int32 [8], item_id (inshop, -1 otherwise).

Loss = w_c CE(category) + w_a weighted BCE(attributes) + w_l L2(landmarks; visible & present)
     + w_v CE(visibility; present) [+ w_t batch-hard triplet(item ids) + w_i CE(item ids)].
Attribute BCE: unknown (0) labels count nowhere; each attribute's positives weigh
neg_a / pos_a of the train split (clipped to [1, max_positive_weight]), computed once from the
train records (attribute_balance) and cached in data.dir/attribute_balance.json.
Inshop training: each example gives two augmented views of its image ("image" and "image2"),
so every anchor of a batch has a positive for batch-hard mining without a P x K sampler; the
trainer sees one batch and model_inputs stacks the two views.

Eval (the trainer's sum-only contract, every example once): top3/top5 category accuracy,
attribute top-k recall (hcjax.metrics.fashion), landmark normalised error and detection rate
(radius 10 px of the input frame) and visibility accuracy. In-shop retrieval needs every query
and gallery embedding at once, which a sum of per-batch statistics cannot give exactly; it is
computed by `evaluate_retrieval` (used by `hcjax retrieve --evaluate` and the tests).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hcjax.data import MissingDataError, transforms
from hcjax.data.converters import deepfashion as df
from hcjax.data.pipeline import INFO_FILE
from hcjax.metrics import fashion as fm
from hcjax.tasks.base import Task, TaskConfigError, loss_weights

MEAN_RGB = (124, 116, 104)
BENCHMARKS = ("category", "inshop")
EVAL_SPLITS = {"category": ("validation", "test", "train"), "inshop": ("query", "gallery", "train"),
               "landmarks": ("validation", "test", "train")}
MODEL_KWARGS = ("trunk", "width", "fc_width", "embedding_dim", "num_items", "pool_window",
                "pool_grid", "dropout_rate", "batch_norm")
LOSS_WEIGHTS = {"category": 1.0, "attributes": 1.0, "landmarks": 10.0, "visibility": 0.5,
                "triplet": 1.0, "item": 0.0}
DTYPES = ("float32", "bfloat16", "float16")
BALANCE_FILE = "attribute_balance.json"
VISUALIZED = 8
LANDMARK_COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230))


def attribute_balance(pattern: str) -> dict[str, list[int]]:
  """{"positives": [A], "negatives": [A], "examples": N} over the records of `pattern`."""
  from hcjax.data import pipeline, tfrecord  # pylint: disable=g-import-not-at-top
  pos = neg = None
  n = 0
  for path in pipeline.list_files(pattern):
    for record in tfrecord.read_records(path):
      features = tfrecord.decode_example(record)
      if "attributes" not in features:
        continue
      values = np.frombuffer(features["attributes"][0], np.int8)
      if pos is None:
        pos, neg = np.zeros(values.size, np.int64), np.zeros(values.size, np.int64)
      pos += values == 1
      neg += values == -1
      n += 1
  if pos is None:
    return {"positives": [], "negatives": [], "examples": 0}
  return {"positives": pos.tolist(), "negatives": neg.tolist(), "examples": n}


def positive_weights(balance: Mapping[str, Any], num_attributes: int,
                     max_weight: float) -> np.ndarray:
  """float32 [A]: neg / pos per attribute, clipped to [1, max_weight] (1 without data)."""
  pos = np.asarray(balance.get("positives", []), np.float64)
  neg = np.asarray(balance.get("negatives", []), np.float64)
  if pos.size != num_attributes:
    return np.ones(num_attributes, np.float32)
  w = np.where(pos > 0, neg / np.maximum(pos, 1), max_weight)
  return np.clip(w, 1.0, max_weight).astype(np.float32)


def weighted_bce(logits, labels, pos_weight):
  """Mean over known labels (labels in {1, -1}; 0 unknown ignored) of the BCE, positives
  weighted by pos_weight [A]. Returns (loss, number of known labels)."""
  logits = logits.astype(jnp.float32)
  known = labels != 0
  target = (labels == 1).astype(jnp.float32)
  weight = jnp.where(labels == 1, pos_weight[None, :], 1.0) * known
  bce = optax.sigmoid_binary_cross_entropy(logits, target)
  count = known.sum()
  return (bce * weight).sum() / jnp.maximum(count, 1), count


def batch_hard_triplet(embeddings, ids, margin: float, valid=None):
  """Batch-hard triplet loss (Hermans et al. 2017) on L2 distances.

  For each anchor with an id >= 0 (and valid): the farthest same-id example and the nearest
  other-id example; loss = mean over anchors having both of relu(margin + d_pos - d_neg).
  Returns (loss, number of anchors used, fraction of active triplets).
  """
  e = embeddings.astype(jnp.float32)
  sq = jnp.sum(e * e, -1)
  d2 = sq[:, None] + sq[None, :] - 2 * e @ e.T
  d = jnp.sqrt(jnp.maximum(d2, 1e-12))
  n = e.shape[0]
  ok = ids >= 0
  if valid is not None:
    ok = ok & (valid > 0)
  pair = ok[:, None] & ok[None, :]
  same = (ids[:, None] == ids[None, :]) & pair & ~jnp.eye(n, dtype=bool)
  diff = (ids[:, None] != ids[None, :]) & pair
  hardest_pos = jnp.max(jnp.where(same, d, -jnp.inf), axis=1)
  hardest_neg = jnp.min(jnp.where(diff, d, jnp.inf), axis=1)
  use = same.any(1) & diff.any(1)
  per = jnp.where(use, jax.nn.relu(margin + hardest_pos - hardest_neg), 0.0)
  count = use.sum()
  active = jnp.where(use, per > 0, False).sum() / jnp.maximum(count, 1)
  return per.sum() / jnp.maximum(count, 1), count, active


def crop_matrix(bbox, size: int, margin: float, scale: float = 1.0,
                shift: tuple[float, float] = (0.0, 0.0), flip: bool = False) -> np.ndarray:
  """Source edge coordinates -> the [size, size] input: the bbox's centre square of side
  max(w, h)·(1 + 2·margin)·scale, its centre shifted by `shift`·side, mirrored when `flip`.

  bbox is x1 y1 x2 y2 of DeepFashion (first and last covered pixel), so its edge extent is
  [x1, x2 + 1] x [y1, y2 + 1].
  """
  x1, y1, x2, y2 = (float(v) for v in bbox)
  w, h = max(x2 + 1 - x1, 1.0), max(y2 + 1 - y1, 1.0)
  side = max(w, h) * (1 + 2 * margin) * scale
  cx = (x1 + x2 + 1) / 2 + shift[0] * side
  cy = (y1 + y2 + 1) / 2 + shift[1] * side
  m = transforms.scale_matrix(size / side, size / side) @ transforms.translation_matrix(
      -(cx - side / 2), -(cy - side / 2))
  if flip:
    m = np.array([[-1, 0, size], [0, 1, 0], [0, 0, 1]], np.float64) @ m
  return m


class FashionTask(Task):

  def __init__(self, config):
    super().__init__(config)
    data = config.data
    self.benchmark = data.get("benchmark", "category")
    if self.benchmark not in BENCHMARKS:
      raise TaskConfigError(f"config.data.benchmark must be one of {BENCHMARKS}, got "
                            f"{self.benchmark!r}")
    inp = config.input
    self._read_input(inp)
    m = config.model
    if m.get("trunk", "vgg16") not in ("vgg16", "resnet50"):
      raise TaskConfigError(f"config.model.trunk must be 'vgg16' or 'resnet50', got {m.trunk!r}")
    if m.get("dtype", "float32") not in DTYPES:
      raise TaskConfigError(f"config.model.dtype must be one of {DTYPES}, got {m.dtype!r}")
    unknown = sorted(set(m.keys()) - set(MODEL_KWARGS)
                     - {"dtype", "num_categories", "num_attributes"})
    if unknown:
      raise TaskConfigError(f"config.model.{unknown[0]} is not an argument of FashionNet; it "
                            f"takes {', '.join(MODEL_KWARGS)}, num_categories, num_attributes")
    self.num_categories = int(m.num_categories)
    self.num_attributes = int(m.num_attributes)
    self.num_items = int(m.get("num_items", 0))
    loss = config.get("loss", {})
    self.weights = loss_weights(loss, LOSS_WEIGHTS, ("triplet_margin", "max_positive_weight"))
    if self.weights["item"] and not self.num_items:
      raise TaskConfigError("config.loss.item > 0 needs config.model.num_items > 0")
    self.triplet_margin = float(loss.get("triplet_margin", 0.2))
    self.max_positive_weight = float(loss.get("max_positive_weight", 20.0))
    self.two_views = self.benchmark == "inshop" and bool(inp.get("two_views", True))
    self._pos_weight: np.ndarray | None = None

  def _read_input(self, inp) -> None:
    """config.input -> the crop and augmentation settings (shared by tasks built on this one)."""
    self.size = int(inp.size)
    if self.size < 32:
      raise TaskConfigError(f"config.input.size must be >= 32, got {self.size}")
    self.margin = float(inp.get("bbox_margin", 0.1))
    self.min_scale = float(inp.get("min_scale", 1.0))
    self.max_scale = float(inp.get("max_scale", 1.0))
    if not 0 < self.min_scale <= self.max_scale:
      raise TaskConfigError(f"config.input needs 0 < min_scale <= max_scale, got "
                            f"{self.min_scale} and {self.max_scale}")
    self.shift = float(inp.get("shift", 0.0))
    self.flip = bool(inp.get("flip", True))

  # --- data -----------------------------------------------------------------------------------

  @property
  def samples_src(self) -> str:
    return os.path.join(self.config.data.samples_dir, self.benchmark)

  def prepare_data(self) -> None:
    data = self.config.data
    if not os.path.exists(os.path.join(data.dir, INFO_FILE)):
      if not data.get("make_samples", False):
        raise MissingDataError(
            f"config.data.dir={data.dir!r} holds no converted DeepFashion (no {INFO_FILE}); run "
            f"`hcjax convert deepfashion --benchmark {self.benchmark} --src <DeepFashion "
            f"folder> --out {data.dir}` (see data/deepfashion/README.md)")
      from hcjax.data.samples import deepfashion as samples  # pylint: disable=g-import-not-at-top
      if not os.path.isdir(os.path.join(self.samples_src, "Eval")):
        logging.info("writing the DeepFashion-format sample set to %s", data.samples_dir)
        samples.write_sample_set(data.samples_dir, num_images=int(data.num_sample_images),
                                 seed=int(data.get("sample_seed", 0)), progress=False,
                                 benchmark=self.benchmark)
      logging.info("converting %s to TFRecords in %s", self.samples_src, data.dir)
      df.convert(self.samples_src, data.dir, benchmark=self.benchmark,
                 shards=int(data.get("shards", 4)), progress=False)
    self.positive_weights()

  def _info(self) -> dict[str, Any]:
    path = os.path.join(self.config.data.dir, INFO_FILE)
    if not os.path.exists(path):
      return {}
    with open(path) as f:
      return json.load(f)

  def positive_weights(self) -> np.ndarray:
    """float32 [A] attribute positive weights from the train split (cached in data.dir)."""
    if self._pos_weight is not None:
      return self._pos_weight
    if self.benchmark != "category" or not self.weights["attributes"]:
      self._pos_weight = np.ones(self.num_attributes, np.float32)
      return self._pos_weight
    path = os.path.join(self.config.data.dir, BALANCE_FILE)
    balance = None
    if os.path.exists(path):
      with open(path) as f:
        balance = json.load(f)
    elif os.path.exists(os.path.join(self.config.data.dir, INFO_FILE)):
      balance = attribute_balance(self.data_pattern("train"))
      try:
        with open(path + ".incomplete", "w") as f:
          json.dump(balance, f)
        os.replace(path + ".incomplete", path)
      except OSError:
        pass  # a read-only data dir: recomputed next time
    if balance is not None and len(balance["positives"]) not in (0, self.num_attributes):
      raise TaskConfigError(f"config.model.num_attributes={self.num_attributes} but "
                            f"{self.config.data.dir} has {len(balance['positives'])} attributes")
    self._pos_weight = positive_weights(balance or {}, self.num_attributes,
                                        self.max_positive_weight)
    return self._pos_weight

  def data_pattern(self, split: str) -> str:
    if split == "eval":
      name = self.config.data.get("eval_split", EVAL_SPLITS[self.benchmark][0])
      if name not in EVAL_SPLITS[self.benchmark]:
        raise TaskConfigError(f"config.data.eval_split must be one of "
                              f"{EVAL_SPLITS[self.benchmark]}, got {name!r}")
    else:
      name = split
    return os.path.join(self.config.data.dir, f"{name}-*.tfrecord")

  def crop(self, image: np.ndarray, labels: Mapping[str, np.ndarray], matrix) -> dict[str, Any]:
    """Warps image, landmarks ([8, 2] pixels), boxes, visibility and present by `matrix`."""
    sample = {"image": image, **labels}
    return transforms.affine(sample, matrix, (self.size, self.size), fill=MEAN_RGB,
                             flip_pairs=df.FLIP_PAIRS, per_landmark_keys=("visibility", "present"))

  def _view(self, image, ex, rng, train: bool) -> dict[str, np.ndarray]:
    scale, shift, flip = 1.0, (0.0, 0.0), False
    if train:
      scale = rng.uniform(self.min_scale, self.max_scale)
      shift = tuple(rng.uniform(-self.shift, self.shift, 2)) if self.shift else (0.0, 0.0)
      flip = self.flip and rng.random() < 0.5
    m = crop_matrix(ex["bbox"], self.size, self.margin, scale, shift, flip)
    out = self.crop(image, {"landmarks": ex["landmarks"], "boxes": ex["bbox"][None],
                            "visibility": ex["landmark_visibility"],
                            "present": ex["landmark_present"]}, m)
    vis = np.asarray(out["visibility"], np.int32)
    present = np.asarray(out["present"], np.int32)
    inside = transforms.landmarks_inside(out["landmarks"], self.size, self.size)
    vis = np.where((present > 0) & ~inside, df.TRUNCATED, vis).astype(np.int32)
    vis = np.where(present > 0, vis, df.TRUNCATED).astype(np.int32)
    return {"image": out["image"].astype(np.uint8),
            "landmarks": ((out["landmarks"] + 0.5) / self.size).astype(np.float32),
            "visibility": vis, "present": present}

  def preprocess(self, features: dict[str, Any], rng: np.random.Generator, *,
                 train: bool) -> dict[str, np.ndarray]:
    ex = df.parse_example(features)
    image = transforms.decode_image(ex["image"])
    view = self._view(image, ex, rng, train)
    attrs = ex.get("attributes")
    if attrs is None or attrs.size != self.num_attributes:
      if attrs is not None:
        raise TaskConfigError(f"{ex['id']}: {attrs.size} attributes but config.model."
                              f"num_attributes={self.num_attributes}")
      attrs = np.zeros(self.num_attributes, np.int8)
    if ex["category"] >= self.num_categories:
      raise TaskConfigError(f"{ex['id']}: category {ex['category']} but config.model."
                            f"num_categories={self.num_categories}")
    out = {**view, "category": np.int32(ex["category"]), "attributes": attrs.astype(np.int32),
           "item_id": np.int32(ex["item_id"])}
    if train and self.two_views:
      out["image2"] = self._view(image, ex, rng, train)["image"]
    return out

  # --- model ----------------------------------------------------------------------------------

  def build_model(self):
    from hcjax.models.fashionnet import FashionNet  # pylint: disable=g-import-not-at-top
    m = self.config.model
    kwargs = {k: m[k] for k in MODEL_KWARGS if k in m}
    return FashionNet(num_categories=self.num_categories, num_attributes=self.num_attributes,
                      dtype=jnp.dtype(m.get("dtype", "float32")), **kwargs)

  def input_spec(self) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((self.size, self.size, 3), jnp.uint8)

  def model_inputs(self, batch):
    x = batch["image"]
    if "image2" in batch:
      x = jnp.concatenate([x, batch["image2"]], 0)
    return x.astype(jnp.float32)

  # --- objectives and metrics -----------------------------------------------------------------

  def _views(self, outputs, batch):
    """Outputs of a two-view batch with the labels repeated for the second view."""
    if "image2" not in batch:
      return outputs, batch
    labels = {k: jnp.concatenate([v, v], 0) for k, v in batch.items()
              if k not in ("image", "image2")}
    return outputs, labels

  def loss(self, outputs, batch):
    outputs, batch = self._views(outputs, batch)
    w = self.weights
    aux = {}
    total = jnp.zeros((), jnp.float32)
    cat = batch["category"]
    has_cat = cat >= 0
    if w["category"]:
      ce = optax.softmax_cross_entropy_with_integer_labels(
          outputs["category"].astype(jnp.float32), jnp.where(has_cat, cat, 0))
      aux["category_ce"] = jnp.where(has_cat, ce, 0).sum() / jnp.maximum(has_cat.sum(), 1)
      aux["category_accuracy"] = (((jnp.argmax(outputs["category"], -1) == cat) & has_cat).sum()
                                  / jnp.maximum(has_cat.sum(), 1))
      total += w["category"] * aux["category_ce"]
    if w["attributes"]:
      aux["attribute_bce"], _ = weighted_bce(outputs["attributes"], batch["attributes"],
                                             jnp.asarray(self.positive_weights()))
      total += w["attributes"] * aux["attribute_bce"]
    valid = fm.landmark_valid(batch["visibility"], batch["present"])
    d2 = jnp.sum((outputs["landmarks"].astype(jnp.float32) - batch["landmarks"]) ** 2, -1)
    aux["landmark_l2"] = jnp.where(valid, d2, 0).sum() / jnp.maximum(valid.sum(), 1)
    aux["landmark_error"] = (jnp.where(valid, jnp.sqrt(d2 + 1e-12), 0).sum()
                             / jnp.maximum(valid.sum(), 1))
    total += w["landmarks"] * aux["landmark_l2"]
    present = batch["present"] > 0
    vce = optax.softmax_cross_entropy_with_integer_labels(
        outputs["visibility"].astype(jnp.float32), batch["visibility"])
    aux["visibility_ce"] = jnp.where(present, vce, 0).sum() / jnp.maximum(present.sum(), 1)
    total += w["visibility"] * aux["visibility_ce"]
    ids = batch["item_id"]
    if self.benchmark == "inshop" and w["triplet"]:
      aux["triplet"], _, aux["triplet_active"] = batch_hard_triplet(
          outputs["embedding"], ids, self.triplet_margin)
      total += w["triplet"] * aux["triplet"]
    if "item_logits" in outputs and w["item"]:
      ok = (ids >= 0) & (ids < self.num_items)
      ice = optax.softmax_cross_entropy_with_integer_labels(
          outputs["item_logits"].astype(jnp.float32), jnp.where(ok, ids, 0))
      aux["item_ce"] = jnp.where(ok, ice, 0).sum() / jnp.maximum(ok.sum(), 1)
      total += w["item"] * aux["item_ce"]
    return total, aux

  def eval_statistics(self, outputs, batch):
    mask = batch["_mask"]
    stats = {f"category/{k}": v for k, v in fm.category_statistics(
        outputs["category"].astype(jnp.float32), batch["category"], mask=mask).items()}
    stats.update({f"attributes/{k}": v for k, v in fm.attribute_statistics(
        outputs["attributes"].astype(jnp.float32), batch["attributes"], mask=mask).items()})
    valid = fm.landmark_valid(batch["visibility"], batch["present"])
    size = float(self.size)
    stats.update({f"landmarks/{k}": v for k, v in fm.landmark_statistics(
        outputs["landmarks"].astype(jnp.float32) * size, batch["landmarks"] * size, valid,
        jnp.asarray([size, size]), mask=mask).items()})
    present = (batch["present"] > 0) & (mask[:, None] > 0)
    stats["visibility_correct"] = (
        (jnp.argmax(outputs["visibility"], -1) == batch["visibility"]) & present).sum()
    stats["visibility_count"] = present.sum()
    stats["examples"] = mask.sum()
    return stats

  def summarize(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    group = lambda p: {k[len(p) + 1:]: v for k, v in totals.items() if k.startswith(p + "/")}
    out = {}
    if self.benchmark == "category":
      out.update({f"category_{k}": v for k, v in fm.category_accuracy(group("category")).items()
                  if k != "examples"})
      out.update({f"attribute_{k}": v for k, v in fm.attribute_recall(group("attributes")).items()
                  if k != "examples"})
    lm = fm.landmark_metrics(group("landmarks"), df.LANDMARK_NAMES)
    out.update({f"landmark_{k}": v for k, v in lm.items()})
    count = float(totals["visibility_count"])
    out["visibility_accuracy"] = (float(totals["visibility_correct"]) / count if count
                                  else float("nan"))
    out["examples"] = float(totals["examples"])
    return out

  def predict(self, outputs):
    out = {"landmarks": outputs["landmarks"].astype(jnp.float32),
           "visibility": jax.nn.softmax(outputs["visibility"].astype(jnp.float32), -1),
           "embedding": outputs["embedding"].astype(jnp.float32)}
    if self.benchmark == "category":
      out["category"] = jax.nn.softmax(outputs["category"].astype(jnp.float32), -1)
      out["attributes"] = jax.nn.sigmoid(outputs["attributes"].astype(jnp.float32))
    return out

  def export_metadata(self) -> dict[str, Any]:
    info = self._info()
    s = self.size
    return {"task": "fashion", "benchmark": self.benchmark,
            "category_names": info.get("category_names", []),
            "attribute_names": info.get("attribute_names", []),
            "landmark_names": list(df.LANDMARK_NAMES),
            "input": f"uint8 RGB [B, {s}, {s}, 3]: the garment's bbox square (margin "
                     f"{self.margin}) resized",
            "outputs": "landmarks [B, 8, 2] (x, y) in [0, 1] of the input; visibility [B, 8, 3] "
                       "probabilities (visible, occluded, truncated); embedding [B, E] "
                       "L2-normalised; category / attributes probabilities (category benchmark)"}

  # --- pictures -------------------------------------------------------------------------------

  def names(self) -> tuple[list[str], list[str]]:
    info = self._info()
    cats = list(info.get("category_names", [])) or [f"c{i}" for i in range(self.num_categories)]
    attrs = list(info.get("attribute_names", [])) or [f"a{i}" for i in range(self.num_attributes)]
    return cats, attrs

  @staticmethod
  def draw_landmarks(image: np.ndarray, landmarks: np.ndarray, visible=None, *,
                     truth: np.ndarray | None = None, truth_valid=None, radius: int = 2
                     ) -> np.ndarray:
    """uint8 copy of `image` with landmarks ([8, 2] normalised) as filled dots (predicted) and
    rings (truth), one colour per landmark slot; invisible predictions drawn as crosses."""
    from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
    img = Image.fromarray(np.asarray(image, np.uint8))
    draw = ImageDraw.Draw(img)
    h, w = np.asarray(image).shape[:2]
    r = radius
    for k, (x, y) in enumerate(np.asarray(landmarks, np.float64)):
      c = LANDMARK_COLOURS[k % len(LANDMARK_COLOURS)]
      if truth is not None and (truth_valid is None or truth_valid[k]):
        tx, ty = truth[k][0] * w - 0.5, truth[k][1] * h - 0.5
        draw.ellipse([tx - r - 1, ty - r - 1, tx + r + 1, ty + r + 1], outline=c)
      px, py = x * w - 0.5, y * h - 0.5
      if visible is None or visible[k]:
        draw.ellipse([px - r, py - r, px + r, py + r], fill=c, outline=(0, 0, 0))
      else:
        draw.line([px - r, py - r, px + r, py + r], fill=c)
        draw.line([px - r, py + r, px + r, py - r], fill=c)
    return np.asarray(img)

  def visualize(self, batch, predictions) -> np.ndarray | None:
    """The inputs with predicted landmarks (dots; crosses when predicted not visible) and true
    ones (rings), captioned with the predicted (and true) category."""
    from hcjax.observe import image_grid  # pylint: disable=g-import-not-at-top
    real = np.flatnonzero(np.asarray(batch.get("_mask", np.ones(len(batch["image"])))) > 0)
    if not len(real):
      return None
    cats, _ = self.names()
    cells, captions = [], []
    zoom = max(1, 128 // self.size)
    for i in real[:VISUALIZED]:
      valid = (np.asarray(batch["visibility"][i]) == 0) & (np.asarray(batch["present"][i]) > 0)
      visible = np.asarray(predictions["visibility"][i]).argmax(-1) == 0
      image = np.asarray(batch["image"][i], np.uint8)
      if zoom > 1:
        image = np.repeat(np.repeat(image, zoom, 0), zoom, 1)
      cells.append(self.draw_landmarks(image, predictions["landmarks"][i], visible,
                                       truth=np.asarray(batch["landmarks"][i]), truth_valid=valid))
      caption = ""
      if "category" in predictions:
        p = int(np.asarray(predictions["category"][i]).argmax())
        t = int(batch["category"][i])
        caption = f"{cats[p][:14]}\n(true {cats[t][:14] if t >= 0 else '-'})"
      else:
        caption = f"item {int(batch['item_id'][i])}"
      captions.append(caption)
    return image_grid(np.stack(cells), captions, cols=4)


# --- retrieval ------------------------------------------------------------------------------------

def embed_split(task: FashionTask, model, variables, pattern: str, batch_size: int = 8
                ) -> tuple[np.ndarray, np.ndarray]:
  """(embeddings [N, E], item ids [N]) of every record of `pattern` (eval preprocessing), on this
  process's devices; padding dropped."""
  from hcjax.data import pipeline  # pylint: disable=g-import-not-at-top
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=batch_size, train=False)
  apply = jax.jit(lambda v, x: model.apply(v, task.model_inputs({"image": x}),
                                           train=False)["embedding"])
  embs, ids = [], []
  with pipeline.InputIterator(cfg, lambda f, rng: task.preprocess(f, rng, train=False),
                              process_index=0, process_count=1) as it:
    for batch in it:
      emb = np.asarray(apply(variables, batch["image"]))
      keep = np.asarray(batch["_mask"]) > 0
      embs.append(emb[keep])
      ids.append(np.asarray(batch["item_id"])[keep])
  if not embs:
    return np.zeros((0, 1), np.float32), np.zeros((0,), np.int64)
  return np.concatenate(embs), np.concatenate(ids)


def evaluate_retrieval(task: FashionTask, model, variables, *, ks=fm.RETRIEVAL_TOPK,
                       batch_size: int = 8) -> dict[str, float]:
  """In-shop retrieval top-k accuracy: every query against the whole gallery (cosine)."""
  q, qid = embed_split(task, model, variables, task.data_pattern("query"), batch_size)
  g, gid = embed_split(task, model, variables, task.data_pattern("gallery"), batch_size)
  if not len(q) or not len(g):
    raise MissingDataError(f"no query or gallery records under {task.config.data.dir}")
  out = fm.retrieval_topk_accuracy(q, qid, g, gid, ks)
  out["queries"], out["gallery"] = float(len(q)), float(len(g))
  return out


def evaluate_retrieval_workdir(workdir: str, step: int | None = None, **kwargs
                               ) -> dict[str, float]:
  """evaluate_retrieval of a trained inshop workdir's checkpoint."""
  from hcjax import train  # pylint: disable=g-import-not-at-top
  config = train.inference_config(workdir, "fashion")
  task, model, _, state = train.restore_for_inference(config, workdir, step)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return evaluate_retrieval(task, model, variables, **kwargs)

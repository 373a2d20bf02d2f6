"""CelebA face attributes: 40 binary attributes from an aligned face, a ResNet, BCE.

config.data: dir (converted TFRecords), samples_dir / make_samples / num_sample_images (build
the embedded sample set when `dir` holds no data), eval_split.
config.input: image_size, crop (the square face region of the 178x218 aligned image).
config.model: depth, width, stem, dtype.
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

from hcjax.data import MissingDataError, transforms
from hcjax.data.converters import celeba
from hcjax.data.pipeline import INFO_FILE
from hcjax.tasks.base import Task, TaskConfigError

MEAN = np.array([0.5, 0.5, 0.5], np.float32)
STD = np.array([0.5, 0.5, 0.5], np.float32)
SPLIT_FILES = {"train": "train", "validation": "validation", "test": "test"}


class FaceAttributesTask(Task):

  def __init__(self, config):
    super().__init__(config)
    self.attribute_names = list(celeba.ATTRIBUTE_NAMES)
    size = int(config.input.image_size)
    if size < 16:
      raise TaskConfigError(f"config.input.image_size must be >= 16, got {size}")
    self.image_size = size
    from hcjax.models import resnet  # pylint: disable=g-import-not-at-top
    m = config.model
    if m.depth not in resnet.STAGES:
      raise TaskConfigError(f"config.model.depth must be one of {sorted(resnet.STAGES)}, got {m.depth!r}")
    if m.get("stem", "imagenet") not in resnet.STEMS:
      raise TaskConfigError(f"config.model.stem must be one of {resnet.STEMS}, got {m.stem!r}")
    if m.get("dtype", "float32") not in ("float32", "bfloat16", "float16"):
      raise TaskConfigError(f"config.model.dtype must be float32, bfloat16 or float16, got {m.dtype!r}")
    if int(m.width) < 1:
      raise TaskConfigError(f"config.model.width must be >= 1, got {m.width!r}")

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

  # --- model ----------------------------------------------------------------------------------

  def build_model(self):
    from hcjax.models.resnet import ResNet  # pylint: disable=g-import-not-at-top
    m = self.config.model
    return ResNet(depth=int(m.depth), num_outputs=len(self.attribute_names), width=int(m.width),
                  stem=m.get("stem", "imagenet"), dtype=jnp.dtype(m.get("dtype", "float32")))

  def input_spec(self) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((self.image_size, self.image_size, 3), jnp.uint8)

  def model_inputs(self, batch):
    return (batch["image"].astype(jnp.float32) / 255.0 - MEAN) / STD

  # --- objectives and metrics -----------------------------------------------------------------

  def loss(self, outputs, batch):
    labels = batch["attributes"].astype(jnp.float32)
    logits = outputs.astype(jnp.float32)
    loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    accuracy = ((logits > 0) == (labels > 0.5)).mean()
    return loss, {"accuracy": accuracy}

  def eval_statistics(self, outputs, batch):
    mask = batch["_mask"][:, None]
    labels = batch["attributes"] > 0
    correct = ((outputs > 0) == labels) * mask
    logits = outputs.astype(jnp.float32)
    bce = optax.sigmoid_binary_cross_entropy(logits, labels.astype(jnp.float32)) * mask
    return {"correct": correct.sum(0), "positives": (labels * mask).sum(0),
            "count": mask.sum(), "bce": bce.sum()}

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
    return jax.nn.sigmoid(outputs.astype(jnp.float32))

  def export_metadata(self) -> dict[str, Any]:
    return {"task": "face_attributes", "outputs": "sigmoid probabilities [B, 40]",
            "attribute_names": self.attribute_names,
            "input": f"uint8 RGB [B, {self.image_size}, {self.image_size}, 3]: the centre "
                     f"{self.config.input.get('crop', 178)}x{self.config.input.get('crop', 178)} "
                     f"crop of a 178x218 aligned face, resized"}

  def visualize(self, batch, predictions) -> np.ndarray:
    from hcjax.observe import image_grid  # pylint: disable=g-import-not-at-top
    n = min(12, len(batch["image"]))
    images = np.asarray(batch["image"][:n], np.uint8)
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

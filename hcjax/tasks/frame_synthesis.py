"""Video frame synthesis with Deep Voxel Flow (Liu et al., ICCV 2017): triplets of frames.

Interpolation predicts the middle frame of (frame0, frame1, frame2) from the outer two;
extrapolation predicts frame2 from frame0 and frame1.

config.data: dataset ("ucf101"), dir (converted TFRecords), samples_dir / make_samples /
num_sample_videos / sample_seed (build the embedded sample set when `dir` holds no data), shards,
eval_split ("test" | "train").
config.input: crop_size (square training crop), flip (random mirror), time_reversal (random
reversal of the triplet: the motion runs backwards, the same physics), max_rotation (degrees of a
random rotation, 0 = off), eval_size ((height, width) of the eval canvas: frames sit at its
top-left, edge-padded; only their own pixels are scored).
config.model: name ("voxel_flow" | "multiscale_voxel_flow"), variant ("tf": the released net
without skips | "unet"), width (first-stage channels; 64 in the paper), mode ("interpolate" |
"extrapolate"), bn_momentum (of the running statistics used in evaluation), dtype.
config.loss: tv_flow, tv_mask (λ1, λ2 of L1 + λ1·TV(flow) + λ2·TV(mask)); scale_weights (the
multi-scale model: one per scale, coarse to fine, of the extra L1 terms that compare each
scale's own frame, before the fusion, with the target at that size).

The model sees both input frames as one [B, H, W, 6] image in [-1, 1]; it returns the frame it
synthesised with its flow and mask. Eval metrics, summed over the split: psnr and ssim over whole
frames, psnr_motion over the motion masks where the data has them (DVF's evaluation), and the
same for the baseline (the average of the two inputs for interpolation, the last frame repeated
for extrapolation).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hcjax.data import ImageDecodeError, MissingDataError, transforms
from hcjax.data.pipeline import INFO_FILE
from hcjax.metrics import frames as frame_metrics
from hcjax.models import dvf
from hcjax.ops import regularizers, sampling
from hcjax.tasks.base import Task, TaskConfigError

SPLITS = ("train", "test")
MODELS = {"voxel_flow": "VoxelFlowNet", "multiscale_voxel_flow": "MultiScaleVoxelFlow"}
VARIANTS = ("tf", "unet")
MODES = ("interpolate", "extrapolate")
DTYPES = ("float32", "bfloat16", "float16")
# Sizes must be multiples of this (three 2x poolings; the multi-scale model also halves twice).
SIZE_MULTIPLE = {"voxel_flow": 8, "multiscale_voxel_flow": 32}
VISUALIZED = 4           # examples in the eval picture
PICTURE_MIN_SIDE = 96    # smaller frames are enlarged in the picture


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
  """[H, W, 2] (x, y) flow -> uint8 [H, W, 3]: hue = direction, saturation = speed (white = 0).

  The usual optical-flow colour wheel; speeds are scaled by `max_magnitude` (default: the
  largest in the field).
  """
  flow = np.asarray(flow, np.float64)
  magnitude = np.hypot(flow[..., 0], flow[..., 1])
  scale = max_magnitude if max_magnitude else max(float(magnitude.max()), 1e-9)
  saturation = np.clip(magnitude / scale, 0.0, 1.0)
  hue = (np.arctan2(-flow[..., 1], -flow[..., 0]) / np.pi + 1.0) / 2.0  # [0, 1]
  # HSV with value 1 -> RGB.
  h6 = hue * 6.0
  sector = np.floor(h6).astype(np.int64) % 6
  f = h6 - np.floor(h6)
  p, q, t = 1.0 - saturation, 1.0 - saturation * f, 1.0 - saturation * (1.0 - f)
  one = np.ones_like(saturation)
  choices = [(one, t, p), (q, one, p), (p, one, t), (p, q, one), (t, p, one), (one, p, q)]
  rgb = np.zeros(flow.shape[:2] + (3,))
  for s, channels in enumerate(choices):
    rgb[sector == s] = np.stack(channels, -1)[sector == s]
  return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


class FrameSynthesisTask(Task):

  def __init__(self, config):
    super().__init__(config)
    m = config.model
    if m.get("name") not in MODELS:
      raise TaskConfigError(
          f"config.model.name must be one of {sorted(MODELS)}, got {m.get('name')!r}")
    for key, allowed in (("variant", VARIANTS), ("mode", MODES), ("dtype", DTYPES)):
      if m.get(key, allowed[0]) not in allowed:
        raise TaskConfigError(f"config.model.{key} must be one of {allowed}, got {m[key]!r}")
    if int(m.get("width", 64)) < 1:
      raise TaskConfigError(f"config.model.width must be >= 1, got {m.width!r}")
    if not 0.0 <= float(m.get("bn_momentum", dvf.BN_MOMENTUM)) < 1.0:
      raise TaskConfigError(f"config.model.bn_momentum must be in [0, 1), got {m.bn_momentum!r}")
    self.mode = m.get("mode", "interpolate")
    self.multiple = SIZE_MULTIPLE[m.name]

    inp = config.input
    self.crop_size = int(inp.crop_size)
    if self.crop_size < self.multiple or self.crop_size % self.multiple:
      raise TaskConfigError(f"config.input.crop_size must be a positive multiple of "
                            f"{self.multiple} for {m.name}, got {self.crop_size}")
    eval_size = inp.get("eval_size", (self.crop_size, self.crop_size))
    eval_size = (int(eval_size), int(eval_size)) if np.ndim(eval_size) == 0 else tuple(
        int(v) for v in eval_size)
    if len(eval_size) != 2 or any(v < self.multiple or v % self.multiple for v in eval_size):
      raise TaskConfigError(f"config.input.eval_size must be (height, width), multiples of "
                            f"{self.multiple}, got {inp.get('eval_size')!r}")
    self.eval_size = eval_size
    self.flip = bool(inp.get("flip", True))
    self.time_reversal = bool(inp.get("time_reversal", True))
    self.max_rotation = float(inp.get("max_rotation", 0.0))
    if not 0 <= self.max_rotation <= 45:
      raise TaskConfigError(f"config.input.max_rotation must be in [0, 45] degrees, got "
                            f"{self.max_rotation}")

    loss = config.get("loss", {})
    self.tv_flow = float(loss.get("tv_flow", 0.01))
    self.tv_mask = float(loss.get("tv_mask", 0.005))
    if self.tv_flow < 0 or self.tv_mask < 0:
      raise TaskConfigError(f"config.loss.tv_flow and tv_mask must be >= 0, got {self.tv_flow} "
                            f"and {self.tv_mask}")
    num_scales = 3 if m.name == "multiscale_voxel_flow" else 1
    weights = tuple(float(w) for w in loss.get("scale_weights", (1.0,) * num_scales))
    if len(weights) != num_scales or min(weights) < 0:
      raise TaskConfigError(f"config.loss.scale_weights needs {num_scales} weights >= 0 (coarse "
                            f"to fine) for {m.name}, got {loss.get('scale_weights')!r}")
    self.scale_weights = weights

  # --- data -----------------------------------------------------------------------------------

  def prepare_data(self) -> None:
    data = self.config.data
    if os.path.exists(os.path.join(data.dir, INFO_FILE)):
      return
    if not data.get("make_samples", False):
      raise MissingDataError(
          f"config.data.dir={data.dir!r} holds no converted triplets (no {INFO_FILE}); run "
          f"`hcjax convert ucf101 --src UCF-101 --out {data.dir}` (see data/ucf101/README.md)")
    from hcjax.data.samples import ucf101 as samples  # pylint: disable=g-import-not-at-top
    logging.info("building the UCF-101-format sample set in %s and its TFRecords in %s",
                 data.samples_dir, data.dir)
    samples.build(data.samples_dir, data.dir, num_videos=int(data.num_sample_videos),
                  seed=int(data.get("sample_seed", 0)), shards=int(data.get("shards", 4)))

  def data_pattern(self, split: str) -> str:
    name = self.config.data.get("eval_split", "test") if split == "eval" else "train"
    if name not in SPLITS:
      raise TaskConfigError(f"config.data.eval_split must be one of {SPLITS}, got {name!r}")
    return os.path.join(self.config.data.dir, f"{name}-*.tfrecord")

  def _decode(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
    name = features.get("id", [b"?"])[0]
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    frames = []
    for key in ("frame0", "frame1", "frame2"):
      if key not in features:
        raise ImageDecodeError(f"record {name!r} has no {key}: not a triplet record")
      frames.append(transforms.decode_image(features[key][0]))
    if len({f.shape for f in frames}) != 1:
      raise ImageDecodeError(f"record {name!r}: frames of different sizes "
                             f"{[f.shape[:2] for f in frames]}")
    h, w = frames[0].shape[:2]
    if "motion_mask" in features and len(features["motion_mask"]):
      motion = transforms.decode_image(features["motion_mask"][0], channels=1)[..., 0]
      if motion.shape != (h, w):
        raise ImageDecodeError(f"record {name!r}: motion mask {motion.shape} is not {h}x{w}")
      motion = (motion > 127).astype(np.uint8)
      has_motion = 1
    else:
      motion, has_motion = np.zeros((h, w), np.uint8), 0
    return {"image": np.concatenate(frames, -1), "mask": motion, "has_motion": has_motion,
            "name": name}

  def preprocess(self, features: dict[str, Any], rng: np.random.Generator, *,
                 train: bool) -> dict[str, np.ndarray]:
    d = self._decode(features)
    stack, motion = d["image"], d["mask"]  # [H, W, 9] frames 0, 1, 2; [H, W]
    h, w = motion.shape
    valid = np.ones((h, w), np.uint8)
    if train:
      sample = self._augment({"image": stack, "mask": motion}, rng)
      stack, motion = sample["image"], sample["mask"]
      valid = np.ones(motion.shape, np.uint8)
      if self.time_reversal and rng.random() < 0.5:
        stack = np.concatenate([stack[..., 6:9], stack[..., 3:6], stack[..., 0:3]], -1)
    else:
      eh, ew = self.eval_size
      if h > eh or w > ew:
        raise TaskConfigError(f"eval triplet {d['name']!r} is {w}x{h}, larger than "
                              f"config.input.eval_size={self.eval_size} (height, width)")
      pad = ((0, eh - h), (0, ew - w))
      stack = np.pad(stack, pad + ((0, 0),), mode="edge")
      motion, valid = np.pad(motion, pad), np.pad(valid, pad)
    f0, f1, f2 = stack[..., 0:3], stack[..., 3:6], stack[..., 6:9]
    inputs, target = ((f0, f2), f1) if self.mode == "interpolate" else ((f0, f1), f2)
    return {"image": np.concatenate(inputs, -1), "target": target,
            "motion_mask": motion.astype(np.uint8), "valid": valid,
            "has_motion": np.int32(d["has_motion"])}

  def _augment(self, sample: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, Any]:
    """One warp for all three frames and the motion mask: random rotation, crop, mirror."""
    h, w = sample["mask"].shape
    size = self.crop_size
    matrix = np.eye(3)
    if self.max_rotation:
      angle = rng.uniform(-self.max_rotation, self.max_rotation)
      matrix = transforms.rotation_matrix(angle, (w / 2.0, h / 2.0))
    top = int(rng.integers(min(0, h - size), max(0, h - size) + 1))
    left = int(rng.integers(min(0, w - size), max(0, w - size) + 1))
    matrix = transforms.translation_matrix(-left, -top) @ matrix
    if self.flip and rng.random() < 0.5:
      matrix = np.array([[-1, 0, size], [0, 1, 0], [0, 0, 1]], np.float64) @ matrix
    # Rotated corners and frames smaller than the crop are filled with mid-grey.
    return transforms.affine(sample, matrix, (size, size), mask_fill=0, fill=128)

  # --- model ----------------------------------------------------------------------------------

  def build_model(self):
    m = self.config.model
    return getattr(dvf, MODELS[m.name])(
        variant=m.get("variant", "unet"), width=int(m.get("width", 64)), mode=self.mode,
        bn_momentum=float(m.get("bn_momentum", dvf.BN_MOMENTUM)),
        dtype=jnp.dtype(m.get("dtype", "float32")))

  def input_spec(self) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(self.eval_size + (6,), jnp.uint8)

  def model_inputs(self, batch):
    return batch["image"].astype(jnp.float32) / 127.5 - 1.0

  # --- objectives and metrics -----------------------------------------------------------------

  @staticmethod
  def _target(batch) -> jax.Array:
    return batch["target"].astype(jnp.float32) / 127.5 - 1.0

  def loss(self, outputs, batch):
    target = self._target(batch)
    frame = outputs["frame"].astype(jnp.float32)
    l1 = jnp.abs(frame - target).mean()
    loss, aux = l1, {"l1": l1}
    if self.config.model.name == "multiscale_voxel_flow":
      # Each scale's own frame (before the fusion) against the target at that scale: the
      # coarse-to-fine supervision; the fused frame above is the one that is evaluated.
      terms = []
      for weight, scale in zip(self.scale_weights, outputs["scales"]):
        small = scale["frame"].astype(jnp.float32)
        factor = target.shape[1] // small.shape[1]  # block means, as the model's own inputs
        resized = target if factor == 1 else dvf.area_downsample(target, factor)
        terms.append(weight * jnp.abs(small - resized).mean())
      aux["l1_scales"] = sum(terms)
      loss = loss + aux["l1_scales"]
    aux["tv_flow"] = regularizers.total_variation(outputs["flow"].astype(jnp.float32))
    aux["tv_mask"] = regularizers.total_variation(outputs["mask"].astype(jnp.float32))
    loss = loss + self.tv_flow * aux["tv_flow"] + self.tv_mask * aux["tv_mask"]
    mse = jnp.mean(jnp.square((frame - target) * 127.5), axis=(1, 2, 3))
    aux["psnr"] = jnp.mean(20 * jnp.log10(255.0) - 10 * jnp.log10(jnp.maximum(mse, 1e-10)))
    return loss, aux

  def _baseline(self, batch) -> jax.Array:
    """Frame averaging for interpolation, the last frame again for extrapolation; 0..255."""
    a = batch["image"][..., 0:3].astype(jnp.float32)
    b = batch["image"][..., 3:6].astype(jnp.float32)
    return (a + b) / 2.0 if self.mode == "interpolate" else b

  def eval_statistics(self, outputs, batch):
    """Sums of per-triplet PSNR / SSIM over the triplets that count, as DVF's evaluation: real
    (not padding), and for psnr_motion with a non-empty motion mask; a perfect frame (infinite
    PSNR) counts in none, as in eval_voxelflow.m."""
    real = batch["_mask"] > 0                                     # [B]
    target = batch["target"].astype(jnp.float32)
    valid = batch["valid"].astype(jnp.float32)                    # [B, H, W]: not canvas padding
    motion = batch["motion_mask"].astype(jnp.float32) * valid
    with_motion = real & (batch["has_motion"] > 0)
    predicted = jnp.clip(jnp.round((outputs["frame"].astype(jnp.float32) + 1.0) * 127.5), 0, 255)
    stats = {"examples": real.sum()}
    for name, frame in (("", predicted), ("baseline_", jnp.round(self._baseline(batch)))):
      counts = real & frame_metrics.psnr_valid(frame, target, valid)
      stats[f"{name}psnr_sum"] = jnp.where(counts, frame_metrics.psnr(frame, target, valid),
                                           0.0).sum()
      stats[f"{name}ssim_sum"] = jnp.where(
          counts, frame_metrics.ssim(frame, target, region=valid), 0.0).sum()
      stats[f"{name}count"] = counts.sum()
      counts = with_motion & frame_metrics.psnr_valid(frame, target, motion)
      stats[f"{name}psnr_motion_sum"] = jnp.where(
          counts, frame_metrics.psnr(frame, target, motion), 0.0).sum()
      stats[f"{name}motion_count"] = counts.sum()
    return stats

  def summarize(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    out = {"examples": float(totals["examples"])}
    for name in ("", "baseline_"):
      n, m = float(totals[f"{name}count"]), float(totals[f"{name}motion_count"])
      if n:
        out[f"{name}psnr"] = float(totals[f"{name}psnr_sum"]) / n
        out[f"{name}ssim"] = float(totals[f"{name}ssim_sum"]) / n
      if m:
        out[f"{name}psnr_motion"] = float(totals[f"{name}psnr_motion_sum"]) / m
    out["motion_examples"] = float(totals["motion_count"])
    return out

  def predict(self, outputs):
    frame = (outputs["frame"].astype(jnp.float32) + 1.0) * 127.5
    return {"frame": jnp.clip(frame, 0.0, 255.0), "flow": outputs["flow"].astype(jnp.float32),
            "mask": outputs["mask"].astype(jnp.float32)}

  def export_metadata(self) -> dict[str, Any]:
    h, w = self.eval_size
    first, second = ("frame 0", "frame 2") if self.mode == "interpolate" else ("frame 0",
                                                                                "frame 1")
    return {"task": "frame_synthesis", "model": self.config.model.name, "mode": self.mode,
            "input": f"uint8 [B, {h}, {w}, 6]: RGB of {first} then {second} (sizes up to "
                     f"{w}x{h}: place them at the top-left and pad by repeating the edge)",
            "outputs": {"frame": f"float32 RGB 0..255 [B, {h}, {w}, 3], the synthesised frame",
                        "flow": f"float32 [B, {h}, {w}, 2] voxel flow (x, y) in normalised "
                                "units: 1 = half the width / height (align_corners=True)",
                        "mask": f"float32 [B, {h}, {w}, 1] weight of the first input frame"}}

  # --- pictures -------------------------------------------------------------------------------

  def visualize(self, batch, predictions) -> np.ndarray | None:
    """Rows of input | input | flow | mask | output | truth, captioned with PSNRs."""
    from hcjax.observe import image_grid  # pylint: disable=g-import-not-at-top
    real = np.flatnonzero(np.asarray(batch.get("_mask", np.ones(len(batch["image"])))) > 0)
    if not len(real):
      return None
    cells, captions = [], []
    baseline_name = "avg" if self.mode == "interpolate" else "last"
    valid = np.asarray(batch["valid"]) > 0
    for i in real[:VISUALIZED]:
      rows, cols = np.flatnonzero(valid[i].any(1)), np.flatnonzero(valid[i].any(0))
      h, w = int(rows[-1]) + 1, int(cols[-1]) + 1
      zoom = max(1, PICTURE_MIN_SIDE // max(h, w))
      fit = lambda a, h=h, w=w, zoom=zoom: np.repeat(np.repeat(
          np.asarray(a)[:h, :w], zoom, 0), zoom, 1)
      image = np.asarray(batch["image"][i])
      target = np.asarray(batch["target"][i], np.float64)
      frame = np.asarray(predictions["frame"][i])
      # Normalised units are relative to the whole canvas, padding included; then crop.
      pixels = np.asarray(sampling.flow_to_pixels(predictions["flow"][i][None]))[0, :h, :w]
      mask = np.asarray(predictions["mask"][i])[:h, :w, 0]
      baseline = np.asarray(self._baseline({"image": image[None]}))[0]
      psnr = lambda x, t=target, h=h, w=w: 10 * np.log10(255.0 ** 2 / max(
          np.mean((np.rint(np.asarray(x, np.float64)[:h, :w]) - t[:h, :w]) ** 2), 1e-10))
      speed = float(np.hypot(pixels[..., 0], pixels[..., 1]).max())
      cells += [fit(image[..., 0:3]), fit(image[..., 3:6]), fit(flow_to_rgb(pixels)),
                fit(np.repeat(np.rint(mask * 255).astype(np.uint8)[..., None], 3, -1)),
                fit(np.clip(np.rint(frame), 0, 255).astype(np.uint8)),
                fit(target.astype(np.uint8))]
      names = (("frame 0", "frame 2") if self.mode == "interpolate" else ("frame 0", "frame 1"))
      captions += [names[0], names[1], f"flow (max {speed:.1f} px)", "mask (white: 1st)",
                   f"output {psnr(frame):.1f} dB\n({baseline_name} {psnr(baseline):.1f} dB)",
                   "truth"]
    return image_grid(np.stack(cells), captions, cols=6)

"""FashionNet train step on CPU: hcjax's trainer vs the same network in PyTorch eager, in one run.

hcjax: the trainer's own step (hcjax.train.build + make_train_step, jitted as train_and_evaluate
jits it) for configs/fashionnet.py:full, the Category and Attribute benchmark: VGG16 trunk
(conv1..pool5, no fc6 / fc7 convolutions, on a 0..255 image it standardises itself), global and
landmark fcs on the flattened pool5 map (7x7x512 = 25,088 inputs at 224 px and width 64, as VGG's
fc6), 8 landmarks (sigmoid x, y) and 8 x 3 visibility logits, landmark pooling (a 3x3 grid
spanning 2/7 of pool4's map around each PREDICTED landmark, read with
hcjax.ops.sampling.bilinear_sample, zeros outside, max-pooled, gated by P(visible)), fusion fc,
category / attribute / embedding heads, dropout 0.5; SGD with momentum, the config's masked
weight decay, gradient clipping and warmup-cosine schedule; the task's loss (category CE,
attribute BCE with per-attribute positive weights, landmark L2 over visible and present
landmarks, visibility CE over present ones).
torch: the same network written here with torch.nn (module names follow hcjax's parameter paths),
initialised from hcjax's initial parameters: the landmark pooling is F.grid_sample(bilinear,
zeros, align_corners=True) at hcjax's pixel coordinates (points · map size - 0.5) normalised by
2 / (size - 1), torch.optim.SGD (fused) with the same decay mask, clip_grad_norm_, schedule and
non-finite skip (benchmarks/aenet.py's harness). NCHW and channels_last are both timed
(--torch-layout); the faster is the reference. torch.set_num_threads(cores JAX uses).

Checks: equal parameter counts (asserted); one forward in train mode with dropout off from the
same weights and batch gives the same loss within --loss-rtol (asserted) and the same landmarks
and logits (printed); the timed steps use dropout, so their losses differ by the masks. FLOPs and
XLA's memory estimate per step from the compiled step, before anything is allocated; if the two
implementations would not fit in the memory available the script stops after printing them
(the full config has 0.28 G parameters, about 1 GiB per copy, and XLA's peak is about 8 GiB).
Times: median (best) of --steps steps after --warmup, round-robin.
Prints the machine and a markdown table for BENCHMARKS.md; the ratio is hcjax / torch.
Run: python benchmarks/fashionnet.py [--batch 32 --size 224 --width 64 --fc-width 4096 --steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any, Callable

import numpy as np

from aenet import (TorchOptimizer, copy_into_torch, hcjax_bytes, load_config, memory_available,
                   report, run_hcjax, time_steps, torch_step, trainer_step)
from side_by_side import Row, cores, layouts, machine, print_table

NUM_LANDMARKS, NUM_VISIBILITY = 8, 3
FLATTENED = ("global_fc/kernel", "landmark_fc/kernel")   # dense layers on the flattened pool5


def fashion_batch(batch: int, size: int, num_categories: int, num_attributes: int,
                  seed: int = 0) -> dict[str, np.ndarray]:
  """A batch as FashionTask.preprocess makes it for the category benchmark: uint8 images
  (noise), a few examples without a category, sparse attributes in {1, 0 unknown, -1},
  landmarks in [0, 1] with visibility and presence."""
  rng = np.random.default_rng(seed)
  category = rng.integers(0, num_categories, batch)
  category[rng.random(batch) < 0.1] = -1
  attributes = rng.choice([1, 0, -1], (batch, num_attributes), p=[0.02, 0.05, 0.93])
  return {"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
          "landmarks": rng.uniform(0.05, 0.95, (batch, NUM_LANDMARKS, 2)).astype(np.float32),
          "visibility": rng.integers(0, NUM_VISIBILITY, (batch, NUM_LANDMARKS)).astype(np.int32),
          "present": (rng.random((batch, NUM_LANDMARKS)) < 0.8).astype(np.int32),
          "category": category.astype(np.int32), "attributes": attributes.astype(np.int32),
          "item_id": np.full(batch, -1, np.int32)}


def write_attribute_balance(directory: str, num_attributes: int, seed: int = 0) -> None:
  """A train split's attribute counts (as FashionTask caches them), so the positive weights
  vary over [1, max_positive_weight] as on DeepFashion instead of all being 1."""
  rng = np.random.default_rng(seed)
  positives = rng.integers(5_000, 150_000, num_attributes)
  with open(os.path.join(directory, "attribute_balance.json"), "w") as f:
    json.dump({"positives": positives.tolist(), "negatives": (200_000 - positives).tolist(),
               "examples": 200_000}, f)


def torch_fashionnet(m: Any, size: int, nhwc_flatten: bool):
  """hcjax.models.fashionnet.FashionNet (VGG16 trunk) in torch.nn, named as hcjax's params.

  nhwc_flatten: flatten pool5 (the top map) in NHWC order, as hcjax does (free for channels_last);
  otherwise in torch's NCHW order, with the flattened fcs' rows permuted to match (FLATTENED).
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from hcjax.models import vgg  # pylint: disable=g-import-not-at-top

  if m.trunk != "vgg16" or m.batch_norm:
    raise NotImplementedError("only the VGG16 trunk without BatchNorm is mirrored in torch")
  width, fc = int(m.width), int(m.fc_width)
  blocks = ((1, 2), (2, 2), (4, 3), (8, 3), (8, 3))        # VGG16: (width multiplier, convs)
  top = -(-size // 32)                                     # "SAME" pooling rounds up
  flattened = top * top * 8 * width                        # pool5, flattened (as VGG's fc6)

  class VGG16(nn.Module):
    """conv1..pool5 (hcjax's VGG16(classifier=False)): (pool4, pool5)."""

    def __init__(self):
      super().__init__()
      cin = 3
      for b, (mult, convs) in enumerate(blocks, start=1):
        for i in range(1, convs + 1):
          setattr(self, f"conv{b}_{i}", nn.Conv2d(cin, width * mult, 3, padding=1))
          cin = width * mult
      self.register_buffer("mean", torch.tensor(vgg.IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
      self.register_buffer("std", torch.tensor(vgg.IMAGENET_STD).view(1, 3, 1, 1) * 255.0)

    def forward(self, x):
      x = (x - self.mean) / self.std
      for b, (_, convs) in enumerate(blocks, start=1):
        for i in range(1, convs + 1):
          x = F.relu(getattr(self, f"conv{b}_{i}")(x), inplace=True)
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)           # = flax "SAME" max-pool
        if b == 4:
          pool4 = x
      return pool4, x

  class FashionNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.dropout = float(m.dropout_rate)
      self.vgg = VGG16()
      self.global_fc = nn.Linear(flattened, fc)
      self.landmark_fc = nn.Linear(flattened, fc)
      self.landmark_xy = nn.Linear(fc, NUM_LANDMARKS * 2)
      self.landmark_visibility = nn.Linear(fc, NUM_LANDMARKS * NUM_VISIBILITY)
      self.local_fc = nn.Linear(NUM_LANDMARKS * 8 * width, fc)
      self.fusion_fc = nn.Linear(2 * fc, fc)
      self.category = nn.Linear(fc, int(m.num_categories))
      self.attributes = nn.Linear(fc, int(m.num_attributes))
      self.embedding = nn.Linear(fc, int(m.embedding_dim))
      g, window = int(m.pool_grid), float(m.pool_window)
      steps = np.linspace(-window / 2, window / 2, g) if g > 1 else np.zeros(1)
      dy, dx = np.meshgrid(steps, steps, indexing="ij")
      self.register_buffer("offsets", torch.tensor(
          np.stack([dx.ravel(), dy.ravel()], -1), dtype=torch.float32))   # [G, 2] (dx, dy)

    def landmark_pool(self, features, landmarks):
      """[B, C, h, w], [B, K, 2] in [0, 1] -> [B, K, C]: max of a grid of bilinear reads."""
      h, w = features.shape[-2:]
      points = landmarks[:, :, None, :] + self.offsets                   # [B, K, G, 2]
      coords = points * torch.tensor([w, h], dtype=torch.float32) - 0.5  # hcjax's pixel coords
      grid = coords * torch.tensor([2.0 / (w - 1), 2.0 / (h - 1)]) - 1.0
      sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=True)                        # [B, C, K, G]
      return sampled.amax(-1).transpose(1, 2)

    def forward(self, image):
      b = image.shape[0]
      local_map, x = self.vgg(image)
      x = x.permute(0, 2, 3, 1).flatten(1) if nhwc_flatten else x.flatten(1)
      drop = lambda y: F.dropout(y, self.dropout, self.training)
      glob = drop(F.relu(self.global_fc(x)))
      pose = F.relu(self.landmark_fc(x))
      landmarks = torch.sigmoid(self.landmark_xy(pose).view(b, NUM_LANDMARKS, 2))
      visibility = self.landmark_visibility(pose).view(b, NUM_LANDMARKS, NUM_VISIBILITY)
      pooled = self.landmark_pool(local_map, landmarks.detach())
      gate = torch.softmax(visibility.detach(), -1)[..., 0]
      local = F.relu(self.local_fc((pooled * gate[..., None]).reshape(b, -1)))
      fused = drop(F.relu(self.fusion_fc(torch.cat([glob, local], -1))))
      emb = self.embedding(fused)
      return {"category": self.category(fused), "attributes": self.attributes(fused),
              "landmarks": landmarks, "visibility": visibility,
              "embedding": emb / torch.sqrt((emb * emb).sum(-1, keepdim=True) + 1e-12)}

  return FashionNet()


def flatten_rows(size: int, nhwc_flatten: bool) -> Callable[[str, np.ndarray], np.ndarray]:
  """copy_into_torch's convert: the flattened fcs' rows from NHWC order to torch's NCHW."""
  def convert(path: str, value: np.ndarray) -> np.ndarray:
    if nhwc_flatten or path not in FLATTENED:
      return value
    top = -(-size // 32)
    fc_in, fc_out = value.shape
    c = fc_in // (top * top)
    return value.reshape(top, top, c, fc_out).transpose(2, 0, 1, 3).reshape(fc_in, fc_out)
  return convert


def torch_fashion_loss(task, batch: dict[str, np.ndarray]) -> Callable[[dict[str, Any]], Any]:
  """FashionTask.loss (category benchmark) in torch: the same terms, weights and masks."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  w = task.weights
  if task.benchmark != "category" or w["item"]:
    raise NotImplementedError("only the category benchmark's loss is mirrored in torch")
  t = {k: torch.from_numpy(np.array(v)) for k, v in batch.items() if k != "image"}
  pos_weight = torch.from_numpy(np.array(task.positive_weights(), np.float32))
  has_cat = t["category"] >= 0
  known = t["attributes"] != 0
  positive = t["attributes"] == 1
  attr_weight = torch.where(positive, pos_weight[None, :], 1.0) * known
  valid = (t["visibility"] == 0) & (t["present"] > 0)
  present = t["present"] > 0
  count = lambda mask: mask.sum().clamp(min=1)

  def loss_fn(out):
    total = out["landmarks"].new_zeros(())
    if w["category"]:
      ce = F.cross_entropy(out["category"], t["category"].clamp(min=0).long(), reduction="none")
      total = total + w["category"] * (ce * has_cat).sum() / count(has_cat)
    if w["attributes"]:
      bce = F.binary_cross_entropy_with_logits(out["attributes"], positive.float(),
                                               reduction="none")
      total = total + w["attributes"] * (bce * attr_weight).sum() / count(known)
    d2 = (out["landmarks"] - t["landmarks"]).square().sum(-1)
    total = total + w["landmarks"] * (d2 * valid).sum() / count(valid)
    vce = F.cross_entropy(out["visibility"].reshape(-1, NUM_VISIBILITY),
                          t["visibility"].reshape(-1).long(), reduction="none")
    return total + w["visibility"] * (vce.view_as(present) * present).sum() / count(present)

  return loss_fn


def pool_agreement(torch_model, pool_window: float, pool_grid: int, seed: int = 0) -> float:
  """Max |difference| of hcjax's landmark_pool and the torch one on random features, with
  landmarks spread beyond the image so that windows cross the border (zeros outside)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from hcjax.models import fashionnet  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  features = rng.standard_normal((4, 14, 14, 16)).astype(np.float32)
  landmarks = rng.uniform(-0.2, 1.2, (4, NUM_LANDMARKS, 2)).astype(np.float32)
  ours = fashionnet.landmark_pool(jnp.asarray(features), jnp.asarray(landmarks), pool_window,
                                  pool_grid)
  with torch.no_grad():
    theirs = torch_model.landmark_pool(torch.from_numpy(features).permute(0, 3, 1, 2),
                                       torch.from_numpy(landmarks))
  return float(np.abs(np.asarray(ours) - theirs.numpy()).max())


def hcjax_forward(step, params: Any) -> tuple[dict[str, np.ndarray], float]:
  """(outputs, loss) of one train-mode forward with dropout off, as numpy."""
  import jax  # pylint: disable=g-import-not-at-top
  model = step.model.clone(dropout_rate=0.0)

  @jax.jit
  def forward(params, batch):
    outputs = model.apply({"params": params}, step.task.model_inputs(batch), train=True)
    return outputs, step.task.loss(outputs, batch)[0]

  outputs, loss = jax.device_get(forward(params, step.batch))
  return outputs, float(loss)


def agreement(step, reference: tuple[dict[str, np.ndarray], float], torch_model, images,
              loss_fn, rtol: float) -> str:
  """hcjax_forward's reference vs the torch model's forward (dropout off): losses (asserted)
  and outputs; and landmark_pool alone across the border."""
  import torch  # pylint: disable=g-import-not-at-top
  ours, loss = reference
  torch_model.dropout, rate = 0.0, torch_model.dropout
  with torch.no_grad():
    theirs = torch_model(images.float())
    their_loss = float(loss_fn(theirs))
  torch_model.dropout = rate
  diff = {k: float(np.abs(np.asarray(ours[k]) - theirs[k].numpy()).max())
          for k in ("landmarks", "visibility", "category", "attributes")}
  assert abs(their_loss - loss) <= rtol * abs(loss), (their_loss, loss)
  diff["landmark_pool alone (windows across the border)"] = pool_agreement(
      torch_model, step.model.pool_window, step.model.pool_grid)
  return (f"loss hcjax {loss:.6f}, torch {their_loss:.6f}; max |difference| " + ", ".join(
      f"{k} {v:.1e}" for k, v in diff.items()) + ".")


def bench_fashionnet(args) -> list[Row]:
  import torch  # pylint: disable=g-import-not-at-top
  config = load_config("fashionnet", "full")
  config.batch_size = args.batch
  config.input.size = args.size
  config.model.width = args.width
  config.model.fc_width = args.fc_width
  m = config.model
  batch = fashion_batch(args.batch, args.size, m.num_categories, m.num_attributes)
  with tempfile.TemporaryDirectory() as data_dir:
    config.data.dir = data_dir                       # no dataset: only the attribute counts
    write_attribute_balance(data_dir, m.num_attributes)
    start = time.perf_counter()
    step = trainer_step(config, batch)
    step.task.positive_weights()                     # read while the directory exists
  flops = float(step.cost.get("flops", float("nan")))
  print(f"hcjax: built, lowered and compiled the trainer's step in "
        f"{time.perf_counter() - start:.1f} s: {step.num_params:,} parameters, "
        f"{flops / 1e12:.3f} TFLOP/step ({flops / args.batch / 1e9:.1f} GFLOP/example) by XLA's "
        f"cost analysis, peak {hcjax_bytes(step) / 2**30:.1f} GiB by XLA's memory analysis.")
  chosen = layouts(args.torch_layout)
  slots = 1 if config.optimizer.name == "sgd" else 2
  # hcjax's peak (its temporaries are freed between steps, and torch's activations, about as
  # large, come and go in turn); torch's parameters, gradients and optimizer slots per layout;
  # the host copy of the initial parameters and the agreement check's copy.
  need = hcjax_bytes(step) + 4.0 * step.num_params * (len(chosen) * (2 + slots) + 2)
  available = memory_available()
  print(f"Memory: about {need / 2**30:.1f} GiB needed for hcjax and {len(chosen)} torch "
        f"model(s), {available / 2**30:.1f} GiB available.")
  if need > available and not args.ignore_memory:
    raise SystemExit("Not enough memory to run both implementations; run smaller (e.g. "
                     "--fc-width 1024, --batch 8, --torch-layout channels_last) or pass "
                     "--ignore-memory.")
  ours, params, _ = run_hcjax(step)
  reference = hcjax_forward(step, params)
  threads = cores()
  torch.set_num_threads(threads)
  print(f"torch.set_num_threads({threads}): the cores JAX's CPU client uses.")
  fns, n_torch = {"hcjax": ours}, 0
  for layout, channels_last in chosen.items():
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = torch_fashionnet(m, args.size, nhwc_flatten=channels_last)
    named = copy_into_torch(model, params, {}, flatten_rows(args.size, channels_last))
    model = model.to(memory_format=fmt).train()
    n_torch = sum(p.numel() for p in model.parameters())
    print(f"Parameters: hcjax {step.num_params:,}, torch ({layout}) {n_torch:,}.")
    assert n_torch == step.num_params, (n_torch, step.num_params)
    images = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    loss_fn = torch_fashion_loss(step.task, batch)
    print(f"Agreement with torch ({layout}; one train-mode forward, dropout off, same weights "
          f"and batch): " + agreement(step, reference, model, images, loss_fn, args.loss_rtol))
    optimizer = TorchOptimizer(named, config.optimizer, step.schedule, config.total_steps)
    fns[f"torch {layout}"] = torch_step(model, lambda images=images: images.float(), loss_fn,
                                        optimizer)
  del params, reference
  times, first = time_steps(fns, args.steps, args.warmup)
  print("(The first steps' losses differ by their dropout masks.)")
  return report(args, step, first, times, n_torch, None)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--size", type=int, default=224, help="input side, pixels")
  parser.add_argument("--width", type=int, default=64, help="VGG16's first-stage channels")
  parser.add_argument("--fc-width", type=int, default=4096,
                      help="the global, landmark, local and fusion fcs")
  parser.add_argument("--steps", type=int, default=3, help="timed steps per implementation")
  parser.add_argument("--warmup", type=int, default=1,
                      help="untimed steps per implementation (the first is the first loss)")
  parser.add_argument("--torch-layout", choices=("both", "NCHW", "channels_last"),
                      default="both", help="torch memory format(s) to time")
  parser.add_argument("--loss-rtol", type=float, default=1e-4,
                      help="relative tolerance of the dropout-free loss check")
  parser.add_argument("--ignore-memory", action="store_true",
                      help="run even if the memory estimate exceeds what is available")
  args = parser.parse_args()
  if args.warmup < 1:
    parser.error("--warmup must be >= 1")
  print(f"Machine: {machine()}")
  rows = bench_fashionnet(args)
  print_table(f"FashionNet (VGG16) train step (SGD) vs torch eager, B={args.batch}, "
              f"{args.size}x{args.size}, width {args.width}, fc {args.fc_width}", "torch", rows)


if __name__ == "__main__":
  main()

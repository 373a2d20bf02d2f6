"""AENet train step on CPU: hcjax's trainer vs the same network in PyTorch eager, in one run.

hcjax: the trainer's own step (hcjax.train.build + make_train_step, jitted as train_and_evaluate
jits it: state donated, sharded over the config's mesh) for configs/aenet.py:full (AENet_C,S,G:
ResNet-18 v1.5 width 64, live/spoof 2, 40 attributes, spoof type 11, illumination 5, environment
3, depth 1x14x14 and reflection 3x14x14 maps from 3x3 convs on stage 4 + sigmoid + bilinear
resize), AdamW with the config's masked weight decay, gradient clipping and warmup-cosine
schedule, and the task's loss with both map losses on (config.loss.geometric_maps="on").
torch: the same network written here with torch.nn (module names follow hcjax's parameter paths),
initialised from hcjax's initial variables, the same loss terms and weights, torch.optim.AdamW
(fused) with the same decay mask, clip_grad_norm_, the same schedule and the same skip of a
non-finite step. NCHW and channels_last are both timed (--torch-layout); the faster is the
reference. torch.set_num_threads(cores JAX uses).

Checks: equal parameter counts (asserted); the first step's losses from the same weights and
batch (printed, and asserted to agree within --loss-rtol). FLOPs per step from XLA's cost analysis
of the step compiled with XLA's own convolutions (it counts none inside hcjax's compiled CPU
kernels). Times: median (best) of --steps steps after --warmup, round-robin.
Prints the machine and a markdown table for BENCHMARKS.md; the ratio is hcjax / torch.
Run: python benchmarks/aenet.py [--batch 32 --size 224 --width 64 --steps 5]

The harness (the trainer's step, the torch optimizer that mirrors hcjax.optim, weight copying)
is reused by benchmarks/fashionnet.py.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import math
import os
import re
import time
from typing import Any, Callable
from unittest import mock

import numpy as np

from side_by_side import (Row, cores, interleaved_times, layouts, machine, print_table,
                          train_step_rows)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str):
  """configs/<name>.py's get_config(arg), loaded by path (configs/ is not a package)."""
  spec = importlib.util.spec_from_file_location(f"{name}_config",
                                                os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def memory_available() -> float:
  """Bytes the kernel says a new allocation can take now (MemAvailable); inf if unknown."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024.0
  except OSError:
    pass
  return float("inf")


# --- hcjax: the trainer's step -------------------------------------------------------------------

@dataclasses.dataclass
class TrainerStep:
  """The trainer's compiled step, before its state exists (compiling allocates no state)."""
  config: Any
  task: Any
  model: Any
  schedule: Callable[[Any], Any]
  compiled: Any
  init: Callable[[], Any]
  batch: Any
  num_params: int
  cost: dict[str, float]
  memory: Any          # XLA's CompiledMemoryStats of the step (None where unavailable)


@contextlib.contextmanager
def xla_convolutions():
  """hcjax.ops.convolution as plain lax.conv_general_dilated in functions traced inside (for
  XLA's cost analysis, which counts no FLOPs in a custom call and a loop body once)."""
  from hcjax.ops import convolution  # pylint: disable=g-import-not-at-top
  with mock.patch.object(convolution, "_conv", convolution._native), \
      mock.patch.object(convolution, "_strided_conv", convolution._native_strided):
    yield


def trainer_step(config, batch: dict[str, np.ndarray]) -> TrainerStep:
  """hcjax.train.build + make_train_step, jitted exactly as train_and_evaluate does, lowered
  from the state's abstract shapes: FLOPs and memory are known before anything is allocated."""
  import jax  # pylint: disable=g-import-not-at-top
  from hcjax import sharding, train  # pylint: disable=g-import-not-at-top
  task, model, mesh, tx, schedule, init, rng, abstract, shardings = train.build(config)
  step = jax.jit(train.make_train_step(model, task, tx, schedule, config),
                 out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,))
  data_sharding = sharding.batch_sharding(mesh)
  batch_spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=data_sharding)
                for k, v in batch.items()}
  compiled = step.lower(abstract, batch_spec).compile()
  # XLA cannot see into hcjax's compiled CPU kernels (it counts their FLOPs as none), so the
  # FLOPs come from the same step traced afresh with XLA's own convolutions.
  plain = jax.jit(train.make_train_step(model, task, tx, schedule, config),
                  out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,))
  with xla_convolutions():
    cost = plain.lower(abstract, batch_spec).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  try:
    memory = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    memory = None
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params))
  return TrainerStep(config, task, model, schedule, compiled,
                     lambda: jax.jit(init, out_shardings=shardings)(rng),
                     jax.device_put(batch, data_sharding), num_params, dict(cost or {}), memory)


def hcjax_bytes(step: TrainerStep) -> float:
  """Peak bytes of the step by XLA's account: arguments (state, batch), temporaries and the
  outputs that do not reuse a donated argument."""
  m = step.memory
  if m is None:
    return float("nan")
  return float(m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
               - m.alias_size_in_bytes)


def run_hcjax(step: TrainerStep) -> tuple[Callable[[], float], Any, Any]:
  """(run() -> this step's loss, initial params, initial batch_stats as numpy)."""
  import jax  # pylint: disable=g-import-not-at-top
  state = step.init()
  params, batch_stats = jax.device_get((state.params, state.batch_stats))  # before donation
  holder = [state]

  def run() -> float:
    holder[0], metrics = step.compiled(holder[0], step.batch)
    jax.block_until_ready(holder[0])
    return float(metrics["loss"])

  return run, params, batch_stats


# --- torch: weights and optimizer as hcjax has them ----------------------------------------------

def flat(tree: Any) -> dict[str, np.ndarray]:
  """A nested dict of arrays -> {"a/b/c": array}, hcjax's parameter path names."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(tree, sep="/").items()}


def torch_name(path: str) -> str:
  """hcjax's 'a/b/kernel' -> torch's 'a.b.weight' (scale -> weight, mean -> running_mean, ...)."""
  *modules, leaf = path.split("/")
  leaf = {"kernel": "weight", "scale": "weight", "mean": "running_mean",
          "var": "running_var"}.get(leaf, leaf)
  return ".".join(modules + [leaf])


def to_torch_layout(value: np.ndarray) -> np.ndarray:
  """Flax layouts -> torch's: conv HWIO -> OIHW, dense [in, out] -> [out, in]."""
  if value.ndim == 4:
    return value.transpose(3, 2, 0, 1)
  if value.ndim == 2:
    return value.T
  return value


def copy_into_torch(module, params: Any, batch_stats: Any,
                    convert: Callable[[str, np.ndarray], np.ndarray] = lambda p, v: v
                    ) -> dict[str, Any]:
  """Copies every hcjax variable into the torch module of the same path; asserts that each
  torch parameter gets exactly one, with the same shape. Returns {hcjax path: torch parameter}.
  `convert(path, value)` may rearrange a value first (e.g. a flatten in another layout)."""
  import torch  # pylint: disable=g-import-not-at-top
  tparams = dict(module.named_parameters())
  tbuffers = dict(module.named_buffers())
  named = {}
  with torch.no_grad():
    for tree, targets in ((params, tparams), (batch_stats, tbuffers)):
      for path, value in flat(tree).items():
        name = torch_name(path)
        assert name in targets, f"{path} has no torch counterpart {name}"
        value = np.array(to_torch_layout(convert(path, value)), copy=True)
        assert tuple(targets[name].shape) == value.shape, (path, targets[name].shape, value.shape)
        targets[name].copy_(torch.from_numpy(value))
        if targets is tparams:
          named[path] = targets[name]
  missing = set(tparams) - {torch_name(p) for p in named}
  assert not missing, f"torch parameters without an hcjax counterpart: {sorted(missing)}"
  return named


class TorchOptimizer:
  """hcjax.optim.make_optimizer(config.optimizer) plus the trainer's step logic, in torch.

  Same kind (adamw -> AdamW, adam -> Adam with L2 through the gradient, sgd -> SGD with
  momentum), the same parameters decayed (hcjax's weight_decay_exclude regex on hcjax's paths),
  clipping by global norm, the learning rate of hcjax's schedule at each step, and a non-finite
  loss or gradient norm skips the update as the trainer does. torch's fused CPU kernels: the
  fastest of loop / foreach / fused here.
  """

  def __init__(self, named: dict[str, Any], cfg: Any, schedule: Callable[[Any], Any],
               total_steps: int):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
    from hcjax import optim  # pylint: disable=g-import-not-at-top
    get = lambda key, default: cfg.get(key, default)
    if tuple(get("freeze", ()) or ()):
      raise NotImplementedError("config.optimizer.freeze is not mirrored in torch")
    exclude = re.compile(get("weight_decay_exclude", optim.DEFAULT_NO_DECAY))
    wd = float(get("weight_decay", 0.0))
    groups = [{"params": [p for k, p in named.items() if not exclude.search(k)],
               "weight_decay": wd},
              {"params": [p for k, p in named.items() if exclude.search(k)],
               "weight_decay": 0.0}]
    name = get("name", "adamw")
    if name in ("adam", "adamw"):
      cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
      self.opt = cls(groups, lr=0.0, betas=(get("b1", 0.9), get("b2", 0.999)),
                     eps=get("eps", 1e-8), fused=True)
    elif name == "sgd":
      momentum = get("momentum", 0.9) or 0.0
      self.opt = torch.optim.SGD(groups, lr=0.0, momentum=momentum,
                                 nesterov=bool(get("nesterov", False)), fused=True)
    else:
      raise ValueError(f"optimizer {name!r}")
    self.params = list(named.values())
    self.clip = float(get("grad_clip_norm", 0.0))
    self.lrs = np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(total_steps)), np.float64)
    self.count = 0

  def step(self, loss: float) -> None:
    """After loss.backward(): clip, skip if non-finite, update at this step's learning rate."""
    import torch  # pylint: disable=g-import-not-at-top
    if self.clip > 0:
      norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip, foreach=True)
    else:
      norm = torch.nn.utils.get_total_norm([p.grad for p in self.params], foreach=True)
    if math.isfinite(loss) and bool(torch.isfinite(norm)):
      lr = float(self.lrs[min(self.count, len(self.lrs) - 1)])
      for group in self.opt.param_groups:
        group["lr"] = lr
      self.opt.step()
    self.count += 1


def torch_step(model, inputs: Callable[[], Any], loss_fn: Callable[[Any], Any],
               optimizer: TorchOptimizer) -> Callable[[], float]:
  """run() -> loss: one eager train step (zero grads, forward, loss, backward, update)."""
  def run() -> float:
    optimizer.opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(inputs()))
    loss.backward()
    value = loss.item()
    optimizer.step(value)
    return value
  return run


def time_steps(fns: dict[str, Callable[[], float]], steps: int, warmup: int
               ) -> tuple[dict[str, list[float]], dict[str, float]]:
  """(times per name, the first step's loss per name). The first step of each is untimed (the
  loss check) and counts as warm-up; the rest are round-robin."""
  first = {name: fn() for name, fn in fns.items()}
  return interleaved_times(fns, steps, warmup=max(warmup - 1, 0)), first


def report(args, step: TrainerStep, first: dict[str, float], times: dict[str, list[float]],
           n_torch: int, loss_rtol: float | None) -> list[Row]:
  """Prints losses, FLOPs and times; asserts that the first losses agree within loss_rtol
  (None: they may not, e.g. different dropout masks); returns the table's rows."""
  print("First-step losses (same weights, same batch): " + ", ".join(
      f"{k} {v:.6f}" for k, v in first.items()) + ".")
  if loss_rtol is not None:
    ours = first["hcjax"]
    for name, value in first.items():
      assert abs(value - ours) <= loss_rtol * abs(ours), (name, value, ours)
  flops = float(step.cost.get("flops", float("nan")))
  print(f"XLA cost analysis of the step with XLA's convolutions: {flops / 1e9:.1f} GFLOP/step "
        f"({flops / args.batch / 1e9:.2f} GFLOP/example), "
        f"{step.cost.get('bytes accessed', 0) / 2**30:.1f} GiB accessed; XLA's peak estimate "
        f"{hcjax_bytes(step) / 2**30:.2f} GiB.")
  return train_step_rows(times, (step.num_params, n_torch), args.batch, flops, unit="images",
                         flops_label="XLA FLOPs")


# --- AENet ----------------------------------------------------------------------------------------

def aenet_batch(batch: int, size: int, map_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A batch as AntiSpoofingTask.preprocess makes it: uint8 faces (noise), labels, maps with
  targets on their class (depth for live, reflection for spoof), a few without one."""
  from hcjax.models import aenet  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  live_spoof = rng.integers(0, 2, batch).astype(np.int32)
  out = {"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
         "live_spoof": live_spoof,
         "attributes": rng.integers(0, 2, (batch, 40)).astype(np.int32)}
  for name in aenet.SEMANTIC_HEADS[1:]:
    out[name] = rng.integers(0, aenet.CLASSIFIERS[name], batch).astype(np.int32)
  for kind, channels in aenet.MAP_HEADS.items():
    own = live_spoof == (0 if kind == "depth" else 1)
    target = rng.uniform(0, 1, (batch, map_size, map_size, channels)).astype(np.float32)
    out[kind] = np.where(own[:, None, None, None], target, 0).astype(np.float32)
    out[f"{kind}_weight"] = np.where(own & (rng.random(batch) < 0.2), 0, 1).astype(np.float32)
  return out


def torch_aenet(semantic: bool, geometric: bool, width: int, map_size: int,
                geometry_stage: str = "stage4"):
  """hcjax.models.aenet.AENet (depth 18, ImageNet stem) in torch.nn, named as hcjax's params."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from hcjax.models import aenet  # pylint: disable=g-import-not-at-top

  bn = lambda c: nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)      # flax momentum 0.9

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = bn(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = bn(cout)
      self.proj = cin != cout or stride != 1
      if self.proj:
        self.proj_conv = nn.Conv2d(cin, cout, 1, stride, bias=False)
        self.proj_bn = bn(cout)

    def forward(self, x):
      y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
      if self.proj:
        x = self.proj_bn(self.proj_conv(x))
      return F.relu(x + y)

  class Backbone(nn.Module):
    def __init__(self):
      super().__init__()
      self.stem_conv = nn.Conv2d(3, width, 7, 2, 3, bias=False)
      self.stem_bn = bn(width)
      cin = width
      for i in range(4):
        for j in range(2):
          cout = width * 2 ** i
          setattr(self, f"stage{i + 1}_block{j + 1}", Block(cin, cout, 2 if i and not j else 1))
          cin = cout

    def forward(self, x):
      x = F.max_pool2d(F.relu(self.stem_bn(self.stem_conv(x))), 3, 2, 1)
      out = {}
      for i in range(4):
        for j in range(2):
          x = getattr(self, f"stage{i + 1}_block{j + 1}")(x)
        out[f"stage{i + 1}"] = x
      return out

  class AENet(nn.Module):
    def __init__(self):
      super().__init__()
      self.backbone = Backbone()
      self.heads = ("live_spoof",) + (aenet.SEMANTIC_HEADS if semantic else ())
      for name in self.heads:
        setattr(self, name, nn.Linear(8 * width, aenet.CLASSIFIERS[name]))
      if geometric:
        cin = width * 2 ** (int(geometry_stage[-1]) - 1)
        for name, channels in aenet.MAP_HEADS.items():
          setattr(self, name, nn.Conv2d(cin, channels, 3, 1, 1, bias=False))

    def forward(self, x):
      features = self.backbone(x)
      pooled = features["stage4"].mean((2, 3))
      out = {name: getattr(self, name)(pooled) for name in self.heads}
      if geometric:
        grid = features[geometry_stage]
        for name in aenet.MAP_HEADS:
          maps = torch.sigmoid(getattr(self, name)(grid))
          # jax.image.resize "bilinear": half-pixel centres, edge weights renormalised (= clamp)
          # when upsampling, antialiased when shrinking.
          out[name] = F.interpolate(maps, size=(map_size, map_size), mode="bilinear",
                                    align_corners=False, antialias=map_size < grid.shape[-1])
      return out

  return AENet()


def torch_aenet_loss(task, batch: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
  """AntiSpoofingTask.loss in torch: the same terms, weights and masks."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from hcjax.tasks import anti_spoofing  # pylint: disable=g-import-not-at-top
  t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items() if k != "image"}
  for kind in anti_spoofing.MAP_CHANNELS:
    t[kind] = t[kind].permute(0, 3, 1, 2)
  maps_on = task.map_losses() if task.geometric else {}
  w = task.weights

  def loss_fn(out):
    total = w["live_spoof"] * F.cross_entropy(out["live_spoof"], t["live_spoof"].long())
    if task.semantic:
      total = total + w["attributes"] * F.binary_cross_entropy_with_logits(
          out["attributes"], t["attributes"].float())   # mean over attributes, then examples
      for name in anti_spoofing.CLASS_HEADS:
        total = total + w[name] * F.cross_entropy(out[name], t[name].long())
    for kind, on in maps_on.items():
      if on:
        weight = t[f"{kind}_weight"]
        per_example = (out[kind] - t[kind]).square().mean((1, 2, 3))
        total = total + w[kind] * (per_example * weight).sum() / weight.sum().clamp(min=1.0)
    return total

  return loss_fn


def bench_aenet(args) -> list[Row]:
  import torch  # pylint: disable=g-import-not-at-top
  config = load_config("aenet", "full")
  config.batch_size = args.batch
  config.input.image_size = args.size
  config.model.width = args.width
  config.loss.geometric_maps = "on"     # both map losses, without reading a dataset
  batch = aenet_batch(args.batch, args.size, config.model.map_size)
  start = time.perf_counter()
  step = trainer_step(config, batch)
  print(f"hcjax: built, lowered and compiled the trainer's step in "
        f"{time.perf_counter() - start:.1f} s.")
  ours, params, batch_stats = run_hcjax(step)
  threads = cores()
  torch.set_num_threads(threads)
  print(f"torch.set_num_threads({threads}): the cores JAX's CPU client uses.")
  m = config.model
  fns, n_torch = {"hcjax": ours}, 0
  for layout, channels_last in layouts(args.torch_layout).items():
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = torch_aenet(m.semantic, m.geometric, m.width, m.map_size, m.geometry_stage)
    named = copy_into_torch(model, params, batch_stats)
    model = model.to(memory_format=fmt).train()
    n_torch = sum(p.numel() for p in model.parameters())
    print(f"Parameters: hcjax {step.num_params:,}, torch ({layout}) {n_torch:,}.")
    assert n_torch == step.num_params, (n_torch, step.num_params)
    images = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    optimizer = TorchOptimizer(named, config.optimizer, step.schedule, config.total_steps)
    fns[f"torch {layout}"] = torch_step(model, lambda images=images: images.float() / 255.0,
                                        torch_aenet_loss(step.task, batch), optimizer)
  times, first = time_steps(fns, args.steps, args.warmup)
  return report(args, step, first, times, n_torch, args.loss_rtol)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--size", type=int, default=224, help="input side, pixels")
  parser.add_argument("--width", type=int, default=64, help="ResNet-18's first-stage channels")
  parser.add_argument("--steps", type=int, default=5, help="timed steps per implementation")
  parser.add_argument("--warmup", type=int, default=2,
                      help="untimed steps per implementation (the first is the loss check)")
  parser.add_argument("--torch-layout", choices=("both", "NCHW", "channels_last"),
                      default="both", help="torch memory format(s) to time")
  parser.add_argument("--loss-rtol", type=float, default=1e-4,
                      help="relative tolerance of the first-step loss check")
  args = parser.parse_args()
  if args.warmup < 1:
    parser.error("--warmup must be >= 1")
  print(f"Machine: {machine()}")
  rows = bench_aenet(args)
  print_table(f"AENet_C,S,G train step (AdamW) vs torch eager, B={args.batch}, "
              f"{args.size}x{args.size}, ResNet-18 width {args.width}", "torch", rows)


if __name__ == "__main__":
  main()

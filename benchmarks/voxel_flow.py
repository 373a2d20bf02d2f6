"""Deep Voxel Flow: hcjax vs PyTorch, side by side, in one run on the same machine.

Sections (run all, or pick with --sections):
  sampling  hcjax.ops.sampling.bilinear_sample vs torch.nn.functional.grid_sample(bilinear,
            align_corners=True, padding_mode="border"): a batch of 8 images 256x256x3 sampled at
            a 256x256 grid displaced by a random flow of up to 8 pixels. Forward, and forward +
            backward (gradients w.r.t. image and coordinates, output kept), each library in its
            own layout (NHWC / NCHW, converted once outside the timing); hcjax jit-compiled and
            warm, torch with torch.set_num_threads(os.cpu_count()). Median (and best) of
            --repeats runs after warm-up, taken round-robin; peak memory as the resident-set
            growth of a fresh child process (median of 3).
  train_step  one Adam train step of hcjax.models.dvf.VoxelFlowNet(variant="unet", width=--width,
            mode="interpolate"), a standalone jitted step (model.apply with mutable batch_stats,
            L1 + 0.01·TV(flow) + 0.005·TV(mask), value_and_grad, optax.adam, inputs donated), vs
            the same U-Net written here in torch eager (same layers, BN, bilinear x2 upsampling
            with align_corners=False, grid_sample synthesis, torch.optim.Adam), initialised
            from hcjax's weights so the first losses can be compared; NCHW and channels_last
            both timed (--torch-layout), the faster is the reference. Equal parameter counts
            asserted; GFLOP/s from the analytic convolution FLOPs (x3). Median (and
            best) of --steps steps after --warmup, round-robin.
  convolutions  the U-Net's two 5x5 decoder convolutions (about 80% of its FLOPs) at the
            train_step shapes, each pass alone: forward, input gradient, weight gradient; XLA's
            (jax.lax.conv_general_dilated and its VJPs) and hcjax's (the VJP of
            hcjax.ops.convolution that the models use: the compiled CPU kernels) vs torch
            conv2d / conv2d_input / conv2d_weight in channels_last. Median of --repeats/6 (at
            least 3) runs.
Prints the machine and a markdown table per section for BENCHMARKS.md; the ratio is
hcjax / torch (lower is better for times and memory). Run: python benchmarks/voxel_flow.py
A section is a function bench_<name>(args) -> list[Row] registered in SECTIONS.

On a GPU, torch runs on CUDA too (when it sees one), the memory rows are left out (they measure
host memory), and the train step gains an MFU row: the analytic convolution FLOPs / median time /
the device's dense peak (side_by_side.PEAK_TFLOPS: TF32 for these float32 convolutions, the
default of both libraries there; --peak-tflops for an unlisted device, or on a CPU).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from typing import Callable

import numpy as np

from side_by_side import (Row, interleaved_times, layouts, machine, peak_memory, peak_tflops,
                          print_table, synchronized, torch_device, train_step_rows)


# --- sampling ------------------------------------------------------------------------------------

def sampling_problem(batch: int, size: int, channels: int = 3, seed: int = 0):
  """(image [B, S, S, C], coords [B, S, S, 2] in pixels, cotangent [B, S, S, C]), float32."""
  rng = np.random.default_rng(seed)
  image = rng.uniform(0.0, 1.0, (batch, size, size, channels)).astype(np.float32)
  y, x = np.mgrid[0:size, 0:size].astype(np.float32)
  flow = rng.uniform(-8.0, 8.0, (batch, size, size, 2)).astype(np.float32)
  coords = np.stack([x, y], -1)[None] + flow
  cotangent = rng.standard_normal((batch, size, size, channels)).astype(np.float32)
  return image, coords, cotangent


def hcjax_sampling_fns(image, coords, cotangent):
  """(forward, forward + backward): zero-argument callables that block until done."""
  import jax  # pylint: disable=g-import-not-at-top
  from hcjax.ops import sampling  # pylint: disable=g-import-not-at-top
  image, coords, cotangent = map(jax.device_put, (image, coords, cotangent))
  forward = jax.jit(lambda i, c: sampling.bilinear_sample(i, c, "border"))

  @jax.jit
  def forward_backward(i, c, g):
    out, vjp = jax.vjp(lambda i, c: sampling.bilinear_sample(i, c, "border"), i, c)
    return out, vjp(g)

  return (lambda: jax.block_until_ready(forward(image, coords)),
          lambda: jax.block_until_ready(forward_backward(image, coords, cotangent)))


def torch_sampling_fns(image, coords, cotangent, device: str = "cpu"):
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  size_h, size_w = image.shape[1:3]
  img = torch.from_numpy(image).permute(0, 3, 1, 2).contiguous().to(device)
  scale = np.array([2.0 / (size_w - 1), 2.0 / (size_h - 1)], np.float32)
  grid = torch.from_numpy(np.ascontiguousarray(coords * scale - 1.0)).to(device)
  cot = torch.from_numpy(cotangent).permute(0, 3, 1, 2).contiguous().to(device)
  sample = lambda i, g: torch.nn.functional.grid_sample(i, g, mode="bilinear",
                                                        padding_mode="border", align_corners=True)

  def forward():
    with torch.no_grad():
      return sample(img, grid)

  def forward_backward():
    i, g = img.detach().requires_grad_(True), grid.detach().requires_grad_(True)
    out = sample(i, g)
    return out, torch.autograd.grad(out, (i, g), cot)

  return synchronized(forward, device), synchronized(forward_backward, device)


def _memory_run(which: str, batch: int, size: int, backward: bool) -> Callable[[], object]:
  """Picklable factory for peak_memory's child: builds the data and returns the run."""
  problem = sampling_problem(batch, size)
  fns = hcjax_sampling_fns(*problem) if which == "hcjax" else torch_sampling_fns(*problem)
  return fns[1] if backward else fns[0]


def agreement(image, coords, cotangent, device: str) -> str:
  """Largest differences between the two libraries' output and gradients."""
  import jax  # pylint: disable=g-import-not-at-top
  from hcjax.ops import sampling  # pylint: disable=g-import-not-at-top
  out, vjp = jax.vjp(lambda i, c: sampling.bilinear_sample(i, c, "border"), image, coords)
  d_image, d_coords = vjp(cotangent)
  t_out, (t_image, t_grid) = torch_sampling_fns(image, coords, cotangent, device)[1]()
  t_out, t_image, t_grid = (t.detach().cpu() for t in (t_out, t_image, t_grid))
  size_h, size_w = image.shape[1:3]
  scale = np.array([2.0 / (size_w - 1), 2.0 / (size_h - 1)], np.float32)
  # torch's [-1, 1] round trip moves coordinates by an ulp: within that of an integer (a kink
  # of the bilinear weights) the two may take slopes on opposite sides, so d coords is compared
  # away from the kinks only.
  near_kink = np.any(np.abs(coords - np.round(coords)) < 1e-3, axis=-1)
  d_coords_diff = np.abs(np.asarray(d_coords) - t_grid.numpy() * scale).max(-1)
  diffs = (np.abs(np.asarray(out) - t_out.permute(0, 2, 3, 1).numpy()).max(),
           np.abs(np.asarray(d_image) - t_image.permute(0, 2, 3, 1).numpy()).max(),
           d_coords_diff[~near_kink].max(), near_kink.mean())
  return ("Agreement with torch (max |difference|): output {:.1e}, d image {:.1e}, "
          "d coords {:.1e} (pixels > 1e-3 from an integer coordinate; {:.2%} are closer)."
          .format(*diffs))


def bench_sampling(args) -> list[Row]:
  import jax  # pylint: disable=g-import-not-at-top
  problem, device = sampling_problem(args.batch, args.size), torch_device()
  print(agreement(*problem, device))
  ours, theirs = hcjax_sampling_fns(*problem), torch_sampling_fns(*problem, device)
  fns = {(name, kind): fn for name, pair in (("hcjax", ours), ("torch", theirs))
         for kind, fn in zip(("forward", "forward + backward"), pair)}
  times = interleaved_times(fns, args.repeats, settle=2)
  ms = lambda stat, key: 1e3 * stat(times[key])
  print("Best of {}, ms: ".format(args.repeats) + ", ".join(
      f"{name} {kind} {ms(min, (name, kind)):.2f}" for name, kind in fns) + ".")
  rows = [Row(f"{kind}{' (d image, d coords)' * (kind != 'forward')}, median ms",
              ms(statistics.median, ("hcjax", kind)), ms(statistics.median, ("torch", kind)))
          for kind in ("forward", "forward + backward")]
  if jax.default_backend() != "cpu":
    print("Memory rows left out: they measure host memory, and the work runs on the GPU.")
  elif not args.no_memory:
    for backward, label in ((False, "forward"), (True, "forward + backward")):
      mem = [peak_memory(functools.partial(_memory_run, which, args.batch, args.size, backward))
             for which in ("hcjax", "torch")]
      rows.append(Row(f"peak memory of one {label}, MiB", *mem, fmt="{:.0f}"))
  return rows


# --- train step ----------------------------------------------------------------------------------

TV_FLOW, TV_MASK, LEARNING_RATE = 0.01, 0.005, 1e-4


def train_problem(batch: int, size: int, seed: int = 1):
  """(frames [B, S, S, 6], target [B, S, S, 3]) in [-1, 1], float32, NHWC."""
  rng = np.random.default_rng(seed)
  frames = rng.uniform(-1.0, 1.0, (batch, size, size, 6)).astype(np.float32)
  target = rng.uniform(-1.0, 1.0, (batch, size, size, 3)).astype(np.float32)
  return frames, target


def conv_flops(size: int, width: int) -> float:
  """Forward multiply-adds x 2 of the U-Net's convolutions for one example (analytic check)."""
  w = width
  layers = ((size, 5, 6, w), (size // 2, 5, w, 2 * w), (size // 4, 3, 2 * w, 4 * w),
            (size // 8, 3, 4 * w, 4 * w), (size // 4, 3, 8 * w, 4 * w),
            (size // 2, 5, 6 * w, 2 * w), (size, 5, 3 * w, w), (size, 5, w, 3))
  return sum(2.0 * s * s * k * k * cin * cout for s, k, cin, cout in layers)


def hcjax_train_step(frames, target, width: int):
  """(step() -> loss, variables at init, compiled step's XLA cost analysis)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from hcjax.models import dvf  # pylint: disable=g-import-not-at-top
  from hcjax.ops import regularizers  # pylint: disable=g-import-not-at-top
  model = dvf.VoxelFlowNet(variant="unet", width=width, mode="interpolate")
  frames, target = jax.device_put(frames), jax.device_put(target)
  variables = model.init(jax.random.PRNGKey(0), frames, train=False)
  tx = optax.adam(LEARNING_RATE)

  def loss_fn(params, batch_stats):
    out, updates = model.apply({"params": params, "batch_stats": batch_stats}, frames,
                               train=True, mutable=["batch_stats"])
    loss = (jnp.abs(out["frame"] - target).mean()
            + TV_FLOW * regularizers.total_variation(out["flow"])
            + TV_MASK * regularizers.total_variation(out["mask"]))
    return loss, updates["batch_stats"]

  @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
  def step(params, batch_stats, opt_state):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  copy = lambda tree: jax.tree.map(jnp.array, tree)   # the step donates its inputs
  state = [copy(variables["params"]), copy(variables["batch_stats"])]
  state.append(tx.init(state[0]))
  cost = step.lower(*state).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost

  def run():
    *state[:], loss = step(*state)
    return float(jax.block_until_ready(loss))

  return run, jax.device_get(variables), cost


def torch_dvf_unet(width: int):
  """lxx1991/pytorch-voxel-flow's U-Net as hcjax.models.dvf builds it (variant="unet")."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  class ConvBN(nn.Module):
    def __init__(self, cin, cout, kernel):
      super().__init__()
      self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
      self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=1.0 - 0.9997)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)))

  class UNet(nn.Module):
    def __init__(self, w):
      super().__init__()
      self.conv1, self.conv2, self.conv3 = ConvBN(6, w, 5), ConvBN(w, 2 * w, 5), \
          ConvBN(2 * w, 4 * w, 3)
      self.bottleneck = ConvBN(4 * w, 4 * w, 3)
      self.deconv1, self.deconv2, self.deconv3 = ConvBN(8 * w, 4 * w, 3), \
          ConvBN(6 * w, 2 * w, 5), ConvBN(3 * w, w, 5)
      self.output = nn.Conv2d(w, 3, 5, padding=2)

    def forward(self, frames):                      # [B, 6, H, W] -> frame, flow, mask
      up = lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
      conv1 = self.conv1(frames)
      conv2 = self.conv2(F.max_pool2d(conv1, 2))
      conv3 = self.conv3(F.max_pool2d(conv2, 2))
      x = self.bottleneck(F.max_pool2d(conv3, 2))
      x = self.deconv1(torch.cat([up(x), conv3], 1))
      x = self.deconv2(torch.cat([up(x), conv2], 1))
      x = self.deconv3(torch.cat([up(x), conv1], 1))
      out = torch.tanh(self.output(x))
      flow, mask = 0.5 * out[:, :2], 0.5 * (1.0 + out[:, 2:])
      b, _, h, w = frames.shape
      ys = torch.linspace(-1.0, 1.0, h, device=frames.device)
      xs = torch.linspace(-1.0, 1.0, w, device=frames.device)
      grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], -1)[None]
      offset = flow.permute(0, 2, 3, 1)            # normalised units, as hcjax's voxel flow
      sample = lambda image, g: F.grid_sample(image, g, mode="bilinear", padding_mode="border",
                                              align_corners=True)
      frame = mask * sample(frames[:, :3], grid + offset) + \
          (1.0 - mask) * sample(frames[:, 3:], grid - offset)
      return frame, flow, mask

  return UNet(width)


def torch_train_step(frames, target, width: int, variables, channels_last: bool,
                     device: str = "cpu"):
  """step() -> loss for the torch U-Net initialised from hcjax's variables; and its size."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  model = torch_dvf_unet(width)
  params = variables["params"]
  with torch.no_grad():
    for name, module in model.named_children():
      conv = module if name == "output" else module.conv
      conv.weight.copy_(torch.from_numpy(np.array(params[name]["kernel"]).transpose(3, 2, 0, 1)))
      if name == "output":
        conv.bias.copy_(torch.from_numpy(np.array(params[name]["bias"])))
      else:
        module.bn.weight.copy_(torch.from_numpy(np.array(params[f"{name}_bn"]["scale"])))
        module.bn.bias.copy_(torch.from_numpy(np.array(params[f"{name}_bn"]["bias"])))
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(device=device, memory_format=fmt).train()
  x = torch.from_numpy(frames).permute(0, 3, 1, 2).to(device).contiguous(memory_format=fmt)
  y = torch.from_numpy(target).permute(0, 3, 1, 2).to(device).contiguous(memory_format=fmt)
  opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
  tv = lambda v: ((v[..., :, 1:] - v[..., :, :-1]).abs().mean()
                  + (v[..., 1:, :] - v[..., :-1, :]).abs().mean())

  def run():
    opt.zero_grad(set_to_none=True)
    frame, flow, mask = model(x)
    loss = (frame - y).abs().mean() + TV_FLOW * tv(flow) + TV_MASK * tv(mask)
    loss.backward()
    opt.step()
    return loss.item()

  return run, sum(p.numel() for p in model.parameters())


def bench_train_step(args) -> list[Row]:
  import jax  # pylint: disable=g-import-not-at-top
  frames, target = train_problem(args.batch, args.size)
  start = time.perf_counter()
  ours, variables, cost = hcjax_train_step(frames, target, args.width)
  n_ours = sum(np.size(p) for p in jax.tree.leaves(variables["params"]))
  print(f"hcjax: lowered and compiled in {time.perf_counter() - start:.1f} s.")
  device, theirs = torch_device(), {}
  for layout, channels_last in layouts(args.torch_layout).items():
    theirs[layout], n_theirs = torch_train_step(frames, target, args.width, variables,
                                                channels_last, device)
    print(f"Parameters: hcjax {n_ours:,}, torch ({layout}, {device}) {n_theirs:,}.")
    assert n_ours == n_theirs, (n_ours, n_theirs)
  # The same initial weights and batch: the first losses agree (later ones drift a little as
  # Adam's first steps are about lr·sign(g)); these runs are also the first warm-up.
  fns = {"hcjax": ours, **{f"torch {k}": v for k, v in theirs.items()}}
  losses = {name: [fn() for _ in range(2)] for name, fn in fns.items()}
  print("Losses of the first two steps: " + "; ".join(
      f"{name} " + ", ".join(f"{v:.6f}" for v in values) for name, values in losses.items()))
  flops = float(cost.get("flops", float("nan")))
  analytic = 3 * args.batch * conv_flops(args.size, args.width)
  # XLA's count misses the convolutions hcjax runs as compiled kernels (and counts a loop body
  # once, for the chunked fallback); the rate below uses the analytic convolution FLOPs.
  print(f"XLA cost analysis of the jitted step: {flops / 1e9:.2f} GFLOP/step "
        f"({flops / args.batch / 1e9:.2f} GFLOP/example), "
        f"{cost.get('bytes accessed', 0) / 2**30:.1f} GiB accessed; analytic convolutions x 3 "
        f"(forward + 2 backward): {analytic / 1e9:.2f} GFLOP/step.")
  times = interleaved_times(fns, args.steps, warmup=max(args.warmup - 2, 0))
  return train_step_rows(times, (n_ours, n_theirs), args.batch, analytic, unit="examples",
                         flops_label="convolution FLOPs", peak=device_peak(args))


def device_peak(args) -> float | None:
  """The peak FLOP/s for the MFU row: --peak-tflops, else the listed accelerator's float32
  (TF32) peak; None on a CPU or an unlisted device."""
  import jax  # pylint: disable=g-import-not-at-top
  kind = jax.devices()[0].device_kind
  tflops = args.peak_tflops or (peak_tflops(kind) if jax.default_backend() != "cpu" else None)
  if tflops is None:
    print(f"No MFU row: no peak is listed for {kind!r} (pass --peak-tflops).")
    return None
  source = "--peak-tflops" if args.peak_tflops else "the data sheet's dense TF32 peak"
  print(f"MFU against {tflops:g} TFLOP/s ({source}) on {kind}.")
  return tflops * 1e12


# --- convolutions --------------------------------------------------------------------------------

def decoder_convs(size: int, width: int) -> dict[str, tuple[int, int, int, int]]:
  """The U-Net's two 5x5 decoder convs (about 80% of its FLOPs): name -> (side, k, Cin, Cout)."""
  return {"deconv2": (size // 2, 5, 6 * width, 2 * width), "deconv3": (size, 5, 3 * width, width)}


def hcjax_conv_fns(batch: int, side: int, k: int, cin: int, cout: int):
  """Each training pass (forward, input gradient, weight gradient; NHWC, HWIO, jitted) of XLA's
  convolution and of the one hcjax's models use (hcjax.ops.convolution: its compiled CPU
  kernels, or with HCJAX_CPU_KERNELS=0 the chunked-GEMM weight gradient)."""
  import jax  # pylint: disable=g-import-not-at-top
  from hcjax.ops import convolution  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = jax.device_put(rng.standard_normal((batch, side, side, cin), np.float32))
  w = jax.device_put(rng.standard_normal((k, k, cin, cout), np.float32) * 0.01)
  dy = jax.device_put(rng.standard_normal((batch, side, side, cout), np.float32))
  fns = {}
  for name, op in (("XLA", jax.lax.conv_general_dilated),
                   ("hcjax", convolution.conv_general_dilated)):
    conv = lambda x, w, op=op: op(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    # The forward pass as differentiation runs it (unused outputs are compiled away).
    passes = {"forward": jax.jit(lambda x, w, dy, conv=conv: jax.vjp(conv, x, w)[0]),
              "d input": jax.jit(lambda x, w, dy, conv=conv: jax.vjp(conv, x, w)[1](dy)[0]),
              "d weight": jax.jit(lambda x, w, dy, conv=conv: jax.vjp(conv, x, w)[1](dy)[1])}
    for part, fn in passes.items():
      fns[f"{part}, {name}"] = lambda fn=fn: jax.block_until_ready(fn(x, w, dy))
  return fns


def torch_conv_fns(batch: int, side: int, k: int, cin: int, cout: int, device: str = "cpu"):
  """torch's conv2d and its two gradients (oneDNN on a CPU, cuDNN on a GPU), channels_last."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  rng = np.random.default_rng(0)
  tensor = lambda *shape, scale=1.0: torch.from_numpy(
      rng.standard_normal(shape, np.float32) * scale).to(device).contiguous(
          memory_format=torch.channels_last)
  x, w, dy = tensor(batch, cin, side, side), tensor(cout, cin, k, k, scale=0.01), \
      tensor(batch, cout, side, side)
  pad = k // 2
  with_grad = torch.nn.grad
  fns = {"forward": lambda: torch.nn.functional.conv2d(x, w, padding=pad),
         "d input": lambda: with_grad.conv2d_input(x.shape, w, dy, padding=pad),
         "d weight": lambda: with_grad.conv2d_weight(x, w.shape, dy, padding=pad)}
  return {name: synchronized(fn, device) for name, fn in fns.items()}


def bench_convolutions(args) -> list[Row]:
  """Where the train step's time goes: each pass of the dominant convolutions, alone."""
  rows, device = [], torch_device()
  for name, (side, k, cin, cout) in decoder_convs(args.size, args.width).items():
    ours = hcjax_conv_fns(args.batch, side, k, cin, cout)
    theirs = torch_conv_fns(args.batch, side, k, cin, cout, device)
    fns = {**{("hcjax", p): f for p, f in ours.items()},
           **{("torch", p): f for p, f in theirs.items()}}
    times = interleaved_times(fns, max(3, args.repeats // 6), warmup=1)
    gflop = 2.0 * args.batch * side * side * k * k * cin * cout / 1e9
    for part in ours:
      t_ours = statistics.median(times[("hcjax", part)])
      t_theirs = statistics.median(times[("torch", part.split(",")[0])])
      rows.append(Row(f"{name} {k}x{k} {cin}->{cout} at {side}x{side}, {part}: ms "
                      f"({gflop / t_ours:.0f} vs {gflop / t_theirs:.0f} GFLOP/s)",
                      1e3 * t_ours, 1e3 * t_theirs, fmt="{:.0f}"))
  return rows


# --- sections ------------------------------------------------------------------------------------

SECTIONS = {
    # name: (bench function, table title (formatted with the arguments), reference's name)
    "sampling": (bench_sampling, "bilinear_sample vs torch grid_sample, B={batch}, "
                 "{size}x{size}x3 -> {size}x{size}", "torch"),
    "train_step": (bench_train_step, "DVF U-Net train step (Adam) vs torch eager, B={batch}, "
                   "{size}x{size}, width {width}", "torch"),
    "convolutions": (bench_convolutions, "The U-Net's 5x5 decoder convolutions, each pass alone, "
                     "B={batch}, width {width}: XLA's and hcjax's vs torch (oneDNN on a CPU, "
                     "cuDNN on a GPU; channels_last)", "torch"),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
  parser.add_argument("--repeats", type=int, default=30, help="timed runs per measurement")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=256, help="image and output side, pixels")
  parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory rows")
  parser.add_argument("--width", type=int, default=64, help="train_step: the U-Net's width")
  parser.add_argument("--steps", type=int, default=10, help="train_step: timed steps")
  parser.add_argument("--warmup", type=int, default=3, help="train_step: untimed steps")
  parser.add_argument("--torch-layout", choices=("both", "NCHW", "channels_last"),
                      default="both", help="train_step: torch memory format(s) to time")
  parser.add_argument("--peak-tflops", type=float, default=None,
                      help="train_step: the device's peak for the MFU row (default: listed "
                      "accelerators' TF32 peak; none on a CPU)")
  args = parser.parse_args()
  print(f"Machine: {machine()}")
  for name in args.sections:
    bench, title, reference = SECTIONS[name]
    print(f"\nSection {name}:")
    rows = bench(args)
    print_table(title.format(**vars(args)), reference, rows)


if __name__ == "__main__":
  main()

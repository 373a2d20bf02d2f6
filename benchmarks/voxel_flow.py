"""Deep Voxel Flow on CPU: hcjax vs PyTorch, side by side, in one run on the same machine.

Sections (run all, or pick with --sections):
  sampling  hcjax.ops.sampling.bilinear_sample vs torch.nn.functional.grid_sample(bilinear,
            align_corners=True, padding_mode="border"): a batch of 8 images 256x256x3 sampled at
            a 256x256 grid displaced by a random flow of up to 8 pixels. Forward, and forward +
            backward (gradients w.r.t. image and coordinates, output kept), each library in its
            own layout (NHWC / NCHW, converted once outside the timing); hcjax jit-compiled and
            warm, torch with torch.set_num_threads(os.cpu_count()). Median (and best) of
            --repeats runs after warm-up, taken round-robin; peak memory as the resident-set
            growth of a fresh child process (median of 3).
Prints the machine and a markdown table per section for BENCHMARKS.md; the ratio is
hcjax / torch (lower is better for times and memory). Run: python benchmarks/voxel_flow.py
A section is a function bench_<name>(args) -> list[Row] registered in SECTIONS.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing as mp
import os
import platform
import statistics
import time
from typing import Callable

import numpy as np


@dataclasses.dataclass
class Row:
  """One line of a section's table: the same measurement for hcjax and the reference."""
  measurement: str
  hcjax: float
  reference: float
  fmt: str = "{:.2f}"


def machine() -> str:
  import jax  # pylint: disable=g-import-not-at-top
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  try:
    import torch  # pylint: disable=g-import-not-at-top
    torch_version = torch.__version__
  except ImportError:
    torch_version = "not installed"
  memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
  return (f"{model} ({platform.machine()}), {os.cpu_count()} cores, {memory:.0f} GiB, device "
          f"{jax.devices()[0].device_kind}, Python {platform.python_version()}, jax "
          f"{jax.__version__}, torch {torch_version}.")


def interleaved_times(fns: dict[object, Callable[[], object]], repeats: int,
                      warmup: int = 3) -> dict[object, list[float]]:
  """Wall times (s) of each fn over `repeats` rounds, after `warmup` untimed calls each.

  Round-robin, so a busy spell on a shared machine hits every candidate alike.
  """
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return times


def _rss_kib(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field):
        return int(line.split()[1])
  return 0


def _peak_child(make_run: Callable[[], Callable[[], object]], queue) -> None:
  """Peak resident growth (MiB) of one run, after imports, data and compilation."""
  run = make_run()
  run()                                      # compile / warm up
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")                             # reset the peak to the current size
  base = _rss_kib("VmRSS")
  run()
  queue.put((_rss_kib("VmHWM") - base) / 1024)


def peak_memory(make_run: Callable[[], Callable[[], object]], trials: int = 3) -> float:
  """Peak memory of make_run()() in MiB: resident-set growth in a fresh process, the median of
  `trials` processes (one alone is noisy under memory pressure); nan where unavailable."""
  if not os.path.exists("/proc/self/clear_refs"):
    return float("nan")
  ctx = mp.get_context("spawn")
  values = []
  for _ in range(trials):
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(make_run, queue))
    proc.start()
    values.append(queue.get())
    proc.join()
  return statistics.median(values)


def print_table(title: str, reference: str, rows: list[Row]) -> None:
  print(f"\n### {title}\n")
  print(f"| measurement | hcjax | {reference} | ratio hcjax / {reference} |")
  print("|---|---|---|---|")
  for row in rows:
    ratio = f"{row.hcjax / row.reference:.2f}" if row.reference > 0 else "n/a"
    print(f"| {row.measurement} | {row.fmt.format(row.hcjax)} | "
          f"{row.fmt.format(row.reference)} | {ratio} |")


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


def torch_sampling_fns(image, coords, cotangent):
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  size_h, size_w = image.shape[1:3]
  img = torch.from_numpy(image).permute(0, 3, 1, 2).contiguous()
  scale = np.array([2.0 / (size_w - 1), 2.0 / (size_h - 1)], np.float32)
  grid = torch.from_numpy(np.ascontiguousarray(coords * scale - 1.0))
  cot = torch.from_numpy(cotangent).permute(0, 3, 1, 2).contiguous()
  sample = lambda i, g: torch.nn.functional.grid_sample(i, g, mode="bilinear",
                                                        padding_mode="border", align_corners=True)

  def forward():
    with torch.no_grad():
      return sample(img, grid)

  def forward_backward():
    i, g = img.detach().requires_grad_(True), grid.detach().requires_grad_(True)
    out = sample(i, g)
    return out, torch.autograd.grad(out, (i, g), cot)

  return forward, forward_backward


def _memory_run(which: str, batch: int, size: int, backward: bool) -> Callable[[], object]:
  """Picklable factory for peak_memory's child: builds the data and returns the run."""
  problem = sampling_problem(batch, size)
  fns = hcjax_sampling_fns(*problem) if which == "hcjax" else torch_sampling_fns(*problem)
  return fns[1] if backward else fns[0]


def agreement(image, coords, cotangent) -> str:
  """Largest differences between the two libraries' output and gradients."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from hcjax.ops import sampling  # pylint: disable=g-import-not-at-top
  out, vjp = jax.vjp(lambda i, c: sampling.bilinear_sample(i, c, "border"), image, coords)
  d_image, d_coords = vjp(cotangent)
  t_out, (t_image, t_grid) = torch_sampling_fns(image, coords, cotangent)[1]()
  size_h, size_w = image.shape[1:3]
  scale = np.array([2.0 / (size_w - 1), 2.0 / (size_h - 1)], np.float32)
  # torch's [-1, 1] round trip moves coordinates by an ulp: within that of an integer (a kink
  # of the bilinear weights) the two may take slopes on opposite sides, so d coords is compared
  # away from the kinks only.
  near_kink = np.any(np.abs(coords - np.round(coords)) < 1e-3, axis=-1)
  d_coords_diff = np.abs(np.asarray(d_coords) - t_grid.numpy() * scale).max(-1)
  diffs = (np.abs(np.asarray(out) - t_out.detach().permute(0, 2, 3, 1).numpy()).max(),
           np.abs(np.asarray(d_image) - t_image.permute(0, 2, 3, 1).numpy()).max(),
           d_coords_diff[~near_kink].max(), near_kink.mean())
  return ("Agreement with torch (max |difference|): output {:.1e}, d image {:.1e}, "
          "d coords {:.1e} (pixels > 1e-3 from an integer coordinate; {:.2%} are closer)."
          .format(*diffs))


def bench_sampling(args) -> list[Row]:
  problem = sampling_problem(args.batch, args.size)
  print(agreement(*problem))
  ours, theirs = hcjax_sampling_fns(*problem), torch_sampling_fns(*problem)
  fns = {(name, kind): fn for name, pair in (("hcjax", ours), ("torch", theirs))
         for kind, fn in zip(("forward", "forward + backward"), pair)}
  times = interleaved_times(fns, args.repeats)
  ms = lambda stat, key: 1e3 * stat(times[key])
  print("Best of {}, ms: ".format(args.repeats) + ", ".join(
      f"{name} {kind} {ms(min, (name, kind)):.2f}" for name, kind in fns) + ".")
  rows = [Row(f"{kind}{' (d image, d coords)' * (kind != 'forward')}, median ms",
              ms(statistics.median, ("hcjax", kind)), ms(statistics.median, ("torch", kind)))
          for kind in ("forward", "forward + backward")]
  if not args.no_memory:
    for backward, label in ((False, "forward"), (True, "forward + backward")):
      mem = [peak_memory(functools.partial(_memory_run, which, args.batch, args.size, backward))
             for which in ("hcjax", "torch")]
      rows.append(Row(f"peak memory of one {label}, MiB", *mem, fmt="{:.0f}"))
  return rows


# --- sections ------------------------------------------------------------------------------------

SECTIONS = {
    # name: (bench function, table title (formatted with the arguments), reference's name)
    "sampling": (bench_sampling, "bilinear_sample vs torch grid_sample, B={batch}, "
                 "{size}x{size}x3 -> {size}x{size}", "torch"),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
  parser.add_argument("--repeats", type=int, default=30, help="timed runs per measurement")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=256, help="image and output side, pixels")
  parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory rows")
  args = parser.parse_args()
  print(f"Machine: {machine()}")
  for name in args.sections:
    bench, title, reference = SECTIONS[name]
    print(f"\nSection {name}:")
    rows = bench(args)
    print_table(title.format(**vars(args)), reference, rows)


if __name__ == "__main__":
  main()

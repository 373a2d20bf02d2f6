"""The harness the side-by-side benchmarks share: round-robin timing, peak memory, the machine's
description, markdown tables, and where an accelerator is present its peak FLOP/s for MFU and
the torch device that matches JAX's.

Each benchmark script runs hcjax and its reference in one process on one machine, so a busy
spell on a shared machine slows both alike, and reports ratios hcjax / reference.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import platform
import statistics
import time
from typing import Callable

# Dense tensor-core peak TFLOP/s by device kind (first substring match), for MFU:
# (float32, bfloat16). float32 convolutions and matrix products run on TF32 tensor cores by
# default in both libraries on these GPUs (JAX's DEFAULT precision, torch's cudnn.allow_tf32),
# and as one bfloat16 pass on TPUs. Vendor data-sheet numbers, without sparsity.
PEAK_TFLOPS = (
    ("NVL", None),                     # H100 / H200 NVL: lower clocks; pass --peak-tflops
    ("H100 PCIe", (378.0, 756.0)),
    ("H100", (494.7, 989.4)),          # SXM5 / HBM3
    ("H200", (494.7, 989.4)),
    ("A100", (156.0, 312.0)),
    ("TPU v4", (275.0, 275.0)),
    ("TPU v5 lite", (197.0, 197.0)),   # v5e
    ("TPU v5", (459.0, 459.0)),        # v5p
    ("TPU v6 lite", (918.0, 918.0)),   # v6e (Trillium)
)


@dataclasses.dataclass
class Row:
  """One line of a section's table: the same measurement for hcjax and the reference."""
  measurement: str
  hcjax: float
  reference: float
  fmt: str = "{:.2f}"


def cores() -> int:
  """CPU cores this process may run on: XLA's CPU client sizes its thread pool to them."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


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


def peak_tflops(device_kind: str, dtype: str = "float32") -> float | None:
  """The accelerator's dense peak in TFLOP/s for `dtype` ("float32" or "bfloat16"), or None
  for a CPU or an unlisted device (then pass the peak yourself)."""
  for name, peaks in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return None if peaks is None else peaks[dtype == "bfloat16"]
  return None


def torch_device() -> str:
  """"cuda" when JAX runs on an NVIDIA GPU and torch sees one, else "cpu": both libraries on
  the same kind of device."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != "gpu":
    return "cpu"
  import torch  # pylint: disable=g-import-not-at-top
  if torch.cuda.is_available():
    return "cuda"
  print("torch sees no CUDA device: its side runs on the CPU, so the ratios (and torch's MFU) "
        "compare a GPU with a CPU.")
  return "cpu"


def synchronized(fn: Callable[[], object], device: str) -> Callable[[], object]:
  """fn, then wait for the torch device's queued work: CUDA calls return before they finish."""
  if device == "cpu":
    return fn
  import torch  # pylint: disable=g-import-not-at-top

  def run():
    out = fn()
    torch.cuda.synchronize()
    return out
  return run


def interleaved_times(fns: dict[object, Callable[[], object]], repeats: int,
                      warmup: int = 3, settle: int = 0) -> dict[object, list[float]]:
  """Wall times (s) of each fn over `repeats` rounds, after `warmup` untimed calls each.

  Round-robin, so a busy spell on a shared machine hits every candidate alike. In each round a
  candidate first makes `settle` untimed calls: torch's OpenMP workers spin on the cores for a
  while after an op (XLA's pool briefly), which slows whatever runs next in the process by up
  to 2x on a 2-core machine, a cost neither library has when it runs alone. Use it for
  millisecond ops; for second-long steps the spin is noise.
  """
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      for _ in range(settle):
        fn()
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
  """Peak host memory of make_run()() in MiB: resident-set growth in a fresh process, the median
  of `trials` processes (one alone is noisy under memory pressure); nan where unavailable.
  make_run must be picklable (a module-level function or a partial of one)."""
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


def layouts(choice: str) -> dict[str, bool]:
  """--torch-layout -> {name: channels_last}."""
  options = {"NCHW": False, "channels_last": True}
  return options if choice == "both" else {choice: options[choice]}


def train_step_rows(times: dict[str, list[float]], params: tuple[int, int], batch: int,
                    flops: float, *, unit: str, flops_label: str,
                    peak: float | None = None) -> list[Row]:
  """A train-step table from step times (s) of "hcjax" and torch layouts; the faster torch
  layout (by median) is the reference. Prints the medians and which layout that was. With the
  device's `peak` FLOP/s, a last row gives the model FLOPs utilisation of each."""
  med = {name: statistics.median(t) for name, t in times.items()}
  print(f"Train step over {len(times['hcjax'])} steps, median (best) ms: " + ", ".join(
      f"{name} {1e3 * med[name]:.0f} ({1e3 * min(times[name]):.0f})" for name in times) + ".")
  reference = min((k for k in times if k != "hcjax"), key=med.get)
  print(f"Reference: {reference} (the faster torch layout).")
  ref = med[reference]
  rows = [Row("parameters", *params, fmt="{:,.0f}"),
          Row("train step, median ms", 1e3 * med["hcjax"], 1e3 * ref, fmt="{:.0f}"),
          Row("train step, best ms", 1e3 * min(times["hcjax"]), 1e3 * min(times[reference]),
              fmt="{:.0f}"),
          Row(f"throughput, {unit}/s (higher is better)", batch / med["hcjax"], batch / ref),
          Row(f"{flops_label} / median time, GFLOP/s (higher is better)",
              flops / med["hcjax"] / 1e9, flops / ref / 1e9, fmt="{:.1f}")]
  if peak:
    rows.append(Row(f"MFU: {flops_label} / median time / peak {peak / 1e12:g} TFLOP/s, % "
                    "(higher is better)", 100 * flops / med["hcjax"] / peak,
                    100 * flops / ref / peak, fmt="{:.1f}"))
  return rows

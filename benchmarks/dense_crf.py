"""Dense-CRF mean field: hcjax (permutohedral lattice in XLA) vs pydensecrf (C++), side by side.

One 500x375 photograph (scikit-image's astronaut), 21 labels, 10 iterations, pydensecrf's example
kernels (Gaussian sxy 3 / compat 3, bilateral sxy 80 / srgb 13 / compat 10), symmetric
normalisation. Measured in one run on the same machine:
  * time per image (hcjax jit-compiled and warm) and the ratio hcjax / pydensecrf;
  * a batch of 8 different images: images/s;
  * peak memory of the inference (resident-set growth of a fresh child process);
  * hcjax forward + backward (gradients w.r.t. unary and both compatibilities) vs forward;
    pydensecrf has no gradients.
Prints a markdown table for BENCHMARKS.md. Run: python benchmarks/dense_crf.py
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time

import numpy as np

HEIGHT, WIDTH, LABELS, ITERATIONS = 375, 500, 21, 10
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
          "astronaut", "chelsea")


def problem(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(unary energies [H, W, L] float32, image [H, W, 3] uint8): smooth random label beliefs."""
  from skimage import data, transform  # pylint: disable=g-import-not-at-top
  image = getattr(data, name)()
  if image.ndim == 2:
    image = np.stack([image] * 3, -1)
  image = (transform.resize(image[..., :3], (HEIGHT, WIDTH)) * 255).round().astype(np.uint8)
  rng = np.random.default_rng(seed)
  coarse = rng.normal(size=(HEIGHT // 16 + 2, WIDTH // 16 + 2, LABELS))
  from PIL import Image  # pylint: disable=g-import-not-at-top
  logits = np.stack([np.asarray(Image.fromarray(coarse[..., l].astype(np.float32)).resize(
      (WIDTH, HEIGHT), Image.BILINEAR)) for l in range(LABELS)], -1) * 2.0
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return (-np.log(p)).astype(np.float32), np.ascontiguousarray(image)


def pydensecrf_inference(unary: np.ndarray, image: np.ndarray, iterations: int = ITERATIONS
                         ) -> np.ndarray:
  import pydensecrf.densecrf as dcrf  # pylint: disable=g-import-not-at-top
  crf = dcrf.DenseCRF2D(WIDTH, HEIGHT, LABELS)
  crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(-1, LABELS).T))
  crf.addPairwiseGaussian(sxy=3, compat=3)
  crf.addPairwiseBilateral(sxy=80, srgb=13, rgbim=image, compat=10)
  return np.asarray(crf.inference(iterations)).T.reshape(HEIGHT, WIDTH, LABELS)


def hcjax_fn(iterations: int = ITERATIONS):
  import jax  # pylint: disable=g-import-not-at-top
  from hcjax.ops import dense_crf  # pylint: disable=g-import-not-at-top
  return jax.jit(lambda u, im: dense_crf.mean_field(u, im, num_iterations=iterations))


def best_of(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def _rss_kib(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field):
        return int(line.split()[1])
  return 0


def _peak_child(which: str, queue) -> None:
  """Peak resident growth (MiB) of one inference, after imports, data and compilation."""
  import jax  # pylint: disable=g-import-not-at-top
  unary, image = problem("astronaut", 0)
  if which == "hcjax":
    fn = hcjax_fn()
    run = lambda: jax.block_until_ready(fn(unary[None], image[None]))
  else:
    run = lambda: pydensecrf_inference(unary, image)
  run()                                      # compile / warm up
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")                             # reset the peak to the current size
  base = _rss_kib("VmRSS")
  run()
  queue.put((_rss_kib("VmHWM") - base) / 1024)


def peak_memory(which: str) -> float:
  ctx = mp.get_context("spawn")
  queue = ctx.Queue()
  proc = ctx.Process(target=_peak_child, args=(which, queue))
  proc.start()
  value = queue.get()
  proc.join()
  return value


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from hcjax.ops import dense_crf  # pylint: disable=g-import-not-at-top

  unary, image = problem("astronaut", 0)
  fn = hcjax_fn()
  start = time.perf_counter()
  q = np.asarray(fn(unary[None], image[None]))[0]
  compile_s = time.perf_counter() - start
  reference = pydensecrf_inference(unary, image)
  agreement = float((q.argmax(-1) == reference.argmax(-1)).mean())
  mean_dq = float(np.abs(q - reference).mean())
  t_ref = best_of(lambda: pydensecrf_inference(unary, image), args.repeats)
  t_ours = best_of(lambda: jax.block_until_ready(fn(unary[None], image[None])), args.repeats)

  # Set-up (lattice / hash table) vs one iteration, from 1- and 10-iteration runs.
  fn1 = hcjax_fn(1)
  jax.block_until_ready(fn1(unary[None], image[None]))
  t1_ours = best_of(lambda: jax.block_until_ready(fn1(unary[None], image[None])), args.repeats)
  t1_ref = best_of(lambda: pydensecrf_inference(unary, image, 1), args.repeats)
  it_ours, it_ref = (t_ours - t1_ours) / (ITERATIONS - 1), (t_ref - t1_ref) / (ITERATIONS - 1)
  setup_ours, setup_ref = t1_ours - it_ours, t1_ref - it_ref

  batch = [problem(name, i) for i, name in enumerate(PHOTOS)]
  unaries = np.stack([b[0] for b in batch])
  images = np.stack([b[1] for b in batch])
  jax.block_until_ready(fn(unaries, images))
  b_ours = best_of(lambda: jax.block_until_ready(fn(unaries, images)), args.repeats)
  b_ref = best_of(lambda: [pydensecrf_inference(u, im) for u, im in batch], 1)

  compat = jnp.asarray(np.eye(LABELS, dtype=np.float32))

  def loss(u, gc, bc):
    q = dense_crf.mean_field(u, jnp.asarray(image[None]), gaussian_compat=gc,
                             bilateral_compat=bc, num_iterations=ITERATIONS, return_logits=True)
    return jax.nn.logsumexp(q, axis=-1).mean()

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  args_g = (jnp.asarray(unary[None]), -3.0 * compat, jnp.float32(10.0))
  jax.block_until_ready(grad(*args_g))
  t_grad = best_of(lambda: jax.block_until_ready(grad(*args_g)), args.repeats)

  mem_ours, mem_ref = peak_memory("hcjax"), peak_memory("pydensecrf")

  print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"device {jax.devices()[0].device_kind}, Python {platform.python_version()}, "
        f"jax {jax.__version__}.")
  print(f"Agreement with pydensecrf: argmax {agreement:.5f}, mean |dQ| {mean_dq:.2e}; "
        f"hcjax compile + first run {compile_s:.1f} s.\n")
  print("| measurement | hcjax | pydensecrf | ratio hcjax / pydensecrf |")
  print("|---|---|---|---|")
  print(f"| 500x375, 21 labels, 10 iterations: seconds per image | {t_ours:.3f} | {t_ref:.3f} | "
        f"{t_ours / t_ref:.2f} |")
  print(f"| of which set-up (lattice / hash table), seconds | {setup_ours:.3f} | {setup_ref:.3f} | "
        f"{setup_ours / setup_ref:.2f} |")
  print(f"| of which one mean-field iteration, seconds | {it_ours:.4f} | {it_ref:.4f} | "
        f"{it_ours / it_ref:.2f} |")
  print(f"| batch of 8 photographs: images/s | {8 / b_ours:.2f} | {8 / b_ref:.2f} | "
        f"{(8 / b_ours) / (8 / b_ref):.2f} |")
  print(f"| peak memory of one inference, MiB | {mem_ours:.0f} | {mem_ref:.0f} | "
        f"{mem_ours / max(mem_ref, 1e-9):.2f} |")
  print(f"| forward + backward (unary, both compat), seconds | {t_grad:.3f} | no gradients | "
        f"{t_grad / t_ours:.2f}x hcjax forward |")


if __name__ == "__main__":
  main()

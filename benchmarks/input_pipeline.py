"""Input pipeline throughput: TFRecord read + JPEG decode + random crop/flip at 224x224.

Side by side in one run:
  * raw record reading: hcjax's reader (masked-CRC32C verified) vs grain's TFRecordIterDataset
    (which does not verify CRCs), records/s;
  * the full pipeline (read, decode, random 224 crop, flip, batch) with 0, 1 and 2 worker
    processes vs a plain single-process Python loop doing the same work, images/s.
Prints a markdown table for BENCHMARKS.md. Run: python benchmarks/input_pipeline.py
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time

import numpy as np
from absl import flags
from PIL import Image

from hcjax.data import pipeline, tfrecord, transforms


def make_shards(directory: str, num_images: int, num_shards: int) -> str:
  """JPEGs cut from scikit-image's real photographs, 256x320, quality 90."""
  from skimage import data as photos  # pylint: disable=g-import-not-at-top
  sources = [photos.astronaut(), photos.coffee(), photos.chelsea(), photos.rocket()]
  rng = np.random.default_rng(0)
  records = []
  for i in range(num_images):
    src = sources[i % len(sources)]
    h, w = src.shape[:2]
    top, left = rng.integers(0, h - 256), rng.integers(0, w - 320) if w > 320 else 0
    crop = Image.fromarray(src[top:top + 256, left:left + 320]).resize((320, 256))
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=90)
    records.append(tfrecord.encode_example({"image": buf.getvalue(), "label": np.array([i % 10])}))
  for s in range(num_shards):
    tfrecord.write_records(os.path.join(directory, f"train-{s:05d}-of-{num_shards:05d}.tfrecord"),
                           records[s::num_shards])
  return os.path.join(directory, "train-*.tfrecord")


def preprocess(features, rng):
  """The work measured: decode, random 224 crop, random flip (uint8 out: normalised on device)."""
  sample = {"image": transforms.decode_image(features["image"][0])}
  sample = transforms.random_crop(sample, rng, (224, 224))
  sample = transforms.random_flip(sample, rng)
  return {"image": sample["image"], "label": features["label"][0]}


def time_raw_reads(files: list[str]) -> tuple[float, float]:
  import grain  # pylint: disable=g-import-not-at-top
  t = time.perf_counter()
  n = sum(1 for f in files for _ in tfrecord.read_records(f))
  ours = n / (time.perf_counter() - t)
  t = time.perf_counter()
  n = sum(1 for f in files for _ in grain.experimental.TFRecordIterDataset(f))
  theirs = n / (time.perf_counter() - t)
  return ours, theirs


def time_pipeline(pattern: str, workers: int, batch: int, batches: int) -> float:
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=batch, shuffle_window=256,
                                num_workers=workers)
  with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
    for _ in range(3):  # warm up workers
      next(it)
    t = time.perf_counter()
    for _ in range(batches):
      next(it)
    return batches * batch / (time.perf_counter() - t)


def time_plain_loop(files: list[str], images: int) -> float:
  rng = np.random.default_rng(0)
  t, n = time.perf_counter(), 0
  while n < images:
    for f in files:
      for record in tfrecord.read_records(f):
        preprocess(tfrecord.decode_example(record), rng)
        n += 1
        if n >= images:
          break
      if n >= images:
        break
  return n / (time.perf_counter() - t)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--images", type=int, default=512)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--batches", type=int, default=30)
  args = parser.parse_args()
  flags.FLAGS.mark_as_parsed()
  cores = os.cpu_count()
  with tempfile.TemporaryDirectory() as d:
    pattern = make_shards(d, args.images, 8)
    files = pipeline.list_files(pattern)
    size_mb = sum(os.path.getsize(f) for f in files) / 2**20
    ours, grains = time_raw_reads(files)
    plain = time_plain_loop(files, args.batch * args.batches)
    rows = [(w, time_pipeline(pattern, w, args.batch, args.batches)) for w in (0, 1, 2)]
  print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, "
        f"Python {platform.python_version()}; {args.images} JPEGs 320x256 ({size_mb:.1f} MB)\n")
  print("| measurement | hcjax | reference | ratio |")
  print("|---|---|---|---|")
  print(f"| raw TFRecord read, records/s (CRC-verified vs grain, unverified) | {ours:,.0f} | "
        f"{grains:,.0f} | {ours / grains:.2f} |")
  for w, rate in rows:
    print(f"| read+decode+crop224+flip, {w} worker(s), images/s (vs plain loop) | {rate:,.0f} | "
          f"{plain:,.0f} | {rate / plain:.2f} |")
  print(f"\nimages/s per core with 2 workers: {rows[-1][1] / cores:,.0f}")


if __name__ == "__main__":
  main()

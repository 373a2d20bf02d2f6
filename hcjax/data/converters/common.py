"""What every converter shares: strict annotation-file parsing and sharded TFRecord writing."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tqdm import tqdm

from hcjax.data import tfrecord
from hcjax.data.errors import AnnotationError, MissingDataError
from hcjax.data.pipeline import INFO_FILE


def require_file(path: str, what: str) -> str:
  if not os.path.isfile(path):
    raise MissingDataError(f"{what} not found: {path}")
  return path


def read_bytes(path: str, what: str) -> bytes:
  """A file's bytes; a missing one is a MissingDataError naming `what` and the path."""
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    raise MissingDataError(f"{what} is missing: {path}") from None


def numbered_lines(path: str) -> Iterator[tuple[int, list[str]]]:
  """(1-based line number, whitespace-split fields) of each non-empty line."""
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      fields = line.split()
      if fields:
        yield number, fields


def parse_int(path: str, line: int, text: str, what: str,
              allowed: Sequence[int] | None = None) -> int:
  try:
    value = int(text)
  except ValueError:
    raise AnnotationError(path, line, f"{what} must be an integer, got {text!r}") from None
  if allowed is not None and value not in allowed:
    raise AnnotationError(path, line, f"{what} must be one of {list(allowed)}, got {value}")
  return value


def shard_names(split: str, num_shards: int) -> list[str]:
  return [f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def write_split(out_dir: str, split: str, examples: Sequence[Any],
                encode: Callable[[Any], bytes], num_shards: int,
                progress: bool = True) -> dict[str, int]:
  """Writes `examples` (in order, contiguous chunks) to `num_shards` files; returns counts."""
  num_shards = max(1, min(num_shards, len(examples)))
  names = shard_names(split, num_shards)
  counts: dict[str, int] = {}
  bar = tqdm(total=len(examples), desc=f"{split:>10}", unit="img", disable=not progress,
             leave=False)
  for i, name in enumerate(names):
    chunk = examples[len(examples) * i // num_shards: len(examples) * (i + 1) // num_shards]
    with tfrecord.RecordWriter(os.path.join(out_dir, name)) as writer:
      for example in chunk:
        writer.write(encode(example))
        bar.update(1)
    counts[name] = len(chunk)
  bar.close()
  return counts


def write_info(out_dir: str, info: dict[str, Any], file_counts: dict[str, int]) -> str:
  """dataset_info.json: per-file counts (the pipeline plans eval padding from them) + metadata."""
  path = os.path.join(out_dir, INFO_FILE)
  with open(path + ".incomplete", "w") as f:
    json.dump({**info, "file_counts": file_counts}, f, indent=2, sort_keys=True)
  os.replace(path + ".incomplete", path)
  return path

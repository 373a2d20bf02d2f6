"""The input pipeline: sharded TFRecords -> preprocessed, batched, global jax.Arrays.

files (per JAX process) -> interleave (grain) -> window shuffle -> decode + task preprocess
(worker processes) -> batch (train: drop remainder; eval: padded with `_mask`) -> global arrays.

Every example's randomness comes from (seed, epoch, file index, record index), so augmentation
does not depend on the number of processes or workers, and the iterator state (grain's state at a
batch boundary, JSON) restores the exact stream.
"""

from __future__ import annotations

import dataclasses
import gc
import glob as globlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grain
import numpy as np

from hcjax.data import tfrecord
from hcjax.data.errors import CorruptRecordError, ImageDecodeError, MissingDataError, ShardingError

Preprocess = Callable[[dict[str, Any], np.random.Generator], Mapping[str, np.ndarray]]
MASK_KEY = "_mask"
SKIPPED_KEY = "_skipped"
INFO_FILE = "dataset_info.json"
_FOREVER_EPOCHS = 1_000_000  # "Infinite" training streams; lazily indexed, never materialised.


@dataclasses.dataclass(frozen=True)
class Skipped:
  """Stands in for a corrupt record so the main process can count it (workers cannot report)."""
  path: str
  offset: int
  reason: str


def list_files(pattern: str) -> list[str]:
  """Sorted files matching a glob (or a comma-separated list of globs)."""
  files: list[str] = []
  for part in str(pattern).split(","):
    part = os.path.expanduser(part.strip())
    if part:
      files.extend(globlib.glob(part))
  files = sorted(set(files))
  if not files:
    raise MissingDataError(f"no files match {pattern!r}")
  return files


def process_files(files: list[str], process_index: int, process_count: int) -> list[int]:
  """Indices of the files process `process_index` reads: file-level sharding, round robin."""
  if len(files) < process_count:
    raise ShardingError(
        f"{len(files)} file(s) cannot be spread over {process_count} processes; each process "
        f"must read at least one file (first file: {files[0]}). Convert with more shards.")
  return list(range(process_index, len(files), process_count))


def record_counts(files: list[str], tolerant: bool = False) -> list[int]:
  """Records per file: from the converter's dataset_info.json when present, else counted."""
  counts = []
  cache: dict[str, dict[str, int]] = {}
  for path in files:
    directory, name = os.path.split(path)
    if directory not in cache:
      info_path = os.path.join(directory, INFO_FILE)
      try:
        with open(info_path) as f:
          cache[directory] = {k: int(v) for k, v in json.load(f).get("file_counts", {}).items()}
      except (OSError, ValueError):
        cache[directory] = {}
    count = cache[directory].get(name)
    counts.append(count if count is not None else tfrecord.count_records(path, tolerant=tolerant))
  return counts


# --- one file as a grain IterDataset --------------------------------------------------------------

class _RecordFileIterator(grain.DatasetIterator):
  """Yields (key, features) per record; key = (epoch, file index, record index)."""

  def __init__(self, path: str, epoch: int, file_index: int, skip_corrupt: bool):
    super().__init__()
    self._path = path
    self._key = (epoch, file_index)
    self._skip = skip_corrupt
    self._reader: tfrecord.RecordReader | None = None
    self._index = 0
    self._offset = 0

  def _open(self) -> tfrecord.RecordReader:
    if self._reader is None:
      try:
        self._reader = tfrecord.RecordReader(self._path)
      except FileNotFoundError as e:
        raise MissingDataError(f"data file disappeared: {self._path}") from e
      if self._offset:
        self._reader.seek(self._offset)
    return self._reader

  def __next__(self):
    reader = self._open()
    start = reader.tell()
    index = self._index
    try:
      data = reader.read_next()
      if data is None:
        raise StopIteration
      features = tfrecord.decode_example(data, path=self._path, offset=start)
    except CorruptRecordError as e:
      if not self._skip:
        raise
      if reader.tell() <= start:  # The length itself was bad: the rest of the file is lost.
        reader.skip_to_end()
      self._offset = reader.tell()
      self._index += 1
      return (self._key + (index,), Skipped(self._path, start, e.reason))
    self._offset = reader.tell()
    self._index += 1
    return (self._key + (index,), features)

  def get_state(self) -> dict[str, int]:
    return {"offset": self._offset, "index": self._index}

  def set_state(self, state: Mapping[str, int]) -> None:
    self._offset = int(state["offset"])
    self._index = int(state["index"])
    if self._reader is not None:
      if self._offset < 0:
        self._reader.skip_to_end()
      else:
        self._reader.seek(self._offset)

  def close(self) -> None:
    if self._reader is not None:
      self._reader.close()
      self._reader = None


class _RecordFileDataset(grain.IterDataset):

  def __init__(self, path: str, epoch: int, file_index: int, skip_corrupt: bool):
    super().__init__()
    self._args = (path, epoch, file_index, skip_corrupt)

  def __iter__(self) -> _RecordFileIterator:
    return _RecordFileIterator(*self._args)


# --- the pipeline ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """How examples are read; the task supplies `preprocess`."""
  pattern: str
  batch_size: int                  # GLOBAL batch size; each process builds batch_size / processes.
  train: bool = True
  seed: int = 0
  shuffle_window: int = 1024       # train only; 0 disables
  cycle_length: int = 4            # files read concurrently per worker
  num_workers: int = 0             # preprocessing processes; 0 = in the main process
  worker_buffer_size: int = 2
  on_corrupt: str = "error"        # or "skip": corrupt records are skipped and counted
  num_epochs: int | None = None    # train: None = forever; eval always reads one pass

  def __post_init__(self):
    if self.on_corrupt not in ("error", "skip"):
      raise ValueError(f"on_corrupt must be 'error' or 'skip', got {self.on_corrupt!r}")
    if self.batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {self.batch_size}")
    if self.num_workers < 0:
      raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


class _Preprocess(grain.transforms.Map):
  """Decoded features -> the task's arrays, with the example's own random generator."""

  def __init__(self, preprocess: Preprocess, files: list[str], seed: int, skip_corrupt: bool):
    self._preprocess = preprocess
    self._files = files
    self._seed = seed
    self._skip = skip_corrupt

  def map(self, element):
    key, features = element
    if isinstance(features, Skipped):
      return features
    epoch, file_index, record_index = key
    rng = np.random.default_rng([self._seed, epoch, file_index, record_index])
    try:
      out = self._preprocess(features, rng)
    except (ImageDecodeError, CorruptRecordError) as e:
      if self._skip:
        return Skipped(self._files[file_index], -1, f"record {record_index}: {e}")
      raise CorruptRecordError(self._files[file_index], None, f"record {record_index}: {e}") from e
    return {k: np.asarray(v) for k, v in out.items()}


def _worker_init(worker_index: int, worker_count: int) -> None:
  del worker_index, worker_count
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class _TrainBatchIterator(grain.DatasetIterator):
  """Full batches of good examples, built where the examples are made (one transfer per batch
  from a worker). `_skipped` counts the corrupt records passed over for this batch."""

  def __init__(self, parent: grain.DatasetIterator, batch_size: int):
    super().__init__(parent)
    self._batch_size = batch_size

  def __next__(self) -> dict[str, np.ndarray]:
    examples, skipped = [], 0
    while len(examples) < self._batch_size:
      element = next(self._parent)  # StopIteration drops the remainder
      if isinstance(element, Skipped):
        skipped += 1
        logging.warning("skipping corrupt record in %s at byte offset %s: %s",
                        element.path, element.offset, element.reason)
      else:
        examples.append(element)
    batch = _stack(examples)
    batch[SKIPPED_KEY] = np.array(skipped, np.int64)
    return batch

  def get_state(self):
    return self._parent.get_state()

  def set_state(self, state) -> None:
    self._parent.set_state(state)


class _TrainBatchDataset(grain.IterDataset):

  def __init__(self, parent: grain.IterDataset, batch_size: int):
    super().__init__(parent)
    self._batch_size = batch_size

  def __iter__(self) -> _TrainBatchIterator:
    return _TrainBatchIterator(self._parent.__iter__(), self._batch_size)


def build_dataset(cfg: PipelineConfig, preprocess: Preprocess, *, local_batch_size: int,
                  process_index: int, process_count: int
                  ) -> tuple[grain.IterDataset, list[str], list[int]]:
  """Train: a stream of full local batches. Eval: a stream of examples (or Skipped markers)."""
  files = list_files(cfg.pattern)
  mine = process_files(files, process_index, process_count)
  skip = cfg.on_corrupt == "skip"
  epochs = (cfg.num_epochs or _FOREVER_EPOCHS) if cfg.train else 1

  def open_file(i: int) -> grain.IterDataset:
    epoch, j = divmod(i, len(mine))
    if cfg.train:  # A fresh file order every epoch.
      j = int(np.random.default_rng([cfg.seed, epoch, 0x5EED]).permutation(len(mine))[j])
    return _RecordFileDataset(files[mine[j]], epoch, mine[j], skip)

  sources = grain.MapDataset.range(epochs * len(mine)).map(open_file)
  # Workers each take every W-th file; a worker reading more than its share of one epoch at once
  # would mix the next epoch into this one.
  share = math.ceil(len(mine) / max(1, cfg.num_workers))
  ds = grain.experimental.InterleaveIterDataset(
      sources, cycle_length=max(1, min(cfg.cycle_length, share)))
  if cfg.train and cfg.shuffle_window > 1:
    ds = grain.experimental.WindowShuffleIterDataset(
        ds, window_size=cfg.shuffle_window, seed=cfg.seed)
  ds = ds.map(_Preprocess(preprocess, files, cfg.seed, skip))
  if cfg.train:
    ds = _TrainBatchDataset(ds, local_batch_size)
  if cfg.num_workers > 0:
    _worker_init(0, 0)
    ds = ds.mp_prefetch(
        grain.MultiprocessingOptions(
            num_workers=cfg.num_workers, per_worker_buffer_size=cfg.worker_buffer_size),
        worker_init_fn=_worker_init)
  return ds, files, mine


class InputIterator(Iterator[dict[str, Any]]):
  """Batches of this process's examples, optionally as global jax.Arrays.

  Train: full batches only, forever (or `num_epochs`). Eval: exactly `num_batches` batches on
  every process; padding examples carry `_mask` = 0 so each example counts once overall.
  """

  def __init__(self, cfg: PipelineConfig, preprocess: Preprocess, *, sharding=None,
               process_index: int | None = None, process_count: int | None = None):
    if process_index is None or process_count is None:
      import jax  # pylint: disable=g-import-not-at-top
      process_index, process_count = jax.process_index(), jax.process_count()
    if cfg.batch_size % process_count:
      raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the "
                       f"{process_count} processes")
    self.cfg = cfg
    self.local_batch_size = cfg.batch_size // process_count
    self._sharding = sharding
    ds, files, mine = build_dataset(cfg, preprocess, local_batch_size=self.local_batch_size,
                                    process_index=process_index, process_count=process_count)
    self.files = [files[i] for i in mine]
    self.num_batches: int | None = None
    self.num_examples: int | None = None
    self.total_examples: int | None = None
    if not cfg.train:
      counts = record_counts(files, tolerant=cfg.on_corrupt == "skip")
      per_process = [sum(counts[p::process_count]) for p in range(process_count)]
      self.num_examples = per_process[process_index]
      self.total_examples = sum(counts)
      self.num_batches = max(math.ceil(n / self.local_batch_size) for n in per_process)
    self._iter = iter(ds)
    self._batches = 0
    self._skipped = 0
    self._template: dict[str, np.ndarray] | None = None
    self._exhausted = False

  @property
  def num_skipped(self) -> int:
    """Corrupt records skipped so far (with on_corrupt='skip')."""
    return self._skipped

  def _next_example(self) -> dict[str, np.ndarray] | None:
    while not self._exhausted:
      try:
        element = next(self._iter)
      except StopIteration:
        self._exhausted = True
        return None
      if isinstance(element, Skipped):
        self._skipped += 1
        logging.warning("skipping corrupt record in %s at byte offset %s: %s (%d skipped so far)",
                        element.path, element.offset, element.reason, self._skipped)
        continue
      return element
    return None

  def _next_local(self) -> dict[str, np.ndarray]:
    if self.num_batches is not None and self._batches >= self.num_batches:
      raise StopIteration
    if self._iter is None:
      raise StopIteration
    if self.cfg.train:
      batch = next(self._iter)
      skipped = int(batch.pop(SKIPPED_KEY))
      if skipped:
        self._skipped += skipped
        logging.warning("%d corrupt record(s) skipped so far", self._skipped)
      self._batches += 1
      return batch
    examples = []
    while len(examples) < self.local_batch_size:
      example = self._next_example()
      if example is None:
        break
      examples.append(example)
    n = len(examples)
    if self._template is None and examples:
      self._template = {k: np.zeros_like(v) for k, v in examples[0].items()}
    if self._template is None:  # This process has nothing left but must keep step with the others.
      raise RuntimeError(
          f"eval data of this process ({self.files}) yielded no example at all; cannot pad")
    examples += [self._template] * (self.local_batch_size - n)
    batch = _stack(examples)
    batch[MASK_KEY] = (np.arange(self.local_batch_size) < n).astype(np.float32)
    self._batches += 1
    return batch

  def __next__(self) -> dict[str, Any]:
    try:
      batch = self._next_local()
    except StopIteration:
      self.close()
      raise
    if self._sharding is None:
      return batch
    return to_global(batch, self._sharding)

  def __len__(self) -> int:
    if self.num_batches is None:
      raise TypeError("a training stream has no length")
    return self.num_batches

  def get_state(self) -> dict[str, Any]:
    """JSON-serialisable position at a batch boundary."""
    return {"grain": _jsonable(self._iter.get_state()), "batches": self._batches,
            "skipped": self._skipped, "exhausted": self._exhausted}

  def set_state(self, state: Mapping[str, Any]) -> None:
    self._iter.set_state(state["grain"])
    self._batches = int(state["batches"])
    self._skipped = int(state["skipped"])
    self._exhausted = bool(state.get("exhausted", False))

  def close(self) -> None:
    """Stops worker processes and reader threads; also done at the end of an eval pass."""
    if self._iter is None:
      return
    self._iter.close()
    # Drop grain's iterators now: collected at interpreter exit they print spurious errors.
    self._iter = None
    gc.collect()

  def __enter__(self) -> InputIterator:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _stack(examples: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  keys = examples[0].keys()
  try:
    return {k: np.stack([e[k] for e in examples]) for k in keys}
  except (ValueError, KeyError) as e:
    shapes = {k: sorted({tuple(np.shape(ex.get(k))) for ex in examples}, key=str) for k in keys}
    raise ValueError(f"preprocess returned examples that cannot be batched: {shapes}") from e


def _jsonable(state: Any) -> Any:
  """grain states hold ints, lists, dicts (and may hold tuples / numpy ints): make them JSON."""
  return json.loads(json.dumps(state, default=lambda o: o.item() if hasattr(o, "item") else list(o)))


def to_global(batch: Mapping[str, np.ndarray], sharding) -> dict[str, Any]:
  """Process-local numpy batch -> global jax.Arrays sharded over the batch axis."""
  import jax  # pylint: disable=g-import-not-at-top
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}

"""TFRecord files and tf.train.Example protos without TensorFlow.

Framing of one record (little endian), as TensorFlow writes it:
  uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import google_crc32c
import numpy as np

from hcjax.data.errors import CorruptRecordError

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
_CHUNK = 1 << 20  # Never ask a stream for more than this at once (no giant allocations).


def masked_crc32c(data: bytes) -> int:
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def infer_compression(path: str, compression: str | None) -> str | None:
  if compression is None and str(path).endswith(".gz"):
    return "gzip"
  if compression not in (None, "gzip", "GZIP", ""):
    raise ValueError(f"unknown TFRecord compression {compression!r} for {path}; use None or 'gzip'")
  return "gzip" if compression in ("gzip", "GZIP") else None


class RecordReader:
  """Sequential reader with tell/seek so an iterator can checkpoint its position.

  Offsets are positions in the uncompressed stream (for GZIP files too).
  """

  def __init__(self, path: str, compression: str | None = None, verify: bool = True):
    self.path = str(path)
    self.verify = verify
    self._compression = infer_compression(self.path, compression)
    self._raw = open(self.path, "rb")
    if self._compression == "gzip":
      self._file: Any = gzip.GzipFile(fileobj=self._raw, mode="rb")
      self._size = None
    else:
      self._file = self._raw
      self._size = os.fstat(self._raw.fileno()).st_size
    self._offset = 0

  def tell(self) -> int:
    return self._offset

  def seek(self, offset: int) -> None:
    try:
      self._file.seek(offset)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
      raise CorruptRecordError(self.path, offset, f"cannot seek: {e}") from e
    self._offset = offset

  def skip_to_end(self) -> None:
    """After an untrustworthy length field nothing later in the file can be located."""
    self._offset = -1

  def _read_exact(self, n: int, what: str) -> bytes:
    parts, got = [], 0
    try:
      while got < n:
        part = self._file.read(min(_CHUNK, n - got))
        if not part:
          break
        parts.append(part)
        got += len(part)
    except (OSError, EOFError, gzip.BadGzipFile, Exception) as e:  # zlib.error is an Exception
      raise CorruptRecordError(self.path, self._offset, f"cannot read {what}: {e}") from e
    data = b"".join(parts)
    if len(data) != n:
      raise CorruptRecordError(
          self.path, self._offset, f"truncated {what}: expected {n} bytes, found {len(data)}")
    return data

  def read_next(self) -> bytes | None:
    """The next record's bytes, or None at a clean end of file."""
    if self._offset < 0:
      return None
    start = self._offset
    try:
      first = self._file.read(1)
    except (OSError, EOFError, gzip.BadGzipFile, Exception) as e:
      raise CorruptRecordError(self.path, start, f"cannot read header: {e}") from e
    if not first:
      return None
    header = first + self._read_exact(_HEADER.size - 1, "record header")
    length, length_crc = _HEADER.unpack(header)
    if self.verify and masked_crc32c(header[:8]) != length_crc:
      raise CorruptRecordError(self.path, start, "length CRC mismatch")
    if self._size is not None and start + _HEADER.size + length + _FOOTER.size > self._size:
      raise CorruptRecordError(
          self.path, start, f"record length {length} runs past the end of the file ({self._size} bytes)")
    data = self._read_exact(length, "record data")
    (data_crc,) = _FOOTER.unpack(self._read_exact(_FOOTER.size, "record data CRC"))
    if self.verify and masked_crc32c(data) != data_crc:
      # The length was sound, so the next record can still be found.
      self._offset = start + _HEADER.size + length + _FOOTER.size
      raise CorruptRecordError(self.path, start, "data CRC mismatch")
    self._offset = start + _HEADER.size + length + _FOOTER.size
    return data

  def close(self) -> None:
    if self._file is not self._raw:
      self._file.close()
    self._raw.close()

  def __enter__(self) -> RecordReader:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_records(path: str, compression: str | None = None, verify: bool = True) -> Iterator[bytes]:
  """Yields each record's bytes; raises CorruptRecordError naming file and byte offset."""
  with RecordReader(path, compression, verify) as reader:
    while (record := reader.read_next()) is not None:
      yield record


def count_records(path: str, compression: str | None = None, *, tolerant: bool = False) -> int:
  """Counts records by walking the length fields (no data CRCs), e.g. to plan eval padding.

  tolerant: a broken tail counts as one record instead of raising, which bounds from above what a
  reader that skips corrupt records will yield.
  """
  count = 0
  with RecordReader(path, compression, verify=False) as reader:
    if reader._size is None:  # GZIP: no seeking over payloads.
      try:
        while reader.read_next() is not None:
          count += 1
      except CorruptRecordError:
        if not tolerant:
          raise
        count += 1
      return count
    offset = 0
    while offset < reader._size:
      reader._file.seek(offset)
      header = reader._file.read(_HEADER.size)
      (length, _) = _HEADER.unpack(header) if len(header) == _HEADER.size else (None, None)
      if length is None or offset + _HEADER.size + length + _FOOTER.size > reader._size:
        if tolerant:
          return count + 1
        raise CorruptRecordError(reader.path, offset, "record runs past the end of the file")
      offset += _HEADER.size + length + _FOOTER.size
      count += 1
  return count


class RecordWriter:
  """Writes records to `path` atomically: a temporary file renamed into place on close."""

  def __init__(self, path: str, compression: str | None = None):
    self.path = str(path)
    self._tmp = self.path + ".incomplete"
    self._raw = open(self._tmp, "wb")
    if infer_compression(self.path, compression) == "gzip":
      self._file: Any = gzip.GzipFile(fileobj=self._raw, mode="wb", mtime=0)
    else:
      self._file = self._raw
    self.count = 0

  def write(self, record: bytes) -> None:
    length = struct.pack("<Q", len(record))
    self._file.write(length + struct.pack("<I", masked_crc32c(length)))
    self._file.write(record)
    self._file.write(struct.pack("<I", masked_crc32c(record)))
    self.count += 1

  def close(self) -> None:
    if self._file is not self._raw:
      self._file.close()
    self._raw.close()
    os.replace(self._tmp, self.path)

  def abort(self) -> None:
    self._raw.close()
    if os.path.exists(self._tmp):
      os.remove(self._tmp)

  def __enter__(self) -> RecordWriter:
    return self

  def __exit__(self, exc_type, *exc) -> None:
    if exc_type is None:
      self.close()
    else:
      self.abort()


def write_records(path: str, records: Iterable[bytes], compression: str | None = None) -> int:
  """Writes all records; returns how many. GZIP when asked or when the path ends in .gz."""
  with RecordWriter(path, compression) as writer:
    for record in records:
      writer.write(record)
    return writer.count


# --- tf.train.Example ---------------------------------------------------------------------------

def _example_pb2():
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  return tf_example_pb2


def encode_example(features: Mapping[str, Any]) -> bytes:
  """dict -> serialized tf.train.Example.

  bytes / str / lists of them -> bytes_list; integer or bool arrays -> int64_list;
  floating arrays -> float_list. Arrays are flattened (store shapes as separate features).
  """
  pb = _example_pb2()
  example = pb.Example()
  for key, value in features.items():
    feature = example.features.feature[key]
    if isinstance(value, (bytes, str)):
      value = [value]
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (bytes, str)):
      feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in value)
      continue
    array = np.asarray(value)
    if array.dtype.kind in "iub":
      feature.int64_list.value.extend(array.astype(np.int64).ravel().tolist())
    elif array.dtype.kind == "f":
      feature.float_list.value.extend(array.astype(np.float32).ravel().tolist())
    else:
      raise TypeError(f"feature {key!r}: cannot encode values of dtype {array.dtype}")
  # Sorted map entries: the same bytes in every process (protobuf otherwise orders the feature
  # map by a per-process hash seed), so converted datasets are reproducible byte for byte.
  return example.SerializeToString(deterministic=True)


def decode_example(data: bytes, *, path: str | None = None,
                   offset: int | None = None) -> dict[str, Any]:
  """Serialized tf.train.Example -> dict.

  bytes features -> list[bytes]; int64 -> np.int64 array; float -> np.float32 array.
  """
  pb = _example_pb2()
  try:
    example = pb.Example.FromString(data)
  except Exception as e:  # protobuf's DecodeError and friends
    raise CorruptRecordError(path, offset, f"not a tf.train.Example: {e}") from e
  out: dict[str, Any] = {}
  for key, feature in example.features.feature.items():
    kind = feature.WhichOneof("kind")
    if kind == "bytes_list":
      out[key] = list(feature.bytes_list.value)
    elif kind == "int64_list":
      out[key] = np.asarray(feature.int64_list.value, dtype=np.int64)
    elif kind == "float_list":
      out[key] = np.asarray(feature.float_list.value, dtype=np.float32)
    else:
      out[key] = []
  return out


"""Exceptions raised by hcjax's data layer; each names the file and where in it."""

from __future__ import annotations


class CorruptRecordError(ValueError):
  """A TFRecord file is truncated, fails its CRC, or holds an undecodable Example."""

  def __init__(self, path: str | None, offset: int | None, reason: str):
    self.path = path
    self.offset = offset
    self.reason = reason
    where = f"{path or '<bytes>'}" + (f" at byte offset {offset}" if offset is not None else "")
    super().__init__(f"corrupt record in {where}: {reason}")


class AnnotationError(ValueError):
  """A line of an original dataset's annotation file does not parse."""

  def __init__(self, path: str, line: int, reason: str):
    self.path = path
    self.line = line
    super().__init__(f"{path}, line {line}: {reason}")


class MissingDataError(FileNotFoundError):
  """Data files the user pointed at do not exist or a pattern matches nothing."""


class ShardingError(ValueError):
  """Files cannot be spread over the processes as asked."""


class ImageDecodeError(ValueError):
  """Encoded image bytes (JPEG/PNG) cannot be decoded."""

"""Data layer: TFRecord I/O, the grain input pipeline, transforms, converters, sample sets."""

from hcjax.data.errors import (AnnotationError, CorruptRecordError, ImageDecodeError,
                               MissingDataError, ShardingError)

__all__ = [
    "AnnotationError", "CorruptRecordError", "ImageDecodeError", "MissingDataError", "ShardingError",
]

"""Tasks: one file per problem; the trainer talks only to a Task (see base.py)."""

from __future__ import annotations

import importlib

from hcjax.tasks.base import Task, TaskConfigError

# name -> "module:Class", imported only when asked for.
REGISTRY = {
    "anti_spoofing": "hcjax.tasks.anti_spoofing:AntiSpoofingTask",
    "face_attributes": "hcjax.tasks.face_attributes:FaceAttributesTask",
    "fashion": "hcjax.tasks.fashion:FashionTask",
    "fashion_landmarks": "hcjax.tasks.fashion_landmarks:FashionLandmarksTask",
    "frame_synthesis": "hcjax.tasks.frame_synthesis:FrameSynthesisTask",
    "segmentation": "hcjax.tasks.segmentation:SegmentationTask",
}


def get_task(config) -> Task:
  name = config.get("task")
  if name not in REGISTRY:
    raise TaskConfigError(f"config.task must be one of {sorted(REGISTRY)}, got {name!r}")
  module, cls = REGISTRY[name].split(":")
  return getattr(importlib.import_module(module), cls)(config)

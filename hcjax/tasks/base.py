"""The contract between the trainer and a problem.

A Task owns everything problem-specific: data preparation, the numpy preprocess that runs in the
input workers, the model, the loss, evaluation statistics, predictions, export inputs and the
pictures. The trainer (hcjax/train.py) owns the loop, sharding, checkpoints and logging.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from hcjax.errors import ConfigError


class TaskConfigError(ConfigError):
  """A task-specific config value is invalid."""


def loss_weights(loss, defaults: Mapping[str, float], extra: tuple[str, ...] = ()
                 ) -> dict[str, float]:
  """config.loss -> {term: weight >= 0} with `defaults` for the missing terms; keys other than
  the terms and `extra` (non-weight settings the task reads itself) are a TaskConfigError."""
  loss = loss or {}
  unknown = sorted(set(loss.keys()) - set(defaults) - set(extra))
  if unknown:
    more = f" (+ {', '.join(extra)})" if extra else ""
    raise TaskConfigError(f"config.loss.{unknown[0]} is unknown; the weights are "
                          f"{', '.join(defaults)}{more}")
  weights = {k: float(loss.get(k, v)) for k, v in defaults.items()}
  if any(v < 0 for v in weights.values()):
    raise TaskConfigError(f"config.loss weights must be >= 0, got {weights}")
  return weights


class Task(abc.ABC):
  """Subclasses must stay picklable (the preprocess runs in worker processes)."""

  def __init__(self, config):
    self.config = config

  def prepare_data(self) -> None:
    """Runs on the first process before any reading, e.g. to build sample data."""

  @abc.abstractmethod
  def data_pattern(self, split: str) -> str:
    """Glob of the TFRecord files of `split` ("train" or "eval")."""

  @abc.abstractmethod
  def preprocess(self, features: dict[str, Any], rng: np.random.Generator, *,
                 train: bool) -> dict[str, np.ndarray]:
    """One decoded tf.train.Example -> fixed-shape numpy arrays (image and labels)."""

  @abc.abstractmethod
  def build_model(self) -> nn.Module:
    """A Flax module called as module(inputs, train=bool)."""

  @abc.abstractmethod
  def input_spec(self) -> jax.ShapeDtypeStruct:
    """One example's model input (no batch dimension): for init and export."""

  def model_inputs(self, batch: Mapping[str, jax.Array]) -> jax.Array:
    """Batch -> the model's input, on the device (e.g. uint8 -> normalised float)."""
    return batch["image"]

  @abc.abstractmethod
  def loss(self, outputs: Any, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean loss over the batch and extra scalars to log."""

  @abc.abstractmethod
  def eval_statistics(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Sums over the batch's real examples (batch["_mask"] == 1) that add up across batches."""

  @abc.abstractmethod
  def summarize(self, totals: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Added-up statistics of a whole split -> the metrics to report."""

  @abc.abstractmethod
  def predict(self, outputs: Any) -> Any:
    """Model outputs -> what users consume (probabilities, maps, ...); also the export output."""

  def export_metadata(self) -> dict[str, Any]:
    return {"task": self.config.get("task")}

  def visualize(self, batch: Mapping[str, np.ndarray], predictions: Any) -> np.ndarray | None:
    """A uint8 [H, W, 3] picture of some predictions, or None."""
    return None

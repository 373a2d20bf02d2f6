"""Semantic segmentation metrics from one confusion matrix.

The confusion matrix is a sum over pixels, so matrices of batches, hosts and processes simply add
up; every other metric is computed once from the total (never averaged over batches, which would
weight small images more). Conventions follow the PASCAL VOC devkit: void pixels count nowhere,
IoU of class c = TP / (TP + FP + FN), and the mean IoU averages the classes present in the truth or
the prediction of the split (a class absent from both has no IoU, NaN, and is left out).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(labels, predictions, num_classes: int, *, ignore_label: int = 255,
                     weights=None):
  """[L, L] pixel counts, rows = truth, columns = prediction.

  jax arrays in -> a jax array out (jit-friendly, for eval steps); numpy in -> numpy out (for the
  host, e.g. per-image captions).

  Args:
    labels: integer truth of any shape, e.g. [B, H, W]. Pixels equal to `ignore_label` or outside
      [0, L) are skipped.
    predictions: integer predictions of the same shape (predictions outside [0, L) are skipped).
    num_classes: L.
    ignore_label: the void label.
    weights: broadcastable to `labels`, e.g. the padding mask [B, 1, 1]. Boolean or integer
      weights give exact integer counts; floating weights a float weighted sum.

  Returns:
    [L, L], int32 (int64 for numpy) or float32 for floating weights.
  """
  on_host = not any(isinstance(x, jax.Array) for x in (labels, predictions, weights))
  xp = np if on_host else jnp
  int_dtype = np.int64 if on_host else jnp.int32
  labels = xp.asarray(labels).astype(int_dtype)
  predictions = xp.asarray(predictions).astype(int_dtype)
  if labels.shape != predictions.shape:
    raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
  valid = ((labels != ignore_label) & (labels >= 0) & (labels < num_classes)
           & (predictions >= 0) & (predictions < num_classes))
  dtype = int_dtype
  if weights is not None:
    weights = xp.asarray(weights)
    if xp.issubdtype(weights.dtype, xp.floating):
      dtype = np.float64 if on_host else jnp.float32
    valid = valid * xp.broadcast_to(weights, labels.shape).astype(dtype)
  w = valid.astype(dtype).reshape(-1)
  index = xp.where(valid != 0, labels * num_classes + predictions, 0).reshape(-1)
  if on_host:
    counts = np.bincount(index, weights=w, minlength=num_classes * num_classes).astype(dtype)
  else:
    counts = jnp.zeros((num_classes * num_classes,), dtype).at[index].add(w)
  return counts.reshape(num_classes, num_classes)


def _as_matrix(cm) -> np.ndarray:
  cm = np.asarray(cm, np.float64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f"a confusion matrix must be square [L, L], got shape {cm.shape}")
  return cm


def iou_from_confusion(cm) -> np.ndarray:
  """Per-class IoU [L]: TP / (TP + FP + FN); NaN for a class absent from truth and prediction."""
  cm = _as_matrix(cm)
  tp = np.diag(cm)
  union = cm.sum(0) + cm.sum(1) - tp
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(cm) -> float:
  """Mean of the defined per-class IoUs (VOC convention); NaN when nothing was counted."""
  iou = iou_from_confusion(cm)
  return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(cm) -> float:
  """Correct pixels / counted pixels; NaN when nothing was counted."""
  cm = _as_matrix(cm)
  total = cm.sum()
  return float(np.trace(cm) / total) if total > 0 else float("nan")


def class_accuracy(cm) -> np.ndarray:
  """Per-class recall [L]: TP / (TP + FN); NaN for a class absent from the truth."""
  cm = _as_matrix(cm)
  truth = cm.sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(truth > 0, np.diag(cm) / np.where(truth > 0, truth, 1), np.nan)


def mean_class_accuracy(cm) -> float:
  """Mean recall over the classes present in the truth; NaN when nothing was counted."""
  acc = class_accuracy(cm)
  return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")

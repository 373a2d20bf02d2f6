"""Segmentation metrics against sklearn on random maps with void pixels, and small hand cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from hcjax.metrics import segmentation as seg

L, VOID = 5, 255


def _random_maps(seed: int, shape=(3, 17, 23), void_fraction=0.2, absent=(3,)):
  rng = np.random.default_rng(seed)
  classes = [c for c in range(L) if c not in absent]
  labels = rng.choice(classes, size=shape)
  labels = np.where(rng.random(shape) < void_fraction, VOID, labels)
  # Predictions mostly right, so every IoU is away from 0 and 1.
  predictions = np.where(rng.random(shape) < 0.6, labels % L, rng.choice(classes, size=shape))
  return labels.astype(np.int32), predictions.astype(np.int32)


@pytest.mark.parametrize("on_device", [False, True])
def test_confusion_matrix_matches_sklearn(on_device):
  labels, predictions = _random_maps(0)
  keep = labels != VOID
  expected = skm.confusion_matrix(labels[keep], predictions[keep], labels=range(L))
  args = (jnp.asarray(labels), jnp.asarray(predictions)) if on_device else (labels, predictions)
  cm = seg.confusion_matrix(*args, L, ignore_label=VOID)
  assert isinstance(cm, jax.Array) == on_device
  np.testing.assert_array_equal(np.asarray(cm), expected)
  jitted = jax.jit(lambda a, b: seg.confusion_matrix(a, b, L, ignore_label=VOID))
  np.testing.assert_array_equal(np.asarray(jitted(labels, predictions)), expected)


def test_iou_and_accuracies_match_sklearn():
  labels, predictions = _random_maps(1)
  keep = labels != VOID
  t, p = labels[keep], predictions[keep]
  cm = seg.confusion_matrix(labels, predictions, L, ignore_label=VOID)
  iou = seg.iou_from_confusion(cm)
  present = np.union1d(t, p)
  expected = skm.jaccard_score(t, p, labels=present, average=None)
  np.testing.assert_allclose(iou[present], expected, rtol=1e-12)
  assert np.isnan(iou[3]) and 3 not in present  # absent from truth and prediction
  np.testing.assert_allclose(seg.mean_iou(cm), expected.mean(), rtol=1e-12)
  np.testing.assert_allclose(seg.pixel_accuracy(cm), skm.accuracy_score(t, p), rtol=1e-12)
  np.testing.assert_allclose(seg.mean_class_accuracy(cm), skm.balanced_accuracy_score(t, p),
                             rtol=1e-12)


def test_batches_add_up_to_the_whole():
  labels, predictions = _random_maps(2, shape=(6, 9, 11))
  whole = seg.confusion_matrix(labels, predictions, L, ignore_label=VOID)
  parts = sum(seg.confusion_matrix(labels[i:i + 2], predictions[i:i + 2], L, ignore_label=VOID)
              for i in range(0, 6, 2))
  np.testing.assert_array_equal(parts, whole)


def test_weights_mask_padding_examples():
  labels, predictions = _random_maps(3, shape=(4, 8, 8))
  real = np.array([1.0, 1.0, 0.0, 1.0], np.float32)
  cm = seg.confusion_matrix(jnp.asarray(labels), jnp.asarray(predictions), L, ignore_label=VOID,
                            weights=jnp.asarray(real)[:, None, None])
  expected = seg.confusion_matrix(labels[[0, 1, 3]], predictions[[0, 1, 3]], L, ignore_label=VOID)
  np.testing.assert_array_equal(np.asarray(cm), expected)
  assert cm.dtype == jnp.float32
  cm_bool = seg.confusion_matrix(jnp.asarray(labels), jnp.asarray(predictions), L,
                                 ignore_label=VOID, weights=jnp.asarray(real > 0)[:, None, None])
  assert cm_bool.dtype == jnp.int32
  np.testing.assert_array_equal(np.asarray(cm_bool), expected)


def test_hand_case():
  # truth      prediction
  # 0 0 1      0 1 1
  # 1 2 255    1 1 0     (void pixel ignored whatever is predicted)
  labels = np.array([[0, 0, 1], [1, 2, 255]])
  predictions = np.array([[0, 1, 1], [1, 1, 0]])
  cm = seg.confusion_matrix(labels, predictions, 4)
  np.testing.assert_array_equal(cm, [[1, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
  iou = seg.iou_from_confusion(cm)
  # class 0: TP 1, FN 1, FP 0 -> 1/2; class 1: TP 2, FP 2 -> 2/4; class 2: TP 0, FN 1 -> 0;
  # class 3: nowhere -> NaN and left out of the mean.
  np.testing.assert_allclose(iou[:3], [0.5, 0.5, 0.0])
  assert np.isnan(iou[3])
  assert seg.mean_iou(cm) == pytest.approx(1 / 3)
  assert seg.pixel_accuracy(cm) == pytest.approx(3 / 5)
  np.testing.assert_allclose(seg.class_accuracy(cm)[:3], [0.5, 1.0, 0.0])
  assert seg.mean_class_accuracy(cm) == pytest.approx(0.5)


def test_out_of_range_labels_are_skipped_and_empty_is_nan():
  cm = seg.confusion_matrix(np.array([7, 1, 255]), np.array([1, 1, 1]), 3)
  np.testing.assert_array_equal(cm, [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
  empty = np.zeros((3, 3))
  assert np.isnan(seg.mean_iou(empty)) and np.isnan(seg.pixel_accuracy(empty))
  assert np.isnan(seg.mean_class_accuracy(empty))
  with pytest.raises(ValueError, match="square"):
    seg.iou_from_confusion(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="shape"):
    seg.confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)

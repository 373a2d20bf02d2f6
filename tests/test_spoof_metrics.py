"""Spoofing metrics against sklearn (ROC, AUC, EER) and CelebA-Spoof's TPR@FPR, plus hand cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize
from sklearn import metrics as skm

from hcjax.metrics import spoofing as sp


def _random_case(seed: int, kind: str, n: int = 400):
  """Scores that overlap between classes: continuous, quantised (many ties) or few values."""
  rng = np.random.default_rng(seed)
  labels = (rng.random(n) < 0.6).astype(np.int64)
  raw = rng.normal(loc=labels * 1.2, scale=1.0)
  scores = 1.0 / (1.0 + np.exp(-raw))
  if kind == "quantised":
    scores = np.round(scores * 20) / 20
  elif kind == "few":
    scores = rng.integers(0, 4, size=n) / 3 * 0.5 + labels * rng.integers(0, 2, size=n) * 0.25
  return scores, labels


def _reference_tpr_at_fpr(scores, labels, fprs):
  """CelebA-Spoof's intra_dataset_code/client.py procedure, written out as plain loops."""
  live = sorted((float(s) for s, l in zip(scores, labels) if l == 0), reverse=True)
  hack = sorted((float(s) for s, l in zip(scores, labels) if l == 1), reverse=True)
  out = []
  for fpr in fprs:
    threshold = live[max(1, int(fpr * len(live))) - 1]
    count = 0
    while count < len(hack) and not hack[count] < threshold:
      count += 1
    out.append(count / len(hack))
  return out


KINDS = ("continuous", "quantised", "few")


@pytest.mark.parametrize("kind", KINDS)
def test_roc_and_auc_match_sklearn(kind):
  for seed in range(3):
    scores, labels = _random_case(seed, kind)
    fpr, tpr, thresholds = sp.roc(scores, labels)
    e_fpr, e_tpr, e_thr = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_array_equal(thresholds, e_thr)
    np.testing.assert_allclose(fpr, e_fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, e_tpr, rtol=0, atol=1e-15)
    assert abs(sp.auc(scores, labels) - skm.roc_auc_score(labels, scores)) < 1e-12


def _sklearn_eer(scores, labels):
  """EER as a root: walk sklearn's ROC polyline by a parameter s, solve FPR(s) + TPR(s) = 1."""
  fpr, tpr, thr = skm.roc_curve(labels, scores)
  s = np.arange(fpr.size, dtype=np.float64)
  root = optimize.brentq(lambda x: np.interp(x, s, fpr) + np.interp(x, s, tpr) - 1.0,
                         0.0, fpr.size - 1.0, xtol=1e-14)
  return float(np.interp(root, s, fpr))


@pytest.mark.parametrize("kind", KINDS)
def test_eer_matches_sklearn_roc(kind):
  for seed in range(3):
    scores, labels = _random_case(10 + seed, kind)
    assert sp.eer(scores, labels) == pytest.approx(_sklearn_eer(scores, labels), abs=1e-12)
    # The threshold: the sklearn ROC point nearest to FPR = FNR (ties -> the lower threshold).
    fpr, tpr, thr = skm.roc_curve(labels, scores, drop_intermediate=False)
    gap = np.abs(fpr - (1 - tpr))
    best = np.flatnonzero(np.isclose(gap, gap.min(), rtol=0, atol=1e-15))
    assert sp.eer_threshold(scores, labels) == thr[best[-1]]


@pytest.mark.parametrize("kind", KINDS)
def test_error_rates_match_sklearn_confusion(kind):
  scores, labels = _random_case(20, kind)
  for t in (0.25, 0.5, 0.55, float(scores[3])):  # a threshold equal to a score: inclusive
    predicted = (scores >= t).astype(int)
    (tn, fp), (fn, tp) = skm.confusion_matrix(labels, predicted, labels=[0, 1])
    assert sp.apcer(scores, labels, t) == fn / (fn + tp)
    assert sp.bpcer(scores, labels, t) == fp / (fp + tn)
    assert sp.acer(scores, labels, t) == pytest.approx((fn / (fn + tp) + fp / (fp + tn)) / 2)


@pytest.mark.parametrize("kind", KINDS)
def test_tpr_at_fpr_is_the_celeba_spoof_procedure(kind):
  for seed in range(3):
    scores, labels = _random_case(30 + seed, kind, n=1500)
    expected = _reference_tpr_at_fpr(scores, labels, sp.FPR_POINTS)
    assert [sp.tpr_at_fpr(scores, labels, f) for f in sp.FPR_POINTS] == expected


def test_hand_case_fixed_threshold_and_tpr_at_fpr():
  live = [0.1, 0.4, 0.5, 0.7]
  spoof = [0.3, 0.5, 0.8, 0.9, 0.95]
  scores = np.array(live + spoof)
  labels = np.array([0] * 4 + [1] * 5)
  # At 0.5 (score >= 0.5 is spoof): spoof 0.3 passes as live; live 0.5 and 0.7 are rejected.
  assert sp.apcer(scores, labels) == pytest.approx(1 / 5)
  assert sp.bpcer(scores, labels) == pytest.approx(2 / 4)
  assert sp.acer(scores, labels) == pytest.approx(0.35)
  # Live descending: 0.7, 0.5, 0.4, 0.1.
  # fpr 1%: int(0.04) = 0 -> index max(1, 0) - 1 = 0 -> 0.7 -> spoof >= 0.7: 3 of 5.
  assert sp.threshold_at_fpr(scores, labels, 0.01) == 0.7
  assert sp.tpr_at_fpr(scores, labels, 0.01) == pytest.approx(3 / 5)
  # fpr 50%: int(2.0) = 2 -> index 1 -> 0.5; the spoof score 0.5 counts (not below it): 4 of 5.
  assert sp.threshold_at_fpr(scores, labels, 0.5) == 0.5
  assert sp.tpr_at_fpr(scores, labels, 0.5) == pytest.approx(4 / 5)
  assert sp.tpr_at_fpr(scores, labels, 1.0) == 1.0  # threshold = the lowest live score
  # AUC: pairs (spoof, live) won, tied counted half: 0.3 beats 1; 0.5 beats 2 ties 1; others 4.
  assert sp.auc(scores, labels) == pytest.approx((1 + 2.5 + 4 * 3) / 20)


def test_tpr_at_fpr_follows_the_reference_float_product():
  # 0.29 * 100 = 28.999999999999996 in binary floating point: the reference's int() gives 28.
  live = np.arange(100) / 100.0
  scores = np.concatenate([live, [0.705, 0.715, 0.9]])
  labels = np.array([0] * 100 + [1] * 3)
  assert sp.threshold_at_fpr(scores, labels, 0.29) == live[::-1][27]
  # Threshold 0.72 (index 27), not 0.71 (index 28): the spoof score 0.715 does not count.
  assert sp.tpr_at_fpr(scores, labels, 0.29) == pytest.approx(1 / 3)


@pytest.mark.parametrize("live,spoof,expected_eer,expected_threshold", [
    # FPR - FNR hits 0 exactly at a ROC point (threshold 0.5: FPR 1/4, FNR 1/4).
    ([0.1, 0.2, 0.3, 0.6], [0.4, 0.5, 0.7, 0.8], 0.25, 0.5),
    # Crossing on a vertical segment (FPR 1/3 from threshold 0.6 to 0.3): nearer end is 0.6.
    ([0.1, 0.2, 0.6], [0.3, 0.7], 1 / 3, 0.6),
    # A live and a spoof tie at 0.5: diagonal segment (0, .5) -> (.5, 0) crossed half way; both
    # ends equally far, so the lower threshold 0.5.
    ([0.2, 0.5], [0.5, 0.9], 0.25, 0.5),
    ([0.1, 0.2], [0.8, 0.9], 0.0, 0.8),   # separable
    ([0.8, 0.9], [0.1, 0.2], 1.0, 0.8),   # exactly wrong
    ([0.5, 0.5], [0.5, 0.5], 0.5, 0.5),   # one score for all
])
def test_eer_known_crossings(live, spoof, expected_eer, expected_threshold):
  scores = np.array(live + spoof)
  labels = np.array([0] * len(live) + [1] * len(spoof))
  assert sp.eer(scores, labels) == pytest.approx(expected_eer, abs=1e-15)
  assert sp.eer_threshold(scores, labels) == expected_threshold
  assert sp.eer(scores, labels) == pytest.approx(_sklearn_eer(scores, labels), abs=1e-12)


def test_summary_keys_and_values():
  scores, labels = _random_case(40, "quantised")
  out = sp.summary(scores, labels)
  assert tuple(out) == sp.SUMMARY_KEYS
  assert all(isinstance(v, float) for v in out.values())
  t = out["eer_threshold"]
  assert out["auc"] == sp.auc(scores, labels) and out["eer"] == sp.eer(scores, labels)
  assert out["apcer"] == sp.apcer(scores, labels, 0.5)
  assert out["bpcer_at_eer"] == sp.bpcer(scores, labels, t)
  assert out["acer_at_eer"] == pytest.approx(sp.acer(scores, labels, t))
  assert out["tpr_at_fpr_5e-3"] == sp.tpr_at_fpr(scores, labels, 0.005)
  assert out["num_live"] + out["num_spoof"] == scores.size
  custom = sp.summary(scores, labels, threshold=0.3, fprs=(0.1,))
  assert custom["threshold"] == 0.3 and custom["apcer"] == sp.apcer(scores, labels, 0.3)
  assert "tpr_at_fpr_1e-1" in custom and "tpr_at_fpr_1e-2" not in custom


def test_cross_dataset_hter():
  dev_scores = np.array([0.1, 0.2, 0.6, 0.3, 0.7])     # EER threshold 0.6 (case above)
  dev_labels = np.array([0, 0, 0, 1, 1])
  test_scores = np.array([0.1, 0.65, 0.2, 0.59, 0.6, 0.9])
  test_labels = np.array([0, 0, 0, 1, 1, 1])
  value, threshold = sp.cross_dataset_hter(dev_scores, dev_labels, test_scores, test_labels)
  assert threshold == 0.6
  # FAR: spoof 0.59 accepted (1/3); FRR: live 0.65 rejected (1/3).
  assert value == pytest.approx(1 / 3)
  assert sp.hter(test_scores, test_labels, 0.6) == value


def test_real_examples_drop_padding():
  scores = np.array([[0.1, 0.9], [0.4, 0.0]])
  labels = np.array([[0, 1], [1, 0]])
  mask = np.array([[1, 1], [1, 0]])
  s, l = sp.real_examples(scores, labels, mask)
  np.testing.assert_array_equal(s, [0.1, 0.9, 0.4])
  np.testing.assert_array_equal(l, [0, 1, 1])
  with pytest.raises(ValueError, match="mask"):
    sp.real_examples(scores, labels, mask[:1])


@pytest.mark.parametrize("fn", [sp.auc, sp.eer, sp.eer_threshold, sp.apcer, sp.bpcer, sp.acer,
                                sp.summary, lambda s, l: sp.tpr_at_fpr(s, l, 0.01)])
def test_degenerate_inputs_are_clear_errors(fn):
  with pytest.raises(ValueError, match="no spoof"):
    fn(np.array([0.1, 0.2]), np.array([0, 0]))
  with pytest.raises(ValueError, match="no live"):
    fn(np.array([0.1, 0.2]), np.array([1, 1]))
  with pytest.raises(ValueError, match="no spoof"):
    fn(np.array([]), np.array([], np.int64))
  with pytest.raises(ValueError, match="label 2 at index 1"):
    fn(np.array([0.1, 0.2]), np.array([0, 2]))
  with pytest.raises(ValueError, match="finite.*index 0"):
    fn(np.array([np.nan, 0.2]), np.array([0, 1]))
  with pytest.raises(ValueError, match="1-D of one length"):
    fn(np.array([0.1, 0.2, 0.3]), np.array([0, 1]))


def test_fpr_out_of_range():
  with pytest.raises(ValueError, match=r"fpr must lie in \[0, 1\]"):
    sp.tpr_at_fpr(np.array([0.1, 0.9]), np.array([0, 1]), 1.5)

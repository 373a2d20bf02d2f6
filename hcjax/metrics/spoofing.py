"""Face anti-spoofing metrics as CelebA-Spoof evaluates them (numpy, on the host).

A Task gathers one score per real example (padding dropped, e.g. with `real_examples`) and
labels, concatenates them over the whole split, and calls these once: every metric here is a
function of the full score lists (thresholds, ranks), so nothing can be averaged over batches.

Conventions (one rule everywhere):
- score = spoof probability (higher = more likely an attack); label 1 = spoof, 0 = live.
- At threshold t an example is classified spoof iff score >= t (inclusive). This is the rule of
  CelebA-Spoof's intra_dataset_code/client.py (get_tpr_from_threshold counts the spoof scores
  that are not < t) and of sklearn.metrics.roc_curve, so all numbers below agree with both.
- APCER(t) = spoof classified live = #(spoof, score < t) / #spoof; BPCER(t) = live classified
  spoof = #(live, score >= t) / #live; ACER = (APCER + BPCER) / 2 (ISO/IEC 30107-3 names; with a
  single attack class "APCER" is the rate over all spoof images). FAR = APCER, FRR = BPCER and
  HTER(t) = (FAR + FRR) / 2 on a test set with t chosen elsewhere (a dev set).
- ROC: one point per distinct score s (threshold t = s) plus t = +inf (FPR 0, TPR 0), exactly
  sklearn's roc_curve(labels, scores, drop_intermediate=False). FPR = BPCER, FNR = APCER.
- EER: the ROC polyline (points joined linearly, as for the AUC) crosses FPR = FNR exactly once;
  EER is that crossing's FPR. Between two consecutive ROC points FPR - FNR grows strictly, so the
  crossing lies on one segment and is found by linear interpolation (on a vertical or horizontal
  segment this is the segment's FPR or FNR). eer_threshold is the ROC threshold of the segment's
  end nearer to FPR = FNR (|FPR - FNR| smallest; a tie goes to the lower threshold, where
  FPR >= FNR). APCER/BPCER "at the EER" are evaluated at eer_threshold, so they are real operating
  point rates and differ from the interpolated EER by at most one segment.
- AUC: area under that polyline = P(spoof > live) + P(spoof == live) / 2 (Mann-Whitney), computed
  from exact integer counts: equal to sklearn's roc_auc_score, ties included.
- TPR@FPR (CelebA-Spoof's benchmark): sort live scores in descending order, threshold =
  live[max(1, int(fpr * N_live)) - 1] (Python float product then int(), as the reference does),
  TPR = #(spoof, score >= threshold) / #spoof. With tied live scores the realised FPR can exceed
  `fpr`; that is the reference's definition and is kept.
Degenerate inputs (no live or no spoof example, NaN/inf scores, labels other than 0/1) raise a
ValueError saying which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LIVE, SPOOF = 0, 1
# CelebA-Spoof's benchmark points: TPR at FPR = 1%, 0.5%, 0.1%.
FPR_POINTS = (1e-2, 5e-3, 1e-3)
DEFAULT_THRESHOLD = 0.5
SUMMARY_KEYS = (
    "auc", "eer", "eer_threshold",
    "apcer", "bpcer", "acer",                 # at the fixed threshold (0.5 unless given)
    "apcer_at_eer", "bpcer_at_eer", "acer_at_eer",
    "tpr_at_fpr_1e-2", "tpr_at_fpr_5e-3", "tpr_at_fpr_1e-3",
    "threshold", "num_live", "num_spoof",
)


def real_examples(scores, labels, mask=None) -> tuple[np.ndarray, np.ndarray]:
  """Flattened numpy (scores, labels) of the examples whose mask is > 0 (eval padding dropped).

  Call it per batch and np.concatenate the results (or concatenate first): each real example then
  counts exactly once, however the eval set was padded to whole batches.
  """
  scores = np.asarray(scores, np.float64).reshape(-1)
  labels = np.asarray(labels).reshape(-1)
  if scores.shape != labels.shape:
    raise ValueError(f"{scores.size} scores but {labels.size} labels")
  if mask is None:
    return scores, labels
  mask = np.asarray(mask).reshape(-1)
  if mask.shape != scores.shape:
    raise ValueError(f"mask has {mask.size} entries for {scores.size} scores")
  keep = mask > 0
  return scores[keep], labels[keep]


def _check(scores, labels, *, need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """float64 scores [N], bool is-spoof [N]; a ValueError for anything that has no answer."""
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels)
  if scores.ndim != 1 or labels.shape != scores.shape:
    raise ValueError(f"scores and labels must be 1-D of one length, got shapes {scores.shape} "
                     f"and {labels.shape}")
  bad = (labels != LIVE) & (labels != SPOOF)
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"labels must be 0 (live) or 1 (spoof); label {labels[i].item()!r} at "
                     f"index {i}")
  if not np.all(np.isfinite(scores)):
    i = int(np.argmax(~np.isfinite(scores)))
    raise ValueError(f"scores must be finite; score {scores[i]} at index {i}")
  spoof = labels == SPOOF
  if need_both:
    num_spoof = int(spoof.sum())
    if num_spoof == 0 or num_spoof == spoof.size:
      which = "no spoof (label 1)" if num_spoof == 0 else "no live (label 0)"
      raise ValueError(f"spoofing metrics need live and spoof examples; {which} example among "
                       f"{spoof.size}")
  return scores, spoof


def roc(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(fpr, tpr, thresholds) at +inf and every distinct score, thresholds descending.

  The same arrays as sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False).
  """
  fp, tp, thresholds = _roc_counts(*_check(scores, labels))
  return fp / fp[-1], tp / tp[-1], thresholds


def _roc_counts(scores: np.ndarray, spoof: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Cumulative int64 (false positives, true positives) at thresholds [+inf, s_max, ..., s_min]."""
  values, inverse = np.unique(scores, return_inverse=True)  # ascending
  spoof_at = np.bincount(inverse[spoof], minlength=values.size)[::-1]
  live_at = np.bincount(inverse, minlength=values.size)[::-1] - spoof_at
  zero = np.zeros(1, np.int64)
  fp = np.concatenate([zero, np.cumsum(live_at, dtype=np.int64)])
  tp = np.concatenate([zero, np.cumsum(spoof_at, dtype=np.int64)])
  return fp, tp, np.concatenate([[np.inf], values[::-1]])


def auc(scores, labels) -> float:
  """Area under the ROC = P(spoof > live) + P(tie) / 2, from exact integer counts."""
  fp, tp, _ = _roc_counts(*_check(scores, labels))
  # Trapezoids on the count grid: 2 * area = sum (fp_k - fp_{k-1}) * (tp_k + tp_{k-1}), exact.
  twice = int(np.sum(np.diff(fp) * (tp[1:] + tp[:-1]), dtype=np.int64))
  return twice / (2 * int(fp[-1]) * int(tp[-1]))


def apcer(scores, labels, threshold: float = DEFAULT_THRESHOLD) -> float:
  """Spoof examples classified live (score < threshold) / spoof examples."""
  scores, spoof = _check(scores, labels)
  return float(np.mean(scores[spoof] < threshold))


def bpcer(scores, labels, threshold: float = DEFAULT_THRESHOLD) -> float:
  """Live examples classified spoof (score >= threshold) / live examples."""
  scores, spoof = _check(scores, labels)
  return float(np.mean(scores[~spoof] >= threshold))


def acer(scores, labels, threshold: float = DEFAULT_THRESHOLD) -> float:
  """(APCER + BPCER) / 2 at `threshold`."""
  return 0.5 * (apcer(scores, labels, threshold) + bpcer(scores, labels, threshold))


def hter(scores, labels, threshold: float) -> float:
  """Half total error rate (FAR + FRR) / 2 at a threshold fixed beforehand (e.g. on a dev set).

  Numerically the ACER; the name marks the cross-dataset protocol: choose `threshold` with
  `eer_threshold` (or otherwise) on the development data, then evaluate the test data with it.
  """
  return acer(scores, labels, threshold)


def cross_dataset_hter(dev_scores, dev_labels, test_scores, test_labels) -> tuple[float, float]:
  """(HTER on the test set, threshold): the threshold is the dev set's EER threshold."""
  threshold = eer_threshold(dev_scores, dev_labels)
  return hter(test_scores, test_labels, threshold), threshold


def _eer(scores, labels) -> tuple[float, float]:
  fp, tp, thresholds = _roc_counts(*_check(scores, labels))
  fpr = fp / fp[-1]
  # d = FPR - FNR in exact integer form (sign and ordering only): fp*P - (P - tp)*N.
  P, N = int(tp[-1]), int(fp[-1])
  d = fp * P - (P - tp) * N  # strictly increasing; d[0] = -P*N < 0, d[-1] = P*N > 0
  k = int(np.argmax(d >= 0))
  alpha = -d[k - 1] / (d[k] - d[k - 1])
  eer_value = float(fpr[k - 1] + alpha * (fpr[k] - fpr[k - 1]))
  # Nearer end of the crossing segment; |d_{k-1}| <= P*N = |d_0|, so k - 1 = 0 (+inf) is never
  # strictly nearer than k, and ties go to k.
  j = k - 1 if -d[k - 1] < d[k] else k
  return eer_value, float(thresholds[j])


def eer(scores, labels) -> float:
  """Equal error rate: where the linearly interpolated ROC crosses FPR = FNR."""
  return _eer(scores, labels)[0]


def eer_threshold(scores, labels) -> float:
  """The ROC threshold (a score value) whose |FPR - FNR| is smallest; ties -> the lower one."""
  return _eer(scores, labels)[1]


def threshold_at_fpr(scores, labels, fpr: float) -> float:
  """CelebA-Spoof's threshold for a target FPR: live scores descending [max(1, int(fpr·N)) - 1]."""
  if not 0.0 <= fpr <= 1.0:
    raise ValueError(f"fpr must lie in [0, 1], got {fpr}")
  scores, spoof = _check(scores, labels)
  live = np.sort(scores[~spoof])[::-1]
  return float(live[max(1, int(float(fpr) * live.size)) - 1])


def tpr_at_fpr(scores, labels, fpr: float) -> float:
  """Spoof examples with score >= threshold_at_fpr / spoof examples (CelebA-Spoof's TPR@FPR)."""
  threshold = threshold_at_fpr(scores, labels, fpr)
  scores, spoof = _check(scores, labels)
  return float(np.mean(scores[spoof] >= threshold))


def _fpr_key(fpr: float) -> str:
  """0.01 -> "tpr_at_fpr_1e-2", 0.005 -> "tpr_at_fpr_5e-3", 0.0015 -> "tpr_at_fpr_1.5e-3"."""
  return "tpr_at_fpr_" + np.format_float_scientific(fpr, trim="-", exp_digits=1)


def summary(scores, labels, *, threshold: float = DEFAULT_THRESHOLD,
            fprs: Sequence[float] = FPR_POINTS) -> dict[str, float]:
  """Every metric above under stable keys (SUMMARY_KEYS for the default fprs).

  apcer / bpcer / acer use `threshold` (reported as "threshold"); the *_at_eer ones use
  eer_threshold; one "tpr_at_fpr_<fpr>" per fpr, e.g. "tpr_at_fpr_1e-2".
  """
  scores, spoof = _check(scores, labels)
  labels = spoof.astype(np.int64)
  eer_value, eer_t = _eer(scores, labels)
  out: dict[str, Any] = {"auc": auc(scores, labels), "eer": eer_value, "eer_threshold": eer_t}
  for suffix, t in (("", threshold), ("_at_eer", eer_t)):
    a, b = apcer(scores, labels, t), bpcer(scores, labels, t)
    out.update({f"apcer{suffix}": a, f"bpcer{suffix}": b, f"acer{suffix}": 0.5 * (a + b)})
  for fpr in fprs:
    out[_fpr_key(fpr)] = tpr_at_fpr(scores, labels, fpr)
  out.update(threshold=float(threshold), num_live=float((~spoof).sum()),
             num_spoof=float(spoof.sum()))
  return {k: float(v) for k, v in out.items()}

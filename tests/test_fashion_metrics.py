"""DeepFashion metrics: hand-computed cases, brute-force references on random data, masks, jit."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hcjax.metrics import fashion as fm


def _ranked(row):
  """Indices of one row by the ranking rule, written out: score descending, then index."""
  return sorted(range(len(row)), key=lambda i: (-float(row[i]), i))


# --- category -----------------------------------------------------------------------------------

def test_category_hand_case():
  scores = np.array([[0.1, 0.5, 0.3, 0.2, 0.9, 0.0],    # label 2 third -> top3, top5
                     [0.1, 0.5, 0.3, 0.2, 0.9, 0.0],    # label 0 fifth -> top5 only
                     [0.1, 0.5, 0.3, 0.2, 0.9, 0.0],    # label 5 last -> neither
                     [0.2, 0.2, 0.2, 0.2, 0.2, 0.2],    # all tied: label 2 third (index order)
                     [0.2, 0.2, 0.2, 0.2, 0.2, 0.2],    # label 3 fourth
                     [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])   # label -1: no category, not counted
  labels = np.array([2, 0, 5, 2, 3, -1])
  assert fm.label_rank(scores, labels).tolist() == [2, 4, 5, 2, 3, 6]
  out = fm.category_topk_accuracy(scores, labels)
  assert out == {"top3_accuracy": 2 / 5, "top5_accuracy": 4 / 5, "examples": 5.0}
  masked = fm.category_topk_accuracy(scores, labels, mask=[1, 1, 0, 1, 0, 1])
  assert masked == {"top3_accuracy": 2 / 3, "top5_accuracy": 1.0, "examples": 3.0}
  assert fm.category_topk_accuracy(scores, labels, ks=(1, 6))["top6_accuracy"] == 1.0


def test_category_statistics_add_up_over_batches():
  rng = np.random.default_rng(0)
  scores, labels = rng.normal(size=(50, 8)), rng.integers(0, 8, 50)
  whole = fm.category_statistics(scores, labels)
  parts = [fm.category_statistics(scores[i:i + 16], labels[i:i + 16]) for i in range(0, 50, 16)]
  assert {k: sum(int(p[k]) for p in parts) for k in whole} == {k: int(v) for k, v in whole.items()}
  for k in (3, 5):
    brute = np.mean([labels[i] in _ranked(scores[i])[:k] for i in range(50)])
    assert fm.category_accuracy(whole)[f"top{k}_accuracy"] == brute


def test_category_bad_inputs():
  with pytest.raises(ValueError, match="finite"):
    fm.category_topk_accuracy(np.array([[0.1, np.nan]]), np.array([0]))
  with pytest.raises(ValueError, match="labels must be -1 or in 0..1"):
    fm.category_topk_accuracy(np.zeros((1, 2)), np.array([2]))
  assert math.isnan(fm.category_topk_accuracy(np.zeros((1, 2)), np.array([-1]))["top3_accuracy"])


# --- attributes ---------------------------------------------------------------------------------

SCORES = np.array([[0.9, 0.1, 0.5, 0.3],
                   [0.2, 0.8, 0.7, 0.1],
                   [0.6, 0.6, 0.1, 0.9]])
LABELS = np.array([[1, -1, 1, 0],      # attribute 3 unknown: never a positive
                   [1, 1, -1, -1],
                   [-1, 0, 1, 1]])
TYPES = np.array([1, 1, 2, 2])


def test_attribute_hand_case():
  # top1: {0}, {1}, {3}; top2: {0, 2}, {1, 2}, {3, 0} (0.6 tie: attribute 0 before 1).
  # positives: a0 images 0, 1; a1 image 1; a2 images 0, 2; a3 image 2.
  out = fm.attribute_topk_recall(SCORES, LABELS, ks=(1, 2), attribute_types=TYPES,
                                 type_names=("texture", "fabric"), best=2)
  assert out["top1_recall"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
  assert out["top1_recall_micro"] == pytest.approx(3 / 6)
  assert out["top1_recall_mmfashion"] == 1.0                    # best two recalls: 1, 1
  assert out["top2_recall"] == pytest.approx((0.5 + 1 + 0.5 + 1) / 4)
  assert out["top2_recall_micro"] == pytest.approx(4 / 6)
  assert out["top2_recall_mmfashion"] == 1.0
  # within type, top1: type 1 picks 0, 1, 0 (tie); type 2 picks 2, 2, 3.
  assert out["top1_recall/texture"] == pytest.approx((1 / 2 + 1) / 2)
  assert out["top1_recall/fabric"] == pytest.approx((1 / 2 + 1) / 2)
  assert out["top2_recall/texture"] == 1.0 and out["top2_recall/fabric"] == 1.0
  assert out["examples"] == 3 and out["attributes_with_positives"] == 4
  stats = fm.attribute_statistics(SCORES, LABELS, (1,), attribute_types=TYPES)
  assert stats["positives"].tolist() == [2, 1, 2, 1]
  assert stats["top1_hits"].tolist() == [1, 1, 0, 1]
  assert stats["top1_hits_within_type"].tolist() == [1, 1, 1, 1]


def test_attribute_mask_and_unknowns():
  masked = fm.attribute_statistics(SCORES, LABELS, (1,), mask=[1, 0, 1])
  assert masked["positives"].tolist() == [1, 0, 2, 1] and int(masked["count"]) == 2
  assert masked["top1_hits"].tolist() == [1, 0, 0, 1]
  # An unknown label is no positive even when predicted first.
  only_unknown = fm.attribute_topk_recall(np.array([[1.0, 0.0]]), np.array([[0, -1]]), ks=(1,))
  assert math.isnan(only_unknown["top1_recall"]) and only_unknown["attributes_with_positives"] == 0
  with pytest.raises(ValueError, match="1 \\(positive\\), -1 \\(negative\\) or 0"):
    fm.attribute_statistics(SCORES, LABELS * 2)


def _brute_attributes(scores, labels, types, k, best):
  n, a = scores.shape
  hits, within, pos = np.zeros(a), np.zeros(a), np.zeros(a)
  for i in range(n):
    top = set(_ranked(scores[i])[:k])
    top_type = set()
    for t in set(types.tolist()):
      members = [j for j in range(a) if types[j] == t]
      top_type |= {members[j] for j in _ranked(scores[i, members])[:k]}
    for j in range(a):
      if labels[i, j] == 1:
        pos[j] += 1
        hits[j] += j in top
        within[j] += j in top_type
  recalls = [hits[j] / pos[j] for j in range(a) if pos[j]]
  out = {f"top{k}_recall": sum(recalls) / len(recalls),
         f"top{k}_recall_micro": hits.sum() / pos.sum(),
         f"top{k}_recall_mmfashion":
             sum(sorted(recalls, reverse=True)[:best]) / min(best, len(recalls))}
  for t, name in enumerate(fm.ATTRIBUTE_TYPE_NAMES, start=1):
    r = [within[j] / pos[j] for j in range(a) if pos[j] and types[j] == t]
    out[f"top{k}_recall/{name}"] = sum(r) / len(r)
  return out


@pytest.mark.parametrize("quantised", [False, True])
def test_attributes_against_brute_force(quantised):
  rng = np.random.default_rng(1)
  n, a = 40, 60
  scores = rng.normal(size=(n, a))
  if quantised:  # many ties
    scores = np.round(scores * 2) / 2
  labels = rng.choice([-1, -1, -1, 0, 1], size=(n, a))
  types = np.arange(a) % 5 + 1
  for k in (3, 5):
    out = fm.attribute_topk_recall(scores, labels, ks=(k,), attribute_types=types, best=20)
    brute = _brute_attributes(scores, labels, types, k, best=20)
    for key, value in brute.items():
      assert out[key] == pytest.approx(value, abs=1e-12), key


def test_topk_mask_groups_smaller_than_k():
  mask = fm.topk_mask(np.array([[3.0, 2.0, 1.0, 0.0]]), 3, groups=[1, 2, 2, 2])
  assert mask.tolist() == [[True, True, True, True]]
  assert fm.topk_mask(np.array([[1.0, 1.0, 1.0]]), 2).tolist() == [[True, True, False]]


# --- landmarks ----------------------------------------------------------------------------------

def test_landmark_hand_case():
  target = np.array([[[10, 10], [50, 50]], [[0, 0], [5, 5]]], np.float64)
  pred = np.array([[[13, 14], [50, 60]], [[0, 11], [np.nan, np.nan]]])
  visibility = np.array([[0, 0], [0, 1]])       # image 1's second landmark is occluded
  sizes = np.array([[100, 200], [50, 50]])      # (height, width)
  stats = fm.landmark_statistics(pred, target, fm.landmark_valid(visibility), sizes)
  e0 = math.hypot(3 / 200, 4 / 100)
  np.testing.assert_allclose(stats["normalized_error_sum"], [e0 + 11 / 50, 10 / 100])
  assert stats["detected"].tolist() == [1, 1]   # 5 px and 10 px (inclusive) yes, 11 px no
  assert stats["valid"].tolist() == [2, 1]
  out = fm.landmark_metrics(stats, names=("left_collar", "right_collar"))
  assert out["normalized_error"] == pytest.approx((e0 + 11 / 50 + 0.1) / 3)
  assert out["detection_rate"] == pytest.approx(2 / 3) and out["landmarks"] == 3
  assert out["detection_rate/left_collar"] == 0.5
  assert out["normalized_error/right_collar"] == pytest.approx(0.1)
  r5 = fm.landmark_metrics(fm.landmark_statistics(pred, target, visibility == 0, sizes, radius=5))
  assert r5["detection_rate"] == pytest.approx(1 / 3)


def test_landmark_present_and_mask():
  target = np.zeros((3, 8, 2))
  pred = np.full((3, 8, 2), 3.0)
  visibility = np.zeros((3, 8), np.int64)
  present = np.zeros((3, 8), np.int64)
  present[:, :4] = 1                            # lower-body clothes: 4 slots
  stats = fm.landmark_statistics(pred, target, fm.landmark_valid(visibility, present), (224, 224),
                                 mask=[1, 1, 0])
  assert stats["valid"].tolist() == [2] * 4 + [0] * 4
  out = fm.landmark_metrics(stats, names=[f"l{i}" for i in range(8)])
  assert out["normalized_error"] == pytest.approx(math.hypot(3, 3) / 224)
  assert math.isnan(out["detection_rate/l7"])


# --- retrieval ----------------------------------------------------------------------------------

def test_retrieval_hand_case():
  gallery = np.array([[1, 0], [0, 1], [2, 0], [1, 1]], np.float64)
  gallery_ids = np.array([1, 2, 2, 3])
  query = np.array([[1, 0], [0, 3], [1, 0], [-1, 0], [0, 0]], np.float64)
  query_ids = np.array([2, 1, 9, 3, 1])
  # q0: g0 and g2 tie at 1 (g0 first), item 2's g2 ranks 1; q1: g1, g3, g0 -> 2; q2: no item 9
  # in the gallery; q3: g1 (0), g3 (-0.71) -> 1; q4: zero vector, all tied, g0 first -> 0.
  ranks = fm.retrieval_ranks(query, query_ids, gallery, gallery_ids)
  assert ranks.tolist() == [1, 2, -1, 1, 0]
  out = fm.retrieval_topk_accuracy(query, query_ids, gallery, gallery_ids, ks=(1, 2, 3))
  assert out == {"top1_accuracy": 0.25, "top2_accuracy": 0.75, "top3_accuracy": 1.0,
                 "queries": 4.0, "excluded_queries": 1.0}
  masked = fm.retrieval_topk_accuracy(query, query_ids, gallery, gallery_ids, ks=(1,),
                                      query_mask=[1, 1, 1, 0, 1], gallery_mask=[0, 1, 1, 1])
  # Without g0: q0 -> g2 first (0); q1 -> g1 (1), g3 (2)... item 1 gone: excluded; q4 excluded.
  assert masked == {"top1_accuracy": 1.0, "queries": 1.0, "excluded_queries": 3.0}


def _brute_ranks(query, query_ids, gallery, gallery_ids):
  unit = lambda v: v / (np.linalg.norm(v) or 1.0)
  out = []
  for q, qid in zip(query, query_ids):
    sims = [float(np.dot(unit(q), unit(g))) for g in gallery]
    order = sorted(range(len(gallery)), key=lambda j: (-sims[j], j))
    hits = [r for r, j in enumerate(order) if gallery_ids[j] == qid]
    out.append(hits[0] if hits else -1)
  return out


@pytest.mark.parametrize("duplicates", [False, True])
def test_retrieval_against_brute_force(duplicates):
  rng = np.random.default_rng(2)
  gallery = rng.normal(size=(120, 8))
  gallery_ids = rng.integers(0, 40, 120)
  if duplicates:  # exact ties: repeated gallery rows under other items
    gallery[60:] = gallery[:60]
  query = rng.normal(size=(70, 8))
  query[:10] = gallery[rng.integers(0, 120, 10)] * 3.0
  query_ids = rng.integers(0, 45, 70)
  brute = _brute_ranks(query, query_ids, gallery, gallery_ids)
  assert -1 in brute
  for block in (1, 7, 1000):
    assert fm.retrieval_ranks(query, query_ids, gallery, gallery_ids, block=block).tolist() == brute
  out = fm.retrieval_topk_accuracy(query, query_ids, gallery, gallery_ids)
  counted = [r for r in brute if r >= 0]
  for k in fm.RETRIEVAL_TOPK:
    assert out[f"top{k}_accuracy"] == sum(r < k for r in counted) / len(counted)


def test_retrieval_bad_inputs():
  with pytest.raises(ValueError, match="dimensions"):
    fm.retrieval_ranks(np.zeros((2, 3)), [0, 1], np.zeros((2, 4)), [0, 1])
  with pytest.raises(ValueError, match="finite"):
    fm.retrieval_ranks(np.array([[np.inf, 0.0]]), [0], np.ones((1, 2)), [0])
  assert fm.retrieval_ranks(np.ones((2, 2)), [0, 1], np.zeros((0, 2)), []).tolist() == [-1, -1]


# --- jax ----------------------------------------------------------------------------------------

def test_statistics_under_jit_match_numpy():
  rng = np.random.default_rng(3)
  cat_scores, cat_labels = rng.normal(size=(12, 10)).astype(np.float32), rng.integers(-1, 10, 12)
  attr_scores = rng.normal(size=(12, 20)).astype(np.float32)
  attr_labels = rng.choice([-1, 0, 1], size=(12, 20))
  types = np.arange(20) % 5 + 1
  target = rng.uniform(0, 224, size=(12, 8, 2)).astype(np.float32)
  pred = (target + rng.normal(scale=8, size=target.shape)).astype(np.float32)
  valid = rng.random((12, 8)) < 0.7
  mask = (np.arange(12) < 9).astype(np.int32)

  @jax.jit
  def stats(cs, cl, ascores, al, p, t, v, m):
    return (fm.category_statistics(cs, cl, mask=m),
            fm.attribute_statistics(ascores, al, attribute_types=types, mask=m),
            fm.landmark_statistics(p, t, v, jnp.array([224.0, 224.0]), mask=m))

  on_device = stats(*map(jnp.asarray, (cat_scores, cat_labels, attr_scores, attr_labels, pred,
                                       target, valid, mask)))
  on_host = (fm.category_statistics(cat_scores, cat_labels, mask=mask),
             fm.attribute_statistics(attr_scores, attr_labels, attribute_types=types, mask=mask),
             fm.landmark_statistics(pred, target, valid, (224, 224), mask=mask))
  for device, host in zip(on_device, on_host):
    assert device.keys() == host.keys()
    for key in host:
      np.testing.assert_allclose(np.asarray(device[key]), host[key], rtol=1e-5, err_msg=key)

"""DeepFashion metrics: category top-k accuracy, attribute top-k recall, landmark normalised error
and detection rate, in-shop retrieval top-k accuracy.

Every example counts exactly once. The *_statistics functions return sums over the examples
whose `mask` is > 0 (the eval padding's `_mask`); sums of batches, hosts and processes add up,
and the matching summary (category_accuracy, attribute_recall, landmark_metrics) turns the
split's totals into metrics once. numpy in -> numpy out; jax arrays in -> jax arrays out
(jit-friendly, for a Task's eval_statistics). Retrieval needs all embeddings at once: gather the
real ones (real_examples drops padding) and call retrieval_topk_accuracy once on the host.

Ranking rule everywhere: scores descending, equal scores in index order (the lower class,
attribute or gallery index first), i.e. a stable sort of -score. Inputs checked on the host
(numpy) raise a ValueError for NaN/inf scores or labels out of range; jax inputs are not checked.

Definitions:
- Category top-k accuracy: the label is among the k highest scores; examples with label -1
  (no category) are left out. (mmfashion's CateCalculator reports per-category recall averaged
  over categories instead; the DeepFashion paper's numbers are accuracies.)
- Attribute top-k recall (DeepFashion; mmfashion's AttrCalculator): per image, the k highest
  scoring attributes are "predicted". Labels are 1 positive, -1 negative, 0 unknown; only 1 is a
  positive (unknown never is). Per attribute a: recall_a = #(images with a positive and
  predicted) / #(images with a positive), over attributes with at least one positive.
    top{k}_recall            mean of recall_a over those attributes (per attribute, then averaged)
    top{k}_recall_micro      sum of hits / sum of positives (every positive label weighs the same)
    top{k}_recall_mmfashion  mean of the 50 largest recall_a: what mmfashion prints
                             (compute_one_recall sorts the recalls and keeps topn = 50)
    top{k}_recall/<type>     recall_a averaged over the attributes of one type (texture, fabric,
                             shape, part, style), the top k taken among that type's attributes
                             only (each type ranked on its own, as the paper's per-type columns)
- Landmarks: only landmarks that are visible (visibility 0) and present for the clothes type
  count (landmark_valid). Normalised error of one landmark = || (dx / width, dy / height) ||,
  the distance in coordinates normalised by the image size, as mmfashion's
  LandmarkDetectorEvaluator (which uses the network input size, 224 x 224); averaged over all
  valid landmarks. Detection rate = fraction of valid landmarks with pixel distance <= radius
  (10 in mmfashion; pixels of the frame the coordinates are in). mmfashion also counts the
  invisible landmarks, with prediction and truth both zeroed (error 0, always detected); that
  inflates its numbers and is not done here.
- In-shop retrieval top-k accuracy (hit@k, the paper's "top-k retrieval accuracy"): rank the
  whole gallery by cosine similarity to the query; a hit when one of the first k gallery images
  shows the query's item. Queries whose item has no gallery image are excluded (counted in
  excluded_queries). A zero embedding has similarity 0 to everything. (mmfashion's retrieval
  Evaluator prints recall@k = relevant retrieved / all relevant, a different number.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

CATEGORY_TOPK = (3, 5)
ATTRIBUTE_TOPK = (3, 5)
ATTRIBUTE_TYPE_NAMES = ("texture", "fabric", "shape", "part", "style")  # types 1..5
MMFASHION_BEST_ATTRIBUTES = 50
LANDMARK_RADIUS = 10.0
RETRIEVAL_TOPK = (1, 5, 10, 20, 30, 40, 50)


def _xp(*arrays):
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _on_host(xp) -> bool:
  return xp is np


def _mask(xp, mask, n: int):
  if mask is None:
    return xp.ones((n,), xp.int32 if xp is jnp else np.int64)
  mask = xp.asarray(mask).reshape(-1)
  if _on_host(xp) and mask.shape != (n,):
    raise ValueError(f"mask has {mask.size} entries for {n} examples")
  return (mask > 0).astype(xp.int32 if xp is jnp else np.int64)


def _check_scores(scores, ndim: int, what: str) -> None:
  if scores.ndim != ndim:
    raise ValueError(f"{what} must have {ndim} dimensions, got shape {scores.shape}")
  if not np.all(np.isfinite(scores)):
    bad = np.argwhere(~np.isfinite(scores))[0]
    raise ValueError(f"{what} must be finite; {scores[tuple(bad)]} at index {tuple(bad.tolist())}")


def real_examples(mask, *arrays) -> tuple[np.ndarray, ...]:
  """The rows (first axis) of each array whose mask is > 0: eval padding dropped, on the host."""
  keep = np.asarray(mask).reshape(-1) > 0
  out = []
  for a in arrays:
    a = np.asarray(a)
    if a.shape[0] != keep.size:
      raise ValueError(f"mask has {keep.size} entries but an array has {a.shape[0]} rows")
    out.append(a[keep])
  return tuple(out)


# --- ranking ------------------------------------------------------------------------------------

def label_rank(scores, labels):
  """[N] 0-based rank of each example's label among its scores [N, C] (ranking rule above).

  Labels outside [0, C) get rank C (never within any top k).
  """
  xp = _xp(scores, labels)
  scores, labels = xp.asarray(scores), xp.asarray(labels)
  num_classes = scores.shape[-1]
  valid = (labels >= 0) & (labels < num_classes)
  safe = xp.clip(labels, 0, num_classes - 1)
  own = xp.take_along_axis(scores, safe[:, None], axis=1)
  before = (scores > own) | ((scores == own) & (xp.arange(num_classes)[None] < safe[:, None]))
  return xp.where(valid, before.sum(1), num_classes)


def topk_mask(scores, k: int, groups=None):
  """[N, A] bool: the k highest of each row (ranking rule above).

  groups: int [A] (e.g. attribute types); then the top k are taken within each group, so every
  group marks min(k, its size) entries per row.
  """
  xp = _xp(scores)
  scores = xp.asarray(scores)
  if groups is None:
    order = xp.argsort(-scores, axis=1, stable=True)
    return xp.argsort(order, axis=1, stable=True) < k
  groups = np.asarray(groups).reshape(-1)
  if groups.shape != (scores.shape[1],):
    raise ValueError(f"{groups.size} groups for {scores.shape[1]} columns")
  out = xp.zeros(scores.shape, bool)
  for g in np.unique(groups):
    cols = np.flatnonzero(groups == g)
    part = topk_mask(scores[:, cols], k)
    out = out.at[:, cols].set(part) if xp is jnp else _set_columns(out, cols, part)
  return out


def _set_columns(out: np.ndarray, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
  out[:, cols] = values
  return out


# --- category -----------------------------------------------------------------------------------

def category_statistics(scores, labels, ks: Sequence[int] = CATEGORY_TOPK, *, mask=None
                        ) -> dict:
  """Sums over the real examples with a category: "count" and "top{k}_correct" per k.

  scores: [N, C] logits or probabilities; labels: [N] 0-based, -1 = no category.
  """
  xp = _xp(scores, labels, mask)
  scores, labels = xp.asarray(scores), xp.asarray(labels).reshape(-1)
  if _on_host(xp):
    _check_scores(scores.astype(np.float64), 2, "category scores")
    if labels.shape != (scores.shape[0],):
      raise ValueError(f"{labels.size} labels for {scores.shape[0]} score rows")
    if np.any(labels >= scores.shape[1]) or np.any(labels < -1):
      raise ValueError(f"category labels must be -1 or in 0..{scores.shape[1] - 1}")
  weight = _mask(xp, mask, scores.shape[0]) * (labels >= 0)
  rank = label_rank(scores, labels)
  out = {"count": weight.sum()}
  for k in ks:
    out[f"top{k}_correct"] = ((rank < k) * weight).sum()
  return out


def category_accuracy(totals: Mapping, ks: Sequence[int] = CATEGORY_TOPK) -> dict[str, float]:
  """Added-up category_statistics -> "top{k}_accuracy" (NaN without examples), "examples"."""
  count = float(totals["count"])
  out = {f"top{k}_accuracy": float(totals[f"top{k}_correct"]) / count if count else float("nan")
         for k in ks}
  out["examples"] = count
  return out


def category_topk_accuracy(scores, labels, ks: Sequence[int] = CATEGORY_TOPK, *, mask=None
                           ) -> dict[str, float]:
  """Top-k accuracies of one complete set of (scores, labels) on the host."""
  return category_accuracy(category_statistics(np.asarray(scores), np.asarray(labels), ks,
                                               mask=None if mask is None else np.asarray(mask)), ks)


# --- attributes ---------------------------------------------------------------------------------

def attribute_statistics(scores, labels, ks: Sequence[int] = ATTRIBUTE_TOPK, *,
                         attribute_types=None, mask=None) -> dict:
  """Per-attribute sums over the real examples: "positives" [A], "top{k}_hits" [A] (positive
  and among the image's top k of all attributes), with attribute_types [A] also
  "top{k}_hits_within_type" [A] (top k among the attribute's own type), and "count".

  scores: [N, A]; labels: [N, A] in {1 positive, -1 negative, 0 unknown}.
  """
  xp = _xp(scores, labels, mask)
  scores, labels = xp.asarray(scores), xp.asarray(labels)
  if _on_host(xp):
    _check_scores(scores.astype(np.float64), 2, "attribute scores")
    if labels.shape != scores.shape:
      raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    if not np.isin(labels, (-1, 0, 1)).all():
      raise ValueError("attribute labels must be 1 (positive), -1 (negative) or 0 (unknown)")
  weight = _mask(xp, mask, scores.shape[0])
  positive = (labels == 1) * weight[:, None]
  out = {"count": weight.sum(), "positives": positive.sum(0)}
  for k in ks:
    out[f"top{k}_hits"] = (topk_mask(scores, k) * positive).sum(0)
    if attribute_types is not None:
      out[f"top{k}_hits_within_type"] = (topk_mask(scores, k, attribute_types) * positive).sum(0)
  return out


def attribute_recall(totals: Mapping, ks: Sequence[int] = ATTRIBUTE_TOPK, *,
                     attribute_types=None, type_names: Sequence[str] = ATTRIBUTE_TYPE_NAMES,
                     best: int = MMFASHION_BEST_ATTRIBUTES) -> dict[str, float]:
  """Added-up attribute_statistics -> the recalls of the module doc (NaN where no attribute
  has a positive); per type only with attribute_types (values 1..len(type_names))."""
  positives = np.asarray(totals["positives"], np.float64)
  has = positives > 0
  out: dict[str, float] = {}
  nan = float("nan")
  for k in ks:
    hits = np.asarray(totals[f"top{k}_hits"], np.float64)
    recall = hits[has] / positives[has]
    out[f"top{k}_recall"] = float(recall.mean()) if recall.size else nan
    out[f"top{k}_recall_micro"] = float(hits.sum() / positives.sum()) if has.any() else nan
    out[f"top{k}_recall_mmfashion"] = (float(np.sort(recall)[::-1][:best].mean())
                                       if recall.size else nan)
    if attribute_types is not None:
      types = np.asarray(attribute_types).reshape(-1)
      within = np.asarray(totals[f"top{k}_hits_within_type"], np.float64)
      for t, name in enumerate(type_names, start=1):
        sel = has & (types == t)
        out[f"top{k}_recall/{name}"] = (float(np.mean(within[sel] / positives[sel]))
                                        if sel.any() else nan)
  out["examples"] = float(totals["count"])
  out["attributes_with_positives"] = float(has.sum())
  return out


def attribute_topk_recall(scores, labels, ks: Sequence[int] = ATTRIBUTE_TOPK, *,
                          attribute_types=None, mask=None, **kwargs) -> dict[str, float]:
  """Attribute recalls of one complete set of (scores, labels) on the host."""
  totals = attribute_statistics(np.asarray(scores), np.asarray(labels), ks,
                                attribute_types=attribute_types,
                                mask=None if mask is None else np.asarray(mask))
  return attribute_recall(totals, ks, attribute_types=attribute_types, **kwargs)


# --- landmarks ----------------------------------------------------------------------------------

def landmark_valid(visibility, present=None):
  """[N, L] bool: landmarks that count (visible, and present for the clothes type)."""
  xp = _xp(visibility, present)
  valid = xp.asarray(visibility) == 0
  return valid if present is None else valid & (xp.asarray(present) > 0)


def landmark_statistics(pred, target, valid, image_size, *, radius: float = LANDMARK_RADIUS,
                        mask=None) -> dict:
  """Per-landmark sums over the valid landmarks of the real examples:
  "normalized_error_sum" [L], "detected" [L] (pixel distance <= radius), "valid" [L].

  pred, target: [N, L, 2] (x, y) in pixels; valid: [N, L] bool (landmark_valid);
  image_size: [N, 2] or [2], (height, width) of the frame the coordinates are in.
  """
  xp = _xp(pred, target, valid, image_size, mask)
  pred, target = xp.asarray(pred), xp.asarray(target)
  float_dtype = np.float64 if _on_host(xp) else jnp.float32
  if _on_host(xp):
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
      raise ValueError(f"pred {pred.shape} and target {target.shape} must both be [N, L, 2]")
    if np.asarray(valid).shape != pred.shape[:2]:
      raise ValueError(f"valid must be [N, L] = {pred.shape[:2]}, got {np.asarray(valid).shape}")
    if np.any(np.asarray(image_size) <= 0):
      raise ValueError("image sizes must be positive")
  size = xp.broadcast_to(xp.asarray(image_size, float_dtype).reshape(-1, 2), (pred.shape[0], 2))
  d = (pred - target).astype(float_dtype)
  weight = xp.asarray(valid).astype(bool) & (_mask(xp, mask, pred.shape[0])[:, None] > 0)
  if _on_host(xp) and not np.all(np.isfinite(d[weight])):
    raise ValueError("landmark coordinates of valid landmarks must be finite")
  d = xp.where(weight[..., None], d, 0.0)
  normalized = xp.sqrt((d[..., 0] / size[:, 1:2]) ** 2 + (d[..., 1] / size[:, 0:1]) ** 2)
  pixels = xp.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2)
  return {"normalized_error_sum": xp.where(weight, normalized, 0.0).sum(0),
          "detected": (weight & (pixels <= radius)).sum(0),
          "valid": weight.sum(0)}


def landmark_metrics(totals: Mapping, names: Sequence[str] | None = None) -> dict[str, float]:
  """Added-up landmark_statistics -> "normalized_error", "detection_rate" over all valid
  landmarks (NaN without any), "landmarks"; per landmark too when `names` are given."""
  errors = np.asarray(totals["normalized_error_sum"], np.float64)
  detected = np.asarray(totals["detected"], np.float64)
  valid = np.asarray(totals["valid"], np.float64)
  total = valid.sum()
  out = {"normalized_error": float(errors.sum() / total) if total else float("nan"),
         "detection_rate": float(detected.sum() / total) if total else float("nan"),
         "landmarks": float(total)}
  for i, name in enumerate(names or ()):
    out[f"normalized_error/{name}"] = float(errors[i] / valid[i]) if valid[i] else float("nan")
    out[f"detection_rate/{name}"] = float(detected[i] / valid[i]) if valid[i] else float("nan")
  return out


# --- in-shop retrieval --------------------------------------------------------------------------

def _unit(x: np.ndarray, what: str) -> np.ndarray:
  x = np.asarray(x, np.float64)
  _check_scores(x, 2, what)
  norm = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.where(norm > 0, norm, 1.0)


def retrieval_ranks(query, query_ids, gallery, gallery_ids, *, block: int = 256) -> np.ndarray:
  """[Q] int64: 0-based rank of the query item's best-ranked gallery image in the query's
  ranking of the gallery (cosine similarity, ranking rule above); -1 when the item has no
  gallery image. hit@k = 0 <= rank < k.

  Memory is bounded by `block` queries at a time ([block, G] similarities).
  """
  q, g = _unit(query, "query embeddings"), _unit(gallery, "gallery embeddings")
  query_ids, gallery_ids = np.asarray(query_ids).reshape(-1), np.asarray(gallery_ids).reshape(-1)
  if q.shape[1] != g.shape[1]:
    raise ValueError(f"query embeddings have {q.shape[1]} dimensions, gallery {g.shape[1]}")
  if query_ids.size != q.shape[0] or gallery_ids.size != g.shape[0]:
    raise ValueError(f"{query_ids.size} query ids for {q.shape[0]} queries / {gallery_ids.size} "
                     f"gallery ids for {g.shape[0]} gallery images")
  if block < 1:
    raise ValueError(f"block must be >= 1, got {block}")
  index = np.arange(g.shape[0])
  ranks = np.full(q.shape[0], -1, np.int64)
  if g.shape[0] == 0:
    return ranks
  for start in range(0, q.shape[0], block):
    sim = q[start:start + block] @ g.T                                  # [B, G]
    relevant = query_ids[start:start + block, None] == gallery_ids[None]
    has = relevant.any(1)
    best = np.where(relevant, sim, -np.inf).max(1, initial=-np.inf)[:, None]
    first = np.argmax(relevant & (sim == best), axis=1)[:, None]      # lowest index among ties
    rank = (sim > best).sum(1) + ((sim == best) & (index[None] < first)).sum(1)
    ranks[start:start + block] = np.where(has, rank, -1)
  return ranks


def retrieval_topk_accuracy(query, query_ids, gallery, gallery_ids,
                            ks: Sequence[int] = RETRIEVAL_TOPK, *, query_mask=None,
                            gallery_mask=None, block: int = 256) -> dict[str, float]:
  """"top{k}_accuracy" (hit@k) over the queries whose item has a gallery image (NaN without
  any), "queries" and "excluded_queries". Masks drop padded rows of either set."""
  if query_mask is not None:
    query, query_ids = real_examples(query_mask, query, query_ids)
  if gallery_mask is not None:
    gallery, gallery_ids = real_examples(gallery_mask, gallery, gallery_ids)
  ranks = retrieval_ranks(query, query_ids, gallery, gallery_ids, block=block)
  counted = ranks >= 0
  n = int(counted.sum())
  out = {f"top{k}_accuracy": float(np.mean(ranks[counted] < k)) if n else float("nan")
         for k in ks}
  out.update(queries=float(n), excluded_queries=float((~counted).sum()))
  return out

"""Deep Fashion Alignment (Liu, Yan, Luo, Wang, Tang, "Fashion Landmark Detection in the Wild",
ECCV 2016): a cascade of CNNs regressing 8 fashion landmarks and their visibility, refined stage
by stage, with pseudo-labels from clustering and auto-routing.

This is our reading of the paper, not a port of released code:

  image [B, H, W, 3] RGB 0..255 (the model normalises itself)
  stage 1:      VGG16 trunk (its own) -> flatten(pool5) -> fc -> ReLU -> heads:
                landmarks [B, 8, 2] (x, y) in [0, 1] (sigmoid; edge coordinates as FashionNet:
                0 the input's left edge, 1 its right edge), visibility [B, 8, 3] logits
                (0 visible, 1 occluded, 2 truncated / absent), pseudo-label logits [B, K]
  stage s >= 2: VGG16 trunk (its own) on the image; global = fc(flatten(pool5));
                local = fc(landmark_pool of its stride-16 map around the previous stage's
                landmarks); fused = fc(concat(global, local, previous landmarks)) -> heads:
                K offset branches [B, K, 8, 2] = max_offset · tanh(.), pseudo-label logits
                [B, K], visibility [B, 8, 3].
                Auto-routing: landmarks = previous + the offsets of ONE branch: in training the
                branch of the true pseudo-label, at evaluation the branch of the predicted one.
                The previous landmarks enter through stop_gradient (pooling and sum), so every
                stage learns from its own loss only, as the paper's stage-by-stage training;
                and they are the previous stage's PREDICTED-branch landmarks in training too:
                trained one after another, each stage of the paper learns on what the trained
                stages before it output at test time, not on their true-branch outputs.
                routing="soft" (not the paper's) instead mixes the branches by the predicted
                pseudo-label probabilities, in training and at evaluation alike; the
                pseudo-label loss still trains the mixing weights toward the clusters.

Pseudo-labels come from clustering, done online inside the model as mini-batch k-means (Sculley,
"Web-scale k-means clustering", WWW 2010), centroids [K, 8, 2] in the "batch_stats" collection
(the trainer applies train steps with that collection mutable, shards it with the state -- small
arrays are replicated -- and checkpoints it):
  stage 1 clusters the true landmark configurations, each centred on the mean of its valid
          landmarks (clothes type and pose: the paper's auxiliary "pseudo-labels");
  stage s clusters the residual true - previous prediction: the error patterns it routes on.
A landmark counts only when it is valid (visible and present for the clothes type): distances
and centroid updates use valid landmarks only; an example without any has no pseudo-label (-1).
Sculley's per-centre learning rate 1/v makes each centroid the running mean of its points; with
`kmeans_max_count` > 0 the past weighs at most that many points per landmark (an exponential
forgetting that lets the residual clusters follow the errors, which shrink as the net learns).
Centroids change only when train=True and the true landmarks are given.

Initialisation (deterministic, no dead clusters): centroids start unseeded and are seeded from
training batches by farthest-first traversal (Gonzalez 1985): the first from the example with
the most valid landmarks, each next one from the example farthest from its nearest seeded
centroid, taken only when that distance is > 0. Every centroid thus starts on a real example
that it is the nearest centroid of, so none starts empty, duplicates are never seeded (ties go
to the lower index, so a duplicate would never win a point), and a fixed data-independent
start (zeros, a grid), which can leave centroids no point is ever nearest to, is avoided. Unseeded
centroids are never assigned; the ones a batch cannot fill wait for later batches.

Inputs: the image alone ([B, H, W, 3], or {"image": ...}) for inference and export; in training a
dict {"image", "landmarks" [B, 8, 2], "landmark_valid" [B, 8]} (true landmarks in the same
normalised frame): the clustering and the routing need them. Given at evaluation, the true
landmarks only yield "pseudo_labels" (for metrics); predictions never use them.

Outputs (batch first, like every output that goes through the trainer's eval and export):
  landmarks [B, 8, 2] (the last stage), stages [B, S, 8, 2] (in training: each stage's
  true-branch output, the one its loss trains), visibility [B, 8, 3] (the last stage's),
  stage_visibility [B, S, 8, 3], pseudo_logits [B, S, K], routes [B, S] int32 (the
  branch each refinement stage used; stage 1, which has no branches, its predicted cluster),
  landmarks_soft [B, 8, 2] (the last stage with the branches mixed by the predicted
  probabilities, for reference), offsets [B, S - 1, K, 8, 2] (all branches; S > 1), and with the
  true landmarks pseudo_labels [B, S] int32 (-1: no valid landmark or no centroid yet).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hcjax.models.fashionnet import NUM_LANDMARKS, NUM_VISIBILITY, landmark_pool
from hcjax.models.vgg import HE_INIT, VGG16

ROUTINGS = ("hard", "soft")

# --- mini-batch k-means on landmark sets (pure functions; the module below holds the state) -----


def masked_sq_distances(x: jax.Array, valid: jax.Array, centroids: jax.Array) -> jax.Array:
  """[B, K] sum over the valid landmarks of ||x_l - c_kl||^2.

  x: [B, L, 2]; valid: [B, L] bool; centroids: [K, L, 2].
  """
  d = x[:, None] - centroids[None]                                       # [B, K, L, 2]
  return jnp.sum(jnp.sum(d * d, -1) * valid[:, None, :].astype(x.dtype), -1)


def kmeans_assign(x: jax.Array, valid: jax.Array, centroids: jax.Array,
                  seeded: jax.Array) -> jax.Array:
  """[B] int32 nearest seeded centroid (ties: the lower index); -1 for an example without a
  valid landmark or when no centroid is seeded."""
  d = jnp.where(seeded[None, :], masked_sq_distances(x, valid, centroids), jnp.inf)
  labels = jnp.argmin(d, -1).astype(jnp.int32)
  return jnp.where(valid.any(-1) & seeded.any(), labels, -1)


def kmeans_seed(x: jax.Array, valid: jax.Array, centroids: jax.Array,
                seeded: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Seeds the unseeded centroids, in index order, by farthest-first traversal of the batch.

  The first centroid of all comes from the example with the most valid landmarks; each next one
  from the example farthest (masked distance) from its nearest seeded centroid, only when that
  distance is > 0. A seed copies the example's valid landmarks (the others keep their value).
  Returns (centroids [K, L, 2], seeded [K] bool).
  """
  has = valid.any(-1)
  n_valid = valid.sum(-1).astype(jnp.float32)
  for k in range(centroids.shape[0]):
    d = jnp.where(seeded[None, :], masked_sq_distances(x, valid, centroids), jnp.inf)
    score = jnp.where(seeded.any(), d.min(-1), n_valid)
    score = jnp.where(has, score, -1.0)
    pick = jnp.argmax(score)
    ok = ~seeded[k] & (score[pick] > 0)
    seed = jnp.where(valid[pick][:, None], x[pick], centroids[k])
    centroids = centroids.at[k].set(jnp.where(ok, seed, centroids[k]))
    seeded = seeded.at[k].set(seeded[k] | ok)
  return centroids, seeded


def kmeans_update(x: jax.Array, valid: jax.Array, labels: jax.Array, centroids: jax.Array,
                  counts: jax.Array, max_count: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Sculley's mini-batch k-means step for the assignments `labels` (made before the step).

  Per centroid k and landmark l with n new valid points of sum s and v points so far:
  c <- c + (s - n c) / (v + n), v <- v + n: exactly Sculley's per-point updates with learning
  rate 1/v, done in any order. max_count > 0 caps v (the past weighs at most max_count points).
  counts: [K, L]. Returns (centroids, counts).
  """
  k = centroids.shape[0]
  member = (labels[:, None] == jnp.arange(k)[None, :]).astype(x.dtype)   # [B, K]; -1 nowhere
  w = member[:, :, None] * valid[:, None, :].astype(x.dtype)              # [B, K, L]
  n = w.sum(0)                                                           # [K, L]
  s = jnp.einsum("bkl,bld->kld", w, x)                                   # [K, L, 2]
  total = counts + n
  step = (s - n[..., None] * centroids) / jnp.maximum(total, 1.0)[..., None]
  centroids = jnp.where((n > 0)[..., None], centroids + step, centroids)
  if max_count > 0:
    total = jnp.minimum(total, max_count)
  return centroids, total


class MiniBatchKMeans(nn.Module):
  """Online k-means over sets of L 2-d points with missing points; state in "batch_stats".

  Called with x [B, L, 2] and valid [B, L]: returns the labels [B] (kmeans_assign after seeding,
  before the update); `update` seeds and moves the centroids (training). Called with x None
  it only declares its variables (initialisation from the image alone).
  """
  num_clusters: int
  num_points: int = NUM_LANDMARKS
  max_count: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array | None, valid: jax.Array | None = None, *,
               update: bool = False) -> jax.Array | None:
    shape = (self.num_clusters, self.num_points)
    centroids = self.variable("batch_stats", "centroids", jnp.zeros, shape + (2,), jnp.float32)
    counts = self.variable("batch_stats", "counts", jnp.zeros, shape, jnp.float32)
    seeded = self.variable("batch_stats", "seeded", jnp.zeros, shape[:1], jnp.float32)
    if x is None:
      return None
    valid = valid.astype(bool)
    x = jnp.where(valid[..., None], x.astype(jnp.float32), 0.0)  # Masked values may be anything.
    c, is_seeded = centroids.value, seeded.value > 0
    if update:
      c, is_seeded = kmeans_seed(x, valid, c, is_seeded)
    labels = kmeans_assign(x, valid, c, is_seeded)
    if update:
      c, n = kmeans_update(x, valid, labels, c, counts.value, self.max_count)
      centroids.value, counts.value = c, n
      seeded.value = is_seeded.astype(jnp.float32)
    return labels


def centre_landmarks(landmarks: jax.Array, valid: jax.Array) -> jax.Array:
  """[B, L, 2] landmarks minus the mean of each example's valid landmarks (0 without any)."""
  w = valid.astype(landmarks.dtype)[..., None]
  mean = (landmarks * w).sum(1, keepdims=True) / jnp.maximum(w.sum(1, keepdims=True), 1.0)
  return landmarks - mean


# --- the cascade --------------------------------------------------------------------------------

def _dense(n: int, name: str, init=HE_INIT) -> nn.Dense:
  return nn.Dense(n, kernel_init=init, name=name)


class InitialStage(nn.Module):
  """Stage 1: image -> landmarks [B, 8, 2], visibility [B, 8, 3], pseudo-label logits [B, K]."""
  num_clusters: int
  width: int
  fc_width: int
  dropout_rate: float
  batch_norm: bool
  dtype: Any

  @nn.compact
  def __call__(self, image: jax.Array, train: bool) -> dict[str, jax.Array]:
    b = image.shape[0]
    out = VGG16(self.width, self.fc_width, output_stride=32, dropout_rate=0.0,
                batch_norm=self.batch_norm, classifier=False, dtype=self.dtype,
                name="vgg")(image, train)
    top = out["pool5"].astype(jnp.float32).reshape(b, -1)
    drop = nn.Dropout(self.dropout_rate, deterministic=not train)
    h = drop(nn.relu(_dense(self.fc_width, "fc")(top)))
    xy = _dense(NUM_LANDMARKS * 2, "landmark_xy", nn.initializers.normal(0.01))(h)
    vis = _dense(NUM_LANDMARKS * NUM_VISIBILITY, "visibility", nn.initializers.normal(0.01))(h)
    return {"landmarks": jax.nn.sigmoid(xy.reshape(b, NUM_LANDMARKS, 2)),
            "visibility": vis.reshape(b, NUM_LANDMARKS, NUM_VISIBILITY),
            "pseudo_logits": _dense(self.num_clusters, "pseudo_label", nn.initializers.zeros)(h)}


class RefinementStage(nn.Module):
  """Stage s >= 2: (image, previous landmarks [B, 8, 2]) -> offsets [B, K, 8, 2] (one branch
  per pseudo-label), pseudo-label logits [B, K], visibility [B, 8, 3]."""
  num_clusters: int
  width: int
  fc_width: int
  max_offset: float
  pool_window: float
  pool_grid: int
  dropout_rate: float
  batch_norm: bool
  dtype: Any

  @nn.compact
  def __call__(self, image: jax.Array, previous: jax.Array, train: bool) -> dict[str, jax.Array]:
    b = image.shape[0]
    out = VGG16(self.width, self.fc_width, output_stride=32, dropout_rate=0.0,
                batch_norm=self.batch_norm, classifier=False, dtype=self.dtype,
                name="vgg")(image, train)
    drop = nn.Dropout(self.dropout_rate, deterministic=not train)
    glob = nn.relu(_dense(self.fc_width, "global_fc")(
        out["pool5"].astype(jnp.float32).reshape(b, -1)))
    pooled = landmark_pool(out["pool4"], previous, self.pool_window, self.pool_grid)  # [B, 8, C]
    local = nn.relu(_dense(self.fc_width, "local_fc")(pooled.reshape(b, -1)))
    fused = jnp.concatenate([glob, local, previous.reshape(b, -1)], -1)
    h = drop(nn.relu(_dense(self.fc_width, "fusion_fc")(fused)))
    k = self.num_clusters
    # Zero offsets and uniform pseudo-labels at the start: a new stage begins as the previous.
    offsets = _dense(k * NUM_LANDMARKS * 2, "offsets", nn.initializers.zeros)(h)
    vis = _dense(NUM_LANDMARKS * NUM_VISIBILITY, "visibility", nn.initializers.normal(0.01))(h)
    return {"offsets": self.max_offset * jnp.tanh(offsets.reshape(b, k, NUM_LANDMARKS, 2)),
            "visibility": vis.reshape(b, NUM_LANDMARKS, NUM_VISIBILITY),
            "pseudo_logits": _dense(k, "pseudo_label", nn.initializers.zeros)(h)}


def split_inputs(inputs: Any) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
  """(image, true landmarks or None, their validity or None) of the model's input."""
  if isinstance(inputs, jax.Array) or hasattr(inputs, "shape"):
    return inputs, None, None
  image = inputs["image"]
  landmarks, valid = inputs.get("landmarks"), inputs.get("landmark_valid")
  if (landmarks is None) != (valid is None):
    raise ValueError("inputs need both 'landmarks' and 'landmark_valid', or neither")
  return image, landmarks, valid


class FashionAlignment(nn.Module):
  num_stages: int = 3
  num_clusters: int = 8          # K: pseudo-labels (and refinement branches) per stage
  width: int = 64                # VGG16's first-stage channels
  fc_width: int = 1024
  max_offset: float = 0.25       # refinement offsets lie in (-max_offset, max_offset)
  pool_window: float = 2.0 / 7.0
  pool_grid: int = 3
  dropout_rate: float = 0.5
  kmeans_max_count: float = 0.0  # 0: Sculley's 1/v exactly; > 0: the past weighs at most this
  batch_norm: bool = False       # VGG16-BN trunks, for training from scratch
  routing: str = "hard"          # "hard": one branch (the paper); "soft": the predicted mixture
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: Any, train: bool = False) -> dict[str, jax.Array]:
    if self.num_stages < 1 or self.num_clusters < 1:
      raise ValueError(f"num_stages and num_clusters must be >= 1, got {self.num_stages} and "
                       f"{self.num_clusters}")
    if self.routing not in ROUTINGS:
      raise ValueError(f"routing must be one of {ROUTINGS}, got {self.routing!r}")
    if self.max_offset <= 0:
      raise ValueError(f"max_offset must be > 0, got {self.max_offset}")
    image, truth, valid = split_inputs(inputs)
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(f"image must be [B, H, W, 3], got shape {image.shape}")
    if train and truth is None:
      raise ValueError("training needs the true landmarks: call with {'image', 'landmarks', "
                       "'landmark_valid'} (the pseudo-labels and the routing use them)")
    if truth is not None:
      valid = valid.astype(bool)
      truth = jnp.where(valid[..., None], truth.astype(jnp.float32), 0.0)
    kw = dict(num_clusters=self.num_clusters, width=self.width, fc_width=self.fc_width,
              dropout_rate=self.dropout_rate, batch_norm=self.batch_norm, dtype=self.dtype)
    clusters = lambda s: MiniBatchKMeans(self.num_clusters, max_count=self.kmeans_max_count,
                                         name=f"clusters{s}")

    first = InitialStage(**kw, name="stage1")(image, train)
    landmarks = first["landmarks"]
    stages, visibility, logits = [landmarks], [first["visibility"]], [first["pseudo_logits"]]
    routes = [jnp.argmax(first["pseudo_logits"], -1).astype(jnp.int32)]
    labels = []
    if truth is None:
      clusters(1)(None)
    else:
      labels.append(clusters(1)(centre_landmarks(truth, valid), valid, update=train))
    offsets, soft = [], landmarks
    pick = lambda o, r: jnp.take_along_axis(o, r[:, None, None, None], axis=1)[:, 0]
    for s in range(2, self.num_stages + 1):
      previous = jax.lax.stop_gradient(landmarks)
      out = RefinementStage(max_offset=self.max_offset, pool_window=self.pool_window,
                            pool_grid=self.pool_grid, **kw, name=f"stage{s}")(
                                image, previous, train)
      predicted = jnp.argmax(out["pseudo_logits"], -1).astype(jnp.int32)
      route = predicted
      if truth is None:
        clusters(s)(None)
      else:
        label = clusters(s)(truth - previous, valid, update=train)
        labels.append(label)
        if train:
          route = jnp.where(label >= 0, label, predicted)
      probs = jax.nn.softmax(out["pseudo_logits"], -1)
      soft = previous + jnp.einsum("bk,bkld->bld", probs, out["offsets"])
      if self.routing == "soft":
        stages.append(soft)
        landmarks = soft
      else:
        # The stage's output (trained through the true branch) and what the next stage starts
        # from: the predicted branch, as at test time (equal at evaluation).
        stages.append(previous + pick(out["offsets"], route))
        landmarks = previous + pick(out["offsets"], predicted)
      visibility.append(out["visibility"])
      logits.append(out["pseudo_logits"])
      routes.append(route)
      offsets.append(out["offsets"])

    result = {"landmarks": stages[-1], "stages": jnp.stack(stages, 1),
              "visibility": visibility[-1], "stage_visibility": jnp.stack(visibility, 1),
              "pseudo_logits": jnp.stack(logits, 1), "routes": jnp.stack(routes, 1),
              "landmarks_soft": soft}
    if offsets:
      result["offsets"] = jnp.stack(offsets, 1)
    if labels:
      result["pseudo_labels"] = jnp.stack(labels, 1)
    return result

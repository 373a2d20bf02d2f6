"""FashionNet (Liu et al., "DeepFashion", CVPR 2016): a VGG16 (or ResNet-50) trunk with a global
branch, a landmark branch and landmark pooling of trunk features around the PREDICTED landmarks.

  image [B, H, W, 3] RGB 0..255 (the model normalises itself)
    trunk:     VGG16 conv1..pool5 (the top map [B, H/32, W/32, 8·width]; no fc6 / fc7 convs:
               the branches below are the paper's fc layers) or a ResNet-50 backbone whose
               stage 4 is projected to 8·width channels by a 1x1 conv + ReLU
    global:    flatten(top map) -> fc -> ReLU                                  (paper: fc 4096)
    landmarks: flatten(top map) -> fc -> ReLU -> 8 x (x, y) in [0, 1] (sigmoid) and 8 x 3
               visibility logits (0 visible, 1 occluded, 2 truncated / absent)
    local:     for each predicted landmark (stop_gradient on its coordinates, the paper's
               iterative training: the landmark branch learns only from its own loss), a
               `pool_grid` x `pool_grid` grid spanning `pool_window` (a fraction of the map, 2/7
               as mmfashion) of the local map (VGG conv4 / ResNet stage 3, stride 16) is read with
               bilinear_sample and max-pooled; each landmark's vector is gated by its predicted
               probability of being visible; concat -> fc -> ReLU
    fusion:    concat(global, local) -> fc -> ReLU -> heads
    heads:     category [B, C] logits, attributes [B, A] logits, embedding [B, E] (L2-normalised),
               item_logits [B, num_items] (ID softmax on the embedding, only when num_items > 0)

The global and landmark branches flatten the top map (as VGG's fc6 flattens pool5: 7x7x512 at
224 px), so the model is built for one input size. The paper gives the global and pose branches
their own conv5 layers; here they share the trunk's. All heads are float32; the trunk computes
in `dtype`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hcjax.models.resnet import STAGES, ResNetBackbone
from hcjax.models.vgg import HE_INIT, VGG16, normalize_image
from hcjax.ops.sampling import bilinear_sample

TRUNKS = ("vgg16", "resnet50")
NUM_LANDMARKS = 8
NUM_VISIBILITY = 3  # 0 visible, 1 occluded, 2 truncated / absent


def window_offsets(pool_window: float, pool_grid: int) -> jax.Array:
  """[g*g, 2] (dx, dy) offsets in normalised image coordinates spanning pool_window."""
  if pool_grid == 1:
    steps = jnp.zeros((1,), jnp.float32)
  else:
    steps = jnp.linspace(-pool_window / 2, pool_window / 2, pool_grid, dtype=jnp.float32)
  dy, dx = jnp.meshgrid(steps, steps, indexing="ij")
  return jnp.stack([dx.reshape(-1), dy.reshape(-1)], -1)


def landmark_pool(features: jax.Array, landmarks: jax.Array, pool_window: float,
                  pool_grid: int = 3) -> jax.Array:
  """Max over a window of `features` around each landmark.

  features: [B, h, w, C] a map covering the whole input; landmarks: [B, K, 2] (x, y) normalised
  to [0, 1] of the input (edge coordinates: 0 the input's left edge, 1 its right edge).
  Returns [B, K, C]. The window is a pool_grid x pool_grid grid of bilinear reads spanning
  pool_window (normalised units) centred on the landmark; reads outside the map are zero.
  """
  b, h, w, _ = features.shape
  offsets = window_offsets(pool_window, pool_grid)                        # [G, 2]
  points = landmarks[:, :, None, :] + offsets[None, None]                 # [B, K, G, 2]
  size = jnp.asarray([w, h], jnp.float32)
  coords = points * size - 0.5                                            # map pixel centres
  sampled = bilinear_sample(features.astype(jnp.float32), coords, padding="zeros")  # [B,K,G,C]
  return sampled.max(axis=2)


class FashionNet(nn.Module):
  num_categories: int = 50
  num_attributes: int = 1000
  trunk: str = "vgg16"
  width: int = 64                # VGG16's first-stage channels / ResNet's stem width
  fc_width: int = 4096           # global / landmark / fused fc widths
  embedding_dim: int = 256
  num_items: int = 0             # > 0: an ID softmax over the training items on the embedding
  pool_window: float = 2.0 / 7.0
  pool_grid: int = 3
  dropout_rate: float = 0.5
  batch_norm: bool = False       # VGG16-BN trunk (the paper starts from ImageNet weights instead)
  dtype: Any = jnp.float32

  def _trunk(self, image, train):
    """(local map at stride 16, top map at stride 32)."""
    if self.trunk == "vgg16":
      out = VGG16(self.width, self.fc_width, output_stride=32, dropout_rate=0.0,
                  batch_norm=self.batch_norm, classifier=False, dtype=self.dtype,
                  name="vgg")(image, train)
      return out["pool4"], out["pool5"]
    stages, block = STAGES[50]
    x = normalize_image(image)
    out = ResNetBackbone(stages, block, self.width, dtype=self.dtype, name="resnet")(x, train)
    top = nn.Conv(8 * self.width, (1, 1), kernel_init=HE_INIT, dtype=self.dtype,
                  name="top_projection")(out["stage4"])
    return out["stage3"], nn.relu(top)

  @nn.compact
  def __call__(self, image: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    if self.trunk not in TRUNKS:
      raise ValueError(f"trunk must be one of {TRUNKS}, got {self.trunk!r}")
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(f"image must be [B, H, W, 3], got shape {image.shape}")
    b = image.shape[0]
    local_map, top = self._trunk(image, train)
    top = top.astype(jnp.float32).reshape(b, -1)
    drop = nn.Dropout(self.dropout_rate, deterministic=not train)
    dense = lambda n, name, init=HE_INIT: nn.Dense(n, kernel_init=init, name=name)

    # Global branch.
    glob = drop(nn.relu(dense(self.fc_width, "global_fc")(top)))

    # Landmark branch: positions in [0, 1] and visibility.
    pose = nn.relu(dense(self.fc_width, "landmark_fc")(top))
    xy = dense(NUM_LANDMARKS * 2, "landmark_xy", nn.initializers.normal(0.01))(pose)
    landmarks = jax.nn.sigmoid(xy.reshape(b, NUM_LANDMARKS, 2))
    visibility = dense(NUM_LANDMARKS * NUM_VISIBILITY, "landmark_visibility",
                       nn.initializers.normal(0.01))(pose).reshape(b, NUM_LANDMARKS, NUM_VISIBILITY)

    # Local branch: pooling around the predicted (not the true) landmarks.
    pooled = landmark_pool(local_map, jax.lax.stop_gradient(landmarks), self.pool_window,
                           self.pool_grid)                                # [B, K, C]
    gate = jax.lax.stop_gradient(jax.nn.softmax(visibility, -1)[..., 0])  # P(visible)
    local = (pooled * gate[..., None]).reshape(b, -1)
    local = nn.relu(dense(self.fc_width, "local_fc")(local))

    fused = drop(nn.relu(dense(self.fc_width, "fusion_fc")(jnp.concatenate([glob, local], -1))))
    out = {
        "category": nn.Dense(self.num_categories, name="category")(fused),
        "attributes": nn.Dense(self.num_attributes, name="attributes")(fused),
        "landmarks": landmarks,
        "visibility": visibility,
    }
    emb = nn.Dense(self.embedding_dim, name="embedding")(fused)
    emb = emb / jnp.sqrt(jnp.sum(emb * emb, -1, keepdims=True) + 1e-12)
    out["embedding"] = emb
    if self.num_items:
      out["item_logits"] = nn.Dense(self.num_items, name="item_softmax")(emb * 16.0)
    return out

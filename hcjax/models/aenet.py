"""AENet (Zhang et al., CelebA-Spoof, ECCV 2020): a ResNet with semantic and geometric heads.

One pooled feature of the ResNet feeds the classifiers: live/spoof (2) always, and with
`semantic` the 40 face attributes, spoof type (11), illumination (5) and environment (3). With
`geometric`, two 3x3 convolutions on a stage's feature map (the last stage, 7x7 at 224, as in the
authors' models.py) give depth (1 channel) and reflection (3 channels) maps through a sigmoid,
resized bilinearly to map_size x map_size (14 in the paper). The input is RGB in [0, 1] without
mean/std normalisation, as the released model (torchvision ToTensor) sees it.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hcjax.models.resnet import STAGES, ResNetBackbone

# Classifier heads: name -> classes. live_spoof is always there (AENet_C); the rest are "S".
CLASSIFIERS = {"live_spoof": 2, "attributes": 40, "spoof_type": 11, "illumination": 5,
               "environment": 3}
SEMANTIC_HEADS = ("attributes", "spoof_type", "illumination", "environment")
# Geometric heads ("G"): name -> channels of the map.
MAP_HEADS = {"depth": 1, "reflection": 3}
FEATURE_STAGES = ("stage1", "stage2", "stage3", "stage4")


class AENet(nn.Module):
  """[B, H, W, 3] in [0, 1] -> {"live_spoof": [B, 2] logits, semantic logits [B, K] when
  `semantic`, "depth": [B, M, M, 1] / "reflection": [B, M, M, 3] in [0, 1] when `geometric`}.

  Logits and maps are float32 whatever `dtype` the backbone computes in.
  """
  depth: int = 18
  width: int = 64
  stem: str = "imagenet"
  semantic: bool = True
  geometric: bool = True
  geometry_stage: str = "stage4"
  map_size: int = 14
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool) -> dict[str, jax.Array]:
    if self.depth not in STAGES:
      raise ValueError(f"depth must be one of {sorted(STAGES)}, got {self.depth}")
    if self.geometry_stage not in FEATURE_STAGES:
      raise ValueError(f"geometry_stage must be one of {FEATURE_STAGES}, got "
                       f"{self.geometry_stage!r}")
    stages, block = STAGES[self.depth]
    features = ResNetBackbone(stages, block, self.width, self.stem, self.dtype,
                              name="backbone")(x, train)
    pooled = features["features"].astype(jnp.float32).mean(axis=(1, 2))
    heads = ("live_spoof",) + (SEMANTIC_HEADS if self.semantic else ())
    out = {name: nn.Dense(CLASSIFIERS[name], name=name)(pooled) for name in heads}
    if self.geometric:
      grid = features[self.geometry_stage]
      b = grid.shape[0]
      for name, channels in MAP_HEADS.items():
        logits = nn.Conv(channels, (3, 3), padding=[(1, 1), (1, 1)], use_bias=False,
                         dtype=self.dtype, name=name)(grid)
        # Sigmoid first, then the resize, in that order as in the reference (values stay in
        # [0, 1]: bilinear weights are a convex combination when upsampling).
        maps = jax.nn.sigmoid(logits.astype(jnp.float32))
        out[name] = jax.image.resize(maps, (b, self.map_size, self.map_size, channels),
                                     "bilinear")
    return out

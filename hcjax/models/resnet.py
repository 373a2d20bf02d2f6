"""ResNet v1.5 (He et al. 2016; stride on the 3x3 of bottlenecks) in Flax linen.

The backbone returns every stage's feature map so heads elsewhere (anti-spoofing depth maps,
landmark pooling) can use intermediate features; `ResNet` adds pooling and a linear head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from hcjax.ops.convolution import conv_general_dilated
from hcjax.ops.pooling import max_pool

STAGES = {18: ((2, 2, 2, 2), "basic"), 34: ((3, 4, 6, 3), "basic"),
          50: ((3, 4, 6, 3), "bottleneck"), 101: ((3, 4, 23, 3), "bottleneck")}
STEMS = ("imagenet", "small")


class _Block(nn.Module):
  """One residual block; the last BN of the branch starts at zero (the block starts as identity)."""
  filters: int
  strides: int
  bottleneck: bool
  dtype: Any
  bn_momentum: float
  bn_epsilon: float

  @nn.compact
  def __call__(self, x, train: bool):
    conv = lambda f, k, s, name: nn.Conv(f, (k, k), (s, s), padding=[(k // 2, k // 2)] * 2,
                                         use_bias=False, dtype=self.dtype, name=name,
                                         conv_general_dilated=conv_general_dilated)
    norm = lambda name, zero=False: nn.BatchNorm(
        use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
        dtype=self.dtype, name=name, scale_init=nn.initializers.zeros if zero else nn.initializers.ones)
    out_filters = self.filters * (4 if self.bottleneck else 1)
    if self.bottleneck:
      y = nn.relu(norm("bn1")(conv(self.filters, 1, 1, "conv1")(x)))
      y = nn.relu(norm("bn2")(conv(self.filters, 3, self.strides, "conv2")(y)))
      y = norm("bn3", zero=True)(conv(out_filters, 1, 1, "conv3")(y))
    else:
      y = nn.relu(norm("bn1")(conv(self.filters, 3, self.strides, "conv1")(x)))
      y = norm("bn2", zero=True)(conv(self.filters, 3, 1, "conv2")(y))
    if x.shape[-1] != out_filters or self.strides != 1:
      x = norm("proj_bn")(conv(out_filters, 1, self.strides, "proj_conv")(x))
    return nn.relu(x + y)


class ResNetBackbone(nn.Module):
  """[B, H, W, 3] -> {"stage1".."stage4": [B, h, w, C], "features": the last stage}."""
  stage_sizes: Sequence[int]
  block: str = "basic"  # or "bottleneck"
  width: int = 64
  stem: str = "imagenet"
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, train: bool) -> dict[str, Any]:
    if self.stem not in STEMS:
      raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
    if self.block not in ("basic", "bottleneck"):
      raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
    x = x.astype(self.dtype)
    if self.stem == "imagenet":
      x = nn.Conv(self.width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False,
                  dtype=self.dtype, name="stem_conv", conv_general_dilated=conv_general_dilated)(x)
    else:  # Tiny images keep their resolution.
      x = nn.Conv(self.width, (3, 3), padding=[(1, 1), (1, 1)], use_bias=False, dtype=self.dtype,
                  name="stem_conv", conv_general_dilated=conv_general_dilated)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_epsilon, dtype=self.dtype, name="stem_bn")(x)
    x = nn.relu(x)
    if self.stem == "imagenet":
      x = max_pool(x, 3, 2, padding=((1, 1), (1, 1)))
    out = {}
    for i, blocks in enumerate(self.stage_sizes):
      for j in range(blocks):
        x = _Block(self.width * 2 ** i, 2 if i > 0 and j == 0 else 1, self.block == "bottleneck",
                   self.dtype, self.bn_momentum, self.bn_epsilon,
                   name=f"stage{i + 1}_block{j + 1}")(x, train)
      out[f"stage{i + 1}"] = x
    out["features"] = x
    return out


class ResNet(nn.Module):
  """Backbone + global average pool + Dense: [B, H, W, 3] -> [B, num_outputs] float32 logits
  ([B, C] pooled features when num_outputs is None)."""
  depth: int = 50
  num_outputs: int | None = 1000
  width: int = 64
  stem: str = "imagenet"
  dtype: Any = jnp.float32
  head_init_zero: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    if self.depth not in STAGES:
      raise ValueError(f"depth must be one of {sorted(STAGES)}, got {self.depth}")
    stages, block = STAGES[self.depth]
    features = ResNetBackbone(stages, block, self.width, self.stem, self.dtype,
                              name="backbone")(x, train)["features"]
    pooled = features.astype(jnp.float32).mean(axis=(1, 2))
    if self.num_outputs is None:
      return pooled
    init = nn.initializers.zeros if self.head_init_zero else nn.initializers.lecun_normal()
    return nn.Dense(self.num_outputs, kernel_init=init, name="head")(pooled)

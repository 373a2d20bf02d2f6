"""VGG16 (Simonyan & Zisserman 2015) as the trunk of FCN-8s and of DeepLab-style dilated nets.

The fully connected layers are convolutions (fc6 a 7x7 conv, fc7 1x1), so the trunk takes any
input size; with the real widths its parameters are exactly torchvision's vgg16 without the 1000-way
classifier, so ImageNet weights convert one to one. The model normalises the image itself: callers
pass RGB in 0..255 because the CRFs on top need the raw colours.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hcjax.ops.convolution import conv_general_dilated
from hcjax.ops.pooling import max_pool

# torchvision's ImageNet statistics for RGB in 0..1: converted torchvision weights work as they are.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTPUT_STRIDES = (8, 32)
_BLOCKS = ((1, 2), (2, 2), (4, 3), (8, 3), (8, 3))  # (width multiplier, convs) of conv1..conv5


def normalize_image(image: jax.Array) -> jax.Array:
  """[B, H, W, 3] RGB in 0..255 -> ImageNet-standardised float32."""
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32) * 255.0
  std = jnp.asarray(IMAGENET_STD, jnp.float32) * 255.0
  return (image.astype(jnp.float32) - mean) / std


def resize_to(x: jax.Array, height: int, width: int) -> jax.Array:
  """Bilinear resize of [B, h, w, C] to [B, height, width, C] (fixed, not learned, upsampling)."""
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), "bilinear")


# He (fan-out) initialisation, as torchvision's VGG: a deep plain ReLU stack learns slowly from
# flax's default LeCun scale, the dilated OS-8 net (no skip connections) most of all.
HE_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

class VGG16(nn.Module):
  """[B, H, W, 3] RGB 0..255 -> {"pool3", "pool4", "features"} maps, compute in `dtype`.

  output_stride 32 is FCN's trunk: five 2x2 max-pools, fc6 a 7x7 conv. Output stride 8 is DPN's and
  DeepLab's: pool4 and pool5 are removed (REFERENCES: "the last two max-pools removed"), conv5 is
  dilated by 2 and fc6 by 4, so the receptive field matches the pooled net. "pool3" is [B, H/8, W/8,
  4·width], "pool4" [B, H/16 (or H/8), W/16 (or W/8), 8·width], "pool5" (output stride 32 only)
  [B, H/32, W/32, 8·width], "features" (fc7 after ReLU and dropout) [B, H/32 (or H/8), W/32 (or
  W/8), fc_width]; sizes round up ("SAME" pooling). classifier=False stops at pool5 (no fc6 / fc7
  parameters, no "features"): for heads that flatten pool5 into their own fc layers, as VGG's
  fc6 does.
  """
  width: int = 64
  fc_width: int = 4096
  output_stride: int = 32
  dropout_rate: float = 0.5
  batch_norm: bool = False       # VGG16-BN: BatchNorm after every conv, for training from scratch
  classifier: bool = True        # fc6 and fc7 as convolutions ("features")
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array, train: bool) -> dict[str, jax.Array]:
    if self.output_stride not in OUTPUT_STRIDES:
      raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {self.output_stride}")
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(f"image must be [B, H, W, 3], got shape {image.shape}")
    dilated = self.output_stride == 8
    x = normalize_image(image).astype(self.dtype)
    out = {}
    for block, (multiplier, convs) in enumerate(_BLOCKS, start=1):
      rate = 2 if dilated and block == 5 else 1
      for i in range(1, convs + 1):
        x = nn.Conv(self.width * multiplier, (3, 3), padding="SAME", kernel_dilation=rate,
                    kernel_init=HE_INIT, dtype=self.dtype, name=f"conv{block}_{i}",
                    conv_general_dilated=conv_general_dilated)(x)
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                           name=f"bn{block}_{i}")(x)
        x = nn.relu(x)
      if block <= 3 or not dilated:
        x = max_pool(x, 2, 2, padding="SAME")
      if block in (3, 4) or (block == 5 and not dilated):
        out[f"pool{block}"] = x
    if not self.classifier:
      if dilated:
        raise ValueError("classifier=False needs output_stride 32 (it returns pool5)")
      return out
    drop = nn.Dropout(self.dropout_rate, deterministic=not train)
    x = nn.Conv(self.fc_width, (7, 7), padding="SAME", kernel_dilation=4 if dilated else 1,
                kernel_init=HE_INIT, dtype=self.dtype, name="fc6",
                conv_general_dilated=conv_general_dilated)(x)
    x = drop(nn.relu(x))
    x = nn.Conv(self.fc_width, (1, 1), kernel_init=HE_INIT, dtype=self.dtype, name="fc7")(x)
    out["features"] = drop(nn.relu(x))
    return out


class FCN8s(nn.Module):
  """FCN-8s (Long et al. 2015): [B, H, W, 3] RGB 0..255 -> [B, H, W, L] float32 logits.

  Scores of fc7 (1/32), pool4 (1/16) and pool3 (1/8) are fused coarse to fine; the upsampling is
  fixed bilinear (FCN initialises its deconvolutions bilinear) to the exact map sizes, so odd input
  sizes work without FCN's 100-pixel padding and crops. All score layers start at zero, as in FCN.
  """
  num_classes: int
  width: int = 64
  fc_width: int = 4096
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array, train: bool) -> jax.Array:
    trunk = VGG16(self.width, self.fc_width, output_stride=32, dtype=self.dtype,
                  name="vgg")(image, train)
    score = lambda name: nn.Conv(self.num_classes, (1, 1), kernel_init=nn.initializers.zeros,
                                 dtype=self.dtype, name=name)
    x = score("score_fr")(trunk["features"]).astype(jnp.float32)
    for name in ("pool4", "pool3"):
      skip = score(f"score_{name}")(trunk[name]).astype(jnp.float32)
      x = resize_to(x, skip.shape[1], skip.shape[2]) + skip
    return resize_to(x, image.shape[1], image.shape[2])


class DilatedVGG(nn.Module):
  """DPN's / DeepLab's output-stride-8 VGG16: [B, H, W, 3] RGB 0..255 -> [B, H, W, L] f32 logits.

  A 1x1 classifier on fc7 (DeepLab's N(0, 0.01) init), then bilinear upsampling to the input size.
  """
  num_classes: int
  width: int = 64
  fc_width: int = 4096
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array, train: bool) -> jax.Array:
    trunk = VGG16(self.width, self.fc_width, output_stride=8, dtype=self.dtype,
                  name="vgg")(image, train)
    x = nn.Conv(self.num_classes, (1, 1), kernel_init=nn.initializers.normal(0.01),
                dtype=self.dtype, name="classifier")(trunk["features"])
    return resize_to(x.astype(jnp.float32), image.shape[1], image.shape[2])

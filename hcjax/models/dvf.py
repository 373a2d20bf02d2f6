"""Deep Voxel Flow (Liu et al., ICCV 2017): frames are synthesised by sampling the input frames.

A conv encoder-decoder maps two frames to a voxel flow (2 ch, 0.5·tanh, normalised [-1, 1] units,
align_corners=True) and a blend mask (1 ch, 0.5·(1 + tanh)); the frame itself comes from
`hcjax.ops.sampling`, so the model returns frame, flow and mask and the Task adds the loss.

Two trunks (`variant`):
- "tf": liuziwei7/voxel-flow's TensorFlow release, no skip connections. Our names map to its slim
  scopes: conv1..conv3 = conv1..conv3, deconv1..deconv3 = conv4..conv6, output = conv7. Its BN is
  slim's default: a learned shift but no scale (center=True, scale=False); convs before a BN have
  no bias.
- "unet": lxx1991/pytorch-voxel-flow's U-Net (names as there; output = conv4). BN has scale and
  shift. The decoder kernels are 3x3, 5x5, 5x5 as in that code (REFERENCES leaves them open).
Both: truncated normal std 0.01 kernels, BN momentum 0.9997 and eps 1e-3, 2x2 max-pools, and
bilinear x2 upsampling with half-pixel centres (PyTorch's align_corners=False; TF1's legacy
resize_bilinear maps pixel corners instead, a sub-pixel shift of the decoder features). The
convolutions take their weight gradients from `hcjax.ops.convolution` (2-4x faster on CPU).

`MultiScaleVoxelFlow` is the paper's coarse-to-fine variant, absent from both releases; see there.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from hcjax.ops import sampling
from hcjax.ops.convolution import conv_general_dilated
from hcjax.ops.pooling import max_pool

VARIANTS = ("tf", "unet")
MODES = ("interpolate", "extrapolate")
BN_MOMENTUM = 0.9997
BN_EPSILON = 1e-3
KERNEL_INIT = nn.initializers.truncated_normal(0.01)  # std of the untruncated normal, as TF's
SCALES = (4, 2, 1)  # MultiScaleVoxelFlow's downsampling factors, coarse to fine


def _check_config(variant: str, mode: str, width: int) -> None:
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  if isinstance(width, bool) or not isinstance(width, int) or width < 1:
    raise ValueError(f"width must be an integer >= 1, got {width!r}")


def _check_frames(frames: jax.Array, multiple: int) -> None:
  if frames.ndim != 4 or frames.shape[-1] != 6:
    raise ValueError(f"frames must be [B, H, W, 6] (two RGB frames concatenated), got shape "
                     f"{frames.shape}")
  if frames.shape[1] % multiple or frames.shape[2] % multiple:
    raise ValueError(f"frames' H and W must be divisible by {multiple}, got shape {frames.shape}")


def area_downsample(x: jax.Array, factor: int) -> jax.Array:
  """[B, H, W, C] -> [B, H/factor, W/factor, C], the mean of each factor x factor block.

  How MultiScaleVoxelFlow sees its coarse inputs; a Task should downsample the targets of the
  coarse scales the same way.
  """
  if factor == 1:
    return x
  b, h, w, c = x.shape
  return x.reshape(b, h // factor, factor, w // factor, factor, c).mean((2, 4))


def _resize(x: jax.Array, height: int, width: int) -> jax.Array:
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), "bilinear")


def _upsample2_axis(x: jax.Array, axis: int) -> jax.Array:
  """x2 along one axis with half-pixel centres: output 2i is 3/4 of input i and 1/4 of input
  i - 1, output 2i + 1 leans on i + 1 instead, the edge pixel repeated past the border."""
  n = x.shape[axis]
  take = lambda start, stop: lax.slice_in_dim(x, start, stop, axis=axis)
  before = jnp.concatenate([take(0, 1), take(0, n - 1)], axis)
  after = jnp.concatenate([take(1, n), take(n - 1, n)], axis)
  pair = jnp.stack([0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after], axis + 1)
  return pair.reshape(*x.shape[:axis], 2 * n, *x.shape[axis + 1:])


def _upsample2(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C], equal to _resize (jax.image.resize, bilinear) and to torch's
  interpolate(bilinear, align_corners=False) at x2, as shifted blends: elementwise work that
  XLA fuses, where resize contracts each axis with a dense [2n, n] matrix."""
  return _upsample2_axis(_upsample2_axis(x, 1), 2)


def _encoder_decoder(x: jax.Array, train: bool, *, variant: str, width: int,
                     bn_momentum: float, dtype: Any) -> jax.Array:
  """The trunk, its layers created in the calling module: [B, H, W, C] -> [B, H, W, width]."""
  def conv_bn(x, features, kernel, name):
    x = nn.Conv(features, (kernel, kernel), padding="SAME", use_bias=False,
                kernel_init=KERNEL_INIT, dtype=dtype, name=name,
                conv_general_dilated=conv_general_dilated)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=bn_momentum, epsilon=BN_EPSILON,
                     use_scale=variant == "unet", dtype=dtype, name=f"{name}_bn")(x)
    return nn.relu(x)

  pool = lambda x: max_pool(x, 2, 2)
  conv1 = conv_bn(x, width, 5, "conv1")
  conv2 = conv_bn(pool(conv1), 2 * width, 5, "conv2")
  conv3 = conv_bn(pool(conv2), 4 * width, 3, "conv3")
  x = pool(conv3)
  if variant == "tf":
    for name, features, kernel in (("deconv1", 4 * width, 3), ("deconv2", 2 * width, 3),
                                   ("deconv3", width, 5)):
      x = conv_bn(_upsample2(x), features, kernel, name)
    return x
  x = conv_bn(x, 4 * width, 3, "bottleneck")
  for name, skip, features, kernel in (("deconv1", conv3, 4 * width, 3),
                                       ("deconv2", conv2, 2 * width, 5),
                                       ("deconv3", conv1, width, 5)):
    x = conv_bn(jnp.concatenate([_upsample2(x), skip], -1), features, kernel, name)
  return x


def _output_conv(x: jax.Array, dtype: Any, name: str) -> jax.Array:
  """5x5 conv to 3 channels (2 flow, 1 mask) before the tanh, no BN; float32 out."""
  return nn.Conv(3, (5, 5), padding="SAME", kernel_init=KERNEL_INIT, dtype=dtype, name=name,
                 conv_general_dilated=conv_general_dilated)(x).astype(jnp.float32)


def synthesize(frames: jax.Array, flow: jax.Array, mask: jax.Array,
               mode: str = "interpolate") -> jax.Array:
  """frames [B, H, W, 6], flow [B, H, W, 2], mask [B, H, W, 1] -> the frame [B, H, W, 3].

  "interpolate": the middle frame (t = 0.5) between frames[..., :3] and frames[..., 3:];
  "extrapolate": the frame after frames[..., 3:], frames[..., :3] being the one before it.
  """
  first, second = frames[..., :3], frames[..., 3:]
  if mode == "interpolate":
    return sampling.voxel_flow_synthesize(first, second, flow, mask, t=0.5)
  if mode == "extrapolate":
    return sampling.voxel_flow_extrapolate(first, second, flow, mask)
  raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _prediction(frames: jax.Array, logits: jax.Array, mode: str) -> dict[str, jax.Array]:
  out = jnp.tanh(logits)
  flow, mask = 0.5 * out[..., :2], 0.5 * (1.0 + out[..., 2:])
  return {"frame": synthesize(frames, flow, mask, mode), "flow": flow, "mask": mask}


class VoxelFlowNet(nn.Module):
  """DVF, single scale: [B, H, W, 6] two frames in [-1, 1] -> {"frame", "flow", "mask", "scales"}.

  "frame" [B, H, W, 3] (in [-1, 1] as a blend of input pixels), "flow" [B, H, W, 2], "mask"
  [B, H, W, 1], all float32; "scales" is a one-element tuple holding the same three, so Tasks
  treat single- and multi-scale models alike. H and W must be divisible by 8. `width` is the first
  conv's channels (64 in the paper; the others are 2x and 4x it); convs compute in `dtype`,
  parameters and outputs are float32.
  """
  variant: str = "tf"
  width: int = 64
  mode: str = "interpolate"
  bn_momentum: float = BN_MOMENTUM
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames: jax.Array, train: bool) -> dict[str, Any]:
    _check_config(self.variant, self.mode, self.width)
    _check_frames(frames, 8)
    frames = frames.astype(jnp.float32)
    features = _encoder_decoder(frames.astype(self.dtype), train, variant=self.variant,
                                width=self.width, bn_momentum=self.bn_momentum, dtype=self.dtype)
    out = _prediction(frames, _output_conv(features, self.dtype, "output"), self.mode)
    return {**out, "scales": (out,)}


class _ScaleNet(nn.Module):
  """One scale of MultiScaleVoxelFlow: [B, h, w, C] -> (last decoder features, pre-tanh [.., 3])."""
  variant: str
  width: int
  bn_momentum: float
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    features = _encoder_decoder(x.astype(self.dtype), train, variant=self.variant,
                                width=self.width, bn_momentum=self.bn_momentum, dtype=self.dtype)
    return features, _output_conv(features, self.dtype, "output")


class MultiScaleVoxelFlow(nn.Module):
  """DVF's coarse-to-fine voxel flow at 1/4, 1/2 and 1 of the input size, fused at the finest.

  The paper runs a series of encoder-decoders from the coarse scale (64²) to the fine one (256²)
  and fuses their flows at the finest scale by concatenating the upsampled per-scale flows with
  the finest net's last decoder layer and convolving. No release has it; our reading:
  - one net per scale, separate weights ("scale4", "scale2", "scale1"; each the `variant` trunk):
    coarse and fine motion look different, and the coarse nets take 6 input channels, the finer
    ones 9. It costs 3x the single-scale parameters, not 3x the compute (1 + 1/4 + 1/16);
  - each net sees both frames area-downsampled to its scale (`area_downsample`);
  - coarse to fine: the finer nets also take the coarser flow/mask (tanh outputs, bilinearly
    upsampled x2) as input and predict a residual on the coarser pre-tanh output, so each scale
    refines the last one from the start. Normalised flow units do not depend on the resolution,
    so upsampled flows need no rescaling;
  - fusion ("fuse", a 5x5 conv): on the finest net's last decoder features concatenated with all
    three scales' tanh outputs upsampled to full size, added to the finest pre-tanh output (the
    fused result starts as the finest scale's and learns what to take from the coarse ones).
  Returns the fused {"frame", "flow", "mask"} at full size and "scales": the per-scale predictions
  before fusion, coarse to fine, each synthesised from the downsampled frames, for per-scale
  losses. H and W must be divisible by 32 (the 1/4 scale's trunk pools 3 times).
  """
  variant: str = "tf"
  width: int = 64
  mode: str = "interpolate"
  bn_momentum: float = BN_MOMENTUM
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames: jax.Array, train: bool) -> dict[str, Any]:
    _check_config(self.variant, self.mode, self.width)
    _check_frames(frames, 8 * SCALES[0])
    frames = frames.astype(jnp.float32)
    height, width = frames.shape[1:3]
    logits = features = None
    scales, outputs = [], []
    for factor in SCALES:
      inputs = area_downsample(frames, factor)
      x = inputs
      if logits is not None:
        logits = _upsample2(logits)
        x = jnp.concatenate([inputs, jnp.tanh(logits)], -1)
      features, residual = _ScaleNet(self.variant, self.width, self.bn_momentum, self.dtype,
                                     name=f"scale{factor}")(x, train)
      logits = residual if logits is None else logits + residual
      scales.append(_prediction(inputs, logits, self.mode))
      outputs.append(jnp.tanh(logits))
    outputs = [_resize(o, height, width) for o in outputs[:-1]] + outputs[-1:]
    fused_in = jnp.concatenate([features, *(o.astype(self.dtype) for o in outputs)], -1)
    fused = logits + _output_conv(fused_in, self.dtype, "fuse")
    return {**_prediction(frames, fused, self.mode), "scales": tuple(scales)}

"""LNets+ANet (Liu et al., "Deep Learning Face Attributes in the Wild", ICCV 2015) in Flax linen.

LNet is a conv net trained with image-level attribute tags only. Averaged over channels, the
responses of its last conv layer peak on the face; thresholding that map (relative to its
maximum) and taking the bounding box of the connected region around the peak localises the face
with no box supervision (`localize`). ANet sees only the localised face: several patches cut
from the box (the whole face and shifted/zoomed parts, "multi-patch"), each through the same conv
net whose upper layers have locally shared filters (`LocallySharedConv`: one kernel per region
of a grid over the feature map), their features concatenated and fed to one linear classifier
per attribute (a Dense layer with 40 outputs; logistic or hinge loss in the task).

`LNetsANet` chains them: the box is a stop_gradient, so ANet trains on the crops of the LNet of
the moment (or of a frozen, pretrained one) and no gradient reaches LNet through localisation.

Simplifications against the paper (documented in README): one LNet level instead of the LNet_o
(head-shoulders) -> LNet_s (face) cascade; no ImageNet / identity pretraining (from scratch);
ANet shared over patches; layer sizes are configurable and not the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from hcjax.ops.pooling import max_pool
from hcjax.ops.sampling import bilinear_sample

# (dx, dy, scale) of each ANet patch relative to the localised box: centre shifted by dx, dy box
# sides, side = scale box sides. The whole face, then its upper and lower parts magnified.
DEFAULT_PATCHES = ((0.0, 0.0, 1.0), (0.0, -0.22, 0.6), (0.0, 0.22, 0.6))


# --- locally shared convolution -------------------------------------------------------------------

def region_bounds(size: int, parts: int) -> list[int]:
  """Edges of `parts` nearly equal regions of [0, size): region i is [b[i], b[i + 1])."""
  if parts < 1 or size < parts:
    raise ValueError(f"cannot split {size} pixels into {parts} regions")
  return [i * size // parts for i in range(parts + 1)]


def same_padding(k: int) -> tuple[int, int]:
  """XLA's "SAME" padding of a stride-1 window of k: (k - 1) // 2 before, the rest after."""
  return (k - 1) // 2, k - 1 - (k - 1) // 2


def locally_shared_conv(x: jax.Array, kernel: jax.Array,
                        bias: jax.Array | None = None) -> jax.Array:
  """x [B, H, W, C], kernel [gh, gw, kh, kw, C, F], bias [gh, gw, F] -> [B, H, W, F].

  A stride-1 "SAME" convolution whose kernel depends on the region of the output pixel: the map
  is split into a gh x gw grid (`region_bounds`) and region (i, j) uses kernel[i, j]. Windows at
  region edges read the neighbouring region's inputs; only the map's outer border is zero.

  Each region's input window (with its halo, padded to the largest region) is unfolded into
  kh·kw·C-long patches, and all regions go through one batched matmul with their own kernels.
  On CPU that is ~10x faster than the same thing as a grouped convolution (one channel group
  per region), and it does no more arithmetic than an ordinary convolution.
  """
  b, h, w, c = x.shape
  gh, gw, kh, kw, kc, f = kernel.shape
  if kc != c:
    raise ValueError(f"kernel expects {kc} input channels, x has {c}")
  rows, cols = region_bounds(h, gh), region_bounds(w, gw)
  rh = max(rows[i + 1] - rows[i] for i in range(gh))
  rw = max(cols[j + 1] - cols[j] for j in range(gw))
  (t, bt), (l, r) = same_padding(kh), same_padding(kw)
  # The outer SAME padding, plus room for the largest region's window at the bottom/right.
  xp = jnp.pad(x, ((0, 0), (t, bt + rh), (l, r + rw), (0, 0)))
  windows = jnp.stack([xp[:, rows[i]:rows[i] + rh + kh - 1, cols[j]:cols[j] + rw + kw - 1]
                       for i in range(gh) for j in range(gw)])  # [G, B, rh+kh-1, rw+kw-1, C]
  patches = jnp.concatenate([windows[:, :, dy:dy + rh, dx:dx + rw]
                             for dy in range(kh) for dx in range(kw)], axis=-1)
  y = jnp.einsum("gbhwk,gkf->gbhwf", patches, kernel.reshape(gh * gw, kh * kw * c, f))
  if bias is not None:
    y = y + bias.reshape(gh * gw, 1, 1, 1, f)
  out_rows = [jnp.concatenate([y[i * gw + j, :, :rows[i + 1] - rows[i], :cols[j + 1] - cols[j]]
                               for j in range(gw)], axis=2) for i in range(gh)]
  return jnp.concatenate(out_rows, axis=1)


class LocallySharedConv(nn.Module):
  """Conv with weights shared inside each region of a grid over the map, unshared across regions.

  Parameters: kernel [gh, gw, kh, kw, C, features], bias [gh, gw, features]. grid (1, 1) is an
  ordinary stride-1 "SAME" nn.Conv.
  """
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  grid: tuple[int, int] = (2, 2)
  use_bias: bool = True
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.variance_scaling(
      1.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1, batch_axis=(0, 1))
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    gh, gw = self.grid
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (gh, gw, kh, kw, x.shape[-1], self.features))
    bias = self.param("bias", self.bias_init, (gh, gw, self.features)) if self.use_bias else None
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    bias = None if bias is None else bias.astype(self.dtype)
    return locally_shared_conv(x, kernel, bias)


# --- localisation ---------------------------------------------------------------------------------

def _component_of_peak(mask: jax.Array, peak: jax.Array) -> jax.Array:
  """The 8-connected component of `mask` [B, h, w] (bool) holding the one-hot `peak`."""
  h, w = mask.shape[1:]
  maskf = mask.astype(jnp.float32)

  def grow(comp):
    return lax.reduce_window(comp, -jnp.inf, lax.max, (1, 3, 3), (1, 1, 1), "SAME") * maskf

  def cond(carry):
    comp, prev, i = carry
    return jnp.any(comp != prev) & (i < h * w)

  def body(carry):
    comp, _, i = carry
    return grow(comp), comp, i + 1

  comp0 = peak.astype(jnp.float32) * maskf
  comp, _, _ = lax.while_loop(cond, body, (grow(comp0), comp0, jnp.int32(1)))
  return comp > 0


def localize(response: jax.Array, image_size: tuple[int, int], threshold: float = 0.5,
             upsample: int = 4) -> jax.Array:
  """A response map [B, h, w] -> face boxes [B, 4] (x0, y0, x1, y1) in the image's pixel edges.

  The map is resized bilinearly to `upsample` x its size, scaled to [0, 1] per image (min..max),
  thresholded at `threshold`; the box is the extent of the connected region around the peak.
  Map cell (i, j) of an h x w map covers rows [i H / h, (i + 1) H / h) of an H x W image.
  Not differentiable (returns stop_gradient).
  """
  response = lax.stop_gradient(response.astype(jnp.float32))
  b, h, w = response.shape
  if upsample > 1:
    h, w = h * upsample, w * upsample
    response = jax.image.resize(response, (b, h, w), "bilinear")
  lo = response.min(axis=(1, 2), keepdims=True)
  hi = response.max(axis=(1, 2), keepdims=True)
  norm = (response - lo) / jnp.maximum(hi - lo, 1e-12)
  flat = norm.reshape(b, -1)
  peak = jax.nn.one_hot(jnp.argmax(flat, axis=1), h * w, dtype=jnp.bool_).reshape(b, h, w)
  comp = _component_of_peak(norm >= threshold, peak) | peak
  rows, cols = comp.any(axis=2), comp.any(axis=1)              # [B, h], [B, w]
  r = jnp.arange(h)
  c = jnp.arange(w)
  y0 = jnp.min(jnp.where(rows, r, h), axis=1)
  y1 = jnp.max(jnp.where(rows, r, -1), axis=1) + 1
  x0 = jnp.min(jnp.where(cols, c, w), axis=1)
  x1 = jnp.max(jnp.where(cols, c, -1), axis=1) + 1
  sy, sx = image_size[0] / h, image_size[1] / w
  box = jnp.stack([x0 * sx, y0 * sy, x1 * sx, y1 * sy], axis=1).astype(jnp.float32)
  return lax.stop_gradient(box)


def patch_coords(box: jax.Array, patches: Sequence[tuple[float, float, float]], size: int
                 ) -> jax.Array:
  """box [B, 4] edge coordinates -> sampling points [B, P, size, size, 2] (x, y), pixel centres.

  Patch (dx, dy, s) is the square of side s·L centred at the box centre + (dx, dy)·L, where L is
  the box's longer side; its size x size samples sit at the centres of a size x size grid.
  """
  box = box.astype(jnp.float32)
  cx, cy = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
  side = jnp.maximum(jnp.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]), 1.0)
  p = jnp.asarray(patches, jnp.float32)                         # [P, 3]
  centre_x = cx[:, None] + p[None, :, 0] * side[:, None]        # [B, P]
  centre_y = cy[:, None] + p[None, :, 1] * side[:, None]
  half = p[None, :, 2] * side[:, None] / 2
  t = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size * 2 - 1  # cell centres in (-1, 1)
  # Edge coordinates -> pixel-centre coordinates (x = 0 is the first pixel's centre): - 0.5.
  xs = centre_x[..., None] + half[..., None] * t - 0.5          # [B, P, size]
  ys = centre_y[..., None] + half[..., None] * t - 0.5
  grid_x = jnp.broadcast_to(xs[:, :, None, :], xs.shape[:2] + (size, size))
  grid_y = jnp.broadcast_to(ys[:, :, :, None], ys.shape[:2] + (size, size))
  return jnp.stack([grid_x, grid_y], axis=-1)


def crop_patches(image: jax.Array, box: jax.Array, patches: Sequence[tuple[float, float, float]],
                 size: int) -> jax.Array:
  """image [B, H, W, C], box [B, 4] -> patches [B, P, size, size, C] (bilinear, border-clamped)."""
  b = image.shape[0]
  coords = patch_coords(lax.stop_gradient(box), patches, size)  # [B, P, s, s, 2]
  n = len(patches)
  flat = coords.reshape(b, n * size, size, 2)
  out = bilinear_sample(image, flat, padding="border")          # [B, P*s, s, C]
  return out.reshape(b, n, size, size, image.shape[-1])


# --- the networks ---------------------------------------------------------------------------------

class LNet(nn.Module):
  """[B, H, W, 3] -> (attribute logits [B, num_outputs], response map [B, h, w]).

  conv5x5/2 + pool, conv3x3 + pool, then 3x3 convs: the map is H / 8. GroupNorm rather than
  BatchNorm, so that a frozen LNet (a later stage) is a pure function of its parameters. The
  response map is the channel mean of the last conv layer's ReLU outputs; logits come from
  their global average, so the attribute evidence must show up in that map.
  """
  widths: Sequence[int] = (16, 32, 64, 64, 64)
  num_outputs: int = 40
  groups: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = x.astype(self.dtype)
    for i, width in enumerate(self.widths):
      k, s = (5, 2) if i == 0 else (3, 1)
      x = nn.Conv(width, (k, k), (s, s), padding="SAME", use_bias=False, dtype=self.dtype,
                  name=f"conv{i + 1}")(x)
      x = nn.GroupNorm(num_groups=min(self.groups, width), dtype=self.dtype, name=f"norm{i + 1}")(x)
      x = nn.relu(x)
      if i < 2:
        x = max_pool(x, 2, 2)
    response = x.astype(jnp.float32).mean(axis=-1)
    logits = nn.Dense(self.num_outputs, dtype=self.dtype, name="head")(x.mean(axis=(1, 2)))
    return logits.astype(jnp.float32), response


class ANet(nn.Module):
  """Face patches [N, s, s, 3] -> features [N, feature_dim].

  Per layer i: a 3x3 conv with widths[i] filters, locally shared on grids[i] ((1, 1) = ordinary),
  BatchNorm, ReLU, 2x2 max-pool (all but the last); then flatten (the locally shared layers keep
  where things are) and a fully connected layer.
  """
  widths: Sequence[int] = (16, 32, 48, 64)
  grids: Sequence[tuple[int, int]] = ((1, 1), (1, 1), (2, 2), (2, 2))
  feature_dim: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if len(self.widths) != len(self.grids):
      raise ValueError(f"ANet needs one grid per layer, got {len(self.widths)} widths and "
                       f"{len(self.grids)} grids")
    x = x.astype(self.dtype)
    for i, (width, grid) in enumerate(zip(self.widths, self.grids)):
      if tuple(grid) == (1, 1):
        x = nn.Conv(width, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype,
                    name=f"conv{i + 1}")(x)
      else:
        x = LocallySharedConv(width, (3, 3), tuple(grid), use_bias=False, dtype=self.dtype,
                              name=f"lsconv{i + 1}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                       name=f"bn{i + 1}")(x)
      x = nn.relu(x)
      if i < len(self.widths) - 1:
        x = max_pool(x, 2, 2)
    x = x.reshape(x.shape[0], -1)
    return nn.relu(nn.Dense(self.feature_dim, dtype=self.dtype, name="fc")(x))


class LNetsANet(nn.Module):
  """image [B, H, W, 3] (normalised) -> dict of
     logits [B, num_outputs]   the attribute scores (ANet's; LNet's in the "lnet" stage)
     lnet_logits [B, num_outputs], response [B, h, w] (LNet's map), box [B, 4] (x0, y0, x1, y1).

  stage: "lnet" builds and runs only LNet; "anet" and "joint" add ANet on LNet's boxes (which
  stage trains what is the task's and the optimizer's business, see configs/lnets_anet.py).
  """
  num_outputs: int = 40
  stage: str = "joint"
  lnet_widths: Sequence[int] = (16, 32, 64, 64, 64)
  anet_widths: Sequence[int] = (16, 32, 48, 64)
  anet_grids: Sequence[tuple[int, int]] = ((1, 1), (1, 1), (2, 2), (2, 2))
  feature_dim: int = 128
  patch_size: int = 48
  patches: Sequence[tuple[float, float, float]] = DEFAULT_PATCHES
  threshold: float = 0.5
  upsample: int = 4
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False) -> dict[str, jax.Array]:
    if self.stage not in ("lnet", "anet", "joint"):
      raise ValueError(f"stage must be lnet, anet or joint, got {self.stage!r}")
    lnet_logits, response = LNet(self.lnet_widths, self.num_outputs, dtype=self.dtype,
                                 name="lnet")(x, train)
    box = localize(response, x.shape[1:3], self.threshold, self.upsample)
    out = {"lnet_logits": lnet_logits, "response": response, "box": box}
    if self.stage == "lnet":
      out["logits"] = lnet_logits
      return out
    b, n = x.shape[0], len(self.patches)
    crops = crop_patches(x.astype(jnp.float32), box, self.patches, self.patch_size)
    feats = ANet(self.anet_widths, self.anet_grids, self.feature_dim, dtype=self.dtype,
                 name="anet")(crops.reshape((b * n,) + crops.shape[2:]), train)
    feats = feats.reshape(b, n * self.feature_dim)
    feats = nn.Dropout(self.dropout, deterministic=not train)(feats)
    # One linear classifier per attribute on the concatenated multi-patch features.
    logits = nn.Dense(self.num_outputs, dtype=self.dtype, name="classifiers")(feats)
    out["logits"] = logits.astype(jnp.float32)
    return out

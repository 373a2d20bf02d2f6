"""DPN's MRF layers (Liu et al., "Semantic Image Segmentation via Deep Parsing Network", ICCV 2015).

DPN solves one mean-field step of a high-order MRF with convolution-like layers on the unary
probabilities p [B, H, W, L]:
  b12 `triple_penalty`:  t_i(v) = sum over the window neighbours j of k(i, j) p_j(v), the weight
                         built from d(i, j) = w1 |I_i - I_j|² + w2 |pos_i - pos_j|², w1, w2 learned;
  b13 `label_contexts`:  a k x k convolution L -> L·K, K mixtures of the local label context
                         mu_k(u, v, offset);
  b14 `block_min_pool`:  the min over each label's K mixtures: the penalty of label u;
  b15 `dpn_mean_field_step`: q = softmax(ln p - penalty).
The window of b12 is large (50x50 in the paper), so the fast version walks the offsets one at a
time, forward and backward, and never holds more than a few [B, H, W, L] maps; each fast op has a
naive `*_reference` beside it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def window_offsets(window: int) -> np.ndarray:
  """[window², 2] int32 (dy, dx), row-major, each in [-(window-1)//2, window//2].

  Odd windows are centred; even ones reach one pixel further down/right, as "SAME" convolutions.
  """
  _check_window(window)
  lo = -((window - 1) // 2)
  dy, dx = np.meshgrid(np.arange(lo, lo + window), np.arange(lo, lo + window), indexing="ij")
  return np.stack([dy.ravel(), dx.ravel()], axis=1).astype(np.int32)


def _check_window(window: Any) -> None:
  if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
    raise ValueError(f"window must be an integer >= 1, got {window!r}")


def _check_triple_inputs(probs, image, w_appearance, w_position, window) -> None:
  _check_window(window)
  if probs.ndim != 4:
    raise ValueError(f"probs must be [B, H, W, L], got shape {probs.shape}")
  if image.ndim != 4 or image.shape[:3] != probs.shape[:3]:
    raise ValueError(f"image must be [B, H, W, C] with B, H, W = {probs.shape[:3]} of probs, "
                     f"got shape {image.shape}")
  for name, value in (("w_appearance", w_appearance), ("w_position", w_position)):
    if jnp.ndim(value) != 0:
      raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _sum_over_offsets(fn: Callable, offsets: tuple, diff: Any, const: Any) -> Any:
  """sum_o fn(o, diff, const) over `offsets` ((dy, dx) tuples), one offset in memory at a time.

  Plain autodiff of a scan would keep every step's residuals (window² maps); the backward here
  re-runs fn per offset instead and accumulates its vector-Jacobian product. `const` gets no
  gradient.
  """
  return _accumulate(fn, offsets, diff, const)


def _accumulate(fn, offsets, diff, const):
  offs = np.asarray(offsets, np.int32)
  zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                      jax.eval_shape(fn, offs[0], diff, const))

  def step(total, offset):
    return jax.tree.map(jnp.add, total, fn(offset, diff, const)), None

  return lax.scan(step, zero, offs)[0]


def _sum_over_offsets_fwd(fn, offsets, diff, const):
  return _accumulate(fn, offsets, diff, const), (diff, const)


def _sum_over_offsets_bwd(fn, offsets, residuals, cotangent):
  diff, const = residuals

  def step(total, offset):
    _, vjp = jax.vjp(lambda d: fn(offset, d, const), diff)
    return jax.tree.map(jnp.add, total, vjp(cotangent)[0]), None

  total = lax.scan(step, jax.tree.map(jnp.zeros_like, diff), np.asarray(offsets, np.int32))[0]
  return total, jax.tree.map(jnp.zeros_like, const)


_sum_over_offsets.defvjp(_sum_over_offsets_fwd, _sum_over_offsets_bwd)


def triple_penalty(probs: jax.Array, image: jax.Array, w_appearance: jax.Array | float,
                   w_position: jax.Array | float, *, window: int = 50,
                   normalize: bool = True) -> jax.Array:
  """DPN's b12: [B, H, W, L] probabilities -> [B, H, W, L] appearance-weighted label mass.

      t_i(u) = sum_o k_i(o) p_{i+o}(u)   [/ sum_o k_i(o) when normalize]
      k_i(o) = exp(-(w_appearance |I_i - I_{i+o}|² + w_position |o|²))

  over the window offsets o (`window_offsets`, the centre included); neighbours outside the image
  are dropped (not zero-padded into the normaliser). The paper builds each position's weights of
  its locally connected 50x50 layer from d = w1 |I_i - I_j|² + w2 |pos_i - pos_j|²; we take the
  Gaussian exp(-d), the dense-CRF bilateral kernel with learned widths, rather than d itself: d
  grows without bound over a 50-pixel window of 0..255 colours, and exp(-d) makes t a (soft)
  count of the neighbours that look like pixel i, which b13's learned label contexts then turn
  into a penalty of either sign. No free per-offset weights: w1, w2 are the only parameters.
  With normalize, t_i is a weighted average of the neighbours' p (window-size independent scale).

  probs: [B, H, W, L]; image: [B, H, W, C] features (RGB 0..255 in DPN); the image gets no gradient.
  w_appearance, w_position: scalars >= 0 (may be traced: learnable); positions are in pixels of
    this map.
  Memory O(B·H·W·(L + C)) for any window: the offsets are scanned, forward and backward (reverse
  mode only: a custom VJP; jax.jvp of it raises).
  """
  _check_triple_inputs(probs, image, w_appearance, w_position, window)
  b, h, w, num_labels = probs.shape
  lo = (window - 1) // 2
  pad = ((0, 0), (lo, window - 1 - lo), (lo, window - 1 - lo), (0, 0))
  probs = probs.astype(jnp.float32)
  image = lax.stop_gradient(image.astype(jnp.float32))
  mask = jnp.pad(jnp.ones((1, h, w, 1), jnp.float32), pad)

  def terms(offset, diff, const):
    p_pad, w_app, w_pos = diff
    img_pad, mask_pad, img = const
    start = (0, lo + offset[0], lo + offset[1], 0)
    p_j = lax.dynamic_slice(p_pad, start, (b, h, w, num_labels))
    img_j = lax.dynamic_slice(img_pad, start, img.shape)
    inside = lax.dynamic_slice(mask_pad, start, (1, h, w, 1))
    dist = (w_app * jnp.sum(jnp.square(img - img_j), axis=-1, keepdims=True)
            + w_pos * jnp.sum(jnp.square(offset.astype(jnp.float32))))
    k = inside * jnp.exp(-dist)
    return k * p_j, k

  diff = (jnp.pad(probs, pad), jnp.asarray(w_appearance, jnp.float32),
          jnp.asarray(w_position, jnp.float32))
  const = (jnp.pad(image, pad), mask, image)
  offsets = tuple(map(tuple, window_offsets(window).tolist()))
  num, den = _sum_over_offsets(terms, offsets, diff, const)
  return num / den if normalize else num


def triple_penalty_reference(probs: jax.Array, image: jax.Array, w_appearance, w_position, *,
                             window: int = 50, normalize: bool = True) -> jax.Array:
  """Slow `triple_penalty`: a Python loop over the offsets with static slices; plain autodiff."""
  _check_triple_inputs(probs, image, w_appearance, w_position, window)
  _, h, w, _ = probs.shape
  lo = (window - 1) // 2
  pad = ((0, 0), (lo, window - 1 - lo), (lo, window - 1 - lo), (0, 0))
  probs = probs.astype(jnp.float32)
  image = lax.stop_gradient(image.astype(jnp.float32))
  p_pad, img_pad = jnp.pad(probs, pad), jnp.pad(image, pad)
  inside = jnp.pad(jnp.ones((1, h, w, 1), jnp.float32), pad)
  num, den = 0.0, 0.0
  for dy, dx in window_offsets(window).tolist():
    rows, cols = slice(lo + dy, lo + dy + h), slice(lo + dx, lo + dx + w)
    dist = (w_appearance * jnp.sum((image - img_pad[:, rows, cols]) ** 2, -1, keepdims=True)
            + w_position * (dy * dy + dx * dx))
    k = inside[:, rows, cols] * jnp.exp(-dist)
    num, den = num + k * p_pad[:, rows, cols], den + k
  return num / den if normalize else num


def label_contexts(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
  """DPN's b13: [B, H, W, L] -> [B, H, W, L·K], a "SAME" k x k convolution (9x9 in the paper).

  kernel [k, k, L, L·K]: kernel[a, b, v, u·K + m] is mixture m's cost of label u at a pixel when
  the pixel at tap (a, b) around it holds label v (the local label context mu_m(u, v, offset));
  the K mixtures of a label are adjacent channels, as `block_min_pool` expects. bias: [L·K] or None.
  """
  if x.ndim != 4:
    raise ValueError(f"x must be [B, H, W, L], got shape {x.shape}")
  if kernel.ndim != 4 or kernel.shape[2] != x.shape[-1] or kernel.shape[3] % x.shape[-1]:
    raise ValueError(f"kernel must be [k, k, L, L·K] with L = {x.shape[-1]}, "
                     f"got shape {kernel.shape}")
  if bias is not None and bias.shape != (kernel.shape[3],):
    raise ValueError(f"bias must be [{kernel.shape[3]}], got shape {bias.shape}")
  out = lax.conv_general_dilated(x.astype(jnp.float32), kernel.astype(jnp.float32), (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                 precision=lax.Precision.HIGHEST)
  return out if bias is None else out + bias.astype(jnp.float32)


def label_contexts_reference(x: jax.Array, kernel: jax.Array,
                             bias: jax.Array | None = None) -> jax.Array:
  """Slow `label_contexts`: a loop over the kernel taps, each a shifted [L, L·K] matmul."""
  _, h, w, _ = x.shape
  kh, kw = kernel.shape[:2]
  top, left = (kh - 1) // 2, (kw - 1) // 2
  padded = jnp.pad(x.astype(jnp.float32),
                   ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
  out = 0.0
  for a in range(kh):
    for b in range(kw):
      out = out + jnp.einsum("nhwv,vc->nhwc", padded[:, a:a + h, b:b + w], kernel[a, b],
                             precision=lax.Precision.HIGHEST)
  return out if bias is None else out + bias


def block_min_pool(x: jax.Array, group_size: int) -> jax.Array:
  """DPN's b14: [..., L·K] -> [..., L], the min over each run of `group_size` = K adjacent channels.

  The min picks, per pixel and label, the label-context mixture that explains the neighbourhood
  best (the paper's approximation of the mixture's weighted sum).
  """
  if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) \
      or group_size < 1:
    raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}")
  if x.ndim < 1 or x.shape[-1] % group_size:
    raise ValueError(f"x's last axis ({x.shape[-1] if x.ndim else None}) must be a multiple of "
                     f"group_size = {group_size}")
  return jnp.min(x.reshape(*x.shape[:-1], x.shape[-1] // group_size, group_size), axis=-1)


def dpn_mean_field_step(log_probs: jax.Array, penalty: jax.Array) -> jax.Array:
  """DPN's b15, one mean-field step: log q = log_softmax(ln p - penalty) over the last axis.

  log_probs: [B, H, W, L] ln p of the unary (log-sigmoid of its logits in DPN: the classes'
    probabilities need not sum to one); penalty: b14's output, same shape (or broadcastable).
  Returns the log of b15's softmax: float32 log-probabilities, ready for a log-likelihood loss.
  """
  try:
    shape = jnp.broadcast_shapes(log_probs.shape, jnp.shape(penalty))
  except ValueError:
    shape = None
  if shape != log_probs.shape:
    raise ValueError(f"penalty must broadcast to log_probs' shape {log_probs.shape}, "
                     f"got shape {jnp.shape(penalty)}")
  return jax.nn.log_softmax(log_probs.astype(jnp.float32) - penalty, axis=-1)

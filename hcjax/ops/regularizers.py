"""Smoothness regularisers for predicted fields (flows, masks), as pure functions.

DVF's loss is L1 + λ1·TV(flow) + λ2·TV(mask) (REFERENCES: λ1 = 0.01, λ2 = 0.005, unverified; the
TF release leaves TV as a TODO), so the normalisation below is ours and documented.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def total_variation(x: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Anisotropic total variation of x [B, H, W, C] -> float32 scalar.

  Per image: the mean of |x[i, j+1] - x[i, j]| over its H·(W-1)·C horizontal pairs plus the
  mean of |x[i+1, j] - x[i, j]| over its (H-1)·W·C vertical pairs (a term is 0 when W or H is 1).
  Means, not sums as in tf.image.total_variation, keep λ independent of image size and channels:
  a ramp rising by s per pixel along x has TV = s. `weights` [B] (e.g. the padding `_mask`) gives
  the weighted mean over images (0 when all weights are 0); None is the plain mean.
  """
  if x.ndim != 4:
    raise ValueError(f"x must be [B, H, W, C], got shape {x.shape}")
  x = x.astype(jnp.float32)
  per_image = jnp.zeros(x.shape[0], jnp.float32)
  if x.shape[2] > 1:
    per_image += jnp.mean(jnp.abs(x[:, :, 1:] - x[:, :, :-1]), axis=(1, 2, 3))
  if x.shape[1] > 1:
    per_image += jnp.mean(jnp.abs(x[:, 1:] - x[:, :-1]), axis=(1, 2, 3))
  if weights is None:
    return jnp.mean(per_image)
  weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32).reshape(-1), per_image.shape)
  total = jnp.sum(weights)
  return jnp.sum(weights * per_image) / jnp.where(total != 0, total, 1.0)

"""Mean-field inference in a fully connected CRF (Krähenbühl & Koltun 2011), batched and differentiable.

Same semantics as pydensecrf's DenseCRF2D with a Gaussian and a bilateral kernel: starting from
Q = softmax(-U), each iteration sets

    logits = -U - sum_m M_m · K̃_m Q,     Q = softmax(logits)

where K̃_m is kernel m's Gaussian filter (permutohedral lattice, or exactly for small images),
normalised symmetrically (D^-1/2 K D^-1/2, pydensecrf's default) or "after" (K / K·1, CRF-as-RNN),
and M_m the label compatibility: a scalar w is Potts (M = -w·I, pydensecrf's PottsCompatibility),
an [L, L] array is used as given (out[l] = sum_l' M[l, l'] (K̃Q)[l']).

Gradients flow to the unary and the compatibilities (learnable weights, as in CRF-as-RNN); the
image and the kernel widths only shape the filter and get none.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hcjax.ops import permutohedral

NORMALIZATIONS = ("symmetric", "after")
METHODS = ("lattice", "exact")
EXACT_MAX_PIXELS = 16_384   # the exact method holds an [N, N] matrix


def gaussian_features(height: int, width: int, sxy: float) -> jax.Array:
  """[H·W, 2] pixel positions (x = column, y = row) / sxy, row-major as pydensecrf."""
  y, x = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                      jnp.arange(width, dtype=jnp.float32), indexing="ij")
  return jnp.stack([x.ravel() / jnp.float32(sxy), y.ravel() / jnp.float32(sxy)], axis=1)


def bilateral_features(image: jax.Array, sxy: float, srgb: float) -> jax.Array:
  """image [H, W, 3] in 0..255 -> [H·W, 5] (x/sxy, y/sxy, r/srgb, g/srgb, b/srgb)."""
  h, w, _ = image.shape
  rgb = image.reshape(h * w, 3).astype(jnp.float32) / jnp.float32(srgb)
  return jnp.concatenate([gaussian_features(h, w, sxy), rgb], axis=1)


def _exact_filter(features: jax.Array) -> Callable[[jax.Array], jax.Array]:
  """The O(N²) Gaussian the lattice approximates: sum_j exp(-|f_i - f_j|² / 2) v_j."""
  sq = jnp.sum(features ** 2, axis=1)
  dist = sq[:, None] + sq[None, :] - 2.0 * features @ features.T
  kernel = jnp.exp(-0.5 * jnp.maximum(dist, 0.0))
  return lambda values: kernel @ values


def _lattice_filter(lattice: permutohedral.Lattice) -> Callable[[jax.Array], jax.Array]:
  return lambda values: permutohedral.filter(lattice, values)


@functools.lru_cache(maxsize=32)
def _gaussian_plan(height: int, width: int, sxy: float) -> tuple[int, str]:
  """(vertex count, packing) of the positions-only lattice, computed once at trace time."""
  with jax.ensure_compile_time_eval():
    features = gaussian_features(height, width, sxy)
    packed = jax.jit(permutohedral.enumerate_packed)(features)
    if bool(packed.fits):
      return int(packed.num_vertices), "packed"
    vertices = jax.jit(permutohedral.enumerate_vertices)(features)
    return int(vertices.num_vertices), "lexicographic"


def _gaussian_lattice(height: int, width: int, sxy: float, anchor: jax.Array
                      ) -> permutohedral.Lattice:
  """Positions only: the vertex count is known at trace time, so the lattice gets exactly M.

  It is built in the graph rather than embedded as megabytes of constants; the barrier keeps
  XLA from constant-folding it at compile time.
  """
  capacity, packing = _gaussian_plan(height, width, sxy)
  features = gaussian_features(height, width, sxy)
  features, _ = jax.lax.optimization_barrier((features, anchor))
  return permutohedral.build(features, capacity, packing=packing)


def capacity_tiers(num_points: int, d: int) -> tuple[int, ...]:
  """Lattice sizes a batch chooses from (the smallest that fits); the last can never overflow.

  Natural photos with pydensecrf's example bilateral kernel (sxy 80, srgb 13) need 3-9 % of N
  vertices, with CRF-as-RNN's (160, 3) 33-67 %; pure noise at srgb 3 needs nearly (d+1)·N.
  """
  full = permutohedral.default_capacity(num_points, d)
  return tuple(sorted({max(1, -(-num_points // 8)), min(num_points, full), full}))


def _normalized(filter_fn, num_points: int, normalization: str):
  """K̃ from K: symmetric D^-1/2 K D^-1/2 or 'after' D^-1 K, with D = K·1 (as pydensecrf)."""
  norm = filter_fn(jnp.ones((num_points, 1), jnp.float32))
  if normalization == "symmetric":
    scale = jax.lax.rsqrt(norm + 1e-20)
    return lambda q: scale * filter_fn(scale * q)
  scale = 1.0 / (norm + 1e-20)
  return lambda q: scale * filter_fn(q)


def _compat_matrix(compat, num_labels: int, name: str) -> jax.Array | None:
  if compat is None:
    return None
  compat = jnp.asarray(compat, jnp.float32)
  if compat.ndim == 0:
    return -compat * jnp.eye(num_labels, dtype=jnp.float32)
  if compat.shape != (num_labels, num_labels):
    raise ValueError(f"{name} must be a scalar or [L, L] = [{num_labels}, {num_labels}], "
                     f"got shape {compat.shape}")
  return compat


def mean_field(unary: jax.Array, image: jax.Array, *,
               gaussian_sxy: float = 3.0, gaussian_compat=3.0,
               bilateral_sxy: float = 80.0, bilateral_srgb: float = 13.0, bilateral_compat=10.0,
               num_iterations: int = 5, normalization: str = "symmetric",
               method: str = "lattice", lattice_capacity: float | None = None,
               return_logits: bool = False) -> jax.Array:
  """Marginals Q [B, H, W, L] after `num_iterations` mean-field updates (pydensecrf's inference(n)).

  unary: [B, H, W, L] unary energies (-log p), as pydensecrf's setUnaryEnergy.
  image: [B, H, W, 3] RGB in 0..255 (any dtype).
  gaussian_compat, bilateral_compat: a scalar (Potts weight), an [L, L] matrix, or None to drop
    that kernel; may be traced (learnable).
  normalization: "symmetric" (pydensecrf's default) or "after" (CRF-as-RNN).
  method: "lattice" (permutohedral, any size) or "exact" (dense O(N²) Gaussian, small images).
  lattice_capacity: lattice vertices reserved per image for the bilateral kernel, as a multiple
    of H·W. None (default): the batch uses the smallest of capacity_tiers() all its images fit
    in (the largest when some image's lattice keys do not pack into 32 bits, see
    permutohedral), so nothing can overflow (under an outer jax.vmap the choice becomes a
    select that runs every size: prefer batching through B). A number fixes the size; an
    image that overflows it gets NaN, never a silently truncated filter.
  return_logits: return the last logits (whose softmax is Q) instead of Q, e.g. for a
    cross-entropy loss.
  """
  if unary.ndim != 4:
    raise ValueError(f"unary must be [B, H, W, L], got shape {unary.shape}")
  b, h, w, num_labels = unary.shape
  if image.shape != (b, h, w, 3):
    raise ValueError(f"image must be [B, H, W, 3] = {(b, h, w, 3)}, got shape {image.shape}")
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  if method == "exact" and h * w > EXACT_MAX_PIXELS:
    raise ValueError(f"method='exact' holds an [N, N] kernel; H·W = {h * w} > {EXACT_MAX_PIXELS}: "
                     "use method='lattice'")
  if not isinstance(num_iterations, (int, np.integer)) or num_iterations < 0:
    raise ValueError(f"num_iterations must be an integer >= 0, got {num_iterations!r}")
  for name, value in (("gaussian_sxy", gaussian_sxy), ("bilateral_sxy", bilateral_sxy),
                      ("bilateral_srgb", bilateral_srgb)):
    if not value > 0:
      raise ValueError(f"{name} must be > 0, got {value!r}")
  m_gauss = _compat_matrix(gaussian_compat, num_labels, "gaussian_compat")
  m_bilat = _compat_matrix(bilateral_compat, num_labels, "bilateral_compat")
  n = h * w
  # The Gaussian kernel only sees positions: one exact-size lattice for the whole batch.
  kernels = []
  if m_gauss is not None:
    if method == "exact":
      gauss = _exact_filter(gaussian_features(h, w, gaussian_sxy))
    else:
      gauss = _lattice_filter(_gaussian_lattice(h, w, float(gaussian_sxy), unary))
    kernels.append((_normalized(gauss, n, normalization), m_gauss))

  def iterate(u, kernels):
    def step(logits, _):
      q = jax.nn.softmax(logits, axis=-1)
      new = -u
      for filter_fn, m in kernels:
        new = new - filter_fn(q) @ m.T
      return new, None
    logits, _ = jax.lax.scan(step, -u, None, length=int(num_iterations))
    out = logits if return_logits else jax.nn.softmax(logits, axis=-1)
    return out.reshape(h, w, num_labels)

  flat_unary = unary.reshape(b, n, num_labels).astype(jnp.float32)
  if m_bilat is None:
    return jax.vmap(lambda u: iterate(u, kernels))(flat_unary)
  feats = jax.vmap(lambda img: bilateral_features(img, bilateral_sxy, bilateral_srgb))(
      jax.lax.stop_gradient(image))
  if method == "exact":
    return jax.vmap(lambda u, f: iterate(
        u, kernels + [(_normalized(_exact_filter(f), n, normalization), m_bilat)]))(flat_unary, feats)
  # Packed keys (one uint32 sort) whenever every image's key box fits 32 bits; else the
  # lexicographic sort, at the largest size, built only when the batch needs it.
  packed = jax.vmap(permutohedral.enumerate_packed)(feats)
  fits = jnp.all(packed.fits)

  def one_image(u, lat):
    return iterate(u, kernels + [(_normalized(_lattice_filter(lat), n, normalization), m_bilat)])

  def with_capacity(c, may_not_pack):
    def from_packed():
      return jax.vmap(lambda v: permutohedral.lattice(v, c))(packed)

    def from_lexicographic():
      return jax.vmap(lambda f: permutohedral.lattice(permutohedral.enumerate_vertices(f), c))(
          feats)

    # The lattice is built inside the branch: only the chosen size pays for it.
    def run():
      lat = jax.lax.cond(fits, from_packed, from_lexicographic) if may_not_pack else from_packed()
      return jax.vmap(one_image)(flat_unary, lat)
    return run

  if lattice_capacity is not None:
    return with_capacity(max(1, int(np.ceil(float(lattice_capacity) * n))), True)()
  # The batch takes the smallest size all its images fit in; keys that do not pack take the
  # last. The choice is one replicated scalar and each branch is batch-parallel, so a sharded
  # batch stays sharded.
  tiers = capacity_tiers(n, feats.shape[-1])
  needed = jnp.max(packed.num_vertices)
  tier = sum((needed > c).astype(jnp.int32) for c in tiers[:-1])
  tier = jnp.where(fits, tier, len(tiers) - 1)
  return jax.lax.switch(tier, [with_capacity(c, c == tiers[-1]) for c in tiers])

"""The permutohedral lattice (Adams, Baek & Davis 2010) as static-shape XLA, differentiable.

A Gaussian filter over d-dimensional features in O(N·d²) instead of O(N²): every point splats onto
the d+1 vertices of its enclosing simplex, the lattice is blurred with [1/2, 1, 1/2] along each of
its d+1 directions, and every point slices its value back. The arithmetic follows pydensecrf's
(Krähenbühl) implementation step by step, so results agree with it to float rounding.

Everything is built inside XLA with static shapes: the (d+1)·N vertex keys are deduplicated by a
sort, each vertex's neighbours along a direction are found by binary search over the sorted unique
keys, splat is a segment sum, blur and slice are gathers. Two ways to sort the keys:

* packed (the fast one): every coordinate of a vertex key is r (mod d+1) for the same r, so a key
  is r plus d integers in the point set's bounding box, one mixed-radix number. When that box
  fits in 32 bits (natural images under the usual kernels need 20-31) the keys are sorted alone
  as one uint32 each, about 10x faster on CPU than a d-column sort that carries a permutation;
  each point finds its vertices by binary search instead.
* lexicographic: the d int32 columns plus the permutation; any range.

`build` (and `hcjax.ops.dense_crf`) pick packed whenever it fits. The number of distinct vertices
M is only known at run time; the arrays have a static `capacity`. The default capacity (d+1)·N
can never overflow. A smaller one is faster; if M exceeds it the output is NaN (never a
silently truncated filter) and `Lattice.overflow` says so.

The filter is linear in the values; its custom VJP is the exact transpose: the same lattice with
the blur directions in reverse order. Features get no gradient (the lattice is piecewise constant
in them).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Lattice(NamedTuple):
  """The lattice of one point set ([N, d] features); a pytree, so it passes through jit/vmap."""
  offsets: jax.Array      # int32 [N, d+1]: vertex index of each enclosing vertex
  weights: jax.Array      # float32 [N, d+1]: barycentric weights
  neighbours: jax.Array   # int32 [d+1, 2, C]: vertex index of the -/+ neighbour; C = missing
  num_vertices: jax.Array  # int32 []: distinct vertices M
  overflow: jax.Array     # bool []: M > C (outputs are NaN)


def scale_factors(d: int) -> np.ndarray:
  """Per-axis feature scale that makes the lattice blur a unit-std Gaussian (Adams et al. p.6)."""
  inv_std = np.float32(np.sqrt(2.0 / 3.0) * (d + 1))
  return np.array([1.0 / np.sqrt(float((i + 2) * (i + 1))) * inv_std for i in range(d)],
                  np.float32)


def slice_scale(d: int) -> float:
  """Krähenbühl's constant: the blurred lattice over-counts by 1 + 2^-d."""
  return float(np.float32(1.0) / (1.0 + np.float32(2.0) ** -d))


def default_capacity(num_points: int, d: int) -> int:
  return (d + 1) * num_points


def _round_half_away(x: jax.Array) -> jax.Array:
  """C's round(): pydensecrf rounds halves away from zero, jnp.round to even."""
  return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _enclosing_simplex(features: jax.Array) -> tuple[jax.Array, jax.Array]:
  """[N, d] features -> (keys int32 [N, d+1, d], barycentric weights float32 [N, d+1])."""
  n, d = features.shape
  scale = scale_factors(d)
  f = features.astype(jnp.float32)
  # Elevate onto the plane sum(x) = 0 of R^{d+1}, in the same order of float operations as C.
  elevated = [None] * (d + 1)
  sm = jnp.zeros((n,), jnp.float32)
  for j in range(d, 0, -1):
    cf = f[:, j - 1] * scale[j - 1]
    elevated[j] = sm - np.float32(j) * cf
    sm = sm + cf
  elevated[0] = sm
  elev = jnp.stack(elevated, axis=1)                                       # [N, d+1]
  down = np.float32(1.0 / (d + 1))
  rd = _round_half_away(down * elev)
  rem0 = rd * np.float32(d + 1)                                            # nearest 0-coloured point
  total = rd.astype(jnp.int32).sum(axis=1)
  # rank[i]: how many coordinates of (elev - rem0) exceed coordinate i (ties broken as C does).
  diff = elev - rem0
  i_idx = np.arange(d + 1)
  later = (i_idx[None, :] > i_idx[:, None])                               # [i, j]: j > i
  greater = jnp.where(later[None], diff[:, :, None] < diff[:, None, :],
                      diff[:, :, None] <= diff[:, None, :])
  greater = greater & (i_idx[None, :] != i_idx[:, None])[None]
  rank = greater.sum(axis=2).astype(jnp.int32) + total[:, None]
  # Bring the point back onto the plane.
  low, high = rank < 0, rank > d
  rank = jnp.where(low, rank + d + 1, jnp.where(high, rank - d - 1, rank))
  rem0 = jnp.where(low, rem0 + (d + 1), jnp.where(high, rem0 - (d + 1), rem0))
  # Barycentric coordinates (Adams et al. p.10), accumulated in C's order.
  value = (elev - rem0) * down                                             # [N, d+1]
  slots = jnp.arange(d + 2)
  bary = jnp.zeros((n, d + 2), jnp.float32)
  for i in range(d + 1):
    pos = (d - rank[:, i])[:, None]
    bary = bary + jnp.where(slots[None] == pos, value[:, i:i + 1], 0.0)
    bary = bary - jnp.where(slots[None] == pos + 1, value[:, i:i + 1], 0.0)
  bary = bary.at[:, 0].add(1.0 + bary[:, d + 1])
  weights = bary[:, :d + 1]
  # Vertex r of the simplex: rem0 + canonical offset (r, or r - d - 1 for the top d+1-r ranks).
  r = jnp.arange(d + 1)[None, :, None]                                    # [1, d+1, 1]
  rank_d = rank[:, None, :d]                                               # [N, 1, d]
  canonical = jnp.where(rank_d <= d - r, r, r - (d + 1))
  keys = rem0[:, None, :d].astype(jnp.int32) + canonical                   # [N, d+1, d]
  return keys, weights


def _lex_less(a: jax.Array, b: jax.Array) -> jax.Array:
  """Row-wise lexicographic a < b over the last axis."""
  less = jnp.zeros(a.shape[:-1], bool)
  equal = jnp.ones(a.shape[:-1], bool)
  for c in range(a.shape[-1]):
    less = less | (equal & (a[..., c] < b[..., c]))
    equal = equal & (a[..., c] == b[..., c])
  return less


def _find(table: jax.Array, count: jax.Array, queries: jax.Array) -> jax.Array:
  """Index of each query row in the sorted first `count` rows of table [C, d]; C if absent."""
  capacity = table.shape[0]
  lo = jnp.zeros(queries.shape[:-1], jnp.int32)
  hi = jnp.broadcast_to(count, queries.shape[:-1]).astype(jnp.int32)

  def halve(_, bounds):
    lo, hi = bounds
    active = lo < hi
    mid = (lo + hi) // 2
    less = _lex_less(table[jnp.minimum(mid, capacity - 1)], queries)
    return jnp.where(active & less, mid + 1, lo), jnp.where(active & ~less, mid, hi)

  lo, _ = jax.lax.fori_loop(0, int(np.ceil(np.log2(capacity + 1))), halve, (lo, hi))
  found = (lo < count) & jnp.all(table[jnp.minimum(lo, capacity - 1)] == queries, axis=-1)
  return jnp.where(found, lo, capacity)


class Vertices(NamedTuple):
  """The distinct lattice vertices of a point set, before any capacity is chosen."""
  offsets: jax.Array       # int32 [N, d+1]: vertex index (0 .. M-1) of each enclosing vertex
  weights: jax.Array       # float32 [N, d+1]: barycentric weights
  sorted_keys: jax.Array   # int32 [(d+1)·N, d]: every enclosing vertex's key, sorted
  first: jax.Array         # bool [(d+1)·N]: the first of its key in sorted order
  vertex: jax.Array        # int32 [(d+1)·N]: vertex index of each sorted key
  num_vertices: jax.Array  # int32 []: M


def _check_features(features: jax.Array) -> tuple[int, int]:
  """(N, d) of features [N, d]."""
  if features.ndim != 2 or features.shape[1] < 1:
    raise ValueError(f"features must be [N, d] with d >= 1, got shape {features.shape}")
  return features.shape


def _vertex_keys(features: jax.Array) -> tuple[int, int, jax.Array, jax.Array]:
  """Features [N, d] -> (N, d, every enclosing vertex's key int32 [(d+1)·N, d], weights [N, d+1])."""
  n, d = _check_features(features)
  keys, weights = _enclosing_simplex(jax.lax.stop_gradient(features))
  return n, d, keys.reshape(n * (d + 1), d), weights


def enumerate_vertices(features: jax.Array) -> Vertices:
  """Features [N, d] (already divided by the kernel widths) -> their distinct simplex vertices."""
  n, d, flat, weights = _vertex_keys(features)
  order = jnp.arange(n * (d + 1), dtype=jnp.int32)
  sorted_all = jax.lax.sort([flat[:, c] for c in range(d)] + [order], num_keys=d)
  sorted_keys = jnp.stack(sorted_all[:d], axis=1)
  first = jnp.concatenate([jnp.ones((1,), bool),
                           jnp.any(sorted_keys[1:] != sorted_keys[:-1], axis=1)])
  vertex = jnp.cumsum(first.astype(jnp.int32)) - 1
  offsets = jnp.zeros((n * (d + 1),), jnp.int32).at[sorted_all[d]].set(vertex, unique_indices=True)
  return Vertices(offsets=offsets.reshape(n, d + 1), weights=weights, sorted_keys=sorted_keys,
                  first=first, vertex=vertex, num_vertices=vertex[-1] + 1)


_PAD = np.uint32(0xFFFFFFFF)   # fills the packed table past its last key; never a key itself


class PackedVertices(NamedTuple):
  """The distinct lattice vertices as packed uint32 keys, before any capacity is chosen."""
  offsets: jax.Array       # int32 [N, d+1]: vertex index (0 .. M-1) of each enclosing vertex
  weights: jax.Array       # float32 [N, d+1]: barycentric weights
  table: jax.Array         # uint32 [(d+1)·N]: the M distinct packed keys sorted, then _PAD
  low: jax.Array           # int32 [d]: smallest multiple-of-(d+1) part of each coordinate, / (d+1)
  spans: jax.Array         # int32 [d]: its range, so packed = r + (d+1)·sum_c (q_c - low_c)·stride_c
  num_vertices: jax.Array  # int32 []: M
  fits: jax.Array          # bool []: the bounding box packs into 32 bits (if not, nothing is valid)


def _strides(spans: jax.Array) -> jax.Array:
  """Mixed-radix place values [d] (uint32; wraps only when the box does not fit)."""
  return jnp.concatenate([jnp.ones((1,), jnp.uint32),
                          jnp.cumprod(spans.astype(jnp.uint32))[:-1]])


def _pack(keys: jax.Array, low: jax.Array, spans: jax.Array) -> tuple[jax.Array, jax.Array]:
  """int32 keys [..., d] -> (uint32 packed keys [...], inside the box [...])."""
  d = keys.shape[-1]
  r = jnp.mod(keys[..., :1], d + 1)
  q = (keys - r) // (d + 1) - low
  inside = jnp.all((q >= 0) & (q < spans), axis=-1)
  code = jnp.sum(q.astype(jnp.uint32) * _strides(spans), axis=-1, dtype=jnp.uint32)
  return code * np.uint32(d + 1) + r[..., 0].astype(jnp.uint32), inside


def _unpack(packed: jax.Array, low: jax.Array, spans: jax.Array) -> jax.Array:
  """uint32 packed keys [...] -> int32 keys [..., d]."""
  d = low.shape[0]
  r = (packed % np.uint32(d + 1)).astype(jnp.int32)
  code = packed // np.uint32(d + 1)
  q = (code[..., None] // _strides(spans)) % spans.astype(jnp.uint32)
  return (q.astype(jnp.int32) + low) * (d + 1) + r[..., None]


def _lower_bound(table: jax.Array, count: jax.Array, queries: jax.Array) -> jax.Array:
  """First index i < count with table[i] >= query (count if none); table [C] sorted.

  A branchless binary search over the first `count` entries only: bit_length(count) steps,
  each a gather and one select on a single position array, so the padded tail is never touched
  and little memory moves per step.
  """
  count = jnp.asarray(count, jnp.int32)
  steps = 32 - jax.lax.clz(count)          # bit length: 2^steps > count, exactly (no float log2)
  last = table.shape[0] - 1

  def halve(i, pos):
    stride = jnp.left_shift(jnp.int32(1), steps - 1 - i)
    probe = pos + stride - 1
    less = (table[jnp.minimum(probe, last)] < queries) & (probe < count)
    return jnp.where(less, pos + stride, pos)

  return jax.lax.fori_loop(0, steps, halve, jnp.zeros(queries.shape, jnp.int32))


def enumerate_packed(features: jax.Array) -> PackedVertices:
  """Features [N, d] (already divided by the kernel widths) -> distinct vertices, packed keys."""
  n, d, flat, weights = _vertex_keys(features)
  q = (flat - jnp.mod(flat[:, :1], d + 1)) // (d + 1)
  low, high = q.min(axis=0), q.max(axis=0)
  spans = high - low + 1
  # Largest packed key + 1 = (d+1)·prod(spans); float32 with a margin decides whether it fits.
  size = np.float32(d + 1) * jnp.prod(spans.astype(jnp.float32))
  fits = size < np.float32(2.0 ** 32 * (1 - 1e-4))
  packed, _ = _pack(flat, low, spans)
  # Neighbouring points share most vertices: a key the previous point also has is sorted as
  # _PAD, which sorts faster and leaves every distinct key present once at least.
  per_point = packed.reshape(n, d + 1)
  seen = jnp.any(per_point[1:, :, None] == per_point[:-1, None, :], axis=2)
  ordered = jax.lax.sort(jnp.where(jnp.concatenate([jnp.zeros((1, d + 1), bool), seen]),
                                   _PAD, per_point).reshape(-1))
  first = jnp.concatenate([jnp.ones((1,), bool), ordered[1:] != ordered[:-1]]) & (ordered != _PAD)
  vertex = jnp.cumsum(first.astype(jnp.int32)) - 1
  table = jnp.full((n * (d + 1),), _PAD, jnp.uint32).at[
      jnp.where(first, vertex, n * (d + 1))].set(ordered, mode="drop", unique_indices=True)
  num_vertices = vertex[-1] + 1
  offsets = _lower_bound(table, num_vertices, packed)
  return PackedVertices(offsets=offsets.reshape(n, d + 1), weights=weights, table=table, low=low,
                        spans=spans, num_vertices=num_vertices, fits=fits)


def _neighbour_steps(d: int) -> np.ndarray:
  """[d+1, d]: along direction j all coordinates move -1 except j, which moves +d."""
  step = np.full((d + 1, d), -1, np.int32)
  for j in range(d):
    step[j, j] = d
  return step


def _packed_lattice(vertices: PackedVertices, capacity: int) -> Lattice:
  d = vertices.low.shape[0]
  count = jnp.minimum(vertices.num_vertices, capacity)
  size = vertices.table.shape[0]
  table = (vertices.table[:capacity] if capacity <= size else
           jnp.concatenate([vertices.table, jnp.full((capacity - size,), _PAD, jnp.uint32)]))
  keys = _unpack(table, vertices.low, vertices.spans)                         # [C, d]
  step = _neighbour_steps(d)
  moved = jnp.stack([keys[None] + step[:, None], keys[None] - step[:, None]], axis=1)
  queries, inside = _pack(moved, vertices.low, vertices.spans)                # [d+1, 2, C]
  at = jnp.minimum(_lower_bound(table, count, queries), capacity - 1)
  idx = jnp.arange(capacity)
  found = inside & (at < count) & (table[at] == queries) & (idx < count)
  return Lattice(offsets=jnp.minimum(vertices.offsets, capacity), weights=vertices.weights,
                 neighbours=jnp.where(found, at, capacity), num_vertices=vertices.num_vertices,
                 overflow=(vertices.num_vertices > capacity) | ~vertices.fits)


def lattice(vertices: Vertices | PackedVertices, capacity: int) -> Lattice:
  """The blur neighbourhoods of the first `capacity` vertices; NaN outputs if M > capacity."""
  if capacity < 1:
    raise ValueError(f"capacity must be >= 1, got {capacity}")
  if isinstance(vertices, PackedVertices):
    return _packed_lattice(vertices, capacity)
  d = vertices.sorted_keys.shape[1]
  count = jnp.minimum(vertices.num_vertices, capacity)
  # Unique keys, sorted; unused rows hold the largest key so the table stays sorted.
  table = jnp.full((capacity, d), jnp.iinfo(jnp.int32).max, jnp.int32)
  table = table.at[jnp.where(vertices.first, vertices.vertex, capacity)].set(
      vertices.sorted_keys, mode="drop")
  # Neighbours along direction j: all coordinates -1 except j at +d (and the opposite).
  step = _neighbour_steps(d)
  queries = jnp.stack([table[None] + step[:, None], table[None] - step[:, None]], axis=1)
  neighbours = _find(table, count, queries)                                # [d+1, 2, C]
  idx = jnp.arange(capacity)
  neighbours = jnp.where(idx[None, None] < count, neighbours, capacity)
  return Lattice(offsets=jnp.minimum(vertices.offsets, capacity), weights=vertices.weights,
                 neighbours=neighbours, num_vertices=vertices.num_vertices,
                 overflow=vertices.num_vertices > capacity)


PACKINGS = ("auto", "packed", "lexicographic")


def build(features: jax.Array, capacity: int | None = None, packing: str = "auto") -> Lattice:
  """The lattice of features [N, d]; capacity None = (d+1)·N, which can never overflow.

  packing: "packed" (fast; NaN outputs if the keys do not fit 32 bits), "lexicographic" (any
  range), or "auto": packed when it fits, chosen at run time (under jax.vmap both run).
  """
  if packing not in PACKINGS:
    raise ValueError(f"packing must be one of {PACKINGS}, got {packing!r}")
  n, d = _check_features(features)
  capacity = default_capacity(n, d) if capacity is None else int(capacity)
  if packing == "lexicographic":
    return lattice(enumerate_vertices(features), capacity)
  packed = enumerate_packed(features)
  if packing == "packed":
    return lattice(packed, capacity)
  return jax.lax.cond(packed.fits, lambda: lattice(packed, capacity),
                      lambda: lattice(enumerate_vertices(features), capacity))


def _splat(lattice: Lattice, values: jax.Array) -> jax.Array:
  n, k = lattice.offsets.shape
  capacity = lattice.neighbours.shape[-1]
  data = lattice.weights[:, :, None] * values[:, None, :]                  # [N, d+1, L]
  return jax.ops.segment_sum(data.reshape(n * k, -1), lattice.offsets.reshape(-1),
                             num_segments=capacity + 1)                    # row C stays 0


def _blur(lattice: Lattice, grid: jax.Array, reverse: bool) -> jax.Array:
  capacity = lattice.neighbours.shape[-1]
  directions = range(lattice.neighbours.shape[0])
  for j in (reversed(directions) if reverse else directions):
    n1, n2 = lattice.neighbours[j, 0], lattice.neighbours[j, 1]
    blurred = grid[:capacity] + 0.5 * (grid[n1] + grid[n2])
    grid = jnp.concatenate([blurred, grid[capacity:]], axis=0)
  return grid


def _slice(lattice: Lattice, grid: jax.Array) -> jax.Array:
  d = lattice.offsets.shape[1] - 1
  out = 0.0
  for r in range(d + 1):  # d+1 row gathers: far faster on CPU than one [N, d+1, L] gather
    out = out + lattice.weights[:, r:r + 1] * grid[lattice.offsets[:, r]]
  out = out * slice_scale(d)
  return jnp.where(lattice.overflow, jnp.nan, out)


def _apply(lattice: Lattice, values: jax.Array, reverse: bool) -> jax.Array:
  return _slice(lattice, _blur(lattice, _splat(lattice, values), reverse))


@jax.custom_vjp
def _filter(lattice: Lattice, values: jax.Array) -> jax.Array:
  return _apply(lattice, values, reverse=False)


def _filter_fwd(lattice, values):
  return _apply(lattice, values, reverse=False), lattice


def _filter_bwd(lattice, g):
  zero = jax.tree.map(
      lambda x: (np.zeros(x.shape, jax.dtypes.float0) if not jnp.issubdtype(x.dtype, jnp.floating)
                 else jnp.zeros_like(x)), lattice)
  return zero, _apply(lattice, g, reverse=True)


_filter.defvjp(_filter_fwd, _filter_bwd)


def filter(lattice: Lattice, values: jax.Array, *, transpose: bool = False) -> jax.Array:  # pylint: disable=redefined-builtin
  """Gaussian-filters values [N, L] over the lattice's points -> [N, L].

  transpose=True applies the exact transpose (the blur directions reversed).
  """
  if values.ndim != 2 or values.shape[0] != lattice.offsets.shape[0]:
    raise ValueError(f"values must be [N={lattice.offsets.shape[0]}, L], got {values.shape}")
  values = values.astype(jnp.float32)
  if transpose:
    return _apply(lattice, values, reverse=True)
  return _filter(lattice, values)


# --- slow reference ---------------------------------------------------------------------------

def reference_filter(features: np.ndarray, values: np.ndarray, *, reverse: bool = False
                     ) -> np.ndarray:
  """The same lattice with a Python dict as the hash table and plain loops (small N only)."""
  features = np.asarray(features, np.float32)
  values = np.asarray(values, np.float64)
  n, d = features.shape
  keys, weights = jax.device_get(jax.jit(_enclosing_simplex)(features))
  index: dict[tuple[int, ...], int] = {}
  for p in range(n):
    for r in range(d + 1):
      index.setdefault(tuple(int(v) for v in keys[p, r]), len(index))
  grid = np.zeros((len(index), values.shape[1]))
  for p in range(n):
    for r in range(d + 1):
      grid[index[tuple(int(v) for v in keys[p, r])]] += weights[p, r] * values[p]
  vertices = list(index)
  for j in (range(d, -1, -1) if reverse else range(d + 1)):
    new = grid.copy()
    for m, key in enumerate(vertices):
      step = np.full(d, -1)
      if j < d:
        step[j] = d
      for neighbour in (tuple(np.array(key) + step), tuple(np.array(key) - step)):
        if neighbour in index:
          new[m] += 0.5 * grid[index[neighbour]]
    grid = new
  out = np.zeros_like(values)
  for p in range(n):
    for r in range(d + 1):
      out[p] += weights[p, r] * grid[index[tuple(int(v) for v in keys[p, r])]]
  return out * slice_scale(d)

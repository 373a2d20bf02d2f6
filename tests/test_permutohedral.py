"""The permutohedral lattice against its slow dict-based reference, the exact Gaussian and itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hcjax.ops import permutohedral


def _points(n, d, seed=0, spread=2.0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)) * spread).astype(np.float32), rng


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_filter_equals_slow_reference(d):
  features, rng = _points(200, d, seed=d)
  values = rng.normal(size=(200, 4)).astype(np.float32)
  lattice = jax.jit(permutohedral.build)(features)
  for transpose in (False, True):
    out = permutohedral.filter(lattice, jnp.asarray(values), transpose=transpose)
    ref = permutohedral.reference_filter(features, values, reverse=transpose)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  assert 1 <= int(lattice.num_vertices) <= (d + 1) * 200 and not bool(lattice.overflow)


def test_filter_is_symmetric_positive_and_approximates_the_gaussian():
  features, rng = _points(150, 3)
  lattice = permutohedral.build(jnp.asarray(features))
  # The lattice's implied matrix: filter the identity.
  matrix = np.asarray(permutohedral.filter(lattice, jnp.eye(150)))            # [N, N] = K^T
  transposed = np.asarray(permutohedral.filter(lattice, jnp.eye(150), transpose=True))
  np.testing.assert_allclose(matrix, transposed.T, atol=1e-5)
  assert matrix.min() >= 0
  exact = np.exp(-0.5 * ((features[:, None] - features[None]) ** 2).sum(-1))
  # An approximation with its own scale: compare shapes of the filters, not values.
  corr = np.corrcoef(matrix.ravel(), exact.ravel())[0, 1]
  assert corr > 0.95, corr


def test_vjp_is_the_exact_transpose():
  features, rng = _points(120, 5)
  lattice = permutohedral.build(jnp.asarray(features))
  x = jnp.asarray(rng.normal(size=(120, 3)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(120, 3)), jnp.float32)
  out, vjp = jax.vjp(lambda v: permutohedral.filter(lattice, v), x)
  (grad,) = vjp(y)
  np.testing.assert_allclose(grad, permutohedral.filter(lattice, y, transpose=True), atol=1e-6)
  # <F x, y> == <x, F^T y>
  np.testing.assert_allclose(jnp.vdot(out, y), jnp.vdot(x, grad), rtol=1e-5)
  # ... and what plain autodiff of the forward computation would give.
  auto = jax.grad(lambda v: jnp.vdot(permutohedral._apply(lattice, v, False), y))(x)
  np.testing.assert_allclose(grad, auto, atol=1e-5)


def test_vmap_over_a_batch_of_point_sets():
  feats = np.stack([_points(80, 2, seed=s)[0] for s in range(3)])
  values = np.random.default_rng(9).normal(size=(3, 80, 2)).astype(np.float32)

  def one(f, v):
    return permutohedral.filter(permutohedral.build(f, capacity=240), v)

  batched = jax.jit(jax.vmap(one))(feats, values)
  for i in range(3):
    np.testing.assert_allclose(batched[i], permutohedral.reference_filter(feats[i], values[i]),
                               rtol=1e-5, atol=1e-5)


def test_too_small_a_capacity_gives_nan_never_a_truncated_filter():
  features, rng = _points(100, 4, spread=5.0)
  values = jnp.asarray(rng.normal(size=(100, 2)), jnp.float32)
  full = permutohedral.build(jnp.asarray(features))
  m = int(full.num_vertices)
  exact_fit = permutohedral.build(jnp.asarray(features), capacity=m)
  assert not bool(exact_fit.overflow)
  np.testing.assert_allclose(permutohedral.filter(exact_fit, values),
                             permutohedral.filter(full, values), rtol=1e-6, atol=1e-6)
  small = permutohedral.build(jnp.asarray(features), capacity=m - 1)
  assert bool(small.overflow)
  assert np.all(np.isnan(permutohedral.filter(small, values)))


def test_features_get_no_gradient_and_bad_shapes_are_refused():
  features, rng = _points(30, 2)
  values = jnp.asarray(rng.normal(size=(30, 2)), jnp.float32)
  grad = jax.grad(lambda f: permutohedral.filter(permutohedral.build(f), values).sum())(
      jnp.asarray(features))
  np.testing.assert_array_equal(grad, 0.0)
  with pytest.raises(ValueError, match=r"\[N, d\]"):
    permutohedral.build(jnp.zeros((5,)))
  with pytest.raises(ValueError, match="values must be"):
    permutohedral.filter(permutohedral.build(jnp.asarray(features)), jnp.zeros((29, 2)))
  with pytest.raises(ValueError, match="capacity"):
    permutohedral.build(jnp.asarray(features), capacity=0)


@pytest.mark.parametrize("d", [2, 5])
def test_packed_and_lexicographic_keys_give_the_same_lattice(d):
  features, rng = _points(300, d, seed=10 + d)
  values = jnp.asarray(rng.normal(size=(300, 3)), jnp.float32)
  packed = permutohedral.enumerate_packed(jnp.asarray(features))
  assert bool(packed.fits)
  lex = permutohedral.build(jnp.asarray(features), packing="lexicographic")
  for lattice in (permutohedral.build(jnp.asarray(features), packing="packed"),
                  jax.jit(permutohedral.build)(features)):
    assert int(lattice.num_vertices) == int(lex.num_vertices) == int(packed.num_vertices)
    assert not bool(lattice.overflow)
    for transpose in (False, True):
      np.testing.assert_allclose(permutohedral.filter(lattice, values, transpose=transpose),
                                 permutohedral.filter(lex, values, transpose=transpose),
                                 rtol=1e-5, atol=1e-5)
  # Every packed key unpacks to its vertex's key; the table is sorted and distinct.
  m = int(packed.num_vertices)
  table = np.asarray(packed.table)
  assert np.all(np.diff(table[:m].astype(np.int64)) > 0) and np.all(table[m:] == 0xFFFFFFFF)
  keys, _ = permutohedral._enclosing_simplex(jnp.asarray(features))
  unpacked = permutohedral._unpack(packed.table[packed.offsets], packed.low, packed.spans)
  np.testing.assert_array_equal(unpacked, keys)


def test_keys_too_wide_to_pack_are_loud_or_take_the_lexicographic_sort():
  features, rng = _points(200, 5, seed=3, spread=3000.0)
  values = rng.normal(size=(200, 2)).astype(np.float32)
  assert not bool(permutohedral.enumerate_packed(jnp.asarray(features)).fits)
  packed = permutohedral.build(jnp.asarray(features), packing="packed")
  assert bool(packed.overflow) and np.all(np.isnan(permutohedral.filter(packed, values)))
  auto = jax.jit(permutohedral.build)(features)
  assert not bool(auto.overflow)
  np.testing.assert_allclose(permutohedral.filter(auto, jnp.asarray(values)),
                             permutohedral.reference_filter(features, values), rtol=1e-5,
                             atol=1e-5)
  with pytest.raises(ValueError, match="packing"):
    permutohedral.build(jnp.asarray(features), packing="hash")


def test_lower_bound_equals_numpy_searchsorted():
  rng = np.random.default_rng(0)
  search = jax.jit(permutohedral._lower_bound)
  for count in (0, 1, 2, 7, 64, 1000):
    table = np.full(1200, 0xFFFFFFFF, np.uint32)
    table[:count] = np.sort(rng.choice(2 ** 31, size=count, replace=False)).astype(np.uint32)
    queries = np.concatenate([table[:count], rng.integers(0, 2 ** 32 - 1, 500, dtype=np.uint32),
                              np.array([0, 2 ** 32 - 2], np.uint32)])
    got = search(jnp.asarray(table), jnp.int32(count), jnp.asarray(queries))
    np.testing.assert_array_equal(got, np.searchsorted(table[:count], queries, side="left"))
  # A full table, and counts just past a power of two, where a float32 log2 would round the
  # number of steps down and miss the last key.
  for size in (1, 2, 3, 4, 2 ** 21 + 1, 2 ** 22 + 1):
    table = (np.arange(size, dtype=np.uint32) * 3 + 1)
    queries = np.concatenate([table[-3:], table[-1:] + 1, table[:1] - 1])
    got = search(jnp.asarray(table), jnp.int32(size), jnp.asarray(queries))
    np.testing.assert_array_equal(got, np.searchsorted(table, queries, side="left"))

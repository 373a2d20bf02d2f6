"""The CPU-fast convolution weight gradient against XLA's own and against torch."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hcjax.ops import convolution


def _native(x, w, padding, strides=(1, 1), dilation=None):
  return jax.lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("batch,height,width,cin,cout,kernel,padding", [
    (2, 9, 11, 3, 4, (3, 3), "SAME"),
    (3, 12, 7, 5, 2, (5, 5), "SAME"),
    (1, 10, 10, 4, 6, (3, 3), "VALID"),
    (2, 8, 13, 2, 3, (1, 3), ((0, 0), (2, 1))),
    (2, 16, 5, 3, 3, (5, 2), ((3, 0), (0, 1))),
])
def test_gradients_equal_xla_native(batch, height, width, cin, cout, kernel, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, height, width, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=kernel + (cin, cout)), jnp.float32)
  fast = lambda x, w: convolution.conv_general_dilated(x, w, (1, 1), padding,
                                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
  out = fast(x, w)
  np.testing.assert_array_equal(out, _native(x, w, padding))
  g = jnp.asarray(rng.normal(size=out.shape), jnp.float32)
  ours = jax.jit(lambda x, w: jax.vjp(fast, x, w)[1](g))(x, w)
  theirs = jax.vjp(lambda x, w: _native(x, w, padding), x, w)[1](g)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernels", ["1", "0"])
@pytest.mark.parametrize("shape,kernel,strides,padding", [
    ((2, 13, 11, 3), (7, 7), (2, 2), "SAME"),
    ((1, 9, 10, 17), (3, 2), (2, 3), ((1, 0), (0, 2))),
    ((2, 8, 8, 6), (2, 2), (3, 3), "VALID"),
])
def test_strided_gradients_equal_xla_native(monkeypatch, kernels, shape, kernel, strides,
                                            padding):
  """With the compiled kernels and with the chunked GEMMs (HCJAX_CPU_KERNELS=0)."""
  monkeypatch.setenv("HCJAX_CPU_KERNELS", kernels)
  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  w = jnp.asarray(rng.normal(size=kernel + (shape[-1], 5)), jnp.float32)
  fast = lambda x, w: convolution.conv_general_dilated(x, w, strides, padding,
                                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
  out = fast(x, w)
  np.testing.assert_array_equal(out, _native(x, w, padding, strides))
  g = jnp.asarray(rng.normal(size=out.shape), jnp.float32)
  ours = jax.jit(lambda x, w: jax.vjp(fast, x, w)[1](g))(x, w)
  theirs = jax.vjp(lambda x, w: _native(x, w, padding, strides), x, w)[1](g)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_weight_gradient_equals_torch_and_chunks_do_not_matter(monkeypatch):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 20, 18, 4)).astype(np.float32)
  g = rng.normal(size=(3, 20, 18, 5)).astype(np.float32)
  ours = convolution.weight_gradient(jnp.asarray(x), jnp.asarray(g), (5, 5), ((2, 2), (2, 2)))
  theirs = torch.nn.grad.conv2d_weight(torch.from_numpy(x).permute(0, 3, 1, 2), (5, 4, 5, 5),
                                       torch.from_numpy(g).permute(0, 3, 1, 2), padding=2)
  np.testing.assert_allclose(ours, theirs.permute(2, 3, 1, 0).numpy(), rtol=1e-4, atol=1e-4)
  monkeypatch.setattr(convolution, "_CHUNK_ROWS", 1)      # many small chunks, a ragged last one
  chunked = convolution.weight_gradient(jnp.asarray(x), jnp.asarray(g), (5, 5), ((2, 2), (2, 2)))
  np.testing.assert_allclose(chunked, ours, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="does not match"):
    convolution.weight_gradient(jnp.asarray(x), jnp.asarray(g[:, 1:]), (5, 5), ((2, 2), (2, 2)))


def test_flax_conv_drop_in_and_fallbacks():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(2, 10, 12, 3)), jnp.float32)
  for kwargs in (dict(kernel_size=(3, 3)), dict(kernel_size=(3, 3), strides=2),
                 dict(kernel_size=(3, 3), kernel_dilation=2), dict(kernel_size=(1, 1)),
                 dict(kernel_size=(3, 3), feature_group_count=3)):
    fast = nn.Conv(6, conv_general_dilated=convolution.conv_general_dilated, **kwargs)
    plain = nn.Conv(6, **kwargs)
    params = plain.init(jax.random.PRNGKey(0), x)
    loss = lambda p, m: (m.apply(p, x) ** 2).sum()
    np.testing.assert_array_equal(fast.apply(params, x), plain.apply(params, x))
    for a, b in zip(jax.tree.leaves(jax.grad(loss)(params, fast)),
                    jax.tree.leaves(jax.grad(loss)(params, plain))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_a_batch_sharded_weight_gradient_is_reduced_not_gathered():
  from jax.sharding import AxisType, NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top
  mesh = jax.make_mesh((len(jax.devices()),), ("data",), axis_types=(AxisType.Auto,))
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  rng = np.random.default_rng(3)
  batch = 2 * len(jax.devices())
  x = rng.normal(size=(batch, 10, 12, 4)).astype(np.float32)
  g = rng.normal(size=(batch, 10, 12, 6)).astype(np.float32)
  fn = jax.jit(lambda x, g: convolution.weight_gradient(x, g, (3, 3), ((1, 1), (1, 1))))
  args = (jax.device_put(x, sharding), jax.device_put(g, sharding))
  np.testing.assert_allclose(fn(*args), fn(x, g), rtol=1e-5, atol=1e-4)
  text = fn.lower(*args).compile().as_text()
  assert "all-gather" not in text and "all-reduce" in text


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.complex64])
def test_low_precision_and_complex_inputs(dtype):
  """bfloat16 takes the fast path (float32 accumulation); complex falls back to XLA's own."""
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(2, 7, 9, 3)) + (1j * rng.normal(size=(2, 7, 9, 3))
                                                    if dtype == jnp.complex64 else 0), dtype)
  w = jnp.asarray(rng.normal(size=(3, 3, 3, 2)) + (1j * rng.normal(size=(3, 3, 3, 2))
                                                    if dtype == jnp.complex64 else 0), dtype)
  fast = lambda x, w: convolution.conv_general_dilated(x, w, (1, 1), "SAME",
                                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
  g = jnp.ones(fast(x, w).shape, dtype)
  ours = jax.jit(lambda x, w: jax.vjp(fast, x, w)[1](g))(x, w)
  theirs = jax.vjp(lambda x, w: _native(x, w, "SAME"), x, w)[1](g)
  for a, b in zip(ours, theirs):
    assert a.dtype == b.dtype == dtype
    tol = 5e-2 if dtype == jnp.bfloat16 else 1e-5
    np.testing.assert_allclose(np.asarray(a, np.complex64), np.asarray(b, np.complex64),
                               rtol=tol, atol=tol * 10)
  empty = jnp.zeros((0, 5, 5, 3), jnp.float32)
  assert fast(empty, jnp.ones((3, 3, 3, 2))).shape == (0, 5, 5, 2)

"""The compiled convolution kernels (csrc/conv2d.cc) against XLA's convolutions and torch's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from hcjax.ops import convolution, cpu_kernels

_NHWC = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(autouse=True)
def _require_kernels():
  if not cpu_kernels.available():
    pytest.skip(f"CPU kernels unavailable: {cpu_kernels.unavailable_reason()}")


def _xla(x, w, pads):
  return jax.lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_NHWC,
                                      precision="highest")


def _fast(x, w, padding="SAME"):
  return convolution.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


def _close(ours, theirs, tol=2e-5):
  """Equal up to float32 rounding, relative to the largest magnitude."""
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  assert ours.shape == theirs.shape
  scale = max(float(np.abs(theirs).max()), 1e-6)
  assert float(np.abs(ours - theirs).max()) <= tol * scale


# (batch, height, width, in, out, kernel, pads): channels off the 4/8/16-lane vectors, one-pixel
# images, padding past the kernel (whole output rows and columns see only zeros), one-sided.
SHAPES = [
    (2, 9, 11, 16, 16, (3, 3), ((1, 1), (1, 1))),
    (1, 7, 13, 17, 33, (5, 5), ((2, 2), (2, 2))),
    (3, 5, 1, 70, 20, (3, 3), ((1, 1), (1, 1))),
    (2, 1, 9, 3, 64, (1, 5), ((0, 0), (2, 2))),
    (1, 6, 8, 130, 5, (3, 2), ((3, 2), (0, 4))),
    (2, 8, 19, 24, 100, (5, 3), ((0, 0), (0, 0))),
    (1, 4, 4, 1, 1, (2, 2), ((1, 0), (0, 1))),
]


@pytest.mark.parametrize("batch,height,width,cin,cout,kernel,pads", SHAPES)
def test_kernels_equal_xla(batch, height, width, cin, cout, kernel, pads):
  rng = np.random.default_rng(sum(kernel) + cin + cout)
  x = jnp.asarray(rng.standard_normal((batch, height, width, cin)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((*kernel, cin, cout)), jnp.float32)
  expected = _xla(x, w, pads)
  _close(jax.jit(convolution._kernel_forward, static_argnums=2)(x, w, pads), expected)
  g = jnp.asarray(rng.standard_normal(expected.shape), jnp.float32)
  expected_dw = jax.vjp(lambda w: _xla(x, w, pads), w)[1](g)[0]
  dw = jax.jit(lambda x, g: convolution._kernel_weight_gradient(x, g, kernel, pads, None))(x, g)
  _close(dw, expected_dw)


def test_a_differentiated_conv_runs_the_kernels_and_a_plain_one_does_not():
  x = jax.ShapeDtypeStruct((2, 8, 8, 16), jnp.float32)
  w = jax.ShapeDtypeStruct((3, 3, 16, 32), jnp.float32)
  loss = lambda x, w: (_fast(x, w) ** 2).sum()
  text = jax.jit(jax.grad(loss, (0, 1))).lower(x, w).as_text()
  assert text.count("hcjax_conv2d_forward") == 2          # forward pass and input gradient
  assert "hcjax_conv2d_weight_gradient" in text
  assert "hcjax_conv2d" not in jax.jit(loss).lower(x, w).as_text()
  few = jax.ShapeDtypeStruct((3, 3, 16, 3), jnp.float32)   # 3 outputs: XLA's forward passes
  text = jax.jit(jax.grad(loss, (0, 1))).lower(x, few).as_text()
  assert "hcjax_conv2d_forward" not in text and "hcjax_conv2d_weight_gradient" in text


def test_where_the_kernels_would_be_slower_xla_computes_the_weight_gradient():
  """VGG's fc6 (a 392 MiB weight: the kernel's per-thread sums would not fit), a bfloat16
  strided conv, and a strided conv with no input channels (lax's own result) stay XLA's."""
  loss = lambda strides: lambda x, w: (convolution.conv_general_dilated(
      x, w, strides, "SAME", dimension_numbers=_NHWC) ** 2).sum()
  grad = lambda strides: jax.jit(jax.grad(loss(strides), (0, 1)))
  fc6 = (jax.ShapeDtypeStruct((2, 7, 7, 512), jnp.float32),
         jax.ShapeDtypeStruct((7, 7, 512, 4096), jnp.float32))
  text = grad((1, 1)).lower(*fc6).as_text()
  assert "hcjax_conv2d_forward" in text and "hcjax_conv2d_weight_gradient" not in text
  half = (jax.ShapeDtypeStruct((2, 40, 40, 16), jnp.bfloat16),
          jax.ShapeDtypeStruct((3, 3, 16, 16), jnp.bfloat16))
  assert "hcjax_conv2d" not in grad((2, 2)).lower(*half).as_text()
  dx, dw = grad((2, 2))(jnp.ones((1, 5, 40, 0)), jnp.ones((3, 3, 0, 2)))
  assert dx.shape == (1, 5, 40, 0) and dw.shape == (3, 3, 0, 2)


def test_training_passes_equal_torch():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(5)
  x = rng.standard_normal((3, 12, 10, 20)).astype(np.float32)
  w = rng.standard_normal((5, 5, 20, 24)).astype(np.float32) * 0.1
  g = rng.standard_normal((3, 12, 10, 24)).astype(np.float32)
  out, vjp = jax.vjp(jax.jit(_fast), jnp.asarray(x), jnp.asarray(w))
  dx, dw = vjp(jnp.asarray(g))
  tx = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()
  tw = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous().requires_grad_()
  t_out = torch.nn.functional.conv2d(tx, tw, padding=2)
  t_out.backward(torch.from_numpy(g).permute(0, 3, 1, 2))
  _close(out, t_out.detach().permute(0, 2, 3, 1).numpy())
  _close(dx, tx.grad.permute(0, 2, 3, 1).numpy())
  _close(dw, tw.grad.permute(2, 3, 1, 0).numpy())


@pytest.mark.parametrize("shape,kernel,strides,pad,kernel_used", [
    ((2, 17, 33, 3), (7, 7), (2, 2), 3, True),      # a ResNet stem, odd sizes
    ((2, 12, 33, 16), (3, 3), (2, 2), 1, True),     # a ResNet stage's first conv
    ((1, 13, 36, 5), (3, 3), (3, 2), 0, True),      # the last output row takes the last input row
    ((2, 9, 50, 4), (2, 2), (3, 3), 1, True),       # strides past the kernel
    ((2, 12, 11, 16), (3, 3), (2, 2), 1, False),    # output rows too short to pay: XLA's
])
def test_strided_weight_gradient_is_the_space_to_depth_kernel_and_equals_torch(
    shape, kernel, strides, pad, kernel_used):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(9)
  x = rng.standard_normal(shape).astype(np.float32)
  w = rng.standard_normal((*kernel, shape[-1], 24)).astype(np.float32) * 0.1
  conv = lambda x, w: convolution.conv_general_dilated(x, w, strides, [(pad, pad)] * 2,
                                                       dimension_numbers=_NHWC)
  out = conv(x, w)
  g = rng.standard_normal(out.shape).astype(np.float32)
  grads = jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g))
  assert ("hcjax_conv2d_weight_gradient" in grads.lower(x, w, g).as_text()) == kernel_used
  assert "hcjax_conv2d" not in jax.jit(conv).lower(x, w).as_text()
  dx, dw = grads(x, w, g)
  tx = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()
  tw = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous().requires_grad_()
  t_out = torch.nn.functional.conv2d(tx, tw, stride=strides, padding=pad)
  t_out.backward(torch.from_numpy(g).permute(0, 3, 1, 2))
  _close(out, t_out.detach().permute(0, 2, 3, 1).numpy())
  _close(dx, tx.grad.permute(0, 2, 3, 1).numpy())
  _close(dw, tw.grad.permute(2, 3, 1, 0).numpy())


@pytest.mark.parametrize("axes", [("data",), ("data", "fsdp")])
def test_a_batch_sharded_step_is_computed_per_device_and_reduced(axes):
  n = len(jax.devices())
  mesh = jax.make_mesh((n,) if len(axes) == 1 else (n // 2, 2), axes,
                       axis_types=(AxisType.Auto,) * len(axes))
  sharding = NamedSharding(mesh, PartitionSpec(axes))
  rng = np.random.default_rng(6)
  x = rng.standard_normal((2 * len(jax.devices()), 8, 9, 16)).astype(np.float32)
  w = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
  grads = jax.jit(jax.grad(lambda x, w: (_fast(x, w) ** 2).sum(), (0, 1)))
  sharded = grads(jax.device_put(x, sharding), w)
  assert sharded[0].sharding.is_equivalent_to(sharding, 4)
  for a, b in zip(sharded, grads(x, w)):
    _close(a, b)
  text = grads.lower(jax.device_put(x, sharding), w).compile().as_text()
  assert "hcjax_conv2d_weight_gradient" in text
  assert "all-gather" not in text and "all-reduce" in text


def test_an_unevenly_sharded_batch_gives_the_true_gradient():
  """XLA pads uneven shards; the summing kernel must not see the padding rows (it then runs on
  the gathered batch)."""
  mesh = jax.make_mesh((len(jax.devices()),), ("data",), axis_types=(AxisType.Auto,))
  rng = np.random.default_rng(8)
  x = rng.standard_normal((len(jax.devices()), 6, 8, 16)).astype(np.float32)
  w = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)
  loss = lambda conv: lambda w, x: (conv(x[:6], w) ** 2).sum()
  sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
  ours = jax.jit(jax.grad(loss(_fast)))(w, sharded)
  _close(ours, jax.grad(loss(lambda x, w: _xla(x, w, "SAME")))(w, x))


def test_weight_gradient_is_bitwise_reproducible():
  """Rows are summed in a fixed order, whichever thread takes them: a resumed run must repeat
  an uninterrupted one bit for bit."""
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.standard_normal((4, 40, 24, 16)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((4, 40, 24, 32)), jnp.float32)
  dw = jax.jit(lambda x, g: convolution._kernel_weight_gradient(x, g, (3, 3), ((1, 1),) * 2,
                                                                None))
  first = np.asarray(dw(x, g))
  for _ in range(10):
    np.testing.assert_array_equal(np.asarray(dw(x, g)), first)


@pytest.mark.parametrize("strides,width", [((1, 1), 7), ((2, 2), 33)])
def test_per_example_and_second_order_gradients(strides, width):
  """vmap takes the XLA path (the partitioned call cannot be batched); a gradient of the
  gradient differentiates the XLA path."""
  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.standard_normal((3, 6, width, 16)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 16, 16)) * 0.1, jnp.float32)
  loss = lambda conv: lambda w, x: (conv(x[None], w) ** 2).sum()
  conv = lambda op: lambda x, w: op(x, w, strides, "SAME", dimension_numbers=_NHWC)
  fast, xla = loss(conv(convolution.conv_general_dilated)), loss(conv(jax.lax.conv_general_dilated))
  per_example = jax.jit(jax.vmap(jax.grad(fast), (None, 0)))(w, x)
  _close(per_example, jnp.stack([jax.grad(xla)(w, x[i]) for i in range(3)]))
  norm = lambda f: lambda w: (jax.grad(f)(w, x[0]) ** 2).sum()
  _close(jax.jit(jax.grad(norm(fast)))(w), jax.grad(norm(xla))(w), tol=1e-4)


_ISA_CHECK = """
import jax, jax.numpy as jnp, numpy as np
from hcjax.ops import convolution, cpu_kernels
assert cpu_kernels.available(), cpu_kernels.unavailable_reason()   # registers the targets
rng = np.random.default_rng(0)
for batch, height, width, cin, cout, kernel, pads in {shapes!r}:
  x = jnp.asarray(rng.standard_normal((batch, height, width, cin)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((*kernel, cin, cout)), jnp.float32)
  out = jax.lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers={nhwc!r},
                                     precision="highest")
  g = jnp.asarray(rng.standard_normal(out.shape), jnp.float32)
  dw = jax.vjp(lambda w: jax.lax.conv_general_dilated(
      x, w, (1, 1), pads, dimension_numbers={nhwc!r}, precision="highest"), w)[1](g)[0]
  for ours, theirs in ((convolution._kernel_forward(x, w, pads), out),
      (convolution._kernel_weight_gradient(x, g, kernel, pads, None), dw)):
    err = float(jnp.abs(ours - theirs).max() / jnp.abs(theirs).max())
    assert err < 2e-5, (batch, height, width, cin, cout, kernel, pads, err)
print("ok")
"""


@pytest.mark.parametrize("isa", ["avx2", "portable"])
def test_narrower_vector_paths_equal_xla(isa):
  """The AVX2 and portable tile loops (picked on CPUs without AVX-512), forced by the variable."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = _ISA_CHECK.format(shapes=SHAPES[1:6], nhwc=_NHWC)
  env = dict(__import__("os").environ, HCJAX_CPU_KERNELS_ISA=isa, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]

"""The compiled CPU kernels (hcjax/ops/csrc) against the pure-XLA paths they replace."""

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import warnings

import jax
import numpy as np
import pytest

from hcjax.ops import cpu_kernels, sampling


def _require_kernels():
  if not cpu_kernels.available():
    pytest.skip(f"CPU kernels unavailable: {cpu_kernels.unavailable_reason()}")


def test_kernels_are_built_where_a_compiler_is():
  # `pip install -e .` compiles them wherever a C++ compiler is found; a silent build failure
  # would only show as a slow gradient, so it fails here.
  compiler = sysconfig.get_config_var("CXX") or "c++"
  if shutil.which(compiler.split()[0]) is None and shutil.which("c++") is None:
    pytest.skip("no C++ compiler on this machine")
  if cpu_kernels.disabled_by_environment():
    pytest.skip("switched off by HCJAX_CPU_KERNELS")
  assert cpu_kernels.available(), cpu_kernels.unavailable_reason()


def test_a_differentiated_call_runs_the_kernels_and_a_plain_one_does_not():
  _require_kernels()
  image, coords = jax.ShapeDtypeStruct((2, 8, 8, 3), np.float32), jax.ShapeDtypeStruct(
      (2, 8, 8, 2), np.float32)
  loss = lambda i, c: sampling.bilinear_sample(i, c).sum()
  grad_text = jax.jit(jax.grad(loss, (0, 1))).lower(image, coords).as_text()
  assert "hcjax_bilinear_sample_forward" in grad_text
  assert "hcjax_bilinear_sample_backward" in grad_text
  assert "hcjax_bilinear" not in jax.jit(loss).lower(image, coords).as_text()


def _problem(batch, height, width, channels, out_hw, seed, specials=True):
  """Image, coordinates over and up to 3 pixels beyond it (with NaN, +-inf, exact integers and
  borders in the first few pixels, unless specials=False), cotangent."""
  rng = np.random.default_rng(seed)
  image = rng.standard_normal((batch, height, width, channels)).astype(np.float32)
  coords = rng.uniform(-3.0, [width + 2.0, height + 2.0], (batch, *out_hw, 2))
  values = [np.nan, np.inf, -np.inf, 0.0, 1.0, width - 1.0, height - 1.0, -1.0, width,
            height, 1e30, -1e30]
  if specials:
    coords.reshape(-1)[:len(values)] = values[:coords.size]
  cotangent = rng.standard_normal((batch, *out_hw, channels)).astype(np.float32)
  return image, coords.astype(np.float32), cotangent


@functools.partial(jax.jit, static_argnums=(2, 3))
def _forwards(padded, coords, size, padding):
  """(kernel (out, dx, dy), XLA (out, dx, dy))."""
  cpu_fwd = sampling._cpu_forward(padded, coords, size, padding)
  xla_fwd = sampling._forward(padded, coords, size, padding)
  return cpu_fwd, xla_fwd


@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize("shape", [(2, 6, 9, 3, (7, 5)), (1, 4, 5, 1, (3, 8)),
                                   (2, 5, 1, 2, (4, 4)), (1, 3, 4, 5, (6, 6)),
                                   (3, 8, 8, 4, (8, 8)),
                                   (2, 9, 7, 3, (70, 65))])   # several work items per image
def test_kernels_equal_the_xla_path(padding, shape):
  _require_kernels()
  batch, height, width, channels, out_hw = shape
  image, coords, cotangent = _problem(batch, height, width, channels, out_hw, sum(shape[:4]))
  padded = np.asarray(sampling._pad_image(image, padding))
  size = (height, width)
  cpu_fwd, xla_fwd = _forwards(padded, coords, size, padding)
  for name, got, want in zip(("out", "dx", "dy"), cpu_fwd, xla_fwd):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=name)
  cpu_bwd = jax.jit(sampling._cpu_backward, static_argnums=(4, 5))(
      coords, *xla_fwd[1:], cotangent, size, padding)
  xla_bwd = jax.jit(sampling._xla_backward, static_argnums=(4, 5))(
      coords, *xla_fwd[1:], cotangent, size, padding)
  for name, got, want in zip(("d_image", "d_coords"), cpu_bwd, xla_bwd):
    assert got.shape == want.shape, name
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
  # The NaN coordinate poisons its own corners only.
  assert 0 < np.isnan(np.asarray(cpu_bwd[0])).sum() <= 4 * channels


def test_kernel_gradients_under_vmap_and_an_empty_batch():
  _require_kernels()
  image, coords, cotangent = _problem(6, 5, 7, 3, (4, 6), 1)
  loss = lambda i, c, g: (sampling.bilinear_sample(i, c, "zeros") * g).sum()
  grad = jax.jit(jax.grad(loss, (0, 1)))
  batched = jax.jit(jax.vmap(jax.grad(loss, (0, 1))))(
      image.reshape(3, 2, 5, 7, 3), coords.reshape(3, 2, 4, 6, 2),
      cotangent.reshape(3, 2, 4, 6, 3))
  single = grad(image, coords, cotangent)
  for got, want in zip(batched, single):
    np.testing.assert_allclose(np.asarray(got).reshape(want.shape), want, rtol=1e-6, atol=1e-6)
  empty = grad(image[:0], coords[:0], cotangent[:0])
  assert [g.shape for g in empty] == [(0, 5, 7, 3), (0, 4, 6, 2)]


_GRADIENT_SCRIPT = """
import jax, numpy as np
from hcjax.ops import cpu_kernels, sampling
rng = np.random.default_rng(0)
image = rng.standard_normal((2, 6, 9, 3)).astype(np.float32)
coords = rng.uniform(-2, 10, (2, 5, 5, 2)).astype(np.float32)
g = jax.grad(lambda i, c: (sampling.bilinear_sample(i, c) ** 2).sum(), (0, 1))(image, coords)
np.savez(OUT, available=cpu_kernels.available(), d_image=g[0], d_coords=g[1])
"""


def test_switched_off_by_the_environment_and_the_same_gradients(tmp_path):
  _require_kernels()
  results = {}
  for value in ("1", "0"):
    out = tmp_path / f"{value}.npz"
    env = dict(os.environ, HCJAX_CPU_KERNELS=value, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c",
                           _GRADIENT_SCRIPT.replace("OUT", repr(str(out)))],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr   # no fallback warning either way
    results[value] = np.load(out)
  assert bool(results["1"]["available"]) and not bool(results["0"]["available"])
  for key in ("d_image", "d_coords"):
    np.testing.assert_allclose(results["1"][key], results["0"][key], rtol=1e-5, atol=1e-5)


def test_higher_derivatives_through_the_kernels_equal_the_reference():
  # The kernels' own derivatives come from the XLA path: grad of a function of the gradient.
  _require_kernels()
  image, coords, cotangent = _problem(2, 5, 7, 3, (4, 6), 3, specials=False)
  coords = np.clip(coords, 0.3, 3.7)
  coords = (np.floor(coords) + np.clip(coords - np.floor(coords), 0.1, 0.9)).astype(np.float32)

  def curvature(op):
    d_image = lambda c: jax.grad(lambda i: (op(i, c, "zeros") * cotangent).sum())(image)
    return jax.jit(jax.grad(lambda c: (d_image(c) ** 2).sum()))(coords)

  got, want = curvature(sampling.bilinear_sample), curvature(sampling.bilinear_sample_reference)
  assert np.abs(want).max() > 0.1
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_missing_library_falls_back_with_one_warning(monkeypatch):
  monkeypatch.delenv("HCJAX_CPU_KERNELS", raising=False)
  monkeypatch.setattr(cpu_kernels, "_register", lambda: "the library is missing (test)")
  cpu_kernels.warn_fallback.cache_clear()
  try:
    assert not cpu_kernels.available()
    image, coords, _ = _problem(1, 4, 5, 2, (3, 3), 2, specials=False)
    loss = lambda i, c: sampling.bilinear_sample(i, c).sum()
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      got = jax.grad(loss, (0, 1))(image, coords)       # traced afresh: not jit-cached
      jax.grad(lambda i, c: 2.0 * loss(i, c), (0, 1))(image, coords)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "library is missing (test)" in messages[0], messages
    want = jax.grad(lambda i, c: sampling.bilinear_sample_reference(i, c).sum(), (0, 1))(
        image, coords)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
  finally:
    cpu_kernels.warn_fallback.cache_clear()

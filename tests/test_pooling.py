"""max_pool from strided slices: nn.max_pool's values, and its gradients where maxima are unique."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hcjax.ops.pooling import max_pool

CASES = [  # shape, window, stride, padding
    ((2, 9, 11, 3), 3, 2, ((1, 1), (1, 1))),   # the ResNet stem, odd sizes
    ((2, 8, 8, 3), 2, 2, "SAME"),              # VGG
    ((2, 7, 9, 3), 2, 2, "SAME"),              # VGG on odd sizes: one padded row / column
    ((2, 7, 9, 3), 2, 2, "VALID"),             # DVF / LNet: odd sizes floor
    ((1, 10, 10, 2), 3, 1, "SAME"),
    ((1, 6, 7, 1), 3, 3, "VALID"),
    ((1, 8, 8, 1), (2, 3), (2, 1), ((0, 1), (2, 0))),
]


def _flax(x, window, stride, padding):
  window = (window, window) if isinstance(window, int) else window
  stride = (stride, stride) if isinstance(stride, int) else stride
  return nn.max_pool(x, window, stride, padding=padding)


@pytest.mark.parametrize("shape,window,stride,padding", CASES)
def test_values_and_gradients_equal_flax(shape, window, stride, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)   # continuous: every maximum is unique
  ours, ours_vjp = jax.vjp(lambda v: max_pool(v, window, stride, padding=padding), x)
  ref, ref_vjp = jax.vjp(lambda v: _flax(v, window, stride, padding), x)
  assert ours.shape == ref.shape
  np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
  g = jnp.asarray(rng.normal(size=ours.shape), jnp.float32)
  np.testing.assert_allclose(np.asarray(ours_vjp(g)[0]), np.asarray(ref_vjp(g)[0]), atol=1e-6)


def test_low_precision_and_integer_inputs_and_padding_never_wins():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(1, 5, 5, 2)) - 100, jnp.bfloat16)   # all below 0
  ours = max_pool(x, 3, 2, padding=((1, 1), (1, 1)))
  assert ours.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(ours, np.float32),
                                np.asarray(_flax(x, 3, 2, ((1, 1), (1, 1))), np.float32))
  assert float(ours.max()) < -90
  xi = jnp.asarray(rng.integers(-50, 50, (1, 6, 6, 1)), jnp.int32)
  np.testing.assert_array_equal(np.asarray(max_pool(xi, 2, 2, padding="SAME")),
                                np.asarray(_flax(xi, 2, 2, "SAME")))


@pytest.mark.parametrize("shape,window,stride,padding",
                         [case for case in CASES if case[1] != case[2]])
def test_overlapping_windows_send_tied_gradients_where_flax_does(shape, window, stride, padding):
  """Small integers: most windows hold tied maxima. A distinct cotangent per output shows
  which input each window's gradient reached."""
  x = jnp.asarray(np.random.default_rng(5).integers(0, 3, shape), jnp.float32)
  ours, ours_vjp = jax.vjp(lambda v: max_pool(v, window, stride, padding=padding), x)
  _, ref_vjp = jax.vjp(lambda v: _flax(v, window, stride, padding), x)
  g = jnp.arange(1, ours.size + 1, dtype=jnp.float32).reshape(ours.shape)
  np.testing.assert_array_equal(np.asarray(ours_vjp(g)[0]), np.asarray(ref_vjp(g)[0]))


def test_forward_mode_equals_flax_and_a_nan_window_keeps_its_gradient():
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.integers(0, 3, (2, 9, 11, 4)), jnp.float32)     # ties
  t = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  pads = ((1, 1), (1, 1))
  ours = jax.jvp(lambda v: max_pool(v, 3, 2, padding=pads), (x,), (t,))
  ref = jax.jvp(lambda v: _flax(v, 3, 2, pads), (x,), (t,))
  for a, b in zip(ours, ref):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  nan = x.at[0, 1, 1, 0].set(jnp.nan)
  grad = jax.grad(lambda v: max_pool(v, 3, 2, padding=pads).sum())(nan)
  assert float(grad.sum()) == ours[0].size                  # one unit per window, NaN or not


def test_tied_maxima_share_the_gradient():
  """Non-overlapping windows of equal values: the gradient is split among them and its sum is
  kept."""
  x = jnp.ones((1, 2, 2, 1), jnp.float32)
  grad = jax.grad(lambda v: max_pool(v, 2, 2).sum())(x)
  np.testing.assert_allclose(np.asarray(grad).reshape(-1), [0.25] * 4)
  grad = jax.grad(lambda v: max_pool(v, 3, 2, padding=((1, 1), (1, 1))).sum())(
      jnp.zeros((1, 4, 4, 1)))
  np.testing.assert_allclose(float(grad.sum()), 4.0, rtol=1e-6)   # 2x2 outputs, one each


def test_bad_arguments_are_refused():
  x = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError, match="B, H, W, C"):
    max_pool(x[0], 2, 2)
  with pytest.raises(ValueError, match="padding"):
    max_pool(x, 2, 2, padding="FULL")
  with pytest.raises(ValueError, match="does not fit"):
    max_pool(x, 5, 1)

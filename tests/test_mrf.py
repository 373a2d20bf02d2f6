"""DPN's MRF ops: fast == slow reference == the definition, gradients, memory, argument errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hcjax.ops import mrf


def _normal(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _inputs(seed=0, shape=(2, 7, 9), labels=3):
  probs = jax.nn.softmax(_normal((*shape, labels), seed))
  image = jnp.asarray(np.random.default_rng(seed + 100).uniform(0, 255, (*shape, 3)), jnp.float32)
  return probs, image


def test_window_offsets_centred_like_same_convolutions():
  odd = mrf.window_offsets(3)
  assert odd.shape == (9, 2) and odd.min() == -1 and odd.max() == 1
  np.testing.assert_array_equal(odd[0], [-1, -1])
  even = mrf.window_offsets(4)
  assert even.shape == (16, 2) and even.min() == -1 and even.max() == 2
  np.testing.assert_array_equal(mrf.window_offsets(1), [[0, 0]])


@pytest.mark.parametrize("window", [5, 4, 12])
@pytest.mark.parametrize("normalize", [True, False])
def test_triple_penalty_equals_reference(window, normalize):
  probs, image = _inputs()
  fast = mrf.triple_penalty(probs, image, 0.002, 0.1, window=window, normalize=normalize)
  slow = mrf.triple_penalty_reference(probs, image, 0.002, 0.1, window=window, normalize=normalize)
  assert fast.shape == probs.shape and fast.dtype == jnp.float32
  np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)


def test_reference_equals_the_definition_pixel_by_pixel():
  probs, image = _inputs(1, (1, 3, 4), 2)
  p, img, w1, w2 = np.asarray(probs, np.float64), np.asarray(image, np.float64), 0.003, 0.2
  expected = np.zeros_like(p)
  for y in range(3):
    for x in range(4):
      num, den = 0.0, 0.0
      for dy in (-1, 0, 1, 2):  # window 4: one more below/right, as "SAME"
        for dx in (-1, 0, 1, 2):
          if 0 <= y + dy < 3 and 0 <= x + dx < 4:
            d = w1 * np.sum((img[0, y, x] - img[0, y + dy, x + dx]) ** 2) + w2 * (dy * dy + dx * dx)
            num, den = num + np.exp(-d) * p[0, y + dy, x + dx], den + np.exp(-d)
      expected[0, y, x] = num / den
  got = mrf.triple_penalty_reference(probs, image, w1, w2, window=4)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_uniform_image_and_probs_are_fixed_points():
  # Normalised, constant labels stay constant; without weights on distance every neighbour counts.
  probs = jnp.full((1, 5, 6, 4), 0.25)
  image = jnp.full((1, 5, 6, 3), 100.0)
  np.testing.assert_allclose(mrf.triple_penalty(probs, image, 0.1, 0.1, window=3), probs, atol=1e-6)
  count = mrf.triple_penalty(probs, image, 0.0, 0.0, window=3, normalize=False)[0, :, :, 0] / 0.25
  assert count[0, 0] == pytest.approx(4) and count[2, 2] == pytest.approx(9)


@pytest.mark.parametrize("normalize", [True, False])
def test_triple_penalty_gradients_equal_reference_autodiff(normalize):
  probs, image = _inputs(2, (2, 6, 5))
  weights = jnp.arange(3.0) + 1.0

  def loss(op, p, w1, w2):
    return jnp.sum(jnp.sin(op(p, image, w1, w2, window=4, normalize=normalize)) * weights)

  grad = lambda op: jax.jit(jax.grad(lambda *a: loss(op, *a), argnums=(0, 1, 2)))
  fast = grad(mrf.triple_penalty)(probs, 0.002, 0.1)
  slow = grad(mrf.triple_penalty_reference)(probs, 0.002, 0.1)
  for a, b in zip(fast, slow):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.abs(b).max()))
  assert float(jnp.abs(fast[1])) > 0 and float(jnp.abs(fast[2])) > 0


def test_triple_penalty_gradients_against_finite_differences():
  probs, image = _inputs(3, (1, 4, 5), 2)
  # Colours scaled down so w1 has a moderate effect and float32 differences are well conditioned.
  fn = jax.jit(lambda p, w1, w2: mrf.triple_penalty(p, image / 50.0, w1, w2, window=5))
  check_grads(fn, (probs, 0.3, 0.2), order=1, modes=("rev",), eps=1e-3, atol=2e-2, rtol=2e-2)


def test_image_gets_no_gradient_and_jit_works():
  probs, image = _inputs(4)
  grad = jax.grad(lambda img: jnp.sum(mrf.triple_penalty(probs, img, 0.01, 0.1, window=3) ** 2))
  assert not np.any(grad(image))
  jitted = jax.jit(lambda p, w: mrf.triple_penalty(p, image, w, 0.1, window=5))
  np.testing.assert_allclose(jitted(probs, 0.01), mrf.triple_penalty(probs, image, 0.01, 0.1,
                                                                     window=5), atol=1e-6)


def test_triple_penalty_memory_does_not_grow_with_the_window():
  probs, image = _inputs(5, (1, 32, 32), 8)

  def temp_bytes(window):
    loss = lambda p, w: jnp.sum(mrf.triple_penalty(p, image, w, 0.01, window=window) ** 2)
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(probs, 0.01).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
      pytest.skip("this backend reports no memory analysis")
    return analysis.temp_size_in_bytes

  # One [window², H, W, L] stack at window 21 would be 441 maps; the scan keeps a few.
  assert temp_bytes(21) < 2 * temp_bytes(3) + 40 * probs.size * 4


def test_label_contexts_equals_reference():
  x, _ = _inputs(6, (2, 6, 7), 3)
  for size in (3, 4):
    kernel = _normal((size, size, 3, 3 * 5), size)
    bias = jnp.arange(15.0)
    fast = mrf.label_contexts(x, kernel, bias)
    assert fast.shape == (2, 6, 7, 15)
    np.testing.assert_allclose(fast, mrf.label_contexts_reference(x, kernel, bias),
                               rtol=1e-5, atol=1e-5)


def test_block_min_pool_takes_the_min_of_adjacent_channels():
  x = jnp.asarray([[5.0, 1.0, 3.0, -2.0, 4.0, 0.0]])  # L = 2 labels, K = 3 mixtures
  np.testing.assert_array_equal(mrf.block_min_pool(x, 3), [[1.0, -2.0]])
  np.testing.assert_array_equal(mrf.block_min_pool(x, 1), x)
  grad = jax.grad(lambda v: jnp.sum(mrf.block_min_pool(v, 3) * jnp.asarray([1.0, 2.0])))(x)
  np.testing.assert_array_equal(grad, [[0, 1, 0, 2, 0, 0]])
  assert mrf.block_min_pool(jnp.zeros((2, 4, 5, 21 * 5)), 5).shape == (2, 4, 5, 21)


def test_dpn_mean_field_step_is_a_normalised_softmax_of_log_p_minus_penalty():
  probs, _ = _inputs(7)
  log_p = jnp.log(probs)
  np.testing.assert_allclose(mrf.dpn_mean_field_step(log_p, 0.0), log_p, atol=1e-6)
  penalty = _normal(probs.shape, 8)
  q = jnp.exp(mrf.dpn_mean_field_step(log_p, penalty))
  expected = probs * jnp.exp(-penalty)
  np.testing.assert_allclose(q, expected / expected.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("call,name", [
    (lambda p, i: mrf.triple_penalty(p, i, 0.1, 0.1, window=0), "window"),
    (lambda p, i: mrf.triple_penalty(p, i, 0.1, 0.1, window=2.5), "window"),
    (lambda p, i: mrf.triple_penalty_reference(p, i, 0.1, 0.1, window=True), "window"),
    (lambda p, i: mrf.triple_penalty(p[0], i, 0.1, 0.1, window=3), "probs"),
    (lambda p, i: mrf.triple_penalty(p, i[:, 1:], 0.1, 0.1, window=3), "image"),
    (lambda p, i: mrf.triple_penalty(p, i, jnp.ones(2), 0.1, window=3), "w_appearance"),
    (lambda p, i: mrf.triple_penalty(p, i, 0.1, jnp.ones((1,)), window=3), "w_position"),
    (lambda p, i: mrf.label_contexts(p, jnp.ones((3, 3, 2, 10))), "kernel"),
    (lambda p, i: mrf.label_contexts(p, jnp.ones((3, 3, 3, 10))), "kernel"),
    (lambda p, i: mrf.label_contexts(p, jnp.ones((3, 3, 3, 15)), jnp.ones(3)), "bias"),
    (lambda p, i: mrf.label_contexts(p[0], jnp.ones((3, 3, 3, 15))), "x"),
    (lambda p, i: mrf.block_min_pool(p, 0), "group_size"),
    (lambda p, i: mrf.block_min_pool(p, 2), "group_size"),
    (lambda p, i: mrf.dpn_mean_field_step(p, jnp.ones((2, 7))), "penalty"),
])
def test_invalid_arguments_name_the_argument(call, name):
  probs, image = _inputs()
  with pytest.raises(ValueError, match=name):
    call(probs, image)

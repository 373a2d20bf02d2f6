"""Mean field against pydensecrf on real photographs, against a plain numpy loop, and its gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pydensecrf.densecrf as dcrf
import pytest
from jax.test_util import check_grads
from skimage import data, transform

from hcjax.ops import dense_crf


def _photo(name, size):
  image = getattr(data, name)()
  return np.ascontiguousarray((transform.resize(image, size) * 255).round().astype(np.uint8))


def _unary(shape, labels, seed, sharpness=2.0):
  """Smooth random label probabilities -> energies -log p, [H, W, L]."""
  rng = np.random.default_rng(seed)
  coarse = rng.normal(size=(shape[0] // 10 + 2, shape[1] // 10 + 2, labels))
  logits = np.asarray(jax.image.resize(coarse, shape + (labels,), "linear")) * sharpness
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return (-np.log(p)).astype(np.float32)


NORMALIZATIONS = {"symmetric": dcrf.NORMALIZE_SYMMETRIC, "after": dcrf.NORMALIZE_AFTER}


def _pydensecrf(unary, image, iterations, normalization, gaussian, bilateral):
  h, w, labels = unary.shape
  crf = dcrf.DenseCRF2D(w, h, labels)
  crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(-1, labels).T))
  if gaussian is not None:
    crf.addPairwiseGaussian(sxy=gaussian[0], compat=gaussian[1],
                            normalization=NORMALIZATIONS[normalization])
  if bilateral is not None:
    crf.addPairwiseBilateral(sxy=bilateral[0], srgb=bilateral[1], rgbim=image,
                             compat=bilateral[2], normalization=NORMALIZATIONS[normalization])
  return np.array(crf.inference(iterations)).T.reshape(h, w, labels)


CASES = [  # photo, labels, normalization, gaussian (sxy, compat), bilateral (sxy, srgb, compat), n
    ("astronaut", 5, "symmetric", (3, 3), (80, 13, 10), 5),
    ("chelsea", 21, "symmetric", (3, 3), (80, 13, 10), 10),
    ("coffee", 4, "after", (3, 3), (160, 3, 5), 5),       # CRF-as-RNN's widths and weights
    ("rocket", 3, "after", (1, 2), (40, 20, 4), 3),
    ("astronaut", 3, "symmetric", None, (60, 10, 8), 4),
    ("chelsea", 3, "after", (5, 4), None, 4),
]


@pytest.mark.parametrize("photo,labels,normalization,gaussian,bilateral,iterations", CASES)
def test_agrees_with_pydensecrf_on_photographs(photo, labels, normalization, gaussian, bilateral,
                                              iterations):
  image = _photo(photo, (90, 120))
  unary = _unary(image.shape[:2], labels, seed=labels)
  expected = _pydensecrf(unary, image, iterations, normalization, gaussian, bilateral)
  kwargs = dict(num_iterations=iterations, normalization=normalization,
                gaussian_compat=None, bilateral_compat=None)
  if gaussian is not None:
    kwargs.update(gaussian_sxy=gaussian[0], gaussian_compat=gaussian[1])
  if bilateral is not None:
    kwargs.update(bilateral_sxy=bilateral[0], bilateral_srgb=bilateral[1],
                  bilateral_compat=bilateral[2])
  q = np.asarray(dense_crf.mean_field(unary[None], image[None], **kwargs))[0]
  assert (q.argmax(-1) == expected.argmax(-1)).mean() >= 0.995
  assert np.abs(q - expected).mean() <= 1e-3
  # The CRF did something: the marginals moved away from the unary's.
  start = np.exp(-unary) / np.exp(-unary).sum(-1, keepdims=True)
  assert np.abs(q - start).mean() > 1e-2


def test_matrix_compatibility_agrees_with_pydensecrf():
  image = _photo("coffee", (60, 80))
  labels = 4
  unary = _unary(image.shape[:2], labels, seed=3)
  rng = np.random.default_rng(0)
  m = rng.uniform(-2, 2, size=(labels, labels)).astype(np.float32)
  m = (m + m.T) / 2  # pydensecrf symmetrises its MatrixCompatibility
  h, w, _ = unary.shape
  crf = dcrf.DenseCRF2D(w, h, labels)
  crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(-1, labels).T))
  crf.addPairwiseBilateral(sxy=50, srgb=13, rgbim=image, compat=m)
  expected = np.array(crf.inference(5)).T.reshape(h, w, labels)
  q = np.asarray(dense_crf.mean_field(unary[None], image[None], gaussian_compat=None,
                                      bilateral_sxy=50, bilateral_srgb=13, bilateral_compat=m))[0]
  assert (q.argmax(-1) == expected.argmax(-1)).mean() >= 0.995
  assert np.abs(q - expected).mean() <= 1e-3


@pytest.mark.slow  # over 25 s on a 2-core CPU; run with -m slow
def test_noise_needs_the_largest_lattice_and_still_agrees():
  """Pure noise at a narrow colour width overflows the small tiers: the last one takes it."""
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, size=(24, 32, 3)).astype(np.uint8)
  unary = _unary((24, 32), 3, seed=5)
  feats = dense_crf.bilateral_features(jnp.asarray(image), 80, 2)
  from hcjax.ops import permutohedral  # pylint: disable=g-import-not-at-top
  m = int(permutohedral.enumerate_vertices(feats).num_vertices)
  assert m > 24 * 32  # beyond every tier but the last
  expected = _pydensecrf(unary, image, 5, "symmetric", (3, 3), (80, 2, 10))
  q = np.asarray(dense_crf.mean_field(unary[None], image[None], bilateral_srgb=2))[0]
  np.testing.assert_allclose(q, expected, atol=1e-4)
  # A fixed capacity that is too small is loud.
  fixed = dense_crf.mean_field(unary[None], image[None], bilateral_srgb=2, lattice_capacity=0.5)
  assert np.all(np.isnan(np.asarray(fixed)))


@pytest.mark.slow  # over 25 s on a 2-core CPU; run with -m slow
def test_keys_too_wide_to_pack_take_the_lexicographic_branch():
  """A colour width far below one grey level spreads the keys past 32 bits: still exact."""
  from hcjax.ops import permutohedral  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(2)
  image = rng.integers(0, 256, size=(12, 16, 3)).astype(np.uint8)
  unary = _unary((12, 16), 3, seed=6)
  feats = dense_crf.bilateral_features(jnp.asarray(image), 80, 0.05)
  assert not bool(permutohedral.enumerate_packed(feats).fits)
  expected = _pydensecrf(unary, image, 5, "symmetric", None, (80, 0.05, 10))
  kwargs = dict(gaussian_compat=None, bilateral_srgb=0.05)
  q = np.asarray(dense_crf.mean_field(unary[None], image[None], **kwargs))[0]
  np.testing.assert_allclose(q, expected, atol=1e-4)
  fixed = np.asarray(dense_crf.mean_field(unary[None], image[None], lattice_capacity=6.0,
                                          **kwargs))[0]
  np.testing.assert_allclose(fixed, expected, atol=1e-4)


def _numpy_mean_field(unary, image, iterations, normalization, gsxy, gcompat, bsxy, bsrgb,
                      bcompat):
  """The textbook loop with dense Gaussian kernels."""
  h, w, labels = unary.shape
  y, x = np.mgrid[0:h, 0:w]
  pos = np.stack([x.ravel(), y.ravel()], 1).astype(np.float64)
  rgb = image.reshape(-1, 3).astype(np.float64)
  kernels = []
  for feats, compat in ((pos / gsxy, gcompat), (np.concatenate([pos / bsxy, rgb / bsrgb], 1), bcompat)):
    k = np.exp(-0.5 * ((feats[:, None] - feats[None]) ** 2).sum(-1))
    d = k.sum(1)
    if normalization == "symmetric":
      k = k / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    else:
      k = k / d[:, None]
    m = -compat * np.eye(labels) if np.ndim(compat) == 0 else np.asarray(compat)
    kernels.append((k, m))
  u = unary.reshape(-1, labels).astype(np.float64)
  logits = -u
  for _ in range(iterations):
    q = np.exp(logits - logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    logits = -u
    for k, m in kernels:
      logits = logits - (k @ q) @ m.T
  q = np.exp(logits - logits.max(1, keepdims=True))
  return (q / q.sum(1, keepdims=True)).reshape(h, w, labels)


@pytest.mark.parametrize("normalization", ["symmetric", "after"])
def test_exact_method_equals_the_textbook_loop(normalization):
  image = _photo("astronaut", (12, 14))
  unary = _unary((12, 14), 3, seed=0)
  compat = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.5], [2.0, 0.5, 0.0]], np.float32)
  expected = _numpy_mean_field(unary, image, 4, normalization, 3.0, 2.0, 8.0, 20.0, compat)
  q = dense_crf.mean_field(unary[None], image[None], gaussian_sxy=3.0, gaussian_compat=2.0,
                           bilateral_sxy=8.0, bilateral_srgb=20.0, bilateral_compat=compat,
                           num_iterations=4, normalization=normalization, method="exact")
  np.testing.assert_allclose(np.asarray(q)[0], expected, atol=2e-5)


@pytest.mark.slow  # over 25 s on a 2-core CPU; run with -m slow
def test_batch_return_logits_and_fixed_capacity_match_one_at_a_time():
  images = np.stack([_photo("chelsea", (12, 16)), _photo("coffee", (12, 16))])
  unary = np.stack([_unary((12, 16), 4, seed=s) for s in (0, 1)])
  batched = dense_crf.mean_field(unary, images, num_iterations=3)
  for i in range(2):
    single = dense_crf.mean_field(unary[i:i + 1], images[i:i + 1], num_iterations=3)
    np.testing.assert_allclose(batched[i], single[0], atol=1e-5)
  fixed = dense_crf.mean_field(unary, images, num_iterations=3, lattice_capacity=6.0)
  np.testing.assert_allclose(fixed, batched, atol=1e-5)
  logits = dense_crf.mean_field(unary, images, num_iterations=3, return_logits=True)
  np.testing.assert_allclose(jax.nn.softmax(logits, -1), batched, atol=1e-5)
  zero = dense_crf.mean_field(unary, images, num_iterations=0)
  np.testing.assert_allclose(zero, jax.nn.softmax(-unary, -1), atol=1e-6)


@pytest.mark.parametrize("method", ["exact", "lattice"])
def test_gradients_wrt_unary_and_compat(method):
  image = _photo("rocket", (6, 7)).astype(np.float32)
  unary = _unary((6, 7), 3, seed=2)
  compat = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (3, 3)), jnp.float32)

  @jax.jit
  def f(u, gc, bc):
    q = dense_crf.mean_field(u[None], image[None], gaussian_compat=gc, bilateral_compat=bc,
                             bilateral_sxy=5.0, bilateral_srgb=30.0, num_iterations=3,
                             normalization="after", method=method)
    return (q * jnp.arange(3.0)).sum()

  check_grads(f, (jnp.asarray(unary), compat, jnp.float32(2.0)), order=1, modes=["rev"],
              eps=1e-2, atol=2e-2, rtol=2e-2)
  grads = jax.grad(f, argnums=(0, 1, 2))(jnp.asarray(unary), compat, jnp.float32(2.0))
  assert all(float(jnp.abs(g).max()) > 0 for g in grads)


def test_bad_arguments_name_themselves():
  u = jnp.zeros((1, 8, 8, 3))
  im = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match="unary"):
    dense_crf.mean_field(u[0], im)
  with pytest.raises(ValueError, match="image"):
    dense_crf.mean_field(u, im[:, :4])
  with pytest.raises(ValueError, match="normalization"):
    dense_crf.mean_field(u, im, normalization="before")
  with pytest.raises(ValueError, match="method"):
    dense_crf.mean_field(u, im, method="fast")
  with pytest.raises(ValueError, match="bilateral_compat"):
    dense_crf.mean_field(u, im, bilateral_compat=jnp.zeros((2, 2)))
  with pytest.raises(ValueError, match="bilateral_srgb"):
    dense_crf.mean_field(u, im, bilateral_srgb=0.0)
  with pytest.raises(ValueError, match="num_iterations"):
    dense_crf.mean_field(u, im, num_iterations=-1)
  with pytest.raises(ValueError, match="lattice"):
    dense_crf.mean_field(jnp.zeros((1, 200, 200, 2)), jnp.zeros((1, 200, 200, 3)), method="exact")


def test_a_sharded_batch_stays_sharded():
  """The lattice size is one replicated choice; images are never gathered onto one device."""
  from jax.sharding import AxisType, NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  rng = np.random.default_rng(0)
  unary = rng.random((8, 12, 16, 3)).astype(np.float32)
  images = (rng.random((8, 12, 16, 3)) * 255).astype(np.float32)
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  fn = jax.jit(lambda u, im: dense_crf.mean_field(u, im, num_iterations=2), out_shardings=sharding)
  args = (jax.device_put(unary, sharding), jax.device_put(images, sharding))
  np.testing.assert_allclose(fn(*args), dense_crf.mean_field(unary, images, num_iterations=2),
                             atol=1e-4)
  assert "all-gather" not in fn.lower(*args).compile().as_text()

"""VGG16 / FCN-8s / dilated VGG, CRF-as-RNN and DPN: parameter counts, shapes, stages, gradients.

Shapes are checked with jax.eval_shape and most parameters drawn with numpy: XLA:CPU compiles are
the cost of these tests, so each test compiles little.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hcjax.models.crf_rnn import CrfRnn, DenseCrf
from hcjax.models.dpn import DPN, LabelContexts
from hcjax.models.vgg import VGG16, DilatedVGG, FCN8s
from hcjax.ops import dense_crf

TINY = dict(width=4, fc_width=16)


def _key(seed):
  # XLA:CPU compiles threefry draws slowly (seconds each); "rbg" keeps a whole init fast.
  return jax.random.key(seed, impl="rbg")


def _image(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(0, 255, (*shape, 3)), jnp.float32)


def _shapes(model, x):
  return jax.eval_shape(functools.partial(model.init, train=False), _key(0), x)


def _random_params(model, x, scale=0.3, seed=42):
  """Random parameters of the right shapes, without compiling the initialisers."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype),
                      _shapes(model, x)["params"])


def _apply(model, params, x, train=False, seed=1):
  apply = jax.jit(model.apply, static_argnames="train")
  return apply({"params": params}, x, train=train, rngs={"dropout": _key(seed)} if train else None)


def _nll(log_q, labels):
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(log_q), labels[..., None], -1))


@pytest.mark.parametrize("output_stride", [32, 8])
def test_vgg16_parameter_count_equals_torchvision(output_stride):
  # torchvision vgg16: 138,357,544 parameters, of which the 1000-way fc8 has 4096·1000 + 1000.
  params = _shapes(VGG16(output_stride=output_stride), jnp.zeros((1, 224, 224, 3)))["params"]
  assert sum(x.size for x in jax.tree.leaves(params)) == 138_357_544 - 4_097_000
  assert params["fc6"]["kernel"].shape == (7, 7, 512, 4096)
  assert params["conv5_3"]["kernel"].shape == (3, 3, 512, 512)


@pytest.mark.parametrize("output_stride,pool4,features",
                         [(32, (4, 5), (2, 3)), (8, (7, 9), (7, 9))])
def test_vgg16_feature_shapes_on_odd_sizes(output_stride, pool4, features):
  x = jnp.zeros((1, 50, 70, 3))
  model = VGG16(output_stride=output_stride, **TINY)
  out = jax.eval_shape(functools.partial(model.apply, train=False), _shapes(model, x), x)
  assert out["pool3"].shape == (1, 7, 9, 16)
  assert out["pool4"].shape == (1, *pool4, 32)
  assert out["features"].shape == (1, *features, 16)


@pytest.mark.parametrize("cls", [FCN8s, DilatedVGG])
@pytest.mark.parametrize("size", [(64, 64), (50, 70), (9, 13)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_unary_heads_logits_at_input_size_float32(cls, size, dtype):
  x = jnp.zeros((2, *size, 3))
  model = cls(num_classes=5, dtype=dtype, **TINY)
  variables = _shapes(model, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  out = jax.eval_shape(functools.partial(model.apply, train=False), variables, x)
  assert out.shape == (2, *size, 5) and out.dtype == jnp.float32


def test_fcn8s_dropout_in_training_only_and_crf_rnn_without_crf():
  x = _image((1, 21, 19))
  model = CrfRnn(num_classes=3, use_crf=False, **TINY)  # the FCN-8s unary alone
  params = _random_params(model, x)
  assert set(params) == {"unary"}
  assert set(_shapes(CrfRnn(num_classes=3, **TINY), x)["params"]) == {"unary", "crf"}
  a, b = (_apply(model, params, x, train=True, seed=s) for s in (1, 2))
  assert a["unary"].shape == (1, 21, 19, 3) and np.all(np.isfinite(a["unary"]))
  assert not np.allclose(a["unary"], b["unary"])
  out = _apply(model, params, x)
  np.testing.assert_array_equal(out["logits"], out["unary"])
  np.testing.assert_array_equal(out["unary"], _apply(model, params, x)["unary"])
  assert not np.allclose(out["unary"], a["unary"])


def test_crf_rnn_exact_iterations_and_gradients():
  x = _image((1, 12, 10), seed=3)
  crf = DenseCrf(3, method="exact").init(_key(0), jnp.zeros((1, 12, 10, 3)), x, 0)["params"]
  np.testing.assert_array_equal(crf["compatibility"], 1 - np.eye(3))  # Potts
  np.testing.assert_array_equal(crf["spatial_weights"], 3 * np.eye(3))
  np.testing.assert_array_equal(crf["bilateral_weights"], 5 * np.eye(3))
  model = CrfRnn(num_classes=3, crf_method="exact", train_iterations=2, eval_iterations=4, **TINY)
  params = _random_params(model, x)
  labels = jnp.asarray(np.arange(12 * 10).reshape(1, 12, 10) % 3)

  def loss(crf_params):  # training mode; the gradient of the CRF's parameters only
    out = model.apply({"params": dict(params, crf=crf_params)}, x, train=True,
                      rngs={"dropout": _key(5)})
    return _nll(out["logits"], labels), out

  (_, train_out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(crf)
  eval_out = _apply(model, dict(params, crf=crf), x)

  @jax.jit
  def expected(train_unary, eval_unary):
    run = functools.partial(
        dense_crf.mean_field, image=x, gaussian_sxy=3.0, gaussian_compat=(1 - np.eye(3)) * 3,
        bilateral_sxy=160.0, bilateral_srgb=3.0, bilateral_compat=(1 - np.eye(3)) * 5,
        normalization="after", method="exact", return_logits=True)
    return run(-train_unary, num_iterations=2), run(-eval_unary, num_iterations=4)

  for out, want in zip((train_out, eval_out), expected(train_out["unary"], eval_out["unary"])):
    assert out["logits"].shape == out["unary"].shape == (1, 12, 10, 3)
    np.testing.assert_allclose(out["logits"], want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out["logits"], out["unary"])
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  for name in ("compatibility", "spatial_weights", "bilateral_weights"):
    assert np.abs(grads[name]).max() > 0, name


def test_crf_rnn_bad_config_names_the_key():
  x = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match="crf_method"):
    _shapes(CrfRnn(num_classes=2, crf_method="fast", **TINY), x)
  with pytest.raises(ValueError, match="eval_iterations"):
    _shapes(CrfRnn(num_classes=2, eval_iterations=-1, **TINY), x)


def _dpn_pairwise_init(params, window):
  """The pairwise parameters' real initial values (random ones make the kernel degenerate)."""
  if "triple" in params:
    params["triple"] = {"log_w_appearance": jnp.log(0.5 / 13.0 ** 2),
                                "log_w_position": jnp.log(0.5 / (window / 4) ** 2)}
  if "triple_weight" in params:
    params["triple_weight"] = jnp.ones(())
  return params


@pytest.mark.parametrize("stage,expected", [
    ("unary", {"unary"}),
    ("triple", {"unary", "triple", "triple_weight"}),
    ("context", {"unary", "triple", "label_contexts"}),
    ("joint", {"unary", "triple", "label_contexts"}),
])
def test_dpn_stages_parameter_sets_and_outputs(stage, expected):
  x = _image((2, 17, 14))
  model = DPN(num_classes=4, stage=stage, window=5, context_kernel=3, mixtures=2, **TINY)
  params = _random_params(model, x)
  assert set(params) == expected
  if "label_contexts" in params:
    assert params["label_contexts"]["kernel"].shape == (3, 3, 4, 8)
  if "triple" in params:
    assert set(params["triple"]) == {"log_w_appearance", "log_w_position"}
  if stage == "context":  # the same network as "joint"
    return
  out = _apply(model, _dpn_pairwise_init(params, 5), x)
  assert out["unary"].shape == out["logits"].shape == (2, 17, 14, 4)
  # "logits" are normalised log-probabilities; before any pairwise term, those of sigmoid(unary).
  np.testing.assert_allclose(jnp.exp(out["logits"]).sum(-1), 1.0, rtol=1e-5)
  if stage == "unary":
    np.testing.assert_allclose(out["logits"], jax.nn.log_softmax(jax.nn.log_sigmoid(out["unary"])),
                               atol=1e-6)
  else:
    assert not np.allclose(out["logits"], jax.nn.log_softmax(jax.nn.log_sigmoid(out["unary"])))


def test_dpn_label_contexts_start_as_the_triple_stage_potts_penalty():
  t = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 6, 5, 3)), jnp.float32)
  module = LabelContexts(kernel_size=3, mixtures=2)
  params = module.init(_key(0), t)["params"]
  kernel = params["kernel"]
  assert kernel.shape == (3, 3, 3, 6)
  np.testing.assert_allclose(kernel[1, 1], np.repeat(1 - np.eye(3), 2, axis=1), atol=0.01)
  assert np.abs(kernel[0, 0]).max() < 0.01 and not np.all(kernel[..., 0::2] == kernel[..., 1::2])
  potts = t.sum(-1, keepdims=True) - t
  np.testing.assert_allclose(module.apply({"params": params}, t), potts, atol=0.1)


def test_dpn_joint_gradients_reach_every_pairwise_parameter_and_stride_two():
  x = _image((1, 20, 15), seed=7)
  model = DPN(num_classes=3, stage="joint", window=4, context_kernel=3, mixtures=2, **TINY)
  params = _dpn_pairwise_init(_random_params(model, x), 4)
  labels = jnp.asarray(np.arange(20 * 15).reshape(1, 20, 15) % 3)
  pairwise = {k: v for k, v in params.items() if k != "unary"}
  loss = lambda p: _nll(model.apply({"params": dict(params, **p)}, x, train=False)["logits"],
                        labels)
  grads = jax.jit(jax.grad(loss))(pairwise)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  for group, name in (("triple", "log_w_appearance"), ("triple", "log_w_position"),
                      ("label_contexts", "kernel"), ("label_contexts", "bias")):
    assert np.abs(grads[group][name]).max() > 0, name
  strided = DPN(num_classes=3, stage="joint", window=4, context_kernel=3, mixtures=2,
                pairwise_stride=2, **TINY)
  assert _apply(strided, params, x)["logits"].shape == (1, 20, 15, 3)


def test_dpn_bad_config_names_the_key():
  x = jnp.zeros((1, 8, 8, 3))
  for key, value in (("stage", "pairwise"), ("window", 0), ("mixtures", 0),
                     ("pairwise_stride", 1.5)):
    with pytest.raises(ValueError, match=key):
      _shapes(DPN(num_classes=2, **{key: value}, **TINY), x)

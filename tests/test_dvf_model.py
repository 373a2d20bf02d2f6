"""Deep Voxel Flow models and the TV regulariser: parameter counts, shapes, synthesis, gradients.

Parameters are drawn with numpy on shapes from jax.eval_shape (XLA:CPU compiles are the cost of
these tests); the nets are tiny (width 4) on 32x32 / 64x64 frames.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hcjax.models import dvf
from hcjax.models.dvf import MultiScaleVoxelFlow, VoxelFlowNet, area_downsample
from hcjax.ops import sampling
from hcjax.ops.regularizers import total_variation


def _key(seed):
  return jax.random.key(seed, impl="rbg")  # threefry draws compile slowly on XLA:CPU


def _frames(shape, seed=0):
  """Two frames in [-1, 1], the second a shifted copy of the first plus noise: some motion."""
  rng = np.random.default_rng(seed)
  first = rng.uniform(-1, 1, (*shape, 3))
  second = np.clip(np.roll(first, 2, axis=2) + 0.1 * rng.standard_normal(first.shape), -1, 1)
  return jnp.asarray(np.concatenate([first, second], -1), jnp.float32)


def _shapes(model, x):
  return jax.eval_shape(functools.partial(model.init, train=False), _key(0), x)


def _variables(model, x, scale=0.1, seed=42):
  """Random parameters of the right shapes and fresh BN statistics (mean 0, variance 1)."""
  rng = np.random.default_rng(seed)
  shapes = _shapes(model, x)
  params = jax.tree.map(lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype),
                        shapes["params"])
  stats = jax.tree_util.tree_map_with_path(
      lambda path, s: jnp.full(s.shape, 1.0 if path[-1].key == "var" else 0.0, s.dtype),
      shapes["batch_stats"])
  return {"params": params, "batch_stats": stats}


def _zero_heads(params):
  """Zero every conv that writes the pre-tanh output: flow 0, mask 0.5 everywhere."""
  zero = lambda tree: jax.tree.map(jnp.zeros_like, tree)
  if "output" in params:
    return dict(params, output=zero(params["output"]))
  return dict(params, fuse=zero(params["fuse"]),
              **{k: dict(params[k], output=zero(params[k]["output"]))
                 for k in ("scale4", "scale2", "scale1")})


def _expected_frame(frames, flow, mask, mode):
  first, second = frames[..., :3], frames[..., 3:]
  if mode == "interpolate":
    return sampling.voxel_flow_synthesize(first, second, flow, mask, t=0.5)
  return sampling.voxel_flow_extrapolate(first, second, flow, mask)


def _conv(k, cin, cout, bias=False):
  return k * k * cin * cout + (cout if bias else 0)


@pytest.mark.parametrize("variant", ["tf", "unet"])
def test_parameter_counts_at_width_64_by_hand(variant):
  # BN: the TF release has a shift only (slim's scale=False), the PyTorch U-Net scale and shift.
  bn = 1 if variant == "tf" else 2
  encoder = _conv(5, 6, 64) + _conv(5, 64, 128) + _conv(3, 128, 256) + bn * (64 + 128 + 256)
  output = _conv(5, 64, 3, bias=True)
  if variant == "tf":
    decoder = _conv(3, 256, 256) + _conv(3, 256, 128) + _conv(5, 128, 64) + bn * (256 + 128 + 64)
    want = 1_604_547
  else:
    decoder = (_conv(3, 256, 256) + _conv(3, 512, 256) + _conv(5, 384, 128) + _conv(5, 192, 64)
               + bn * (256 + 256 + 128 + 64))
    want = 3_821_891
  assert encoder + decoder + output == want
  x = jnp.zeros((1, 256, 256, 6))
  params = _shapes(VoxelFlowNet(variant=variant), x)["params"]
  assert sum(p.size for p in jax.tree.leaves(params)) == want
  if variant == "unet":  # decoder input channels 512, 384, 192
    assert [params[f"deconv{i}"]["kernel"].shape[2] for i in (1, 2, 3)] == [512, 384, 192]
  # Multi-scale: three trunks, the finer two with the coarser flow/mask as 3 more input channels,
  # and the 5x5 fusion conv on the 64 finest features and 3 x 3 per-scale outputs.
  multi = _shapes(MultiScaleVoxelFlow(variant=variant), x)["params"]
  extra = 2 * _conv(5, 3, 64)
  assert sum(p.size for p in jax.tree.leaves(multi)) == 3 * want + extra + _conv(5, 73, 3, True)
  assert multi["scale2"]["conv1"]["kernel"].shape == (5, 5, 9, 64)


@pytest.mark.parametrize("variant", ["tf", "unet"])
@pytest.mark.parametrize("mode", ["interpolate", "extrapolate"])
def test_single_scale_outputs_and_synthesis(variant, mode):
  x = _frames((2, 32, 32))
  model = VoxelFlowNet(variant=variant, width=4, mode=mode)
  variables = _variables(model, x)
  apply = jax.jit(functools.partial(model.apply, train=False))
  out = apply(variables, x)
  assert out["frame"].shape == (2, 32, 32, 3) and out["flow"].shape == (2, 32, 32, 2)
  assert out["mask"].shape == (2, 32, 32, 1)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(out))
  assert np.abs(out["flow"]).max() <= 0.5 and np.abs(out["flow"]).max() > 1e-3
  assert 0 <= out["mask"].min() and out["mask"].max() <= 1
  assert np.abs(out["frame"]).max() <= 1 + 1e-6
  assert len(out["scales"]) == 1
  for key in ("frame", "flow", "mask"):
    np.testing.assert_array_equal(out["scales"][0][key], out[key])
  np.testing.assert_allclose(out["frame"], _expected_frame(x, out["flow"], out["mask"], mode),
                             atol=1e-5)
  # With the output conv at zero: no motion, an even blend of the two frames.
  out = apply(dict(variables, params=_zero_heads(variables["params"])), x)
  np.testing.assert_array_equal(out["flow"], 0.0)
  np.testing.assert_array_equal(out["mask"], 0.5)
  np.testing.assert_allclose(out["frame"], 0.5 * (x[..., :3] + x[..., 3:]), atol=1e-5)


@pytest.mark.parametrize("variant,mode", [("tf", "interpolate"), ("unet", "extrapolate")])
def test_multi_scale_outputs_per_scale(variant, mode):
  x = _frames((2, 64, 64), seed=1)
  model = MultiScaleVoxelFlow(variant=variant, width=4, mode=mode)
  variables = _variables(model, x)
  assert set(variables["params"]) == {"scale4", "scale2", "scale1", "fuse"}
  apply = jax.jit(functools.partial(model.apply, train=False))
  out = apply(variables, x)
  assert out["frame"].shape == (2, 64, 64, 3) and out["flow"].shape == (2, 64, 64, 2)
  assert [s["frame"].shape[1:3] for s in out["scales"]] == [(16, 16), (32, 32), (64, 64)]
  for factor, scale in zip((4, 2, 1), out["scales"]):
    assert scale["flow"].shape[-1] == 2 and scale["mask"].shape[-1] == 1
    assert np.abs(scale["flow"]).max() <= 0.5 and 0 <= scale["mask"].min() <= 1
    frames = area_downsample(x, factor)
    np.testing.assert_allclose(scale["frame"],
                               _expected_frame(frames, scale["flow"], scale["mask"], mode),
                               atol=1e-5)
  np.testing.assert_allclose(out["frame"], _expected_frame(x, out["flow"], out["mask"], mode),
                             atol=1e-5)
  assert not np.allclose(out["flow"], out["scales"][-1]["flow"])  # the fusion did something
  out = apply(dict(variables, params=_zero_heads(variables["params"])), x)
  for scale in (out, *out["scales"]):
    np.testing.assert_array_equal(scale["flow"], 0.0)
    np.testing.assert_array_equal(scale["mask"], 0.5)
  np.testing.assert_allclose(out["scales"][0]["frame"],
                             area_downsample(0.5 * (x[..., :3] + x[..., 3:]), 4), atol=1e-5)


@pytest.mark.parametrize("cls,variant", [(VoxelFlowNet, "tf"), (VoxelFlowNet, "unet"),
                                         (MultiScaleVoxelFlow, "tf")])
def test_gradients_reach_every_parameter_and_bn_momentum(cls, variant):
  x = _frames((2, 32, 32), seed=2)
  target = jnp.roll(x[..., :3], 1, axis=2)
  model = cls(variant=variant, width=4)
  variables = _variables(model, x)

  def loss(params):
    out, state = model.apply(dict(variables, params=params), x, train=True,
                             mutable=["batch_stats", "intermediates"], capture_intermediates=True)
    value = jnp.mean(jnp.abs(out["frame"] - target))
    for factor, scale in zip((4, 2, 1)[-len(out["scales"]):], out["scales"]):
      value += jnp.mean(jnp.abs(scale["frame"] - area_downsample(target, factor)))
    value += 0.01 * total_variation(out["flow"]) + 0.005 * total_variation(out["mask"])
    return value, state

  grads, state = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert len(flat) == len(jax.tree.leaves(variables["params"]))
  for path, g in flat:
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, jax.tree_util.keystr(path)
  # Running statistics move by (1 - 0.9997) of the batch's: the conv1 output's mean over B, H, W.
  stats, inter = state["batch_stats"], state["intermediates"]
  if cls is MultiScaleVoxelFlow:
    stats, inter = stats["scale1"], inter["scale1"]
  conv1 = inter["conv1"]["__call__"][0]
  np.testing.assert_allclose(stats["conv1_bn"]["mean"], 3e-4 * conv1.mean((0, 1, 2)),
                             rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("cls", [VoxelFlowNet, MultiScaleVoxelFlow])
def test_bfloat16_compute_float32_parameters_and_outputs(cls):
  x = jnp.zeros((1, 64, 64, 6))
  model = cls(width=4, dtype=jnp.bfloat16)
  variables = _shapes(model, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  out = jax.eval_shape(functools.partial(model.apply, train=False), variables, x)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(out))


def test_bad_sizes_and_config_raise_naming_the_problem():
  with pytest.raises(ValueError, match=r"divisible by 8.*\(1, 36, 32, 6\)"):
    _shapes(VoxelFlowNet(width=4), jnp.zeros((1, 36, 32, 6)))
  with pytest.raises(ValueError, match=r"divisible by 32.*\(1, 48, 64, 6\)"):
    _shapes(MultiScaleVoxelFlow(width=4), jnp.zeros((1, 48, 64, 6)))
  with pytest.raises(ValueError, match=r"\[B, H, W, 6\].*\(1, 32, 32, 3\)"):
    _shapes(VoxelFlowNet(width=4), jnp.zeros((1, 32, 32, 3)))
  x = jnp.zeros((1, 32, 32, 6))
  with pytest.raises(ValueError, match="variant"):
    _shapes(VoxelFlowNet(variant="pytorch"), x)
  with pytest.raises(ValueError, match="mode"):
    _shapes(VoxelFlowNet(mode="inter"), x)
  with pytest.raises(ValueError, match="width"):
    _shapes(VoxelFlowNet(width=0), x)


def test_total_variation_by_hand():
  x = np.array([[0, 1, 3], [2, 2, 2]], np.float32)  # [H=2, W=3]
  # horizontal |dx|: 1, 2, 0, 0 -> mean 0.75; vertical |dy|: 2, 1, 1 -> mean 4/3.
  tv = total_variation(jnp.asarray(x[None, :, :, None]))
  np.testing.assert_allclose(tv, 0.75 + 4 / 3, rtol=1e-6)
  ramp = np.broadcast_to(0.25 * np.arange(8, dtype=np.float32), (2, 5, 8))[..., None]
  np.testing.assert_allclose(total_variation(jnp.asarray(np.repeat(ramp, 3, -1))), 0.25)
  batch = jnp.asarray(np.stack([x, 3 * x, 100 * x])[..., None])
  np.testing.assert_allclose(total_variation(batch), (1 + 3 + 100) / 3 * (0.75 + 4 / 3),
                             rtol=1e-6)
  # Per-example weights (a padding mask): the third image does not count.
  np.testing.assert_allclose(total_variation(batch, jnp.array([1.0, 1.0, 0.0])),
                             2 * (0.75 + 4 / 3), rtol=1e-6)
  assert total_variation(batch, jnp.zeros(3)) == 0
  np.testing.assert_allclose(total_variation(jnp.asarray(x[None, :1, :, None])), 1.5)  # H = 1
  g = jax.grad(total_variation)(batch)
  assert g.shape == batch.shape and np.all(np.isfinite(g))


def test_upsampling_equals_resize_and_torch():
  """The decoder's x2 upsampling (shifted blends) is jax.image.resize's bilinear and torch's
  interpolate(bilinear, align_corners=False), edges included, and so is its gradient."""
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(3)
  for shape in [(2, 5, 7, 3), (1, 1, 1, 2), (3, 4, 1, 5)]:
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    ours = dvf._upsample2(x)
    resized = dvf._resize(x, 2 * shape[1], 2 * shape[2])
    np.testing.assert_allclose(ours, resized, rtol=1e-6, atol=1e-6)
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(np.array(x)).permute(0, 3, 1, 2), scale_factor=2, mode="bilinear",
        align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    g = jnp.asarray(rng.standard_normal(ours.shape), jnp.float32)
    grads = [jax.vjp(f, x)[1](g)[0] for f in (dvf._upsample2, lambda x: dvf._resize(
        x, 2 * shape[1], 2 * shape[2]))]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5)

"""AENet: the heads of each ablation, their shapes and ranges, and configs/aenet.py's variants."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import aenet as aenet_config
from hcjax import tasks
from hcjax.models.aenet import AENet

SEMANTIC = {"attributes": 40, "spoof_type": 11, "illumination": 5, "environment": 3}


def _shapes(model, x, train=False):
  """(variables, outputs) as shapes: tracing only, no compilation."""
  def run(x):
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    if train:
      return variables, model.apply(variables, x, train=True, mutable=["batch_stats"])[0]
    return variables, model.apply(variables, x, train=False)
  return jax.eval_shape(run, x)


@pytest.mark.parametrize("ablation,semantic,geometric", [
    ("C,S,G", True, True), ("C,S", True, False), ("C,G", False, True), ("C", False, False),
    ("baseline", False, False)])
def test_each_ablation_has_its_heads_with_their_shapes(ablation, semantic, geometric):
  config = aenet_config.get_config(f"test,{ablation}")
  assert (config.model.semantic, config.model.geometric) == (semantic, geometric)
  model = tasks.get_task(config).build_model()
  s, m = config.input.image_size, config.model.map_size
  for train in (False, True):
    variables, out = _shapes(model, jnp.zeros((3, s, s, 3)), train)
    expected = {"live_spoof": (3, 2)}
    if semantic:
      expected.update({k: (3, n) for k, n in SEMANTIC.items()})
    if geometric:
      expected.update(depth=(3, m, m, 1), reflection=(3, m, m, 3))
    assert {k: v.shape for k, v in out.items()} == expected
    assert all(v.dtype == jnp.float32 for v in out.values())
    # Heads that are off have no parameters at all.
    assert set(variables["params"]) == {"backbone"} | set(expected)


def test_paper_sized_heads_read_the_last_stage():
  """At 224 with ResNet-18's width the maps come from the 7x7x512 stage, upsampled to 14."""
  config = aenet_config.get_config("full")
  model = tasks.get_task(config).build_model()
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
                          jnp.zeros((1, 224, 224, 3)))["params"]
  assert shapes["depth"]["kernel"].shape == (3, 3, 512, 1)
  assert shapes["reflection"]["kernel"].shape == (3, 3, 512, 3)
  assert "bias" not in shapes["depth"]
  for name, n in {"live_spoof": 2, **SEMANTIC}.items():
    assert shapes[name]["kernel"].shape == (512, n)
  out = jax.eval_shape(
      lambda x: model.apply(model.init(jax.random.PRNGKey(0), x, train=False), x, train=False),
      jnp.zeros((2, 224, 224, 3)))
  assert out["depth"].shape == (2, 14, 14, 1) and out["reflection"].shape == (2, 14, 14, 3)


def _random_variables(model, x, seed=0):
  """Variables of init's shapes drawn with numpy: compiling a ResNet's init takes ~15 s here."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if "var" in name:
      return jnp.ones(s.shape, s.dtype)
    if "mean" in name or "bias" in name:
      return jnp.zeros(s.shape, s.dtype)
    if "scale" in name:
      return jnp.ones(s.shape, s.dtype)
    fan_in = int(np.prod(s.shape[:-1]))
    return jnp.asarray(rng.normal(0, 1 / np.sqrt(fan_in), s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def test_maps_are_sigmoid_then_bilinear_upsampling():
  """One real forward pass (eager: cheaper than compiling a ResNet for a test)."""
  model = AENet(width=2, map_size=14)
  x = jax.random.uniform(jax.random.PRNGKey(2), (2, 64, 64, 3))
  variables = _random_variables(model, x)
  run = lambda v: model.apply(v, x, train=False, capture_intermediates=True,
                              mutable=["intermediates"])
  out, state = run(variables)
  for k, v in out.items():
    assert np.isfinite(np.asarray(v)).all(), k
  for k in ("depth", "reflection"):
    assert 0 <= float(out[k].min()) and float(out[k].max()) <= 1
  # The 2x2 stage-4 map (64 / 32) through a sigmoid, resized bilinearly to 14x14.
  conv = state["intermediates"]["reflection"]["__call__"][0]
  assert conv.shape == (2, 2, 2, 3)
  expected = jax.image.resize(jax.nn.sigmoid(conv), (2, 14, 14, 3), "bilinear")
  np.testing.assert_allclose(np.asarray(out["reflection"]), np.asarray(expected), atol=1e-6)
  # Zero kernels: sigmoid(0) = 0.5 everywhere.
  params = flax.core.unfreeze(variables["params"])
  params["depth"]["kernel"] = jnp.zeros_like(params["depth"]["kernel"])
  out, _ = run({**variables, "params": params})
  np.testing.assert_allclose(np.asarray(out["depth"]), 0.5, atol=1e-7)


def test_geometry_stage_and_input_size_are_configurable():
  model = AENet(width=2, geometry_stage="stage3", map_size=10, semantic=False)
  x = jnp.zeros((1, 80, 112, 3))
  out, state = jax.eval_shape(
      lambda x: model.apply(model.init(jax.random.PRNGKey(0), x, train=False), x, train=False,
                            capture_intermediates=True, mutable=["intermediates"]), x)
  assert state["intermediates"]["depth"]["__call__"][0].shape == (1, 5, 7, 1)  # stride 16
  assert out["depth"].shape == (1, 10, 10, 1)
  with pytest.raises(ValueError, match="geometry_stage"):
    jax.eval_shape(lambda x: AENet(width=2, geometry_stage="stage5").init(
        jax.random.PRNGKey(0), x, train=False), x)
  with pytest.raises(ValueError, match="depth must be one of"):
    jax.eval_shape(lambda x: AENet(depth=19, width=2).init(jax.random.PRNGKey(0), x,
                                                           train=False), x)


# --- configs ------------------------------------------------------------------------------------

def test_ablation_names():
  assert aenet_config.parse_arg(None) == ("sample", "C,S,G")
  assert aenet_config.parse_arg("full") == ("full", "C,S,G")
  assert aenet_config.parse_arg("full,C,G") == ("full", "C,G")
  assert aenet_config.parse_arg("G,C,test") == ("test", "C,G")
  assert aenet_config.parse_arg("C,S,G,sample") == ("sample", "C,S,G")
  assert aenet_config.parse_arg("baseline") == ("sample", "baseline")
  for bad in ("S,G", "C,C", "full,test", "huge", "baseline,C", "c,s", "C,X"):
    with pytest.raises(ValueError, match="configs/aenet.py"):
      aenet_config.get_config(bad)
  base, c = aenet_config.get_config("full,baseline"), aenet_config.get_config("full,C")
  base.ablation = c.ablation
  assert base == c  # the baseline is AENet_C


@pytest.mark.parametrize("arg", ["sample", "full", "test", "sample,C,S", "full,C,G",
                                 "test,baseline"])
def test_configs_build_their_task_and_model(arg):
  config = aenet_config.get_config(arg)
  task = tasks.get_task(config)
  model = task.build_model()
  spec = task.input_spec()
  out = jax.eval_shape(
      lambda x: model.apply(model.init(jax.random.PRNGKey(0), x, train=False), x, train=False),
      jnp.zeros((1,) + spec.shape, jnp.float32))
  assert out["live_spoof"].shape == (1, 2)
  assert config.batch_size % 8 == 0 and config.total_steps > 0
  assert task.weights == {"live_spoof": 1.0, "attributes": 1.0, "spoof_type": 0.1,
                          "illumination": 0.01, "environment": 0.01, "depth": 0.1,
                          "reflection": 0.1}
  if arg.startswith("full"):
    assert config.input.image_size == 224 and config.model.width == 64
    assert not config.data.make_samples

"""ResNet: canonical parameter counts, shapes, BatchNorm modes, bfloat16 compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hcjax.models.resnet import ResNet, ResNetBackbone


@pytest.mark.parametrize("depth,count", [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032)])
def test_parameter_counts_equal_torchvision(depth, count):
  model = ResNet(depth=depth, num_outputs=1000)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)), train=False))
  assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == count


def _init(model, x):
  return model.init(jax.random.PRNGKey(0), x, train=False)


@pytest.mark.parametrize("stem,size,final", [("imagenet", 64, 2), ("small", 32, 4)])
def test_shapes_and_stages(stem, size, final):
  x = jnp.ones((2, size, size, 3))
  backbone = ResNetBackbone((1, 1, 1, 1), "bottleneck", width=4, stem=stem)
  out = backbone.apply(_init(backbone, x), x, train=False)
  assert out["features"].shape == (2, final, final, 128)
  assert out["stage1"].shape[-1] == 16 and out["stage3"].shape[-1] == 64
  model = ResNet(depth=18, num_outputs=40, width=4, stem=stem)
  logits = model.apply(_init(model, x), x, train=False)
  assert logits.shape == (2, 40) and logits.dtype == jnp.float32
  features = ResNet(depth=18, num_outputs=None, width=4, stem=stem)
  assert features.apply(_init(features, x), x, train=False).shape == (2, 32)


def test_batchnorm_train_updates_statistics_eval_does_not():
  model = ResNet(depth=18, num_outputs=3, width=4, stem="small")
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 3)) * 3 + 1
  variables = _init(model, x)
  _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
  before = jax.tree.leaves(variables["batch_stats"])
  after = jax.tree.leaves(updated["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  out_eval = model.apply(variables, x, train=False)
  assert np.all(np.isfinite(out_eval))


def test_residual_branches_start_as_identity():
  # The last BN scale of every block is zero: a fresh block passes its (projected) input.
  model = ResNet(depth=18, num_outputs=3, width=4, stem="small")
  params = _init(model, jnp.ones((1, 16, 16, 3)))["params"]["backbone"]
  assert np.all(params["stage1_block1"]["bn2"]["scale"] == 0)
  assert np.all(params["stage2_block1"]["proj_bn"]["scale"] == 1)


def test_bfloat16_compute_float32_params_and_logits():
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 32, 32, 3))
  f32 = ResNet(depth=18, num_outputs=5, width=8, stem="small")
  bf16 = ResNet(depth=18, num_outputs=5, width=8, stem="small", dtype=jnp.bfloat16)
  variables = _init(f32, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(_init(bf16, x)["params"]))
  a = f32.apply(variables, x, train=False)
  b = bf16.apply(variables, x, train=False)
  assert b.dtype == jnp.float32
  np.testing.assert_allclose(a, b, atol=0.05 * float(jnp.abs(a).max()) + 1e-2)


def test_deterministic_init_and_bad_depth():
  model = ResNet(depth=18, num_outputs=2, width=4, stem="small")
  a = _init(model, jnp.ones((1, 8, 8, 3)))
  b = _init(model, jnp.ones((1, 8, 8, 3)))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  with pytest.raises(ValueError, match="depth"):
    _init(ResNet(depth=19, num_outputs=2), jnp.ones((1, 8, 8, 3)))

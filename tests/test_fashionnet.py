"""FashionNet: output shapes for both trunks, landmark pooling reads the predicted locations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hcjax.models.fashionnet import FashionNet, landmark_pool, window_offsets


@pytest.mark.parametrize("trunk,size", [
    ("vgg16", 64), pytest.param("resnet50", 64, marks=pytest.mark.slow)])  # ResNet-50 compiles slowly
def test_shapes_for_both_trunks(trunk, size):
  model = FashionNet(num_categories=5, num_attributes=7, trunk=trunk, width=4, fc_width=16,
                     embedding_dim=6, num_items=3)
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)), jnp.float32)
  variables = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                         x, train=False)
  out = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)},
                    mutable=["batch_stats"])[0]
  assert out["category"].shape == (2, 5) and out["attributes"].shape == (2, 7)
  assert out["landmarks"].shape == (2, 8, 2) and out["visibility"].shape == (2, 8, 3)
  assert out["embedding"].shape == (2, 6) and out["item_logits"].shape == (2, 3)
  lm = np.asarray(out["landmarks"])
  assert ((lm > 0) & (lm < 1)).all()
  np.testing.assert_allclose(np.linalg.norm(np.asarray(out["embedding"]), axis=-1), 1, rtol=1e-5)
  no_items = FashionNet(num_categories=5, num_attributes=7, trunk=trunk, width=4, fc_width=16,
                        embedding_dim=6)
  v2 = no_items.init(jax.random.PRNGKey(0), x, train=False)
  assert "item_logits" not in no_items.apply(v2, x, train=False)


def test_landmark_pool_reads_around_the_landmark():
  """A map with one peak: a landmark on it (or within the window) reads the peak; far away, 0."""
  h, w, c = 8, 10, 2
  fmap = np.zeros((1, h, w, c), np.float32)
  fmap[0, 3, 6, 0] = 5.0          # feature pixel (row 3, col 6): normalised centre (6.5/10, 3.5/8)
  fmap[0, 1, 1, 1] = 2.0
  centre = np.array([6.5 / w, 3.5 / h])
  lms = np.array([[centre,                           # on the peak
                   centre + [0.1, 0.0],              # one map pixel right; window 0.2 reaches it
                   [0.05, 0.9],                      # far away
                   [1.5 / w, 1.5 / h]]], np.float32)  # on the channel-1 peak
  out = np.asarray(landmark_pool(jnp.asarray(fmap), jnp.asarray(lms), pool_window=0.2))
  assert out.shape == (1, 4, 2)
  np.testing.assert_allclose(out[0, 0], [5.0, 0.0], atol=1e-5)
  np.testing.assert_allclose(out[0, 1], [5.0, 0.0], atol=1e-5)
  np.testing.assert_allclose(out[0, 2], [0.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(out[0, 3], [0.0, 2.0], atol=1e-5)
  # A tiny window off-centre by half a pixel reads the bilinear half of the peak.
  half = np.asarray(landmark_pool(jnp.asarray(fmap), jnp.asarray(lms[:, :1] + [0.05, 0]),
                                  pool_window=0.0, pool_grid=1))
  np.testing.assert_allclose(half[0, 0, 0], 2.5, atol=1e-5)
  assert window_offsets(0.2, 3).shape == (9, 2)


def test_pooling_follows_the_predicted_landmarks_without_gradient():
  """The local branch reads at the predicted landmarks; no gradient flows back into them."""
  model = FashionNet(num_categories=3, num_attributes=4, width=4, fc_width=8, embedding_dim=4)
  x = jnp.ones((1, 64, 64, 3)) * 100
  variables = model.init(jax.random.PRNGKey(0), x, train=False)

  def category_loss(params):
    return model.apply({"params": params}, x, train=False)["category"].sum()

  grads = jax.grad(category_loss)(variables["params"])
  assert float(jnp.abs(grads["landmark_xy"]["kernel"]).sum()) == 0.0
  assert float(jnp.abs(grads["local_fc"]["kernel"]).sum()) > 0.0


def test_vgg16_batch_norm_trunk_keeps_running_statistics():
  """batch_norm=True: every conv gets a BatchNorm; training updates the running statistics, and
  evaluation uses them, so an example's outputs do not depend on the rest of its batch."""
  model = FashionNet(num_categories=3, num_attributes=4, width=2, fc_width=8, embedding_dim=4,
                     batch_norm=True)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.uniform(0, 255, (4, 32, 32, 3)), jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  stats = variables["batch_stats"]["vgg"]
  assert len(stats) == 13 and {"mean", "var"} == set(stats["bn1_1"])
  _, updates = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)},
                           mutable=["batch_stats"])
  moved = updates["batch_stats"]["vgg"]["bn1_1"]["mean"]
  assert float(jnp.abs(moved - stats["bn1_1"]["mean"]).max()) > 1e-3
  alone = model.apply(variables, x[:1], train=False)["category"]
  together = model.apply(variables, x, train=False)["category"][:1]
  np.testing.assert_allclose(np.asarray(alone), np.asarray(together), rtol=1e-5, atol=1e-5)
  plain = FashionNet(num_categories=3, num_attributes=4, width=2, fc_width=8, embedding_dim=4)
  assert "batch_stats" not in plain.init(jax.random.PRNGKey(0), x, train=False)


def test_global_and_landmark_branches_flatten_pool5_as_vgg_fc6():
  """At 224 px the branches' first fc layers read the flattened 7x7x(8·width) pool5 map, as the
  paper's fc6 (25,088 inputs at width 64), and the trunk has no fc6 / fc7 convolutions."""
  model = FashionNet(num_categories=50, num_attributes=10, width=4, fc_width=32, embedding_dim=8)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
                          jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))["params"]
  assert shapes["global_fc"]["kernel"].shape == (7 * 7 * 32, 32)
  assert shapes["landmark_fc"]["kernel"].shape == (7 * 7 * 32, 32)
  assert shapes["local_fc"]["kernel"].shape == (8 * 32, 32)        # 8 landmarks x pool4 channels
  assert not {"fc6", "fc7"} & set(shapes["vgg"])

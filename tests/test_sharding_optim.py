"""Mesh construction, regex placement rules, optimizer and schedules from config."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hcjax import optim, sharding
from hcjax.errors import ConfigError


def test_mesh_from_config():
  mesh = sharding.make_mesh([("data", -1), ("fsdp", 2)])
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
  mesh = sharding.make_mesh([("data", 8), ("fsdp", 1)])
  assert dict(mesh.shape) == {"data": 8, "fsdp": 1}
  one = sharding.make_mesh([("data", -1), ("fsdp", 1)], devices=jax.devices()[:1])
  assert one.size == 1


@pytest.mark.parametrize("axes,message", [
    ([("data", 3), ("fsdp", 1)], "does not divide"),
    ([("data", -1), ("fsdp", -1)], "at most one"),
    ([("batch", -1), ("fsdp", 1)], "must name the axes"),
    ([("data", 2), ("fsdp", 2)], "uses 4 devices but 8"),
])
def test_bad_meshes(axes, message):
  with pytest.raises(ConfigError, match=message):
    sharding.make_mesh(axes)


def test_regex_rules_and_fsdp_threshold():
  mesh = sharding.make_mesh([("data", 4), ("fsdp", 2)])
  tree = {"params": {"head": {"kernel": jnp.zeros((64, 40)), "bias": jnp.zeros((40,))},
                     "conv": {"kernel": jnp.zeros((3, 3, 16, 32))},
                     "odd": {"kernel": jnp.zeros((3, 5, 7))}}}
  specs = jax.tree.map(lambda s: s.spec, sharding.tree_shardings(
      tree, mesh, [("head/bias", "replicate"), (".*", "fsdp")], fsdp_min_size=1000))
  assert specs["params"]["head"]["kernel"] == jax.sharding.PartitionSpec("fsdp", None)
  assert specs["params"]["head"]["bias"] == jax.sharding.PartitionSpec()
  assert specs["params"]["conv"]["kernel"] == jax.sharding.PartitionSpec(None, None, None, "fsdp")
  assert specs["params"]["odd"]["kernel"] == jax.sharding.PartitionSpec()  # nothing divisible
  small = jax.tree.map(lambda s: s.spec, sharding.tree_shardings(
      tree, mesh, [(".*", "fsdp")], fsdp_min_size=10_000))
  assert small["params"]["head"]["kernel"] == jax.sharding.PartitionSpec()
  replicated = jax.tree.map(lambda s: s.spec, sharding.tree_shardings(
      tree, mesh, [(".*", "replicate")]))
  assert all(s == jax.sharding.PartitionSpec() for s in jax.tree.leaves(replicated))


def test_bad_rules():
  mesh = sharding.make_mesh([("data", 4), ("fsdp", 2)])
  with pytest.raises(ConfigError, match="one of"):
    sharding.tree_shardings({"a": jnp.zeros(4)}, mesh, [(".*", "shard_everything")])
  with pytest.raises(ConfigError, match="bad regex"):
    sharding.tree_shardings({"a": jnp.zeros(4)}, mesh, [("(", "fsdp")])


def _cfg(**kw):
  return ml_collections.ConfigDict({"name": "adamw", "learning_rate": 1.0, **kw})


def test_warmup_cosine_schedule():
  schedule = optim.make_schedule(_cfg(schedule="cosine", warmup_steps=10), 110)
  np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(60), schedule(110)],
                             [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)


def test_step_schedule():
  schedule = optim.make_schedule(_cfg(schedule="step", decay_boundaries=[30, 60],
                                      decay_factor=0.1), 100)
  np.testing.assert_allclose([schedule(29), schedule(30), schedule(61)], [1.0, 0.1, 0.01],
                             rtol=1e-6)


def test_weight_decay_mask_spares_biases_and_norms():
  params = {"conv": {"kernel": jnp.ones(3), "bias": jnp.ones(3)}, "bn1": {"scale": jnp.ones(3)}}
  tx, _ = optim.make_optimizer(_cfg(name="adamw", weight_decay=0.5, learning_rate=0.1), 10)
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.05)  # lr * wd * w
  np.testing.assert_allclose(updates["conv"]["bias"], 0.0)
  np.testing.assert_allclose(updates["bn1"]["scale"], 0.0)


def test_sgd_matches_optax_reference_with_clipping():
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([30.0, 40.0])}  # norm 50 -> clipped to 5
  tx, _ = optim.make_optimizer(_cfg(name="sgd", momentum=0.0, grad_clip_norm=5.0,
                                    learning_rate=0.1), 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [-0.3, -0.4], rtol=1e-6)
  ref = optax.adam(0.1)
  tx, _ = optim.make_optimizer(_cfg(name="adam", learning_rate=0.1), 10)
  ours, _ = tx.update(grads, tx.init(params), params)
  theirs, _ = ref.update(grads, ref.init(params), params)
  np.testing.assert_allclose(ours["w"], theirs["w"], rtol=1e-6)


@pytest.mark.parametrize("kw,message", [
    ({"name": "lamb"}, "optimizer.name"),
    ({"schedule": "linear"}, "optimizer.schedule"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"schedule": "cosine", "warmup_steps": 50}, "warmup_steps"),
])
def test_bad_optimizer_config(kw, message):
  with pytest.raises(ConfigError, match=message):
    optim.make_optimizer(_cfg(**kw), 50)


def test_freeze_keeps_matching_parameters_fixed():
  cfg = ml_collections.ConfigDict(dict(name="adamw", learning_rate=0.1, weight_decay=0.5,
                                       freeze=("unary/.*",)))
  tx, _ = optim.make_optimizer(cfg, total_steps=10)
  params = {"unary": {"conv": {"kernel": jnp.ones((3,))}}, "crf": {"compat": jnp.ones((3,))}}
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params["unary"]["conv"]["kernel"], np.ones(3))
  assert np.all(np.asarray(params["crf"]["compat"]) < 1.0)
  with pytest.raises(ConfigError, match="freeze"):
    optim.make_optimizer(ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.1,
                                                        freeze=("(",))), total_steps=10)

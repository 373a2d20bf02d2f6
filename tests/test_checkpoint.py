"""Checkpoints: round trip, keep-N, mismatches, a save killed midway, other device counts."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from hcjax import checkpoint

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _mesh():
  return jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)


def _state(mesh, scale=1.0):
  big = jax.device_put(jnp.arange(16 * 8, dtype=jnp.float32).reshape(16, 8) * scale,
                       NamedSharding(mesh, P("fsdp", None)))
  small = jax.device_put(jnp.array([1, 2, 3], jnp.int32), NamedSharding(mesh, P()))
  return {"params": {"w": big, "b": small}, "step": jnp.array(7, jnp.int32)}


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def test_round_trip_with_data_state_and_config(tmp_path):
  mesh = _mesh()
  state = _state(mesh)
  data_state = {"grain": {"offsets": [1, 2, {"x": "y"}]}, "batches": 3}
  config = {"model": {"depth": 18}, "mesh": [["data", -1], ["fsdp", 1]]}
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.latest_step() is None
    ckpt.save(5, state, data_state=data_state, config=config)
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.latest_step() == 5
    restored, d, c = ckpt.restore(_abstract(state))
  assert d == data_state and c == config
  np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
  assert restored["params"]["w"].sharding.spec == P("fsdp", None)
  assert int(restored["step"]) == 7


def test_keeps_the_last_k(tmp_path):
  mesh = _mesh()
  with checkpoint.Checkpointer(str(tmp_path), keep=2) as ckpt:
    for step in (1, 2, 3, 4):
      ckpt.save(step, _state(mesh, step), data_state={"s": step})
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [3, 4]
    restored, d, _ = ckpt.restore(_abstract(_state(mesh)), 3)
  assert d == {"s": 3}
  np.testing.assert_array_equal(restored["params"]["w"], _state(mesh, 3)["params"]["w"])


def test_mismatching_tree_is_a_checkpoint_error(tmp_path):
  mesh = _mesh()
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(1, _state(mesh))
  other = _abstract(_state(mesh))
  other["params"]["extra"] = jax.ShapeDtypeStruct((2,), jnp.float32,
                                                  sharding=NamedSharding(mesh, P()))
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    with pytest.raises(checkpoint.CheckpointError, match="does not match"):
      ckpt.restore(other)


def test_restore_params_subtree(tmp_path):
  mesh = _mesh()
  state = _state(mesh, 2.0)
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(3, state)
  params = checkpoint.restore_params(str(tmp_path), _abstract(state["params"]))
  np.testing.assert_array_equal(params["w"], state["params"]["w"])
  again = checkpoint.restore_params(str(tmp_path / "3"), _abstract(state["params"]))
  np.testing.assert_array_equal(again["b"], [1, 2, 3])
  with pytest.raises(FileNotFoundError, match="missing"):
    checkpoint.restore_params(str(tmp_path / "missing"), _abstract(state["params"]))


_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    sys.path.insert(0, {repo!r})
    from hcjax import checkpoint
    mode, directory = sys.argv[1], sys.argv[2]
    n = len(jax.devices())
    mesh = jax.make_mesh((n, 1), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    def state(scale, rows=16):
      w = jnp.arange(rows * 8, dtype=jnp.float32).reshape(rows, 8) * scale
      return {{"w": jax.device_put(w, NamedSharding(mesh, P("data", None))),
              "r": jax.device_put(jnp.ones(3) * scale, NamedSharding(mesh, P()))}}
    if mode == "save":
      with checkpoint.Checkpointer(directory) as ckpt:
        ckpt.save(1, state(3.0))
    elif mode == "restore":
      s = state(0.0)
      abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), s)
      with checkpoint.Checkpointer(directory) as ckpt:
        r, _, _ = ckpt.restore(abstract)
      np.testing.assert_array_equal(np.asarray(r["w"]), np.asarray(state(3.0)["w"]))
      assert len(r["w"].addressable_shards) == n
      print("ok", n)
    elif mode == "kill_mid_save":
      with checkpoint.Checkpointer(directory) as ckpt:
        ckpt.save(1, state(1.0, rows=16))
      # Hold the second save just before it would become visible, so the kill lands mid-save.
      from orbax.checkpoint._src.path import atomicity
      original = atomicity.AtomicRenameTemporaryPath.finalize
      async def stalled_finalize(self, *a, **k):
        print("saving", flush=True)
        time.sleep(120)
        return await original(self, *a, **k)
      atomicity.AtomicRenameTemporaryPath.finalize = stalled_finalize
      ckpt = checkpoint.Checkpointer(directory)
      ckpt.save(2, state(2.0, rows=16 * 1024))
      time.sleep(120)
""")


def _run(mode, directory, devices, **kw):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  return subprocess.run([sys.executable, "-c", _SCRIPT.format(repo=REPO), mode, str(directory)],
                        env=env, capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize("save_devices,restore_devices", [(8, 1), (1, 8)])
def test_restore_onto_a_different_device_count(tmp_path, save_devices, restore_devices):
  saved = _run("save", tmp_path, save_devices)
  assert saved.returncode == 0, saved.stderr[-2000:]
  restored = _run("restore", tmp_path, restore_devices)
  assert restored.returncode == 0, restored.stderr[-2000:]
  assert restored.stdout.strip() == f"ok {restore_devices}"


def test_killed_save_leaves_previous_checkpoint_usable(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
  proc = subprocess.Popen([sys.executable, "-c", _SCRIPT.format(repo=REPO), "kill_mid_save",
                           str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "saving"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # The interrupted step's data lies in a temporary directory that is never taken for a checkpoint.
  assert any("tmp" in name for name in os.listdir(tmp_path)), os.listdir(tmp_path)
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.latest_step() == 1
  mesh = jax.make_mesh((2, 1), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=jax.devices()[:2])
  abstract = {"w": jax.ShapeDtypeStruct((16, 8), jnp.float32,
                                        sharding=NamedSharding(mesh, P("data", None))),
              "r": jax.ShapeDtypeStruct((3,), jnp.float32, sharding=NamedSharding(mesh, P()))}
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    state, _, _ = ckpt.restore(abstract)
  np.testing.assert_array_equal(state["w"], np.arange(128, dtype=np.float32).reshape(16, 8))
  # A later save of the same step number still works.
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(2, {"w": state["w"], "r": state["r"]})
    ckpt.wait_until_finished()
    assert ckpt.latest_step() == 2

"""Checkpoints: round trip, keep-N, mismatches, saves killed midway, other device counts.

Tests that need another device count or a process to kill run this file as a script in a
subprocess (see `_child` at the bottom), so both sides share the helpers that make the values.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from hcjax import checkpoint

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TMP_MARKER = "orbax-checkpoint-tmp"


def _mesh(devices=None):
  devices = jax.devices() if devices is None else devices
  n = len(devices)
  shape = (n // 2, 2) if n % 2 == 0 else (n, 1)
  return jax.make_mesh(shape, ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=devices)


def _values(seed, rows=16, cols=8):
  """Random floats, so that equality below is bitwise and not a coincidence of round numbers."""
  return np.random.default_rng(seed).standard_normal((rows, cols), dtype=np.float32)


def _state(mesh, seed=0, rows=16):
  """A [rows, 8] array sharded on its first axis over ("data", "fsdp") and a replicated one."""
  return {
      "params": {
          "w": jax.device_put(_values(seed, rows), NamedSharding(mesh, P(("data", "fsdp"), None))),
          "b": jax.device_put(np.arange(3, dtype=np.int32) + seed, NamedSharding(mesh, P())),
      },
      "step": jax.device_put(np.int32(seed), NamedSharding(mesh, P())),
  }


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def _assert_bitwise_equal(a, b):
  a, b = np.asarray(a), np.asarray(b)
  assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
  assert a.tobytes() == b.tobytes()


# --- in this process, 8 devices -------------------------------------------------------------------

def test_round_trip_with_data_state_and_config(tmp_path):
  mesh = _mesh()
  state = _state(mesh, seed=1)
  state["extra"] = {"count": 7, "scale": np.float32(0.5)}  # python and numpy scalars too
  data_state = {"grain": {"offsets": [1, 2, {"x": "y"}], "seed": 3, "name": "celeba"},
                "batches": 3, "empty": {}, "nothing": None}
  config = {"model": {"depth": 18, "widths": [64, 128]}, "mesh": [["data", -1], ["fsdp", 1]]}
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.latest_step() is None and ckpt.all_steps() == []
    assert ckpt.save(5, state, data_state=data_state, config=config)
  # Restored onto other shardings than saved: the arrays come back laid out as asked.
  abstract = _abstract({"params": state["params"], "step": state["step"]})
  abstract["params"]["w"] = jax.ShapeDtypeStruct((16, 8), jnp.float32,
                                                 sharding=NamedSharding(mesh, P(None, "data")))
  abstract["extra"] = {"count": 0, "scale": np.float32(0)}
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.latest_step() == 5
    restored, d, c = ckpt.restore(abstract)
  assert d == data_state and c == config
  _assert_bitwise_equal(restored["params"]["w"], state["params"]["w"])
  _assert_bitwise_equal(restored["params"]["b"], state["params"]["b"])
  assert restored["params"]["w"].sharding == abstract["params"]["w"].sharding
  assert restored["params"]["b"].sharding == NamedSharding(mesh, P())
  assert int(restored["step"]) == 1
  assert restored["extra"]["count"] == 7 and float(restored["extra"]["scale"]) == 0.5


def test_without_data_state_and_config(tmp_path):
  mesh = _mesh()
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(1, _state(mesh))
    _, d, c = ckpt.restore(_abstract(_state(mesh)))
  assert d is None and c is None


def test_keeps_the_last_k_and_latest_step(tmp_path):
  mesh = _mesh()
  with checkpoint.Checkpointer(str(tmp_path), keep=2) as ckpt:
    for step in (1, 2, 3, 4):
      assert ckpt.save(step, _state(mesh, step), data_state={"s": step})
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [3, 4] and ckpt.latest_step() == 4
    restored, d, _ = ckpt.restore(_abstract(_state(mesh)), 3)
  assert d == {"s": 3}
  _assert_bitwise_equal(restored["params"]["w"], _values(3))
  assert sorted(os.listdir(tmp_path)) == ["3", "4"]
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    with pytest.raises(FileNotFoundError, match="step 1 .*complete steps: \\[3, 4\\]"):
      ckpt.restore(_abstract(_state(mesh)), 1)


def test_save_interval_and_force(tmp_path):
  mesh = _mesh()
  state = _state(mesh)
  with checkpoint.Checkpointer(str(tmp_path), keep=10, save_interval_steps=5) as ckpt:
    saved = [step for step in range(5, 13) if ckpt.save(step, state)]
    assert ckpt.save(13, state, force=True)  # the last step, or a preemption
    assert not ckpt.save(13, state, force=True)  # already there: not written twice
    ckpt.wait_until_finished()
    assert saved == [5, 10] and ckpt.all_steps() == [5, 10, 13]


def test_empty_directory(tmp_path):
  with checkpoint.Checkpointer(str(tmp_path / "new")) as ckpt:
    assert ckpt.latest_step() is None
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
      ckpt.restore(_abstract(_state(_mesh())))


def _add_leaf(t, mesh):
  t["params"]["extra"] = jax.ShapeDtypeStruct((2,), jnp.float32, sharding=NamedSharding(mesh, P()))


def _drop_leaf(t, mesh):
  del t["params"]["b"]


def _reshape_leaf(t, mesh):
  t["params"]["w"] = jax.ShapeDtypeStruct((16, 4), jnp.float32, sharding=NamedSharding(mesh, P()))


@pytest.mark.parametrize("change,message", [
    (_add_leaf, r"'params/extra' \(shape \(2,\)\) is in the state being restored but not in"),
    (_drop_leaf, r"'params/b' \(shape \(3,\)\) is in the checkpoint but not in the state"),
    (_reshape_leaf, r"'params/w' has shape \(16, 8\) in the checkpoint but \(16, 4\) in the state"),
])
def test_mismatching_tree_names_the_key(tmp_path, change, message):
  mesh = _mesh()
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(1, _state(mesh))
  other = _abstract(_state(mesh))
  change(other, mesh)
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    with pytest.raises(checkpoint.CheckpointError, match="does not match") as e:
      ckpt.restore(other)
  assert e.match(message)


def test_restore_params_subtree(tmp_path):
  mesh = _mesh()
  state = _state(mesh, seed=2)
  run = tmp_path / "run"
  with checkpoint.Checkpointer(str(run / "checkpoints")) as ckpt:
    ckpt.save(3, _state(mesh, seed=1))
    ckpt.save(4, state)
  # Onto other shardings than saved.
  abstract = {"w": jax.ShapeDtypeStruct((16, 8), jnp.float32, sharding=NamedSharding(mesh, P())),
              "b": jax.ShapeDtypeStruct((3,), jnp.int32, sharding=NamedSharding(mesh, P()))}
  for path, seed in [(run / "checkpoints", 2), (run, 2), (run / "checkpoints" / "3", 1)]:
    params = checkpoint.restore_params(str(path), abstract)
    _assert_bitwise_equal(params["w"], _values(seed))
    _assert_bitwise_equal(params["b"], np.arange(3, dtype=np.int32) + seed)
    assert params["w"].sharding == abstract["w"].sharding
  # A deeper sub-tree; the rest of the state is not read.
  w = checkpoint.restore_params(str(run), abstract["w"], item_path=("params", "w"))
  _assert_bitwise_equal(w, _values(2))
  with pytest.raises(FileNotFoundError, match="missing"):
    checkpoint.restore_params(str(tmp_path / "missing"), abstract)
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="empty"):
    checkpoint.restore_params(str(tmp_path / "empty"), abstract)
  with pytest.raises(checkpoint.CheckpointError, match="'ema'"):
    checkpoint.restore_params(str(run), abstract, item_path=("ema",))
  wider = dict(abstract, w=jax.ShapeDtypeStruct((16, 9), jnp.float32,
                                                sharding=NamedSharding(mesh, P())))
  with pytest.raises(checkpoint.CheckpointError, match=r"'w' has shape \(16, 8\)"):
    checkpoint.restore_params(str(run), wider)
  # A later stage with layers the checkpoint lacks: only what is there comes back.
  extended = dict(abstract, head=jax.ShapeDtypeStruct((2,), jnp.float32,
                                                      sharding=NamedSharding(mesh, P())))
  with pytest.raises(checkpoint.CheckpointError, match="'head'"):
    checkpoint.restore_params(str(run), extended)
  part = checkpoint.restore_params(str(run), extended, missing_ok=True)
  assert sorted(part) == ["b", "w"]
  _assert_bitwise_equal(part["w"], _values(2))
  with pytest.raises(checkpoint.CheckpointError, match="none of the parameters"):
    checkpoint.restore_params(str(run), {"head": extended["head"]}, missing_ok=True)
  with pytest.raises(checkpoint.CheckpointError, match=r"'w' has shape \(16, 8\)"):
    checkpoint.restore_params(str(run), wider, missing_ok=True)


def test_async_save_returns_early_and_close_waits(tmp_path):
  mesh = _mesh()
  state = _state(mesh, seed=4, rows=512 * 1024)  # 16 MiB
  expected = np.asarray(state["params"]["w"])
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=True)
  assert ckpt.save(1, state, data_state={"n": 1})
  # The arrays may be donated (freed) by the next train step as soon as save() returns.
  for leaf in jax.tree.leaves(state):
    leaf.delete()
  ckpt.close()
  ckpt.close()  # idempotent
  assert not [n for n in os.listdir(tmp_path) if TMP_MARKER in n]
  abstract = _abstract(_state(mesh, rows=512 * 1024))
  with checkpoint.Checkpointer(str(tmp_path)) as again:
    assert again.latest_step() == 1
    restored, d, _ = again.restore(abstract)
  _assert_bitwise_equal(restored["params"]["w"], expected)
  assert d == {"n": 1}


def test_json_items_are_checked_before_the_save_starts(tmp_path):
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    with pytest.raises(TypeError, match="data_state must be JSON-serialisable"):
      ckpt.save(1, _state(_mesh()), data_state={"offset": np.int64(3)})
    assert ckpt.latest_step() is None


def test_orbax_is_quiet_unless_verbose(tmp_path, caplog):
  mesh = _mesh()

  def orbax_info_records(verbose):
    caplog.clear()
    with caplog.at_level(logging.INFO):
      with checkpoint.Checkpointer(str(tmp_path / str(verbose)), verbose=verbose) as ckpt:
        ckpt.save(1, _state(mesh))
        ckpt.restore(_abstract(_state(mesh)))
    return [r for r in caplog.records if "orbax" in r.pathname and r.levelno < logging.WARNING]

  try:
    assert orbax_info_records(verbose=True)
    assert not orbax_info_records(verbose=False)
  finally:
    checkpoint.Checkpointer(str(tmp_path / "reset")).close()  # back to the quiet default


# --- in subprocesses: other device counts, and processes killed while saving ----------------------

def _first_line_then_kill(proc, timeout=120):
  """The child's first line of output; then SIGKILL, the way a preempted machine goes."""
  guard = threading.Timer(timeout, proc.kill)  # a child that never prints does not hang the test
  guard.start()
  try:
    return proc.stdout.readline().strip()
  finally:
    guard.cancel()
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _run_child(mode, directory, devices, *, popen=False):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  cmd = [sys.executable, os.path.abspath(__file__), mode, str(directory)]
  if popen:
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
  return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("save_devices,restore_devices", [(8, 1), (1, 8)])
def test_restore_onto_a_different_device_count(tmp_path, save_devices, restore_devices):
  saved = _run_child("save", tmp_path, save_devices)
  assert saved.returncode == 0, saved.stderr[-3000:]
  assert saved.stdout.split() == ["saved", str(save_devices)]
  restored = _run_child("restore", tmp_path, restore_devices)
  assert restored.returncode == 0, restored.stderr[-3000:]
  assert restored.stdout.split() == ["restored", str(restore_devices)]


BIG_ROWS = 1024 * 1024  # a [BIG_ROWS, 8] float32 array: 32 MiB


def _restore_in_parent(directory, step, rows):
  mesh = _mesh(jax.devices()[:2])
  with checkpoint.Checkpointer(str(directory)) as ckpt:
    state, data_state, _ = ckpt.restore(_abstract(_state(mesh, rows=rows)), step)
  _assert_bitwise_equal(state["params"]["w"], _values(step, rows))
  assert data_state == {"step": step}
  return state


def test_save_killed_before_commit_leaves_previous_checkpoint(tmp_path):
  proc = _run_child("kill_at_commit", tmp_path, 2, popen=True)
  assert _first_line_then_kill(proc) == "committing"
  # Step 2 was fully written but never renamed into place: it is not a checkpoint.
  assert [n for n in os.listdir(tmp_path) if n.startswith("2.") and TMP_MARKER in n]
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.latest_step() == 1 and ckpt.all_steps() == [1]
  state = _restore_in_parent(tmp_path, 1, BIG_ROWS)
  # The run goes on from there: the same step can be saved again.
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.save(2, state, data_state={"step": 2})
    ckpt.wait_until_finished()
    assert ckpt.latest_step() == 2


def test_save_killed_while_writing_leaves_a_complete_checkpoint(tmp_path):
  proc = _run_child("kill_after_save", tmp_path, 2, popen=True)
  assert _first_line_then_kill(proc) == "saving"
  # Whether the kill landed during step 2's write or just after it, the newest complete
  # checkpoint has exactly the values saved under its step.
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    latest = ckpt.latest_step()
  assert latest in (1, 2), os.listdir(tmp_path)
  _restore_in_parent(tmp_path, latest, BIG_ROWS)


def _child(mode: str, directory: str) -> None:
  n = len(jax.devices())
  mesh = _mesh()
  if mode == "save":
    with checkpoint.Checkpointer(directory) as ckpt:
      ckpt.save(1, _state(mesh, seed=7), data_state={"n": n}, config={"devices": n})
    print("saved", n)
  elif mode == "restore":
    with checkpoint.Checkpointer(directory) as ckpt:
      state, data_state, config = ckpt.restore(_abstract(_state(mesh)))
    saved_n = data_state["n"]
    assert config == {"devices": saved_n} and saved_n != n
    _assert_bitwise_equal(state["params"]["w"], _values(7))
    _assert_bitwise_equal(state["params"]["b"], np.arange(3, dtype=np.int32) + 7)
    assert len(state["params"]["w"].addressable_shards) == n
    assert state["params"]["w"].sharding.mesh.devices.size == n
    print("restored", n)
  elif mode in ("kill_at_commit", "kill_after_save"):
    with checkpoint.Checkpointer(directory) as ckpt:
      ckpt.save(1, _state(mesh, 1, BIG_ROWS), data_state={"step": 1})
    if mode == "kill_at_commit":
      # Hold the save once its data is written, at the first rename of a temporary directory
      # into place (its items, then the step itself).
      rename = os.rename

      def stalled_rename(src, dst, *args, **kwargs):
        if TMP_MARKER in os.fspath(src):
          print("committing", flush=True)
          time.sleep(600)
        return rename(src, dst, *args, **kwargs)

      os.rename = stalled_rename
    ckpt = checkpoint.Checkpointer(directory)
    ckpt.save(2, _state(mesh, 2, BIG_ROWS), data_state={"step": 2})
    if mode == "kill_after_save":
      print("saving", flush=True)
    time.sleep(600)


if __name__ == "__main__":
  _child(*sys.argv[1:])


def test_relative_directories_are_taken_from_the_cwd(tmp_path, monkeypatch):
  """`hcjax train --workdir runs/x` passes a relative path; orbax itself wants absolute ones."""
  monkeypatch.chdir(tmp_path)
  mesh = _mesh()
  with checkpoint.Checkpointer("runs/x/checkpoints") as ckpt:
    ckpt.save(1, _state(mesh, seed=1), force=True)
  assert (tmp_path / "runs" / "x" / "checkpoints" / "1").is_dir()
  abstract = {"w": jax.ShapeDtypeStruct((16, 8), jnp.float32, sharding=NamedSharding(mesh, P())),
              "b": jax.ShapeDtypeStruct((3,), jnp.int32, sharding=NamedSharding(mesh, P()))}
  _assert_bitwise_equal(checkpoint.restore_params("runs/x", abstract)["w"], _values(1))

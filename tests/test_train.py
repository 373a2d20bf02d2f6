"""The trainer: sharded step equality, multi-process, kill -9 / SIGTERM resume, NaN guard,
config errors and export, on the quickstart task's `test` variant."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flax.linen as nn

from hcjax import checkpoint, cli, observe, optim, sharding, train
from hcjax.errors import ConfigError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import quickstart  # noqa: E402  pylint: disable=g-import-not-at-top

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """The sample set and its TFRecords, built once for this module."""
  root = tmp_path_factory.mktemp("celeba")
  config = make_config(root)
  from hcjax import tasks  # pylint: disable=g-import-not-at-top
  tasks.get_task(config).prepare_data()
  return root


def make_config(root, **overrides):
  config = quickstart.get_config("test")
  config.data.dir = str(root / "tfrecords")
  config.data.samples_dir = str(root / "samples")
  config.update_from_flattened_dict(overrides)
  return config


def cli_args(root, workdir, *extra):
  return ["--config", os.path.join(REPO, "configs", "quickstart.py:test"), "--workdir", str(workdir),
          f"--config.data.dir={root / 'tfrecords'}", f"--config.data.samples_dir={root / 'samples'}",
          *extra]


def run_cli(args, devices=1, env_extra=None, **kw):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **(env_extra or {}))
  return subprocess.run([sys.executable, "-m", "hcjax.cli", *args], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=600, **kw)


def losses(workdir):
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def final_params(workdir, step):
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(json.load(open(os.path.join(workdir, "config.json"))))
  return train.restore_for_inference(config, str(workdir), step)[3].params


# --- one sharded step equals one unsharded step ---------------------------------------------------

def _one_step(config, devices):
  task, model, mesh, tx, schedule, init, rng, abstract, shardings = train.build(config, devices=devices)
  state = jax.jit(init, out_shardings=shardings)(rng)
  rng_np = np.random.default_rng(0)
  batch = {"image": rng_np.integers(0, 256, size=(8, 32, 32, 3)).astype(np.uint8),
           "attributes": rng_np.integers(0, 2, size=(8, 40)).astype(np.int32),
           "landmarks": np.zeros((8, 5, 2), np.float32)}
  batch = jax.device_put(batch, sharding.batch_sharding(mesh))
  step = jax.jit(train.make_train_step(model, task, tx, schedule, config),
                 out_shardings=(shardings, sharding.replicated(mesh)))
  state, metrics = step(state, batch)
  return state, jax.device_get(metrics)


def test_sharded_step_equals_single_device(tmp_path):
  config = make_config(tmp_path, mesh=(("data", 4), ("fsdp", 2)))
  config.sharding.fsdp_min_size = 256
  state8, m8 = _one_step(config, jax.devices())
  config1 = make_config(tmp_path, mesh=(("data", 1), ("fsdp", 1)))
  state1, m1 = _one_step(config1, jax.devices()[:1])
  np.testing.assert_allclose(m8["loss"], m1["loss"], atol=1e-5)
  for a, b in zip(jax.tree.leaves(state8.params), jax.tree.leaves(state1.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  # Large parameters are split over "fsdp": each device holds half of them.
  kernel = state8.params["head"]["kernel"] if "head" in state8.params else None
  sharded = [x for x in jax.tree.leaves(state8.params) if x.size >= 256]
  assert sharded
  for x in sharded:
    if "fsdp" in tuple(x.sharding.spec):
      assert x.addressable_shards[0].data.size * 2 == x.size
  assert any("fsdp" in tuple(x.sharding.spec) for x in sharded)
  del kernel


# --- full runs --------------------------------------------------------------------------------------

def test_train_evaluates_writes_pictures_and_exports(data_dir, tmp_path):
  config = make_config(data_dir, export_at_end=True)
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 6 and not result["preempted"]
  assert 0.0 <= result["mean_accuracy"] <= 1.0 and "majority_baseline" in result
  assert len([k for k in result if k.startswith("accuracy/")]) == 40
  assert os.path.exists(tmp_path / "config.json")
  assert os.listdir(tmp_path / "pictures")
  assert set(losses(tmp_path)) == {2, 3, 4, 6}
  # The export runs without the model code and equals the in-process model.
  from hcjax import export  # pylint: disable=g-import-not-at-top
  run = export.load_exported(str(tmp_path / "export"))
  task, model, _, state = train.restore_for_inference(config, str(tmp_path))
  x = np.random.default_rng(1).integers(0, 256, size=(3, 32, 32, 3)).astype(np.uint8)
  expected = task.predict(model.apply({"params": state.params, "batch_stats": state.batch_stats},
                                      task.model_inputs({"image": x}), train=False))
  np.testing.assert_allclose(np.asarray(run(x)), np.asarray(expected), atol=1e-5)
  # `hcjax export` from the workdir alone, lowered for several platforms.
  assert cli.main(["export", "--workdir", str(tmp_path), "--out", str(tmp_path / "again"),
                   "--platforms=cpu,tpu"]) == 0
  assert json.load(open(tmp_path / "again" / "meta.json"))["platforms"] == ["cpu", "tpu"]
  np.testing.assert_allclose(np.asarray(export.load_exported(str(tmp_path / "again"))(x)),
                             np.asarray(expected), atol=1e-5)


def test_kill9_then_resume_is_bitwise_identical(data_dir, tmp_path):
  extra = ["--config.total_steps=12", "--config.checkpoint_every=3", "--config.log_every=1"]
  ref = run_cli(["train", *cli_args(data_dir, tmp_path / "ref", *extra)])
  assert ref.returncode == 0, ref.stderr[-3000:]

  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  proc = subprocess.Popen([sys.executable, "-m", "hcjax.cli", "train",
                           *cli_args(data_dir, tmp_path / "run", *extra)],
                          env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt_dir = tmp_path / "run" / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(ckpt_dir) and checkpoint.Checkpointer(str(ckpt_dir)).latest_step():
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  resumed = run_cli(["train", *cli_args(data_dir, tmp_path / "run", *extra)])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  a, b = final_params(tmp_path / "ref", 12), final_params(tmp_path / "run", 12)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  ref_losses, run_losses = losses(tmp_path / "ref"), losses(tmp_path / "run")
  assert all(run_losses[s] == ref_losses[s] for s in run_losses)


def test_sigterm_checkpoints_and_exits_cleanly(data_dir, tmp_path):
  extra = ["--config.total_steps=400", "--config.checkpoint_every=200", "--config.log_every=1"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  proc = subprocess.Popen([sys.executable, "-m", "hcjax.cli", "train",
                           *cli_args(data_dir, tmp_path, *extra)],
                          env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while time.time() < deadline and not (
      os.path.exists(tmp_path / "metrics.jsonl") and len(losses(tmp_path)) >= 3):
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  assert "preempted" in out
  step = checkpoint.Checkpointer(str(tmp_path / "checkpoints")).latest_step()
  assert step is not None and 3 <= step < 400 and step % 200
  # Running the same command again continues from there to the end.
  again = run_cli(["train", *cli_args(data_dir, tmp_path, "--config.total_steps=" + str(step + 2),
                                      "--config.checkpoint_every=200", "--config.log_every=1")])
  assert again.returncode == 0, again.stderr[-3000:]
  assert f"step {step + 2}:" in again.stdout


@pytest.mark.slow  # over 25 s on a 2-core CPU; run with -m slow
def test_restore_onto_a_different_device_count(data_dir, tmp_path):
  extra = ["--config.total_steps=3", "--config.mesh=(('data', 4), ('fsdp', 2))",
           "--config.sharding.fsdp_min_size=256"]
  run8 = run_cli(["train", *cli_args(data_dir, tmp_path, *extra)], devices=8)
  assert run8.returncode == 0, run8.stderr[-3000:]
  eval8 = run_cli(["eval", "--workdir", str(tmp_path)], devices=8)
  assert eval8.returncode == 0, eval8.stderr[-3000:]
  eval1 = run_cli(["eval", "--workdir", str(tmp_path), "--config",
                   os.path.join(REPO, "configs", "quickstart.py:test"),
                   f"--config.data.dir={data_dir / 'tfrecords'}",
                   "--config.mesh=(('data', 1), ('fsdp', 1))"], devices=1)
  assert eval1.returncode == 0, eval1.stderr[-3000:]
  m8, m1 = json.loads(eval8.stdout), json.loads(eval1.stdout)
  assert m8["examples"] == m1["examples"] > 0
  np.testing.assert_allclose(m8["mean_accuracy"], m1["mean_accuracy"], atol=1e-6)
  np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-4)
  # And training resumes on 1 device from the 8-device checkpoint.
  resume = run_cli(["train", *cli_args(data_dir, tmp_path, "--config.total_steps=5",
                                       "--config.mesh=(('data', 1), ('fsdp', 1))")], devices=1)
  assert resume.returncode == 0, resume.stderr[-3000:]
  assert "step 5:" in resume.stdout


def test_two_processes_give_the_same_losses_as_one(data_dir, tmp_path):
  extra = ["--config.total_steps=3", "--config.log_every=1", "--config.shuffle_window=0",
           "--config.eval_every=0", "--config.checkpoint_every=0"]
  single = run_cli(["train", *cli_args(data_dir, tmp_path / "one", *extra)], devices=2)
  assert single.returncode == 0, single.stderr[-3000:]
  import portpicker  # pylint: disable=g-import-not-at-top
  port = portpicker.pick_unused_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  procs = [subprocess.Popen(
      [sys.executable, "-m", "hcjax.cli", "train", *cli_args(data_dir, tmp_path / "two", *extra),
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
  assert sorted(one) == sorted(two) == [1, 2, 3]
  for s in one:
    np.testing.assert_allclose(two[s], one[s], atol=1e-5)


def test_missing_peer_aborts(data_dir, tmp_path):
  import portpicker  # pylint: disable=g-import-not-at-top
  port = portpicker.pick_unused_port()
  result = run_cli(["train", *cli_args(data_dir, tmp_path),
                    f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                    "--process_id=1", "--init_timeout=5"])
  # The missing peer aborts the process (SIGABRT) instead of hanging.
  assert result.returncode != 0


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
  config = make_config(data_dir, total_steps=40, log_every=1, checkpoint_every=1)
  config.optimizer.learning_rate = 1e38
  config.optimizer.grad_clip_norm = 0.0
  config.optimizer.warmup_steps = 0
  with pytest.raises(observe.NonFiniteError, match=r"step \d+") as e:
    train.train_and_evaluate(config, str(tmp_path))
  assert "loss" in str(e.value) or "grad_norm" in str(e.value)
  bad_step = int(str(e.value).split("step ")[1].split()[0].strip(":,"))
  with checkpoint.Checkpointer(str(tmp_path / "checkpoints")) as ckpt:
    latest = ckpt.latest_step()
  assert latest is not None and latest < bad_step
  params = final_params(tmp_path, latest)
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("extra,message", [
    (["--config.batch_size=0"], "config.batch_size must be a positive integer"),
    (["--config.batch_size=12", "--config.mesh=(('data', 8), ('fsdp', 1))"], "must be a positive multiple"),
    (["--config.mesh=(('data', 3), ('fsdp', 1))"], "config.mesh"),
    (["--config.model.depth=19"], "config.model.depth"),
    (["--config.optimizer.name=lamb"], "config.optimizer.name"),
    (["--config.no_such_key=1"], "no_such_key"),
    (["--config.data.make_samples=False", "--config.data.dir=/nonexistent/celeba"],
     "/nonexistent/celeba"),
])
def test_config_errors_are_one_line(data_dir, tmp_path, capsys, extra, message):
  args = cli_args(data_dir, tmp_path, *extra)
  assert cli.main(["train", *args]) == 2
  err = capsys.readouterr().err
  assert err.startswith("hcjax: error:") and message in err and err.count("\n") == 1, err


def test_missing_workdir_and_config(capsys):
  assert cli.main(["train", "--config", os.path.join(REPO, "configs", "quickstart.py:test")]) == 2
  assert "--workdir" in capsys.readouterr().err
  assert cli.main(["eval", "--workdir", "/nonexistent/run"]) == 2
  assert "needs --config" in capsys.readouterr().err


def test_validate_rejects_missing_init_from(tmp_path):
  config = make_config(tmp_path, init_from=str(tmp_path / "missing"))
  with pytest.raises(ConfigError, match="init_from"):
    train.validate(config)


@pytest.mark.slow  # over 25 s on a 2-core CPU; run with -m slow
def test_init_from_another_run(data_dir, tmp_path):
  first = make_config(data_dir, total_steps=2, eval_every=0)
  first.optimizer.warmup_steps = 0
  train.train_and_evaluate(first, str(tmp_path / "a"))
  second = make_config(data_dir, total_steps=1, eval_every=0,
                       init_from=str(tmp_path / "a" / "checkpoints"))
  second.optimizer.warmup_steps = 0
  task, model, mesh, tx, schedule, init, rng, abstract, shardings = train.build(second)
  saved = final_params(tmp_path / "a", 2)
  restored = checkpoint.restore_params(str(tmp_path / "a" / "checkpoints"), abstract.params)
  for x, y in zip(jax.tree.leaves(saved), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  result = train.train_and_evaluate(second, str(tmp_path / "b"))
  assert result["step"] == 1


@pytest.mark.slow  # over 25 s on a 2-core CPU; run with -m slow
def test_bfloat16_compute_is_close_to_float32(tmp_path):
  base = make_config(tmp_path, mesh=(("data", 1), ("fsdp", 1)))
  _, m_full = _one_step(base, jax.devices()[:1])
  mixed = make_config(tmp_path, mesh=(("data", 1), ("fsdp", 1)))
  mixed.model.dtype = "bfloat16"
  state, m_mixed = _one_step(mixed, jax.devices()[:1])
  np.testing.assert_allclose(m_mixed["loss"], m_full["loss"], rtol=0.02)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))


class _Regression:
  """A task without BatchNorm, so microbatches must add up to the full batch exactly."""

  def model_inputs(self, batch):
    return batch["x"]

  def loss(self, outputs, batch):
    err = outputs - batch["y"]
    return (err ** 2).mean(), {"mae": jnp.abs(err).mean()}


class _Linear(nn.Module):

  @nn.compact
  def __call__(self, x, train):
    del train
    return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


def test_gradient_accumulation_equals_the_full_batch():
  import ml_collections  # pylint: disable=g-import-not-at-top
  model, task = _Linear(), _Regression()
  tx, schedule = optim.make_optimizer(ml_collections.ConfigDict(
      {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}), 10)
  rng = np.random.default_rng(0)
  batch = {"x": jnp.asarray(rng.normal(size=(8, 5)), jnp.float32),
           "y": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)}
  params = model.init(jax.random.PRNGKey(0), batch["x"], train=False)["params"]
  results = []
  for accum in (1, 2, 4):
    config = ml_collections.ConfigDict({"seed": 0, "grad_accum_steps": accum})
    step = jax.jit(train.make_train_step(model, task, tx, schedule, config))
    state = train.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                             opt_state=tx.init(params))
    for _ in range(2):
      state, metrics = step(state, batch)
    results.append((state, metrics))
  (ref, ref_m), *others = results
  for state, metrics in others:
    np.testing.assert_allclose(metrics["loss"], ref_m["loss"], rtol=1e-6)
    np.testing.assert_allclose(metrics["mae"], ref_m["mae"], rtol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], ref_m["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

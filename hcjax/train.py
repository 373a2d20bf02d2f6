"""THE trainer: train_and_evaluate(config, workdir). Reads top to bottom.

config keys it uses (tasks read their own): task, seed, batch_size, total_steps, mesh,
sharding.{rules, fsdp_min_size}, optimizer.*, grad_accum_steps, input_workers, shuffle_window,
on_corrupt, log_every, eval_every, checkpoint_every, keep_checkpoints, init_from,
export_at_end, picture_every.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
from collections.abc import Mapping
from typing import Any

import flax
from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from hcjax import checkpoint, observe, optim, sharding, tasks
from hcjax.data import pipeline
from hcjax.errors import ConfigError


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def validate(config) -> None:
  """Fails early, naming the key, before anything expensive happens."""
  for key in ("task", "batch_size", "total_steps", "mesh", "optimizer"):
    if key not in config:
      raise ConfigError(f"config.{key} is missing")
  for key in ("batch_size", "total_steps"):
    if not isinstance(config[key], int) or config[key] <= 0:
      raise ConfigError(f"config.{key} must be a positive integer, got {config[key]!r}")
  accum = config.get("grad_accum_steps", 1)
  if accum < 1 or config.batch_size % accum:
    raise ConfigError(f"config.grad_accum_steps={accum} must be >= 1 and divide "
                      f"config.batch_size={config.batch_size}")
  for key in ("log_every", "eval_every", "checkpoint_every"):
    if config.get(key, 1) < 0:
      raise ConfigError(f"config.{key} must be >= 0 (0 = only at the end), got {config[key]}")
  init_from = config.get("init_from", "")
  if init_from and not os.path.exists(init_from):
    raise ConfigError(f"config.init_from={init_from!r} does not exist")


# --- state construction ---------------------------------------------------------------------------

def _init_fn(model, task, tx, input_spec):
  def init(rng):
    x = task.model_inputs({"image": jnp.zeros((1,) + tuple(input_spec.shape), input_spec.dtype)})
    variables = model.init({"params": rng, "dropout": rng}, x, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))
  return init


def abstract_state(init, rng, mesh, config) -> tuple[Any, Any]:
  """(shapes with shardings, shardings) of the TrainState, without allocating it."""
  shapes = jax.eval_shape(init, rng)
  rules = config.get("sharding", {}).get("rules", [(".*", "fsdp")])
  min_size = int(config.get("sharding", {}).get("fsdp_min_size", 2 ** 14))
  shardings = sharding.tree_shardings(shapes, mesh, rules, min_size)
  abstract = jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
  return abstract, shardings


# --- the steps ------------------------------------------------------------------------------------

def make_train_step(model, task, tx, schedule, config):
  accum = int(config.get("grad_accum_steps", 1))
  dropout_root = jax.random.fold_in(jax.random.PRNGKey(int(config.get("seed", 0))), 1)

  def loss_fn(params, batch_stats, batch, rng):
    outputs, updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, task.model_inputs(batch), train=True,
        mutable=["batch_stats"], rngs={"dropout": rng})
    loss, aux = task.loss(outputs, batch)
    return loss, (aux, updates.get("batch_stats", batch_stats))

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(dropout_root, state.step)
    if accum == 1:
      (loss, (aux, batch_stats)), grads = grad_fn(state.params, state.batch_stats, batch, rng)
    else:  # Microbatches in a scan: the memory of one, the gradient of all.
      micro = jax.tree.map(lambda x: x.reshape((accum, -1) + x.shape[1:]), batch)

      def body(carry, xs):
        grads_sum, loss_sum, aux_sum, stats = carry
        i, mb = xs
        (l, (a, stats)), g = grad_fn(state.params, stats, mb, jax.random.fold_in(rng, i))
        return (jax.tree.map(jnp.add, grads_sum, g), loss_sum + l,
                jax.tree.map(jnp.add, aux_sum, a), stats), None

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      aux_shape = jax.eval_shape(lambda: loss_fn(state.params, state.batch_stats,
                                                 jax.tree.map(lambda x: x[0], micro), rng)[1][0])
      aux0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux_shape)
      (grads, loss, aux, batch_stats), _ = jax.lax.scan(
          body, (zeros, jnp.zeros((), jnp.float32), aux0, state.batch_stats),
          (jnp.arange(accum), micro))
      grads = jax.tree.map(lambda g: g / accum, grads)
      loss, aux = loss / accum, jax.tree.map(lambda a: a / accum, aux)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    candidate = TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                           batch_stats=batch_stats, opt_state=opt_state)
    # A non-finite step changes nothing but the step: the last good parameters survive until the
    # host sees `finite` and stops the run.
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), candidate,
                             state.replace(step=state.step + 1))
    metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(state.step),
               "finite": finite, **aux}
    return new_state, metrics

  return train_step


def make_eval_step(model, task):
  def eval_step(state: TrainState, batch):
    outputs = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                          task.model_inputs(batch), train=False)
    return task.eval_statistics(outputs, batch), task.predict(outputs)
  return eval_step


# --- evaluation -----------------------------------------------------------------------------------

def evaluate(state, task, eval_step, mesh, config, *, picture: bool = False):
  """One full pass over the eval split; every example counts once across processes."""
  cfg = pipeline.PipelineConfig(
      pattern=task.data_pattern("eval"), batch_size=int(config.get("eval_batch_size", config.batch_size)),
      train=False, num_workers=int(config.get("input_workers", 0)),
      on_corrupt=config.get("on_corrupt", "error"))
  data_sharding = sharding.batch_sharding(mesh)
  totals: dict[str, np.ndarray] = {}
  image = None
  with pipeline.InputIterator(cfg, functools.partial(task.preprocess, train=False)) as it:
    for i, local in enumerate(it):
      stats, predictions = eval_step(state, pipeline.to_global(local, data_sharding))
      for key, value in jax.device_get(stats).items():
        totals[key] = totals.get(key, 0) + np.asarray(value, np.float64)
      if picture and i == 0:
        local_predictions = multihost_utils.global_array_to_host_local_array(
            predictions, mesh, P(sharding.BATCH_AXES))
        image = task.visualize(local, jax.tree.map(np.asarray, local_predictions))
  return task.summarize(totals), image


# --- the loop -------------------------------------------------------------------------------------

class _Preemption:
  """SIGTERM -> finish the current step, write a checkpoint, exit cleanly."""

  def __init__(self):
    self.requested = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: checkpointing after this step, then stopping")
    self.requested = True

  def check(self, step: int, every: int) -> bool:
    if jax.process_count() == 1:
      return self.requested
    if step % every:
      return False  # All processes must agree; ask them together every few steps.
    flags = multihost_utils.process_allgather(np.array(self.requested))
    return bool(np.any(flags))

  def restore(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def build(config, devices=None):
  """Task, model, mesh, optimizer and the state's abstract description."""
  validate(config)
  task = tasks.get_task(config)
  mesh = sharding.make_mesh(config.mesh, devices)
  data_axes = mesh.shape["data"] * mesh.shape["fsdp"]
  for key in ("batch_size", "eval_batch_size"):
    value = config.get(key, config.batch_size)
    if not isinstance(value, int) or value <= 0 or value % data_axes:
      raise ConfigError(f"config.{key}={value} must be a positive multiple of the "
                        f"{data_axes} data-parallel devices of config.mesh")
  model = task.build_model()
  tx, schedule = optim.make_optimizer(config.optimizer, config.total_steps)
  init = _init_fn(model, task, tx, task.input_spec())
  rng = jax.random.PRNGKey(int(config.get("seed", 0)))
  abstract, shardings = abstract_state(init, rng, mesh, config)
  return task, model, mesh, tx, schedule, init, rng, abstract, shardings


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains, evaluates, checkpoints (and exports); returns the last eval metrics."""
  task, model, mesh, tx, schedule, init, rng, abstract, shardings = build(config)
  chief = jax.process_index() == 0
  if chief:
    task.prepare_data()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("hcjax:prepare_data")

  train_cfg = pipeline.PipelineConfig(
      pattern=task.data_pattern("train"), batch_size=config.batch_size, train=True,
      seed=int(config.get("seed", 0)), shuffle_window=int(config.get("shuffle_window", 1024)),
      num_workers=int(config.get("input_workers", 0)), on_corrupt=config.get("on_corrupt", "error"))
  train_iter = pipeline.InputIterator(train_cfg, functools.partial(task.preprocess, train=True),
                                      sharding=sharding.batch_sharding(mesh))

  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 keep=int(config.get("keep_checkpoints", 3)))
  latest = ckpt.latest_step()
  if latest is not None:  # Resume order: this workdir, then config.init_from, then scratch.
    state, data_state, _ = ckpt.restore(abstract, latest)
    if data_state is not None:
      train_iter.set_state(data_state)
    logging.info("resumed from %s at step %d", workdir, latest)
  else:
    state = jax.jit(init, out_shardings=shardings)(rng)
    if config.get("init_from"):
      restored = traverse_util.flatten_dict(
          checkpoint.restore_params(config.init_from, abstract.params, missing_ok=True), sep="/")
      params = traverse_util.flatten_dict(state.params, sep="/")
      fresh = sorted(set(params) - set(restored))
      params.update(restored)
      state = state.replace(params=traverse_util.unflatten_dict(params, sep="/"))
      logging.info("initialised %d of %d parameter arrays from %s%s", len(restored), len(params),
                   config.init_from, f"; new: {', '.join(fresh)}" if fresh else "")

  train_step = jax.jit(make_train_step(model, task, tx, schedule, config),
                       out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,))
  eval_step = jax.jit(make_eval_step(model, task), out_shardings=(sharding.replicated(mesh), None))

  total = int(config.total_steps)
  start = int(jax.device_get(state.step))
  log_every = int(config.get("log_every", 50)) or total
  eval_every = int(config.get("eval_every", 0)) or total
  ckpt_every = int(config.get("checkpoint_every", 0)) or total
  obs = observe.Observer(workdir, is_chief=chief, total_steps=total,
                         global_batch_size=config.batch_size, start_step=start)
  obs.write_config(config.to_dict())
  preemption = _Preemption()
  last_eval: dict[str, Any] = {}
  step = start
  try:
    while step < total:
      batch = next(train_iter)
      state, metrics = train_step(state, batch)
      step += 1
      obs.step(step)
      stop = preemption.check(step, int(config.get("preemption_check_every", 10)))
      save = step % ckpt_every == 0 or step == total or stop
      if step % log_every == 0 or save or step == total:
        values = jax.device_get(metrics)
        if not values.pop("finite"):
          obs.check_finite(step, {"loss": values["loss"], "grad_norm": values["grad_norm"]})
        if train_iter.num_skipped:
          values["corrupt_records_skipped"] = train_iter.num_skipped
        obs.scalars(step, values, "train")
      if save:
        ckpt.save(step, state, data_state=train_iter.get_state(), config=config.to_dict(),
                  force=True)
      if step % eval_every == 0 or step == total:
        last_eval, picture = evaluate(state, task, eval_step, mesh, config, picture=True)
        obs.scalars(step, last_eval, "eval")
        if picture is not None:
          obs.image(step, "eval_predictions", picture)
      if stop:
        logging.warning("stopped for preemption at step %d; checkpoint written", step)
        break
  finally:
    preemption.restore()
    train_iter.close()
    ckpt.close()
    obs.close()
  if step == total and config.get("export_at_end", False) and chief:
    export_dir = os.path.join(workdir, "export")
    export_state(task, model, state, export_dir)
  if chief and last_eval:
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
      json.dump({"step": step, **last_eval}, f, indent=2, sort_keys=True)
  return {"step": step, "preempted": step < total, **last_eval}


# --- using a trained workdir ----------------------------------------------------------------------

def inference_config(workdir: str, task: str | tuple[str, ...]):
  """The run's own config (WORKDIR/config.json), set up for inference on the devices at hand.

  `task` is the task (or tasks) the calling tool serves; a run of another task is a ConfigError.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ConfigError(f"no {path}: --workdir must be the directory of a training run")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  served = (task,) if isinstance(task, str) else tuple(task)
  if config.get("task") not in served:
    raise ConfigError(f"{workdir} was trained for task {config.get('task')!r}, not "
                      f"{' or '.join(served)}")
  # Parameters replicated, batch sizes that fit whatever devices are here.
  config.mesh = (("data", -1), ("fsdp", 1))
  config.batch_size = config.eval_batch_size = jax.device_count()
  config.grad_accum_steps = 1
  return config


def restore_for_inference(config, workdir: str, step: int | None = None):
  """(task, model, state) from a workdir's checkpoint, on the devices at hand."""
  task, model, mesh, _, _, _, _, abstract, _ = build(config)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  step = step if step is not None else ckpt.latest_step()
  if step is None:
    ckpt.close()
    raise ConfigError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first")
  state, _, _ = ckpt.restore(abstract, step)
  ckpt.close()
  return task, model, mesh, state


def evaluate_workdir(config, workdir: str) -> dict[str, float]:
  task, model, mesh, state = restore_for_inference(config, workdir)
  metrics, _ = evaluate(state, task, jax.jit(make_eval_step(model, task)), mesh, config)
  return metrics


def export_state(task, model, state, out_dir: str, platforms=("cpu",)) -> str:
  """Inference function + parameters -> out_dir (see hcjax/export.py)."""
  from hcjax import export  # pylint: disable=g-import-not-at-top
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  variables = jax.tree.map(np.asarray, multihost_utils.process_allgather(variables, tiled=True))

  def apply_fn(variables, x):
    return task.predict(model.apply(variables, task.model_inputs({"image": x}), train=False))

  return export.export_model(apply_fn, variables, task.input_spec(), out_dir,
                             metadata=task.export_metadata(), platforms=platforms)


SUMMARY_KEYS = ("mean_accuracy", "majority_baseline", "miou", "miou_unary", "pixel_accuracy", "psnr",
                "baseline_psnr", "ssim", "baseline_ssim", "auc", "acer", "eer", "accuracy",
                "category_top3_accuracy", "landmark_normalized_error")


def summarize_metrics(metrics: Mapping[str, Any], keys=SUMMARY_KEYS) -> str:
  return "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)

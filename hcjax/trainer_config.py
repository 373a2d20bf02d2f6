"""The trainer's part of a config, built the same way by every configs/*.py.

A config states its model, data and loss, then one `add_training` call with the numbers that are
its own (batch, steps, learning rate, how often to log and save); the rest (the optimizer's
defaults, the mesh, the input and checkpoint settings) is spelled once here. Every key stays an
ordinary ConfigDict entry: a variant or a command-line flag (--config.log_every=1) overrides it.
"""

from __future__ import annotations

from typing import Sequence

import ml_collections


def parse_variant(arg: str | None, config_file: str, sizes: Sequence[str],
                  options: Sequence[str], example: str) -> tuple[str, set[str]]:
  """"full,opt" -> ("full", {"opt"}): at most one of `sizes` (default: the first) and any of
  `options`, comma-separated in any order; anything else raises ValueError naming
  config_file and the choices."""
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  chosen = [p for p in parts if p in sizes]
  unknown = [p for p in parts if p not in tuple(sizes) + tuple(options)]
  if unknown or len(chosen) > 1:
    raise ValueError(f"unknown variant {arg!r} of {config_file}; choose one size of "
                     f"{tuple(sizes)} and any of {tuple(options)} (e.g. {example!r})")
  return (chosen[0] if chosen else sizes[0]), set(parts) - set(sizes)


def optimizer(learning_rate: float, warmup_steps: int, *, name: str = "adamw",
              schedule: str = "cosine", weight_decay: float = 1e-4, grad_clip_norm: float = 1.0,
              freeze: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """config.optimizer as hcjax.optim reads it: AdamW, warmup then cosine decay, weight decay
  on weights only, clipping at global norm 1; `freeze` holds regexes of parameter paths kept
  fixed."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.learning_rate = learning_rate
  c.schedule = schedule
  c.warmup_steps = warmup_steps
  c.weight_decay = weight_decay
  c.grad_clip_norm = grad_clip_norm
  c.freeze = tuple(freeze)
  return c


def add_training(c: ml_collections.ConfigDict, *, optimizer: ml_collections.ConfigDict,
                 batch_size: int, eval_batch_size: int, total_steps: int, shuffle_window: int,
                 log_every: int, eval_every: int, checkpoint_every: int,
                 init_from: str = "") -> ml_collections.ConfigDict:
  """Sets the batch, the optimizer, the mesh and the loop's keys of config `c`; returns it.

  The mesh is data-parallel over every device with an "fsdp" axis of 1: the sharding rule
  already names it for parameters of 2^14 elements or more, so enlarging the axis
  (--config.mesh) shards them without other changes. eval_every / checkpoint_every 0: only at
  the end. init_from: a workdir whose parameters start this run (those it has; new ones start
  fresh).
  """
  c.batch_size = batch_size
  c.eval_batch_size = eval_batch_size
  c.total_steps = total_steps
  c.grad_accum_steps = 1
  c.optimizer = optimizer

  c.mesh = (("data", -1), ("fsdp", 1))
  c.sharding = ml_collections.ConfigDict()
  c.sharding.rules = ((".*", "fsdp"),)
  c.sharding.fsdp_min_size = 2 ** 14

  c.input_workers = 0
  c.shuffle_window = shuffle_window
  c.on_corrupt = "error"
  c.log_every = log_every
  c.eval_every = eval_every
  c.checkpoint_every = checkpoint_every
  c.keep_checkpoints = 3
  c.init_from = init_from
  c.export_at_end = True
  return c

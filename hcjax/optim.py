"""optax optimizer and learning-rate schedule from config.optimizer.

config.optimizer: name (sgd | adam | adamw), learning_rate, schedule (constant | cosine | step),
warmup_steps, decay_boundaries / decay_factor (step), momentum, nesterov, b1, b2, eps,
weight_decay, weight_decay_exclude (regex on parameter paths; default: biases and norm scales),
grad_clip_norm (0 = off), freeze (regexes on parameter paths kept fixed: zero update, no weight
decay; e.g. ("unary/.*",) for a stage that trains only what sits on top of a pretrained unary).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import optax

from hcjax.sharding import path_name

from hcjax.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
DEFAULT_NO_DECAY = r"(bias|scale|/bn\w*/|norm)"


class OptimizerConfigError(ConfigError):
  """config.optimizer holds a value the trainer cannot use."""


def _get(cfg: Any, key: str, default: Any) -> Any:
  return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def make_schedule(cfg: Any, total_steps: int) -> optax.Schedule:
  lr = float(_get(cfg, "learning_rate", 1e-3))
  warmup = int(_get(cfg, "warmup_steps", 0))
  kind = _get(cfg, "schedule", "constant")
  if kind not in SCHEDULES:
    raise OptimizerConfigError(f"config.optimizer.schedule must be one of {SCHEDULES}, got {kind!r}")
  if lr <= 0:
    raise OptimizerConfigError(f"config.optimizer.learning_rate must be > 0, got {lr}")
  if warmup < 0 or warmup >= max(total_steps, 1) and kind == "cosine":
    raise OptimizerConfigError(
        f"config.optimizer.warmup_steps={warmup} must be in [0, total_steps={total_steps})")
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup))
  else:
    boundaries = [int(b) for b in _get(cfg, "decay_boundaries", ())]
    factor = float(_get(cfg, "decay_factor", 0.1))
    main = optax.piecewise_constant_schedule(
        lr, {max(1, b - warmup): factor for b in boundaries})
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def weight_decay_mask(params: Any, exclude: str) -> Any:
  regex = re.compile(exclude)
  return jax.tree_util.tree_map_with_path(lambda p, _: not regex.search(path_name(p)), params)


def make_optimizer(cfg: Any, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  name = _get(cfg, "name", "adamw")
  if name not in OPTIMIZERS:
    raise OptimizerConfigError(f"config.optimizer.name must be one of {OPTIMIZERS}, got {name!r}")
  schedule = make_schedule(cfg, total_steps)
  wd = float(_get(cfg, "weight_decay", 0.0))
  exclude = _get(cfg, "weight_decay_exclude", DEFAULT_NO_DECAY)
  mask = lambda params: weight_decay_mask(params, exclude)
  parts = []
  clip = float(_get(cfg, "grad_clip_norm", 0.0))
  if clip > 0:
    parts.append(optax.clip_by_global_norm(clip))
  if name == "sgd":
    if wd:
      parts.append(optax.add_decayed_weights(wd, mask))
    parts.append(optax.sgd(schedule, momentum=_get(cfg, "momentum", 0.9) or None,
                           nesterov=bool(_get(cfg, "nesterov", False))))
  elif name == "adam":
    if wd:  # L2 regularisation through the gradient, as classic Adam does.
      parts.append(optax.add_decayed_weights(wd, mask))
    parts.append(optax.adam(schedule, b1=_get(cfg, "b1", 0.9), b2=_get(cfg, "b2", 0.999),
                            eps=_get(cfg, "eps", 1e-8)))
  else:
    parts.append(optax.adamw(schedule, b1=_get(cfg, "b1", 0.9), b2=_get(cfg, "b2", 0.999),
                             eps=_get(cfg, "eps", 1e-8), weight_decay=wd, mask=mask))
  tx = optax.chain(*parts)
  freeze = tuple(_get(cfg, "freeze", ()) or ())
  if freeze:
    for pattern in freeze:
      try:
        re.compile(pattern)
      except re.error as e:
        raise OptimizerConfigError(f"config.optimizer.freeze: bad regex {pattern!r}: {e}") from None
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                               lambda params: frozen_labels(params, freeze))
  return tx, schedule


def frozen_labels(params: Any, freeze: tuple[str, ...]) -> Any:
  """"frozen" for parameters whose path matches one of the regexes, else "train"."""
  regexes = [re.compile(p) for p in freeze]
  return jax.tree_util.tree_map_with_path(
      lambda p, _: "frozen" if any(r.search(path_name(p)) for r in regexes) else "train", params)

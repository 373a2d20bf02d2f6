"""The only file that talks to orbax.

A checkpoint is one step directory with three items: "state" (the train state's arrays, each
process writing its own shards), "data" (the input pipeline's iterator state) and "config" (both
JSON, written by the primary process). Saves are asynchronous and atomic: orbax writes into a
temporary directory and renames it once everything is on disk, so a save that is killed midway
leaves the previous checkpoint as the newest complete one. Restores go straight onto the shardings
the caller asks for now, which may be another mesh or device count than at save time.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

STATE, DATA, CONFIG = "state", "data", "config"
_JSON_ITEMS = (DATA, CONFIG)


class CheckpointError(RuntimeError):
  """A checkpoint does not fit the state it is restored into."""


# --- logging --------------------------------------------------------------------------------------

class _OrbaxLogFilter(logging.Filter):
  """Orbax logs every save and restore at INFO through absl; our users want one line per event.

  Only orbax's records are dropped: other libraries logging through absl keep their levels.
  """

  def __init__(self):
    super().__init__()
    self.level = logging.WARNING
    self._marker = f"{os.sep}orbax{os.sep}"

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= self.level or self._marker not in record.pathname


_LOG_FILTER = _OrbaxLogFilter()


def _set_orbax_verbosity(verbose: bool) -> None:
  _LOG_FILTER.level = logging.NOTSET if verbose else logging.WARNING
  absl_logger = logging.getLogger("absl")
  if _LOG_FILTER not in absl_logger.filters:
    absl_logger.addFilter(_LOG_FILTER)


# --- the checkpointer -----------------------------------------------------------------------------

def _handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
  """Names the items up front so a fresh process can read metadata before any save or restore."""
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  state_handler = ocp.StandardCheckpointHandler()
  registry.add(STATE, ocp.args.StandardSave, state_handler)
  registry.add(STATE, ocp.args.StandardRestore, state_handler)
  for name in _JSON_ITEMS:
    json_handler = ocp.JsonCheckpointHandler()
    registry.add(name, ocp.args.JsonSave, json_handler)
    registry.add(name, ocp.args.JsonRestore, json_handler)
  return registry


class Checkpointer:
  """Keeps the last `keep` checkpoints of one run under `directory`.

  Every process of a multi-process job must make the same calls (save, restore, close) with the
  same arguments: orbax synchronises them and writes each array shard once. `verbose` lets
  orbax's INFO logs through (process-wide, like any logging setting).
  """

  def __init__(self, directory: str, *, keep: int | None = 3, async_save: bool = True,
               save_interval_steps: int = 1, verbose: bool = False):
    if keep is not None and keep < 1:
      raise ValueError(f"keep must be a positive number of checkpoints or None (all); got {keep}")
    if save_interval_steps < 1:
      raise ValueError(f"save_interval_steps must be >= 1; got {save_interval_steps}")
    _set_orbax_verbosity(verbose)
    self.directory = _absolute(directory)
    # The same naming for our listing as for orbax's, so "complete" means the same to both.
    self._names = ocp.path.step.standard_name_format()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=save_interval_steps,
        enable_async_checkpointing=async_save, step_name_format=self._names, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          handler_registry=_handler_registry())
    self._closed = False

  def save(self, step: int, state: Any, *, data_state: dict | None = None,
           config: dict | None = None, force: bool = False) -> bool:
    """Starts saving `state` at `step`; returns whether a save was started.

    Returns once the arrays are copied off the accelerators, so `state` may be donated to the
    next step right away. Without `force`, steps between `save_interval_steps` are skipped.
    """
    _check_json("data_state", data_state)
    _check_json("config", config)
    args = ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state),
        DATA: ocp.args.JsonSave(data_state),
        CONFIG: ocp.args.JsonSave(config),
    })
    try:
      return self._manager.save(int(step), args=args, force=force)
    except ocp.checkpoint_manager.StepAlreadyExistsError:
      logging.warning("checkpoint for step %d already exists in %s; not saved again",
                      step, self.directory)
      return False

  def all_steps(self) -> list[int]:
    """Steps of the complete checkpoints on disk, oldest first."""
    return sorted(m.step for m in self._names.find_all(self.directory))

  def latest_step(self) -> int | None:
    """The newest complete checkpoint; a save still running or killed midway does not count.

    Reads the directory without waiting: call wait_until_finished() first to count this
    checkpointer's own running save.
    """
    steps = self.all_steps()
    return steps[-1] if steps else None

  def restore(self, abstract_state: Any, step: int | None = None
              ) -> tuple[Any, dict | None, dict | None]:
    """(state, data_state, config) of `step` (default: the latest complete one).

    `abstract_state` holds jax.ShapeDtypeStruct leaves with the shardings wanted now; the arrays
    are read directly into them, whatever mesh they were saved from. Waits for this
    checkpointer's own running save first, so a step just saved can be read back.
    """
    self._manager.wait_until_finished()
    steps = self.all_steps()
    if step is None:
      if not steps:
        raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
      step = steps[-1]
    elif step not in steps:
      raise FileNotFoundError(f"no complete checkpoint for step {step} in {self.directory}; "
                              f"complete steps: {steps}")
    where = f"{self.directory / str(step)}"
    metadata = self._manager.metadata(step)
    saved_items = set(metadata.item_handlers or ()) or {STATE, *_JSON_ITEMS}
    _check_tree(metadata.item_metadata[STATE], abstract_state, where, exact=True)
    items = {STATE: ocp.args.StandardRestore(_restorable(abstract_state))}
    items.update({name: ocp.args.JsonRestore() for name in _JSON_ITEMS if name in saved_items})
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointError(f"restoring checkpoint {where} failed: {_first_line(e)}") from e
    return (restored[STATE], restored[DATA] if DATA in items else None,
            restored[CONFIG] if CONFIG in items else None)

  def wait_until_finished(self) -> None:
    """Blocks until the running save (if any) is complete on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves, then releases orbax's threads. Safe to call twice."""
    if not self._closed:
      self._closed = True
      self._manager.wait_until_finished()
      self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def restore_params(path: str, abstract_params: Any, *,
                   item_path: Sequence[str] = ("params",), missing_ok: bool = False) -> Any:
  """Reads one sub-tree of another run's state (default: its params), for config.init_from.

  `path` is a Checkpointer directory (its latest complete step is used), a run's workdir holding
  one in `checkpoints/`, or a single step's directory. Every leaf of `abstract_params` must be in
  the checkpoint with the same shape; saved leaves it does not name are left unread. With
  missing_ok, leaves the checkpoint lacks are dropped from the result instead (a later training
  stage that adds layers on top of an earlier one); at least one must be there.
  """
  step_dir = _find_step_directory(_absolute(path))
  state_dir = step_dir / STATE
  handler = ocp.PyTreeCheckpointHandler()
  saved: Any = handler.metadata(state_dir)
  saved = getattr(saved, "tree", saved)
  walked = []
  for key in item_path:
    if not isinstance(saved, dict) or key not in saved:
      have = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
      raise CheckpointError(f"{step_dir} has no {'/'.join([*walked, key])!r} in its state "
                            f"(found {have})")
    walked.append(key)
    saved = saved[key]
  if missing_ok:
    abstract_params = _prune(abstract_params, _leaf_shapes(getattr(saved, "tree", saved)))
    if not jax.tree.leaves(abstract_params):
      raise CheckpointError(f"{step_dir} ({'/'.join(item_path)}) has none of the parameters "
                            "being restored")
  _check_tree(saved, abstract_params, f"{step_dir} ({'/'.join(item_path)})", exact=False)

  target: Any = abstract_params
  for key in reversed(list(item_path)):
    target = {key: target}
  args = ocp.args.PyTreeRestore(
      item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True)
  try:
    with ocp.Checkpointer(handler) as checkpointer:
      restored = checkpointer.restore(state_dir, args=args)
  except (ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"restoring {'/'.join(item_path)} from {step_dir} failed: "
                          f"{_first_line(e)}") from e
  for key in item_path:
    restored = restored[key]
  return restored


# --- helpers --------------------------------------------------------------------------------------

def _absolute(path: str) -> epath.Path:
  """Orbax wants absolute paths; local relative ones (runs/x) are taken from the cwd."""
  if "://" in str(path):
    return epath.Path(path)
  return epath.Path(os.path.abspath(path))


def _find_step_directory(path: epath.Path) -> epath.Path:
  if not path.exists():
    raise FileNotFoundError(f"no checkpoint at {path}")
  if (path / STATE).is_dir():
    if not ocp.path.step.is_path_finalized(path):
      raise FileNotFoundError(f"{path} is an incomplete checkpoint (its save was interrupted)")
    return path
  root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
  names = ocp.path.step.standard_name_format()
  steps = sorted(m.step for m in names.find_all(root))
  if not steps:
    raise FileNotFoundError(f"no complete checkpoint at {path}")
  return names.find_step(root, steps[-1]).path


def _check_json(name: str, value: Any) -> None:
  """Fails in the caller's thread, not later inside orbax's background write."""
  try:
    json.dumps(value)
  except (TypeError, ValueError) as e:
    raise TypeError(f"{name} must be JSON-serialisable: {e}") from e


def _restorable(abstract: Any) -> Any:
  """Orbax takes 0-d arrays, not numpy scalars, as restore targets."""
  return jax.tree.map(lambda x: np.asarray(x) if isinstance(x, np.generic) else x, abstract)


def _key_name(key: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _leaf_shapes(tree: Any) -> dict[str, tuple[int, ...] | None]:
  """Leaf name ("params/dense/kernel") -> shape, the same for live trees and orbax metadata."""
  shapes = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    shape = getattr(leaf, "shape", None)
    if shape is None and isinstance(leaf, (int, float, complex, bool, np.generic)):
      shape = ()
    shapes["/".join(_key_name(k) for k in path)] = None if shape is None else tuple(shape)
  return shapes


def _prune(tree: Any, keep: dict[str, Any], prefix: str = "") -> Any:
  """The nested-dict tree without the leaves whose names are not in `keep`."""
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      sub = _prune(v, keep, f"{prefix}{k}/")
      if not isinstance(sub, dict) or sub:
        if sub is not None:
          out[k] = sub
    return out
  return tree if prefix[:-1] in keep else None


def _check_tree(saved_metadata: Any, abstract: Any, where: str, *, exact: bool) -> None:
  """Names the first leaf that differs, which orbax's own errors often do not."""
  saved = _leaf_shapes(getattr(saved_metadata, "tree", saved_metadata))
  wanted = _leaf_shapes(abstract)
  problems = []
  for name, shape in wanted.items():
    if name not in saved:
      problems.append(f"{name!r} (shape {shape}) is in the state being restored but not in the "
                      "checkpoint")
    elif None not in (shape, saved[name]) and shape != saved[name]:
      problems.append(f"{name!r} has shape {saved[name]} in the checkpoint but {shape} in the "
                      "state being restored")
  if exact:
    problems += [f"{name!r} (shape {saved[name]}) is in the checkpoint but not in the state being "
                 "restored" for name in saved if name not in wanted]
  if problems:
    more = f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else ""
    raise CheckpointError(f"checkpoint {where} does not match the state being restored "
                          f"(changed model or optimizer config?): {problems[0]}{more}")


def _first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return text[0] if text else type(e).__name__

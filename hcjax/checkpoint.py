"""The only file that talks to orbax.

A checkpoint = the train state (sharded arrays, written by every process), the input pipeline's
iterator state and the config (JSON). Saves are asynchronous and atomic (orbax writes a temporary
directory and renames it when complete), so an interrupted save never replaces the previous
checkpoint. Restores go straight onto the shardings the caller asks for, which may be another
mesh or device count than at save time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp

ITEMS = ("state", "data", "config")


class CheckpointError(RuntimeError):
  """A checkpoint does not fit the state it is restored into."""


def _quiet_orbax(verbose: bool) -> None:
  for name in ("orbax", "absl"):
    logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


class Checkpointer:
  """Keeps the last `keep` checkpoints of a run under `directory`."""

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True,
               save_interval_steps: int = 1, verbose: bool = False):
    _quiet_orbax(verbose)
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=save_interval_steps,
        enable_async_checkpointing=async_save, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
    self._closed = False

  def save(self, step: int, state: Any, *, data_state: dict | None = None,
           config: dict | None = None, force: bool = False) -> bool:
    """Starts an asynchronous save; returns whether one was started."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_state is not None:
      items["data"] = ocp.args.JsonSave(data_state)
    if config is not None:
      items["config"] = ocp.args.JsonSave(config)
    return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def latest_step(self) -> int | None:
    self._manager.reload()
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    self._manager.reload()
    return list(self._manager.all_steps())

  def restore(self, abstract_state: Any, step: int | None = None
              ) -> tuple[Any, dict | None, dict | None]:
    """(state, data_state, config) of `step` (default: the latest), onto abstract's shardings."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    present = set(os.listdir(os.path.join(self.directory, str(step))))
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    for name in ("data", "config"):
      if name in present:
        items[name] = ocp.args.JsonRestore()
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointError(
          f"checkpoint {self.directory}/{step} does not match the state being restored "
          f"(changed model or optimizer config?): {_first_line(e)}") from e
    return restored["state"], restored.get("data"), restored.get("config")

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    if not self._closed:
      self._manager.wait_until_finished()
      self._manager.close()
      self._closed = True

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return text[0] if text else type(e).__name__


def restore_params(path: str, abstract_params: Any, *,
                   item_path: Sequence[str] = ("params",)) -> Any:
  """One subtree (default: params) of another run's checkpoint, for config.init_from.

  `path` is a run's checkpoint directory (its latest step is used) or one step's directory.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"init_from: no checkpoint at {path}")
  state_dir = os.path.join(path, "state")
  if not os.path.isdir(state_dir):
    with Checkpointer(path) as ckpt:
      step = ckpt.latest_step()
    if step is None:
      raise FileNotFoundError(f"init_from: no checkpoint at {path}")
    state_dir = os.path.join(path, str(step), "state")
  target: Any = abstract_params
  for key in reversed(list(item_path)):
    target = {key: target}
  restore_args = jax.tree.map(
      lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, global_shape=a.shape, dtype=a.dtype),
      target)
  try:
    restored = ocp.PyTreeCheckpointer().restore(
        state_dir, args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args,
                                               partial_restore=True))
  except (ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"init_from {path}: {'/'.join(item_path)} does not match: "
                          f"{_first_line(e)}") from e
  for key in item_path:
    restored = restored[key]
  return restored

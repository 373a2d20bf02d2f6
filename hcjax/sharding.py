"""Mesh from config, parameter placement by regex rules, and the batch sharding.

Rules are `(regex, strategy)` pairs matched against a leaf's path (e.g.
"params/backbone/stage1_block1/conv1/kernel", or the same path inside the optimizer state); the
first match wins. Strategies: "replicate", or "fsdp" — split the largest dimension divisible by
the "fsdp" axis size, for arrays of at least `fsdp_min_size` elements (small ones replicate).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from hcjax.errors import ConfigError

BATCH_AXES = ("data", "fsdp")
STRATEGIES = ("replicate", "fsdp")


class ShardingConfigError(ConfigError):
  """config.mesh or config.sharding cannot be realised on the devices at hand."""


def make_mesh(axes: Sequence[Sequence[Any]], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """[("data", -1), ("fsdp", 2)] -> a Mesh; one -1 absorbs the remaining devices."""
  devices = list(devices if devices is not None else jax.devices())
  names = [str(a[0]) for a in axes]
  sizes = [int(a[1]) for a in axes]
  if sorted(names) != sorted(BATCH_AXES):
    raise ShardingConfigError(f"config.mesh must name the axes {BATCH_AXES}, got {names}")
  if sizes.count(-1) > 1:
    raise ShardingConfigError(f"config.mesh: at most one axis may be -1, got {list(axes)}")
  known = int(np.prod([s for s in sizes if s != -1]))
  if known <= 0 or len(devices) % known:
    raise ShardingConfigError(
        f"config.mesh {list(axes)} does not divide the {len(devices)} available devices")
  sizes = [len(devices) // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != len(devices):
    raise ShardingConfigError(
        f"config.mesh {list(axes)} uses {int(np.prod(sizes))} devices but {len(devices)} are available")
  grid = np.asarray(devices, dtype=object).reshape(sizes)
  return Mesh(grid, tuple(names), axis_types=(AxisType.Auto,) * len(names))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The leading (batch) dimension split over both data-parallel axes."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def path_name(path: tuple[Any, ...]) -> str:
  """A pytree key path as 'a/b/c' (dict keys, attribute names and indices alike)."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _fsdp_spec(shape: tuple[int, ...], axis_size: int, min_size: int) -> P:
  if axis_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % axis_size == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[Sequence[str]],
                   fsdp_min_size: int = 2 ** 14) -> Any:
  """A NamedSharding for every leaf of `tree` (arrays or ShapeDtypeStructs)."""
  compiled = []
  for rule in rules:
    if len(rule) != 2 or rule[1] not in STRATEGIES:
      raise ShardingConfigError(
          f"config.sharding.rules entries must be (regex, one of {STRATEGIES}), got {rule!r}")
    try:
      compiled.append((re.compile(rule[0]), rule[1]))
    except re.error as e:
      raise ShardingConfigError(f"config.sharding.rules: bad regex {rule[0]!r}: {e}") from e
  axis_size = mesh.shape["fsdp"]

  def leaf_sharding(path, leaf):
    name = path_name(path)
    shape = tuple(np.shape(leaf))
    strategy = next((s for regex, s in compiled if regex.search(name)), "replicate")
    spec = _fsdp_spec(shape, axis_size, fsdp_min_size) if strategy == "fsdp" else P()
    return NamedSharding(mesh, spec)

  return jax.tree_util.tree_map_with_path(leaf_sharding, tree)

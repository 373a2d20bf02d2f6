"""Export a trained model to run anywhere without hcjax's model code.

out_dir/
  model.stablehlo     jax.export serialization of apply(variables, x), symbolic batch size
  params.msgpack      the variables as msgpack (no pickle): nested maps of raw arrays
  meta.json           input shape/dtype, platforms, the task's description of inputs/outputs
  run_exported.py     a self-contained loader (jax + numpy + msgpack) to copy next to the files
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

import hcjax
from hcjax import export_loader

FILES = ("model.stablehlo", "params.msgpack", "meta.json")

def _pack(tree: Any) -> Any:
  """Nested dicts of arrays -> msgpack-ready maps with raw little-endian buffers."""
  if isinstance(tree, dict):
    return {str(k): _pack(v) for k, v in tree.items()}
  array = np.ascontiguousarray(np.asarray(tree))
  if array.dtype.byteorder == ">":
    array = array.astype(array.dtype.newbyteorder("<"))
  return {"__array__": True, "dtype": array.dtype.str, "shape": list(array.shape),
          "data": array.tobytes()}


def export_model(apply_fn: Callable[[Any, jax.Array], Any], variables: Any,
                 input_spec: jax.ShapeDtypeStruct, out_dir: str, *,
                 metadata: dict[str, Any] | None = None,
                 platforms: Sequence[str] = ("cpu",)) -> str:
  """Serializes apply_fn(variables, x[B, *input_spec.shape]) for any batch size B."""
  import msgpack  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  variables = jax.tree.map(np.asarray, jax.device_get(variables))
  batch = jax.export.symbolic_shape("b")
  x_spec = jax.ShapeDtypeStruct(tuple(batch) + tuple(input_spec.shape), input_spec.dtype)
  v_spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
  exported = jax.export.export(jax.jit(apply_fn), platforms=tuple(platforms))(v_spec, x_spec)
  with open(os.path.join(out_dir, "model.stablehlo"), "wb") as f:
    f.write(exported.serialize())
  with open(os.path.join(out_dir, "params.msgpack"), "wb") as f:
    f.write(msgpack.packb(_pack(variables), use_bin_type=True))
  out_tree = jax.tree_util.tree_structure(
      jax.eval_shape(apply_fn, v_spec, jax.ShapeDtypeStruct((1,) + tuple(input_spec.shape),
                                                            input_spec.dtype)))
  meta = {"input_shape": list(input_spec.shape), "input_dtype": np.dtype(input_spec.dtype).name,
          "batch": "symbolic", "platforms": list(platforms), "output_tree": str(out_tree),
          "hcjax_version": hcjax.__version__}
  clash = sorted(set(meta) & set(metadata or {}))
  if clash:
    raise ValueError(f"export metadata may not redefine {clash}: the loader relies on them")
  meta.update(metadata or {})
  with open(os.path.join(out_dir, "meta.json"), "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)
  shutil.copyfile(export_loader.__file__, os.path.join(out_dir, "run_exported.py"))
  return out_dir


def load_exported(out_dir: str) -> Callable[[np.ndarray], Any]:
  """The exported model as a function of a batch (the same code as run_exported.py)."""
  return export_loader.load(out_dir)[0]

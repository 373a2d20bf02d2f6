"""Runs an hcjax export without hcjax: python run_exported.py input.npy

Self-contained on purpose (jax, numpy, msgpack only): `hcjax export` copies this file next to
the exported model as run_exported.py.
"""
import json
import os
import sys

import jax
import msgpack
import numpy as np


def _unpack(obj):
  if isinstance(obj, dict) and obj.get("__array__") is True:
    return np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
  if isinstance(obj, dict):
    return {k: _unpack(v) for k, v in obj.items()}
  return obj


def load(directory):
  """-> (run(x) -> outputs, meta). x: [B, *meta["input_shape"]] of meta["input_dtype"]."""
  for name in ("model.stablehlo", "params.msgpack", "meta.json"):
    if not os.path.exists(os.path.join(directory, name)):
      raise FileNotFoundError(f"export is missing {os.path.join(directory, name)}")
  with open(os.path.join(directory, "meta.json")) as f:
    meta = json.load(f)
  with open(os.path.join(directory, "model.stablehlo"), "rb") as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  with open(os.path.join(directory, "params.msgpack"), "rb") as f:
    variables = _unpack(msgpack.unpackb(f.read(), raw=False, strict_map_key=False))
  shape, dtype = tuple(meta["input_shape"]), np.dtype(meta["input_dtype"])

  def run(x):
    x = np.asarray(x)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.dtype != dtype:
      raise ValueError(f"expected input [B, {', '.join(map(str, shape))}] of {dtype}, "
                       f"got {list(x.shape)} of {x.dtype}")
    return exported.call(variables, x)

  return run, meta


if __name__ == "__main__":
  run, meta = load(os.path.dirname(os.path.abspath(__file__)))
  outputs = run(np.load(sys.argv[1]))
  for path, leaf in jax.tree_util.tree_leaves_with_path(outputs):
    print(jax.tree_util.keystr(path) or "output", np.asarray(leaf).shape, np.asarray(leaf).dtype)

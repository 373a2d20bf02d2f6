"""hcjax's compiled CPU kernels (csrc/*.cc), registered as XLA FFI targets.

They are built by `pip install` (setup.py's optional extension `hcjax.ops._cpu_kernels`) and
loaded here with ctypes on first use. Ops call `available()` while tracing and otherwise keep
their pure-XLA path, so a missing compiler or an incompatible jaxlib costs speed, never a
result; the first such fallback warns once with the reason. Set HCJAX_CPU_KERNELS=0 to use the
XLA paths everywhere (for comparisons, or to export a gradient computation without custom
calls); HCJAX_CPU_KERNELS_ISA=avx2 or =portable caps the convolution kernels' vector width
below the CPU's (read once per process; tests use it to check the narrower code paths).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import math
import os
import re
import threading
import warnings

import jax
import jaxlib
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec as P

# FFI target name -> exported C symbol.
TARGETS = {
    "hcjax_bilinear_sample_forward": "HcjaxBilinearSampleForward",
    "hcjax_bilinear_sample_backward": "HcjaxBilinearSampleBackward",
    "hcjax_conv2d_forward": "HcjaxConv2dForward",
    "hcjax_conv2d_weight_gradient": "HcjaxConv2dWeightGradient",
}
_LIBRARY = "_cpu_kernels"
_ENV = "HCJAX_CPU_KERNELS"


def _library_path() -> str | None:
  here = os.path.dirname(os.path.abspath(__file__))
  for suffix in importlib.machinery.EXTENSION_SUFFIXES:
    path = os.path.join(here, _LIBRARY + suffix)
    if os.path.exists(path):
      return path
  return None


def disabled_by_environment() -> bool:
  return os.environ.get(_ENV, "1").strip().lower() in ("0", "false", "no", "off")


_ISA_ENV = "HCJAX_CPU_KERNELS_ISA"
_ISAS = ("avx512", "avx2", "portable")


def _load() -> str | None:
  """None when the kernels are registered (registering them on the first call), else why they
  are unavailable. The variable is read on every call, while tracing: functions already traced
  and jit-cached keep the path they took."""
  if disabled_by_environment():
    return f"{_ENV} is set to {os.environ[_ENV]!r}"
  with _LOCK:
    return _register()


_LOCK = threading.Lock()


def _version(text: str) -> tuple[int, ...]:
  return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


@functools.cache
def _register() -> str | None:
  """Loads the library and registers every target, once per process."""
  isa = os.environ.get(_ISA_ENV)
  if isa is not None and isa not in _ISAS:
    warnings.warn(f"{_ISA_ENV}={isa!r} is not one of {_ISAS}; the kernels use the CPU's widest "
                  "vectors", RuntimeWarning, stacklevel=2)
  path = _library_path()
  rebuild = "reinstall hcjax (`pip install -e .`) on a machine with a C++17 compiler"
  if path is None:
    return f"the compiled extension hcjax.ops._cpu_kernels is missing ({rebuild})"
  try:
    library = ctypes.cdll.LoadLibrary(path)
    built_with = library.HcjaxBuiltWithJaxlib
    built_with.restype = ctypes.c_char_p
    built = built_with().decode()
    # XLA's FFI accepts handlers built against older headers, not newer ones.
    if built == "unknown" or _version(built) > _version(jaxlib.__version__):
      return (f"{path} was built against jaxlib {built}, newer than the installed "
              f"{jaxlib.__version__} ({rebuild})")
    for target, symbol in TARGETS.items():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                  platform="cpu")
      # Every leading axis is a batch axis to the sampling kernels. (XLA 0.10's partitioner
      # still gathers a batch-sharded operand of them: on a multi-device CPU mesh each device
      # computes the whole batch, correctly but without the speed-up. The convolution kernels
      # are split by sharded_by_batch instead.)
      if (target.startswith("hcjax_bilinear")
          and hasattr(jax.ffi, "register_ffi_target_as_batch_partitionable")):
        jax.ffi.register_ffi_target_as_batch_partitionable(target)
  except (OSError, AttributeError, RuntimeError, ValueError) as e:
    return f"{path} could not be loaded or registered ({e}); {rebuild}"
  return None


def available() -> bool:
  """Whether the CPU kernels are registered (loads them on the first call)."""
  return _load() is None


def unavailable_reason() -> str | None:
  return _load()


@functools.cache
def warn_fallback(op: str) -> None:
  """One warning per op that falls back to its XLA path on CPU."""
  reason = _load()
  if reason is not None and not disabled_by_environment():
    warnings.warn(f"{op} cannot use hcjax's CPU kernels, so on CPU it takes its slower "
                  f"pure-XLA path: {reason}", RuntimeWarning, stacklevel=3)


def by_platform(op: str, cpu, xla, *args):
  """cpu(*args) where the compiled kernels are loaded and the computation runs on a CPU, else
  xla(*args): the same values to float rounding. The kernel's own derivatives (a gradient of
  the gradient) are xla's, so every order of differentiation works on every platform."""
  if not available():
    warn_fallback(op)
    return xla(*args)
  kernel = jax.custom_jvp(cpu)
  kernel.defjvp(lambda primals, tangents: jax.jvp(xla, primals, tangents))
  return lax.platform_dependent(*args, cpu=kernel, default=xla)


def _batch_axes(shape) -> str | tuple[str, ...] | None:
  """The mesh axes that shard an operand's leading axis evenly (None: it is not sharded, or
  not evenly: XLA would pad the last shards with rows that a summing kernel must not see)."""
  sharding = shape.sharding
  spec = getattr(sharding, "spec", None)
  axes = spec[0] if spec else None
  if axes is None:
    return None
  names = (axes,) if isinstance(axes, str) else tuple(axes)
  shards = math.prod(sharding.mesh.shape[name] for name in names)
  return axes if shape.shape[0] % shards == 0 else None


def sharded_by_batch(kernel, xla, rule: str, *, summed: bool = False):
  """kernel(*arrays), each device running it on its own slice of the leading (batch) axis.

  An FFI call is opaque to XLA's partitioner, which would otherwise gather a batch-sharded
  operand onto every device. Here the first operand's batch sharding is kept for the operands
  that have the batch axis (those whose first factor in `rule` is "b") and everything else is
  replicated; the result is sharded the same way, or, for a kernel that sums over the batch
  (summed=True), replicated after an all-reduce over those mesh axes.
  `rule` names the axes einsum-style for Shardy ("b h w c, i j c o -> b y x o"; "b" is the
  batch). Under vmap (which the partitioner cannot batch) the XLA path `xla` runs instead.
  """
  result_axes = lambda axes, rank: P() if summed else P(axes, *([None] * (rank - 1)))
  batched_operands = [o.split()[0] == "b" for o in rule.split("->")[0].split(",")]

  def infer(mesh, arg_shapes, result_shape):
    axes = _batch_axes(arg_shapes[0])
    return NamedSharding(mesh, result_axes(axes, len(result_shape.shape)))

  def partition(mesh, arg_shapes, result_shape):
    axes = _batch_axes(arg_shapes[0])
    arg_shardings = tuple(
        NamedSharding(mesh, P(axes if batched else None, *([None] * (len(a.shape) - 1))))
        for a, batched in zip(arg_shapes, batched_operands))

    def lower(*args):
      out = kernel(*args)
      return lax.psum(out, axes) if summed and axes is not None else out

    return mesh, lower, infer(mesh, arg_shapes, result_shape), arg_shardings

  partitioned = custom_partitioning(kernel)
  # Every factor but the batch stays whole, listed in order of appearance (as Shardy asks).
  factors = dict.fromkeys(rule.replace(",", " ").replace("->", " ").split())
  partitioned.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=rule,
                            reduction_factors=("b",) if summed else (),
                            need_replication_factors=tuple(f for f in factors if f != "b"))
  batched = jax.custom_batching.custom_vmap(partitioned)

  @batched.def_vmap
  def _vmapped(axis_size, in_batched, *args):  # pylint: disable=unused-argument
    in_axes = [0 if b else None for b in in_batched]
    return jax.vmap(xla, in_axes=in_axes)(*args), True

  return batched

"""hcjax: human-centric vision systems in JAX/Flax."""
import os

import setuptools
from setuptools.command.build_ext import build_ext

RUNTIME = [
    "jax>=0.7",
    "flax>=0.11",
    "optax",
    "orbax-checkpoint",
    "grain>=0.2.12",
    # Only its tf.train.Example protos and dataset builders; TensorFlow is never imported.
    "tensorflow-datasets",
    "ml-collections",
    "absl-py",
    "google-crc32c",
    "numpy",
    "pillow",
    "tqdm",
    "flatbuffers",
    # TensorBoard event files without TensorFlow.
    "tensorboardX",
    "msgpack",
    # Real photographs (astronaut, chelsea, coffee, ...) that the sample sets are cut from.
    "scikit-image",
    # Video files (UCF-101's .avi, slow-motion input and output) through FFmpeg's libraries.
    "av",
]

TEST = [
    "pytest",
    "pytest-timeout",
    # Reference implementations for checks.
    "scikit-learn",
    "pydensecrf2",   # dense-CRF reference (C++, builds from source in about a minute)
    "torch==2.13.0",  # grid_sample reference for the sampling kernel (CPU build)
    # Reads our TensorBoard event files back in tests.
    "tensorboard",
    "portpicker",
]



class BuildCpuKernels(build_ext):
  """Compiles the XLA FFI CPU kernels against the FFI headers jaxlib ships (a build
  requirement in pyproject.toml). The extension is optional: without a C++17 compiler the
  install goes on and the ops use their pure-XLA paths (hcjax.ops.cpu_kernels says why)."""

  def build_extensions(self):
    try:
      import jaxlib  # pylint: disable=import-outside-toplevel
    except ImportError:
      print("hcjax: jaxlib is not importable at build time; skipping the CPU kernels")
      self.extensions = []
      return
    include = os.path.join(os.path.dirname(jaxlib.__file__), "include")
    for ext in self.extensions:
      ext.include_dirs.append(include)
      ext.define_macros.append(("HCJAX_JAXLIB_VERSION", f'"{jaxlib.__version__}"'))
    super().build_extensions()


CPU_KERNELS = setuptools.Extension(
    "hcjax.ops._cpu_kernels",
    sources=["hcjax/ops/csrc/bilinear_sample.cc", "hcjax/ops/csrc/conv2d.cc"],
    depends=["hcjax/ops/csrc/parallel_for.h"],
    language="c++",
    extra_compile_args=["-O3", "-std=c++17"],
    optional=True,
)

setuptools.setup(
    name="hcjax",
    version="0.1.0",
    description="Human-centric vision systems (faces, fashion, parsing, motion) in JAX/Flax.",
    packages=setuptools.find_packages(include=["hcjax", "hcjax.*"]),
    python_requires=">=3.10",
    install_requires=RUNTIME,
    extras_require={"test": TEST},
    entry_points={"console_scripts": ["hcjax=hcjax.cli:run"]},
    ext_modules=[CPU_KERNELS],
    cmdclass={"build_ext": BuildCpuKernels},
)

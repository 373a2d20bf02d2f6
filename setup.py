"""hcjax: human-centric vision systems in JAX/Flax."""
import setuptools

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

setuptools.setup(
    name="hcjax",
    version="0.1.0",
    description="Human-centric vision systems (faces, fashion, parsing, motion) in JAX/Flax.",
    packages=setuptools.find_packages(include=["hcjax", "hcjax.*"]),
    python_requires=">=3.10",
    install_requires=RUNTIME,
    extras_require={"test": TEST},
    entry_points={"console_scripts": ["hcjax=hcjax.cli:run"]},
)

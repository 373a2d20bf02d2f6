"""Tests run on 8 fake CPU devices so sharding code is exercised without accelerators."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # pylint: disable=g-import-not-at-top

# grain reads absl flags; outside an absl app they must be marked as parsed.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

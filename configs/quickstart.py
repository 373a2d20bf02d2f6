"""Face attributes on CelebA with a ResNet: the quickstart.

Variants (`--config configs/quickstart.py:VARIANT`):
  sample (default)  the embedded, procedurally rendered CelebA-format sample set; a small ResNet-18
                    at 64x64 that trains on a laptop CPU in a few minutes.
  full              real CelebA converted with `hcjax convert celeba`: ResNet-50 at 160x160.
  test              a few steps of a tiny model, for the test suite.
"""

import ml_collections

from hcjax import trainer_config

VARIANTS = ("sample", "full", "test")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "sample"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of configs/quickstart.py; "
                     f"choose from {VARIANTS}")
  c = ml_collections.ConfigDict()
  c.task = "face_attributes"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.dir = "data/tfrecords/celeba_sample"
  c.data.samples_dir = "data/samples/celeba"
  c.data.make_samples = True        # build the sample set + TFRecords when `dir` is empty
  c.data.num_sample_images = 3000
  c.data.shards = 4
  c.data.eval_split = "validation"

  c.input = ml_collections.ConfigDict()
  c.input.image_size = 96
  c.input.crop = 178                 # the square face region of the 178x218 aligned image

  c.model = ml_collections.ConfigDict()
  c.model.depth = 18
  c.model.width = 16
  c.model.stem = "imagenet"
  c.model.dtype = "float32"          # "bfloat16" for mixed precision

  trainer_config.add_training(
      c, optimizer=trainer_config.optimizer(learning_rate=2e-3, warmup_steps=100),
      batch_size=64, eval_batch_size=128, total_steps=1200, shuffle_window=1024, log_every=50,
      eval_every=400, checkpoint_every=400)

  if variant == "full":
    c.data.dir = "data/tfrecords/celeba"
    c.data.make_samples = False
    c.data.shards = 64
    c.input.image_size = 160
    c.model.depth = 50
    c.model.width = 64
    c.model.stem = "imagenet"
    c.batch_size = 256
    c.eval_batch_size = 512
    c.total_steps = 30_000
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 1000
    c.optimizer.weight_decay = 5e-2
    c.mesh = (("data", -1), ("fsdp", 1))
    c.input_workers = 8
    c.shuffle_window = 16_384
    c.log_every = 100
    c.eval_every = 2000
    c.checkpoint_every = 2000
  elif variant == "test":
    c.data.num_sample_images = 120
    c.data.shards = 2
    c.input.image_size = 32
    c.model.width = 4
    c.batch_size = 8
    c.eval_batch_size = 8
    c.total_steps = 6
    c.optimizer.warmup_steps = 2
    c.shuffle_window = 32
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 3
    c.export_at_end = False
  return c

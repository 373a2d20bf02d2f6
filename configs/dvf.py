"""Deep Voxel Flow (Liu et al., ICCV 2017): frame interpolation / extrapolation on video triplets.

Variants (`--config configs/dvf.py:SIZE[,OPTION...]`, e.g. `configs/dvf.py:ucf101,multiscale`):
  sizes:   sample (default)  the embedded UCF-101-format sample set (built on first use): a narrow
                             U-Net on 64-px crops that learns on a laptop CPU in a few minutes;
           ucf101            UCF-101 triplets converted with `hcjax convert ucf101` (with DVF's
                             test set, `--dvf-test`, as the eval split): the paper's width, 256-px
                             crops, batch 32;
           test              a few steps of a tiny net, for the test suite.
  options: tf                the released TensorFlow net (no skip connections) instead of the U-Net;
           multiscale        the paper's coarse-to-fine voxel flow at 1/4, 1/2 and 1;
           extrapolate       predict the third frame from the first two.

  hcjax train --config configs/dvf.py:sample --workdir runs/dvf_sample
  hcjax interpolate --workdir runs/dvf_sample a.png b.png -o mid.png
"""

import ml_collections

from hcjax import trainer_config

SIZES = ("sample", "ucf101", "test")
OPTIONS = ("tf", "multiscale", "extrapolate")
# Frame size of the embedded sample set (hcjax.data.samples.ucf101), (height, width).
SAMPLE_FRAME = (96, 128)


def parse_arg(arg: str | None) -> tuple[str, set[str]]:
  """"ucf101,multiscale" -> ("ucf101", {"multiscale"}); the size defaults to "sample"."""
  return trainer_config.parse_variant(arg, "configs/dvf.py", SIZES, OPTIONS, "ucf101,multiscale")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, options = parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.task = "frame_synthesis"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.dataset = "ucf101"
  c.data.dir = "data/tfrecords/ucf101_sample"
  c.data.samples_dir = "data/samples/ucf101"
  c.data.make_samples = True         # build the sample set + TFRecords when `dir` is empty
  c.data.num_sample_videos = 60
  c.data.sample_seed = 0
  c.data.shards = 4
  c.data.eval_split = "test"

  c.input = ml_collections.ConfigDict()
  c.input.crop_size = 64
  c.input.eval_size = SAMPLE_FRAME   # whole frames; multiples of 8 (32 for multiscale)
  c.input.flip = True
  c.input.time_reversal = True
  c.input.max_rotation = 0.0         # the paper's ±10°; the sample scenes' motion is axis-aligned

  c.model = ml_collections.ConfigDict()
  c.model.name = "voxel_flow"
  c.model.variant = "unet"
  c.model.width = 16                 # 64 in the paper
  c.model.mode = "interpolate"
  c.model.bn_momentum = 0.9997        # of BN's running statistics, as the TF release
  c.model.dtype = "float32"

  c.loss = ml_collections.ConfigDict()
  c.loss.tv_flow = 0.01              # λ1 and λ2 of L1 + λ1·TV(flow) + λ2·TV(mask)
  c.loss.tv_mask = 0.005
  c.loss.scale_weights = (1.0,)

  trainer_config.add_training(
      c, optimizer=trainer_config.optimizer(learning_rate=1e-3, warmup_steps=100),
      batch_size=16, eval_batch_size=16, total_steps=1500, shuffle_window=1024, log_every=50,
      eval_every=500, checkpoint_every=500)

  if size == "ucf101":
    c.data.dir = "data/tfrecords/ucf101"
    c.data.make_samples = False
    c.data.shards = 64
    c.input.crop_size = 256
    c.input.eval_size = (256, 256)   # DVF's test triplets are 256x256
    c.input.max_rotation = 10.0
    c.model.width = 64
    c.batch_size = 32
    c.eval_batch_size = 32
    c.total_steps = 200_000
    c.optimizer.learning_rate = 3e-4  # the TF release's Adam
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 1000
    c.optimizer.weight_decay = 1e-4
    c.input_workers = 16
    c.shuffle_window = 8192
    c.log_every = 200
    c.eval_every = 10_000
    c.checkpoint_every = 5000
  elif size == "test":
    c.data.num_sample_videos = 6
    c.data.shards = 2
    c.input.crop_size = 32
    c.model.width = 4
    c.batch_size = 8                  # the test suite runs on 8 devices
    c.eval_batch_size = 8
    c.total_steps = 4
    c.optimizer.warmup_steps = 0
    c.optimizer.learning_rate = 1e-3
    c.shuffle_window = 16
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
    c.export_at_end = False

  if "tf" in options:
    c.model.variant = "tf"
  if "multiscale" in options:
    c.model.name = "multiscale_voxel_flow"
    c.loss.scale_weights = (0.25, 0.5, 1.0)
    if c.input.crop_size % 32:
      c.input.crop_size = max(32, c.input.crop_size // 32 * 32)
  if "extrapolate" in options:
    c.model.mode = "extrapolate"
  return c

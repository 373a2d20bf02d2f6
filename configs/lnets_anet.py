"""LNets+ANet face attributes (Liu et al., ICCV 2015) on CelebA: the face localised by LNet's
response map (trained with attribute tags only, no boxes), attributes from ANet's multi-patch
features of the localised face and one linear classifier per attribute.

Faces are placed "in the wild" (config.input.placement = "wild"): each aligned CelebA image is
re-framed so that the head box spans a random fraction config.input.face_fraction of a square
input at a random position (hcjax/tasks/face_attributes.py `_place`); LNet has to find it.

Variants (`--config configs/lnets_anet.py:SIZE[,STAGE]`, e.g. `configs/lnets_anet.py:sample,anet`):
  sizes:  sample (default)  the embedded, rendered CelebA-format sample set (built on first use):
                            96x96 inputs, narrow nets, each stage a few minutes on a laptop CPU;
          full              real CelebA converted with `hcjax convert celeba`: 224x224 inputs,
                            wider nets (layer sizes are ours, not the paper's);
          test              a few steps of tiny nets, batch 8, for the test suite.
  stages: lnet     LNet alone, trained on the 40 attribute tags;
          anet     ANet + classifiers on the boxes of the stage-1 LNet, which is loaded from
                   runs/lnets_anet_SIZE_lnet (config.init_from) and frozen
                   (config.optimizer.freeze);
          joint    (no stage given) both in one run from scratch: LNet's loss + ANet's loss, ANet
                   on the boxes of the LNet of the moment (no gradient flows through the box);
          resnet   the quickstart's ResNet on the same "wild" inputs, for comparison
                   (configs/quickstart.py stays the baseline on aligned centre crops).

  hcjax train --config configs/lnets_anet.py:sample,lnet --workdir runs/lnets_anet_sample_lnet
  hcjax train --config configs/lnets_anet.py:sample,anet --workdir runs/lnets_anet_sample_anet
"""

import ml_collections

from hcjax import trainer_config

SIZES = ("sample", "full", "test")
STAGES = ("lnet", "anet", "joint", "resnet")
# Parameter paths a stage keeps fixed (regexes on paths such as "lnet/conv1/kernel").
FROZEN = {"lnet": (), "anet": (r"^lnet/",), "joint": (), "resnet": ()}


def parse_arg(arg: str | None) -> tuple[str, str]:
  """"sample,anet" -> ("sample", "anet"); the size defaults to "sample", the stage to "joint"."""
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  sizes = [p for p in parts if p in SIZES]
  stages = [p for p in parts if p in STAGES]
  if len(sizes) > 1 or len(stages) > 1 or len(sizes) + len(stages) != len(parts):
    raise ValueError(f"unknown variant {arg!r} of configs/lnets_anet.py; choose one size of "
                     f"{SIZES} and optionally one stage of {STAGES} (e.g. 'sample,anet')")
  return (sizes[0] if sizes else "sample"), (stages[0] if stages else "joint")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, stage = parse_arg(arg)
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
  c.data.true_box = "bbox"          # the rendered head boxes (aligned coordinates)

  c.input = ml_collections.ConfigDict()
  c.input.image_size = 96
  c.input.crop = 178
  c.input.placement = "wild"
  c.input.face_fraction = (0.45, 0.85)  # head box side / input side

  c.model = ml_collections.ConfigDict()
  if stage == "resnet":
    c.model.name = "resnet"
    c.model.depth = 18
    c.model.width = 16
    c.model.stem = "imagenet"
  else:
    c.model.name = "lnets_anet"
    c.model.stage = stage
    c.model.lnet_widths = (16, 32, 64, 64, 64)
    c.model.anet_widths = (16, 32, 48, 64)
    # Locally shared filters in the upper two layers: 2x2 regions of their 10x10 / 5x5 maps.
    c.model.anet_grids = ((1, 1), (1, 1), (2, 2), (2, 2))
    c.model.feature_dim = 128
    c.model.patch_size = 40
    # (dx, dy, scale) relative to the box: the whole head, its upper and lower parts enlarged.
    c.model.patches = ((0.0, 0.0, 1.0), (0.0, -0.22, 0.6), (0.0, 0.22, 0.6))
    c.model.threshold = 0.5          # of the response map's range (min..max)
    c.model.upsample = 4
    c.model.dropout = 0.0
  c.model.dtype = "float32"

  c.loss = ml_collections.ConfigDict()
  c.loss.classifier = "logistic"     # or "hinge" (linear SVMs)
  c.loss.lnet_weight = 1.0           # joint stage: LNet's attribute loss beside ANet's

  # Stage 2 starts from stage 1's run: every parameter it has (LNet's); ANet's are new.
  trainer_config.add_training(
      c, optimizer=trainer_config.optimizer(learning_rate=2e-3, warmup_steps=100,
                                            freeze=FROZEN[stage]),
      batch_size=64, eval_batch_size=100, total_steps=1200, shuffle_window=1024, log_every=50,
      eval_every=400, checkpoint_every=400,
      init_from=f"runs/lnets_anet_{size}_lnet" if stage == "anet" else "")

  if size == "full":
    c.data.dir = "data/tfrecords/celeba"
    c.data.make_samples = False
    c.data.shards = 64
    # Real CelebA's list_bbox_celeba.txt is in in-the-wild coordinates: boxes from landmarks.
    c.data.true_box = "landmarks"
    c.input.image_size = 224
    c.input.face_fraction = (0.3, 0.9)
    if stage == "resnet":
      c.model.depth = 50
      c.model.width = 64
    else:
      c.model.lnet_widths = (96, 256, 384, 384, 256)
      c.model.anet_widths = (64, 128, 256, 256)
      c.model.anet_grids = ((1, 1), (1, 1), (2, 2), (3, 3))
      c.model.feature_dim = 512
      c.model.patch_size = 96
      c.model.patches = ((0.0, 0.0, 1.0), (0.0, -0.22, 0.6), (0.0, 0.22, 0.6),
                         (-0.2, 0.0, 0.6), (0.2, 0.0, 0.6))
      c.model.dropout = 0.3
    c.batch_size = 256
    c.eval_batch_size = 512
    c.total_steps = 30_000
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 1000
    c.optimizer.weight_decay = 5e-2
    c.input_workers = 8
    c.shuffle_window = 16_384
    c.log_every = 100
    c.eval_every = 2000
    c.checkpoint_every = 2000
  elif size == "test":
    c.data.num_sample_images = 120
    c.data.shards = 2
    c.input.image_size = 32
    if stage == "resnet":
      c.model.width = 4
    else:
      c.model.lnet_widths = (4, 8, 8)
      c.model.anet_widths = (4, 8)
      c.model.anet_grids = ((1, 1), (2, 2))
      c.model.feature_dim = 8
      c.model.patch_size = 16
    c.batch_size = 8                   # the test suite runs on 8 devices
    c.eval_batch_size = 8
    c.total_steps = 4
    c.optimizer.warmup_steps = 1
    c.shuffle_window = 32
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
    c.export_at_end = False
  return c

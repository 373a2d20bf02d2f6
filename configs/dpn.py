"""Deep Parsing Network (Liu et al., ICCV 2015) on PASCAL VOC: a VGG16 unary net, a triple penalty
(locally shared 50x50 filters on appearance + position) and mixtures of label contexts, i.e. one
mean-field step as convolutions and pooling.

Variants (`--config configs/dpn.py:SIZE[,STAGE]`, e.g. `configs/dpn.py:sample,triple`):
  sizes:  sample (default)  the embedded VOC-format sample set (built on first use), a narrow net
                            on 112-px crops that learns on a laptop CPU in a few minutes;
          full              VOC2012 converted with `hcjax convert voc`: VGG16 width, 512x512;
          test              a few steps of a tiny net, for the test suite.
  stages: the paper trains incrementally, each stage starting from the previous stage's run
          (config.init_from = runs/dpn_SIZE_PREVIOUS) with the earlier parts frozen:
            unary    the unary net alone (b1-b11);
            triple   + the triple penalty (b12); the unary net frozen;
            context  + the label contexts (b13, b14); unary net and triple penalty frozen;
            joint    everything fine-tuned together at a lower learning rate.
          Without a stage the whole DPN trains jointly from scratch in one run.

  for s in unary triple context joint; do
    hcjax train --config configs/dpn.py:sample,$s --workdir runs/dpn_sample_$s
  done

Learning rates, batch size and step counts of `full` are paper-ish (unverified against the paper).
"""

import ml_collections

from hcjax import trainer_config

from hcjax.data.samples import voc as voc_samples

SIZES = ("sample", "full", "test")
STAGES = ("unary", "triple", "context", "joint")
# Parameter paths each stage keeps fixed (regexes on paths such as "unary/vgg/conv1_1/kernel"):
# the paper learns each new part with the parts before it fixed, then fine-tunes everything.
FROZEN = {
    "unary": (),
    "triple": (r"unary/.*",),
    "context": (r"unary/.*", r"triple/.*"),
    "joint": (),
}


def parse_arg(arg: str | None) -> tuple[str, str | None]:
  """"sample,triple" -> ("sample", "triple"); the size defaults to "sample", the stage to None."""
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  sizes = [p for p in parts if p in SIZES]
  stages = [p for p in parts if p in STAGES]
  if len(sizes) > 1 or len(stages) > 1 or len(sizes) + len(stages) != len(parts):
    raise ValueError(f"unknown variant {arg!r} of configs/dpn.py; choose one size of {SIZES} "
                     f"and optionally one stage of {STAGES} (e.g. 'sample,triple')")
  return (sizes[0] if sizes else "sample"), (stages[0] if stages else None)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, stage = parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.task = "segmentation"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.dataset = "voc"
  c.data.dir = "data/tfrecords/voc_sample"
  c.data.samples_dir = "data/samples/voc"
  c.data.make_samples = True        # build the sample set + TFRecords when `dir` is empty
  c.data.num_sample_images = 400
  c.data.sample_seed = 0
  c.data.shards = 4
  c.data.eval_split = "val"

  c.input = ml_collections.ConfigDict()
  c.input.crop_size = 112
  # Eval images are padded to eval_size x eval_size, never cut: at least the largest image side.
  c.input.eval_size = max(voc_samples.LANDSCAPE)
  c.input.min_scale = 0.5
  c.input.max_scale = 1.5
  c.input.flip = True

  c.model = ml_collections.ConfigDict()
  c.model.name = "dpn"
  c.model.width = 16                 # VGG16's first-stage channels (64 in the paper)
  c.model.fc_width = 64              # fc6 / fc7 (4096 in the paper)
  c.model.stage = stage or "joint"
  c.model.window = 9                 # triple penalty's window, in pixels of the map it runs on
  c.model.pairwise_stride = 2        # b12-b14 on the input downsampled 2x (1 in the paper), so
                                     # the window covers 18 px (50 of 512 in the paper)
  c.model.context_kernel = 5         # label-context filter (9 in the paper)
  c.model.mixtures = 3               # label-context mixtures (5 in the paper)
  c.model.dtype = "float32"

  c.loss = ml_collections.ConfigDict()
  # While the unary net learns, a softmax cross-entropy on its logits z as well: DPN's own
  # log_softmax(ln sigmoid(z)) has a flat spot where background and an object class both
  # saturate (ln p = 0, a tie that argmax resolves to background) and learns slowly from scratch.
  c.loss.aux_unary_weight = 1.0 if stage in (None, "unary") else 0.0

  # Each stage starts from the previous stage's run (every parameter it has; new ones fresh).
  trainer_config.add_training(
      c, optimizer=trainer_config.optimizer(
          learning_rate={None: 2e-3, "unary": 2e-3, "triple": 1e-3, "context": 1e-3,
                         "joint": 3e-4}[stage],
          warmup_steps=50 if stage in (None, "unary") else 20,
          freeze=FROZEN[stage] if stage else ()),
      batch_size=8, eval_batch_size=8, total_steps=1500 if stage in (None, "unary") else 200,
      shuffle_window=512, log_every=25, eval_every=200, checkpoint_every=200,
      init_from=(f"runs/dpn_{size}_{STAGES[STAGES.index(stage) - 1]}"
                 if stage not in (None, "unary") else ""))

  if size == "full":
    c.data.dir = "data/tfrecords/voc"
    c.data.make_samples = False
    c.data.shards = 32
    c.input.crop_size = 512
    c.input.eval_size = 512           # VOC images are at most 500 on a side
    c.model.width = 64
    c.model.fc_width = 4096
    c.model.window = 50
    c.model.pairwise_stride = 1
    c.model.context_kernel = 9
    c.model.mixtures = 5
    c.batch_size = 8
    c.eval_batch_size = 8
    c.total_steps = {None: 60_000, "unary": 40_000, "triple": 10_000, "context": 10_000,
                     "joint": 10_000}[stage]
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.learning_rate = 1e-4 if stage == "joint" else 1e-3
    c.optimizer.schedule = "step"
    c.optimizer.decay_boundaries = (c.total_steps * 2 // 3,)
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_steps = 500 if stage in (None, "unary") else 0
    c.optimizer.weight_decay = 5e-4
    c.input_workers = 8
    c.shuffle_window = 4096
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 2000
  elif size == "test":
    c.data.num_sample_images = 40
    c.data.shards = 2
    c.input.crop_size = 24
    c.input.eval_size = 40
    c.model.width = 4
    c.model.fc_width = 8
    c.model.window = 5
    c.model.pairwise_stride = 1
    c.model.context_kernel = 3
    c.model.mixtures = 2
    c.batch_size = 8                  # the test suite runs on 8 devices
    c.eval_batch_size = 8
    c.total_steps = 4
    c.optimizer.warmup_steps = 1
    c.shuffle_window = 16
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
    c.export_at_end = False
  return c

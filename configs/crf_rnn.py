"""CRF-as-RNN (Zheng et al., ICCV 2015) on PASCAL VOC: an FCN unary net + a mean-field dense CRF.

As in the paper, the CRF is trained on top of an FCN trained first (the paper starts from FCN-8s):
the `,nocrf` run trains the FCN, the run without it loads that run (config.init_from) and trains
the whole CRF-RNN end to end.

Variants (`--config configs/crf_rnn.py:SIZE[,nocrf]`):
  sample (default)  the embedded VOC-format sample set (built on first use): a narrow net, 112-px
                    crops for the FCN and 96-px crops for the CRF; each of the two runs takes a
                    few minutes on a laptop CPU.
  full              VOC2012 converted with `hcjax convert voc`: VGG16 width, 500x500 crops, the
                    paper's SGD.
  test              a few steps of a tiny net with the exact (dense) CRF, for the test suite; it
                    trains from scratch.
  ,nocrf            the plain FCN (use_crf=False): the first stage, and the baseline.

  hcjax train --config configs/crf_rnn.py:sample,nocrf --workdir runs/crf_rnn_sample_nocrf
  hcjax train --config configs/crf_rnn.py:sample --workdir runs/crf_rnn_sample
"""

import ml_collections

from hcjax import trainer_config

from hcjax.data.samples import voc as voc_samples

SIZES = ("sample", "full", "test")
OPTIONS = ("nocrf",)


def parse_arg(arg: str | None) -> tuple[str, set[str]]:
  """"full,nocrf" -> ("full", {"nocrf"}); the size defaults to "sample"."""
  return trainer_config.parse_variant(arg, "configs/crf_rnn.py", SIZES, OPTIONS, "full,nocrf")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, options = parse_arg(arg)
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
  c.input.crop_size = 96
  # Eval images are padded to eval_size x eval_size, never cut: at least the largest image side.
  c.input.eval_size = max(voc_samples.LANDSCAPE)
  c.input.min_scale = 0.75
  c.input.max_scale = 1.25
  c.input.flip = True

  c.model = ml_collections.ConfigDict()
  c.model.name = "crf_rnn"
  c.model.width = 16                 # VGG16's first-stage channels (64 in the paper)
  c.model.fc_width = 64              # fc6 / fc7 as convolutions (4096 in the paper)
  c.model.use_crf = True
  c.model.train_iterations = 3       # mean-field steps while training / evaluating (paper: 5 / 10)
  c.model.eval_iterations = 5
  c.model.theta_alpha = 60.0         # bilateral kernel's spatial width in pixels: 160 at VOC's
  c.model.theta_beta = 3.0           # ~500 px, scaled to the sample set's 192 px
  c.model.theta_gamma = 3.0
  c.model.spatial_weight = 3.0
  c.model.bilateral_weight = 5.0
  c.model.crf_method = "lattice"     # permutohedral lattice; "exact" = dense O(N^2), tiny images
  c.model.dtype = "float32"

  c.loss = ml_collections.ConfigDict()
  c.loss.aux_unary_weight = 0.0      # an extra cross-entropy on the FCN's logits (not in the paper)

  # The CRF fine-tuning: short, because a lattice CRF step costs ~10x an FCN step on a CPU. It
  # starts from every parameter of the FCN run (the CRF's are new); see the docstring.
  trainer_config.add_training(
      c, optimizer=trainer_config.optimizer(learning_rate=1e-4, warmup_steps=0,
                                            schedule="constant"),
      batch_size=8, eval_batch_size=8, total_steps=60, shuffle_window=512, log_every=10,
      eval_every=0, checkpoint_every=0, init_from=f"runs/crf_rnn_{size}_nocrf")

  if size == "full":
    c.data.dir = "data/tfrecords/voc"
    c.data.make_samples = False
    c.data.shards = 32
    c.input.crop_size = 500           # the paper pads every image to 500x500
    c.input.eval_size = 512           # VOC images are at most 500 on a side
    c.input.min_scale = 1.0
    c.input.max_scale = 1.0
    c.model.width = 64
    c.model.fc_width = 4096
    c.model.theta_alpha = 160.0
    c.model.train_iterations = 5
    c.model.eval_iterations = 10
    c.batch_size = 8
    c.eval_batch_size = 8
    c.total_steps = 40_000
    # Caffe trained CRF-as-RNN with lr 1e-13, momentum 0.99, one 500x500 image per step and a
    # loss SUMMED over pixels. Our loss is a MEAN over the batch's pixels, so one of our steps
    # stands for 8 Caffe steps of 500 * 500 pixels each: lr = 1e-13 * 500 * 500 * 8 = 2e-7.
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.99
    c.optimizer.learning_rate = 1e-13 * 500 * 500 * c.batch_size
    c.optimizer.schedule = "constant"
    c.optimizer.warmup_steps = 0
    c.optimizer.weight_decay = 5e-4
    c.optimizer.grad_clip_norm = 0.0
    c.input_workers = 8
    c.shuffle_window = 4096
    c.log_every = 100
    c.eval_every = 4000
    c.checkpoint_every = 2000
  elif size == "test":
    c.data.num_sample_images = 40
    c.data.shards = 2
    c.input.crop_size = 24
    c.input.eval_size = 40
    c.model.width = 4
    c.model.fc_width = 8
    c.model.train_iterations = 2
    c.model.eval_iterations = 3
    c.model.theta_alpha = 8.0
    c.model.crf_method = "exact"
    c.batch_size = 8                  # the test suite runs on 8 devices
    c.eval_batch_size = 8
    c.total_steps = 4
    c.optimizer.learning_rate = 1e-3
    c.shuffle_window = 16
    c.log_every = 2
    c.checkpoint_every = 2
    c.init_from = ""
    c.export_at_end = False

  if "nocrf" in options:
    c.model.use_crf = False
    c.init_from = ""
    if size == "sample":              # the FCN from scratch
      c.input.crop_size = 112
      c.input.min_scale = 0.5
      c.input.max_scale = 1.5
      c.total_steps = 600
      c.optimizer.learning_rate = 1e-3
      c.optimizer.schedule = "cosine"
      c.optimizer.warmup_steps = 50
      c.log_every = 25
      c.eval_every = 200
      c.checkpoint_every = 200
    elif size == "full":              # the FCN from scratch (no ImageNet VGG16 here), as FCN-8s
      c.optimizer.learning_rate = 1e-3
      c.optimizer.momentum = 0.9
      c.optimizer.schedule = "cosine"
      c.optimizer.warmup_steps = 1000
      c.optimizer.grad_clip_norm = 1.0
      c.input.min_scale = 0.5
      c.input.max_scale = 1.5
  return c

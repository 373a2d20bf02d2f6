"""Deep Fashion Alignment (Liu et al., ECCV 2016) on DeepFashion's Fashion Landmark Detection.

Variants (`--config configs/fld.py:SIZE[,category]`):
  sample (default)  the rendered DeepFashion-format sample set's FLD folder (built and converted
                    on first use): a narrow three-stage cascade (VGG16-BN) at 96 px with soft
                    routing; ten to fifteen minutes on two CPU cores.
  full              FLD converted with `hcjax convert deepfashion --benchmark landmarks`: 224 px,
                    VGG16 width 64 per stage, three stages, the paper's hard routing.
  test              a tiny cascade, batch 8 (the test suite runs on 8 devices).
  ,category         the landmarks of the Category and Attribute benchmark instead of FLD.

K (config.model.num_clusters, pseudo-labels and refinement branches per stage) is our choice, not
a value taken from the paper: 8 on FLD (three clothes types, each in a few poses and zoom levels,
while every refinement branch still sees batch / 8 = 8 examples a step), 4 on the small sample
set. The refinement clusters forget (kmeans_max_count) because the errors they group shrink
while the cascade learns.

  hcjax train --config configs/fld.py:sample --workdir runs/fld_sample
"""

import ml_collections

from hcjax import trainer_config

SIZES = ("sample", "full", "test")
OPTIONS = ("category",)


def parse_arg(arg: str | None) -> tuple[str, set[str]]:
  """"sample,category" -> ("sample", {"category"}); the size defaults to "sample"."""
  return trainer_config.parse_variant(arg, "configs/fld.py", SIZES, OPTIONS, "sample,category")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, options = parse_arg(arg)
  benchmark = "category" if "category" in options else "landmarks"
  c = ml_collections.ConfigDict()
  c.task = "fashion_landmarks"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.benchmark = benchmark
  c.data.dir = f"data/tfrecords/deepfashion_sample_{benchmark}"
  c.data.samples_dir = "data/samples/deepfashion"
  c.data.make_samples = True
  # The category sample set is FashionNet's (configs/fashionnet.py): the same size, so either
  # config may build it first.
  c.data.num_sample_images = 900 if benchmark == "category" else 800
  c.data.sample_seed = 0
  c.data.shards = 4
  c.data.eval_split = "validation"
  c.data.mean_shape_baseline = True

  c.input = ml_collections.ConfigDict()
  c.input.size = 96
  c.input.bbox_margin = 0.1
  c.input.min_scale = 0.9
  c.input.max_scale = 1.2
  c.input.shift = 0.08
  c.input.flip = True

  c.model = ml_collections.ConfigDict()
  c.model.num_stages = 3
  c.model.num_clusters = 4
  c.model.width = 8                 # VGG16's first-stage channels (64 in the paper)
  c.model.fc_width = 128
  c.model.max_offset = 0.25         # refinement offsets, normalised coordinates
  c.model.pool_window = 2.0 / 7.0   # as FashionNet / mmfashion
  c.model.pool_grid = 3
  c.model.dropout_rate = 0.1
  c.model.kmeans_max_count = 200.0
  c.model.batch_norm = True         # VGG16-BN trunks: the sample cascade trains from scratch
  c.model.routing = "soft"          # the predicted mixture; "hard" is the paper's auto-routing,
                                    # which the small sample set cannot predict well (README)
  c.model.dtype = "float32"

  c.loss = ml_collections.ConfigDict()
  c.loss.landmarks = 10.0           # on squared normalised coordinates, every stage
  c.loss.visibility = 0.5
  c.loss.pseudo_label = 0.5

  trainer_config.add_training(
      c, optimizer=trainer_config.optimizer(learning_rate=1e-3, warmup_steps=50),
      batch_size=16, eval_batch_size=16, total_steps=1000, shuffle_window=512, log_every=25,
      eval_every=250, checkpoint_every=250)

  if size == "full":
    c.data.dir = ("data/tfrecords/deepfashion_fld" if benchmark == "landmarks"
                  else "data/tfrecords/deepfashion_category")
    c.data.make_samples = False
    c.data.shards = 32
    c.input.size = 224
    c.model.num_clusters = 8
    c.model.width = 64
    c.model.fc_width = 4096         # VGG's fc6 on the flattened 7x7x512 pool5, per stage
    c.model.dropout_rate = 0.5
    c.model.kmeans_max_count = 2000.0
    c.model.batch_norm = False       # the paper's VGG16 (it fine-tunes ImageNet weights)
    c.model.routing = "hard"         # the paper's auto-routing
    c.batch_size = 64
    c.eval_batch_size = 64
    c.total_steps = 100_000
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.learning_rate = 1e-2
    c.optimizer.warmup_steps = 1000
    c.optimizer.weight_decay = 5e-4
    c.input_workers = 8
    c.shuffle_window = 8192
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 2500
  elif size == "test":
    c.data.dir = f"data/tfrecords/deepfashion_test_{benchmark}"  # never the sample set's
    c.data.samples_dir = "data/samples/deepfashion_test"
    c.data.num_sample_images = 40
    c.data.shards = 2
    c.input.size = 32
    c.model.num_clusters = 3
    c.model.width = 2
    c.model.fc_width = 16
    c.model.dropout_rate = 0.0
    c.model.kmeans_max_count = 50.0
    c.model.batch_norm = False
    c.batch_size = 8                  # the test suite runs on 8 devices
    c.eval_batch_size = 8
    c.total_steps = 4
    c.optimizer.warmup_steps = 0
    c.shuffle_window = 16
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
    c.export_at_end = False
  return c

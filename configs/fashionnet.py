"""FashionNet (Liu et al., CVPR 2016) on DeepFashion: category, attributes, landmarks, retrieval.

Variants (`--config configs/fashionnet.py:SIZE[,inshop][,resnet50]`):
  sample (default)  the rendered DeepFashion-format sample set (built and converted on first use),
                    the Category and Attribute benchmark (13 categories, 61 attributes): a narrow
                    VGG16 at 112 px; a few minutes on a laptop CPU.
  full              DeepFashion converted with `hcjax convert deepfashion --benchmark category`:
                    224 px, VGG16 width 64, fc 4096, 50 categories, 1000 attributes.
  test              a tiny net, 4 steps of batch 8 (the test suite runs on 8 devices).
  ,inshop           the In-shop Clothes Retrieval benchmark: triplet loss with batch-hard mining
                    on item ids (two augmented views per image give every anchor a positive);
                    retrieval accuracy comes from `hcjax retrieve --workdir W --evaluate`.
  ,resnet50         a ResNet-50 trunk instead of VGG16.

  hcjax train --config configs/fashionnet.py:sample --workdir runs/fashionnet_sample
  hcjax fashion --workdir runs/fashionnet_sample image.jpg -o out.png
"""

import ml_collections

from hcjax import trainer_config

SIZES = ("sample", "full", "test")
OPTIONS = ("inshop", "resnet50")
# Full DeepFashion: 50 categories, 1000 attributes, 7,982 in-shop items (3,997 train items).
FULL_CATEGORIES, FULL_ATTRIBUTES, FULL_ITEMS = 50, 1000, 7982
# The sample set draws 13 categories and 61 attributes (hcjax.data.samples.deepfashion).
SAMPLE_CATEGORIES, SAMPLE_ATTRIBUTES = 13, 61


def parse_arg(arg: str | None) -> tuple[str, set[str]]:
  """"sample,inshop" -> ("sample", {"inshop"}); the size defaults to "sample"."""
  return trainer_config.parse_variant(arg, "configs/fashionnet.py", SIZES, OPTIONS, "sample,inshop")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, options = parse_arg(arg)
  benchmark = "inshop" if "inshop" in options else "category"
  c = ml_collections.ConfigDict()
  c.task = "fashion"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.benchmark = benchmark
  c.data.dir = f"data/tfrecords/deepfashion_sample_{benchmark}"
  c.data.samples_dir = "data/samples/deepfashion"
  c.data.make_samples = True
  c.data.num_sample_images = 900
  c.data.sample_seed = 0
  c.data.shards = 4
  c.data.eval_split = "validation" if benchmark == "category" else "query"

  c.input = ml_collections.ConfigDict()
  c.input.size = 112
  c.input.bbox_margin = 0.1
  c.input.min_scale = 0.9
  c.input.max_scale = 1.2
  c.input.shift = 0.08
  c.input.flip = True
  c.input.two_views = True          # inshop training: two augmented views per image

  c.model = ml_collections.ConfigDict()
  c.model.trunk = "resnet50" if "resnet50" in options else "vgg16"
  c.model.width = 16                # VGG16's first-stage channels (64 in the paper)
  c.model.fc_width = 256            # 4096 in the paper
  c.model.embedding_dim = 128
  c.model.num_categories = SAMPLE_CATEGORIES
  c.model.num_attributes = SAMPLE_ATTRIBUTES
  c.model.num_items = 0             # > 0: ID softmax (config.loss.item > 0)
  c.model.pool_window = 2.0 / 7.0   # mmfashion: 2/7 of the map around each landmark
  c.model.pool_grid = 3
  c.model.dropout_rate = 0.2
  c.model.batch_norm = True         # VGG16-BN: the sample trunk trains from scratch
  c.model.dtype = "float32"

  c.loss = ml_collections.ConfigDict()
  c.loss.category = 1.0
  c.loss.attributes = 1.0
  c.loss.landmarks = 10.0           # on squared normalised coordinates
  c.loss.visibility = 0.5
  c.loss.triplet = 1.0 if benchmark == "inshop" else 0.0
  c.loss.item = 0.0
  c.loss.triplet_margin = 0.2
  c.loss.max_positive_weight = 20.0

  trainer_config.add_training(
      c, optimizer=trainer_config.optimizer(learning_rate=1e-3, warmup_steps=50),
      batch_size=16, eval_batch_size=16, total_steps=600, shuffle_window=512, log_every=25,
      eval_every=200, checkpoint_every=200)

  if size == "full":
    c.data.dir = f"data/tfrecords/deepfashion_{benchmark}"
    c.data.make_samples = False
    c.data.shards = 64
    c.input.size = 224
    c.model.width = 64
    c.model.fc_width = 4096
    c.model.embedding_dim = 256
    c.model.num_categories = FULL_CATEGORIES
    c.model.num_attributes = FULL_ATTRIBUTES
    c.model.dropout_rate = 0.5
    c.model.batch_norm = False       # the paper's VGG16 (it fine-tunes ImageNet weights)
    if benchmark == "inshop":
      c.model.num_items = FULL_ITEMS
      c.loss.item = 1.0              # mmfashion: ID softmax + triplet
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
    c.data.num_sample_images = 40
    c.data.shards = 2
    c.input.size = 32
    c.model.width = 2
    c.model.fc_width = 16
    c.model.embedding_dim = 8
    c.model.batch_norm = False
    c.batch_size = 8                   # the test suite runs on 8 devices
    c.eval_batch_size = 8
    c.total_steps = 4
    c.optimizer.warmup_steps = 0
    c.shuffle_window = 16
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 2
    c.export_at_end = False
  if "resnet50" in options and size != "full":
    c.model.width = max(4, c.model.width // 2)
  return c

"""AENet (CelebA-Spoof, Zhang et al., ECCV 2020): face anti-spoofing with auxiliary supervision.

Variants (`--config configs/aenet.py:SIZE[,ABLATION]`, e.g. `configs/aenet.py:full,C,G`):
  sizes:      sample (default)  the embedded CelebA-Spoof-format sample set (built on first use):
                                a narrow ResNet-18 at 96x96 that trains on a laptop CPU in a few
                                minutes;
              full              CelebA-Spoof converted with `hcjax convert celeba_spoof`: ResNet-18
                                at 224x224 as in the paper;
              test              a few steps of a tiny net, for the test suite.
  ablations:  the paper's names, with C = live/spoof Classification (binary cross-entropy),
              S = Semantic supervision (the 40 face attributes S^f, spoof type S^s, illumination
              S^i, and environment), G = Geometric supervision (depth G^d and reflection G^r
              maps). The heads of an ablation that is off are not built.
                C,S,G (default)  AENet_C,S,G: every head; the paper's model
                C,S              AENet_C,S: no depth / reflection heads
                C,G              AENet_C,G: no semantic heads
                C                AENet_C: the live/spoof head only
                baseline         the paper's vanilla ResNet-18 with binary supervision, i.e.
                                 exactly AENet_C (the same model and loss; both names work)

Loss weights (REFERENCES.md, "unverified" there): live/spoof 1, attributes 1, spoof type 0.1,
illumination 0.01, depth 0.1, reflection 0.1; environment, which the released model lacks, 0.01
like illumination. The geometric losses need depth / reflection maps in the data (the authors
never released theirs); a map kind the train split lacks switches its loss off with a warning
(config.loss.geometric_maps, see hcjax/tasks/anti_spoofing.py).

  hcjax train --config configs/aenet.py:sample --workdir runs/aenet_sample
  hcjax train --config configs/aenet.py:sample,C --workdir runs/aenet_sample_C
  hcjax spoof --workdir runs/aenet_sample face.jpg --bbox 40,30,120,150
"""

import ml_collections

from hcjax import trainer_config

SIZES = ("sample", "full", "test")
ABLATIONS = {"C,S,G": (True, True), "C,S": (True, False), "C,G": (False, True),
             "C": (False, False), "baseline": (False, False)}  # -> (semantic, geometric)


def parse_arg(arg: str | None) -> tuple[str, str]:
  """"full,C,G" -> ("full", "C,G"); the size defaults to "sample", the ablation to "C,S,G"."""
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  sizes = [p for p in parts if p in SIZES]
  rest = [p for p in parts if p not in SIZES]
  letters = [p for p in rest if p in ("C", "S", "G")]
  ablation = "C,S,G"
  if rest == ["baseline"]:
    ablation = "baseline"
  elif rest:
    if (len(letters) != len(rest) or len(set(letters)) != len(letters) or "C" not in letters):
      ablation = None
    else:
      ablation = ",".join(x for x in ("C", "S", "G") if x in letters)
  if ablation is None or len(sizes) > 1:
    raise ValueError(f"unknown variant {arg!r} of configs/aenet.py; choose one size of {SIZES} "
                     f"and optionally one ablation of {tuple(ABLATIONS)} (e.g. 'full,C,S')")
  return (sizes[0] if sizes else "sample"), ablation


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, ablation = parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.task = "anti_spoofing"
  c.seed = 0
  c.ablation = ablation             # informational: the heads follow from model.semantic/geometric

  c.data = ml_collections.ConfigDict()
  c.data.dir = "data/tfrecords/celeba_spoof_sample"
  c.data.samples_dir = "data/samples/celeba_spoof"
  c.data.make_samples = True        # build the sample set + TFRecords when `dir` is empty
  c.data.num_sample_images = 2000
  c.data.sample_seed = 0
  c.data.shards = 4
  c.data.eval_split = "test"

  c.input = ml_collections.ConfigDict()
  c.input.image_size = 96
  c.input.margin = 0.2              # the converter's default crop: face box + 20% per side
  c.input.flip = True
  c.input.jitter = 0.05             # random scale / shift of the face crop (train only)

  c.model = ml_collections.ConfigDict()
  c.model.depth = 18
  c.model.width = 16                # ResNet-18's first-stage channels (64 in the paper)
  c.model.stem = "imagenet"
  c.model.semantic, c.model.geometric = ABLATIONS[ablation]
  c.model.geometry_stage = "stage4"  # the reference's maps come from layer4 (7x7 at 224)
  c.model.map_size = 14
  c.model.dtype = "float32"

  c.loss = ml_collections.ConfigDict()
  c.loss.live_spoof = 1.0
  c.loss.attributes = 1.0
  c.loss.spoof_type = 0.1
  c.loss.illumination = 0.01
  c.loss.environment = 0.01
  c.loss.depth = 0.1
  c.loss.reflection = 0.1
  c.loss.geometric_maps = "auto"    # "on" / "off" decide without looking at the data

  c.metrics = ml_collections.ConfigDict()
  c.metrics.score_bins = 2 ** 14    # histogram of the live/spoof logit margin per class
  c.metrics.logit_range = 16.0      # bins cover [-16, 16]; beyond goes to the end bins
  c.metrics.threshold = 0.5         # APCER / BPCER / ACER operating point (spoof probability)

  trainer_config.add_training(
      c, optimizer=trainer_config.optimizer(learning_rate=2e-3, warmup_steps=50),
      batch_size=32, eval_batch_size=64, total_steps=1000, shuffle_window=1024, log_every=50,
      eval_every=500, checkpoint_every=500)

  if size == "full":
    c.data.dir = "data/tfrecords/celeba_spoof"
    c.data.make_samples = False
    c.data.shards = 64
    c.input.image_size = 224          # the paper's input
    c.model.width = 64
    c.batch_size = 128
    c.eval_batch_size = 256
    # ~495k training images: ~3,900 steps an epoch; 40k steps ~ 10 epochs. The paper does not
    # state its optimizer; these are ours.
    c.total_steps = 40_000
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 1000
    c.optimizer.weight_decay = 5e-4
    c.input_workers = 8
    c.shuffle_window = 16_384
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 2000
  elif size == "test":
    c.data.num_sample_images = 60
    c.data.shards = 2
    c.input.image_size = 48
    c.model.width = 4
    c.model.map_size = 6
    c.metrics.score_bins = 512
    c.batch_size = 8                  # the test suite runs on 8 devices
    c.eval_batch_size = 8
    c.total_steps = 4
    c.optimizer.warmup_steps = 1
    c.shuffle_window = 16
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 0            # only at the end: each save costs seconds on a CPU
    c.export_at_end = False
  return c

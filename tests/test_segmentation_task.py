"""The segmentation task: aligned augmentation, void handling, padded evaluation counting every
pixel once, the configs, and one end-to-end run of configs/crf_rnn.py:test with `hcjax segment`."""

from __future__ import annotations

import io
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from hcjax import segment, tasks, train
from hcjax.data import ImageDecodeError, MissingDataError, tfrecord
from hcjax.data.converters import voc
from hcjax.errors import ConfigError
from hcjax.metrics import segmentation as seg_metrics
from hcjax.tasks import TaskConfigError
from hcjax.tasks.segmentation import MEAN_RGB, SegmentationTask

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import crf_rnn  # noqa: E402  pylint: disable=g-import-not-at-top
import dpn  # noqa: E402  pylint: disable=g-import-not-at-top

L, VOID = 21, 255


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
  buf = io.BytesIO()
  img = Image.fromarray(array) if mode is None else Image.fromarray(array, mode)
  if mode == "P":
    img.putpalette(voc.PALETTE.tobytes())
  img.save(buf, format="PNG")
  return buf.getvalue()


def _features(image: np.ndarray, mask: np.ndarray, image_id: str = "x") -> dict:
  """What the pipeline hands preprocess: a decoded tf.train.Example of the converter's format."""
  return tfrecord.decode_example(tfrecord.encode_example({
      "image": _png(image), "mask": _png(mask.astype(np.uint8), "L"), "id": image_id,
      "height": np.array([mask.shape[0]]), "width": np.array([mask.shape[1]])}))


def _blocks(h: int = 60, w: int = 84) -> tuple[np.ndarray, np.ndarray]:
  """An asymmetric label map of large blocks and an image whose colour encodes each label."""
  mask = np.zeros((h, w), np.uint8)
  mask[:, : w // 3] = 15
  mask[h // 2:, w // 3: 2 * w // 3] = 8
  mask[: h // 4, w // 2:] = 12
  mask[h // 4: h // 4 + 3] = VOID  # a void band, as along VOC outlines
  image = voc.PALETTE[mask].copy()
  return image, mask


def _config(**overrides):
  config = crf_rnn.get_config("test")
  config.update_from_flattened_dict(overrides)
  return config


# --- preprocess ---------------------------------------------------------------------------------

def test_training_augmentation_keeps_image_and_mask_aligned():
  task = SegmentationTask(_config(**{"input.crop_size": 48, "input.min_scale": 0.5,
                                     "input.max_scale": 1.6}))
  image, mask = _blocks()
  features = _features(image, mask)
  colors = voc.PALETTE.astype(np.int32)
  flips = set()
  for seed in range(12):
    out = task.preprocess(features, np.random.default_rng(seed), train=True)
    img, m = out["image"], out["mask"]
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert m.shape == (48, 48) and m.dtype == np.int32
    labelled = m != VOID
    assert labelled.any()
    # Away from label boundaries (where bilinear blends colours) the colour is the label's.
    interior = labelled.copy()
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1)):
      interior &= np.roll(m, (dy, dx), axis=(0, 1)) == m
    interior[[0, -1]] = interior[:, [0, -1]] = False
    err = np.abs(img.astype(np.int32) - colors[m]).max(-1)
    assert (err[interior] <= 2).all(), f"seed {seed}: image and mask disagree"
    # Canvas outside the rescaled image: void label over the mean colour.
    outside = (m == VOID) & (np.abs(img.astype(np.int32) - np.array(MEAN_RGB)).max(-1) == 0)
    assert not (outside & labelled).any()
    # The person block (left third in the source) tells which way the crop was mirrored.
    xs = np.flatnonzero((m == 15).any(0))
    ys = np.flatnonzero((m == 12).any(0))
    if len(xs) and len(ys):
      flips.add(bool(xs.mean() > ys.mean()))
  assert flips == {False, True}, "12 seeds should both mirror and not mirror"


def test_eval_pads_with_void_and_the_mean_colour():
  task = SegmentationTask(_config())
  image, mask = _blocks(30, 37)
  out = task.preprocess(_features(image, mask), np.random.default_rng(0), train=False)
  e = task.eval_size
  assert out["image"].shape == (e, e, 3) and out["mask"].shape == (e, e)
  np.testing.assert_array_equal(out["image"][:30, :37], image)
  np.testing.assert_array_equal(out["mask"][:30, :37], mask)
  assert (out["mask"][30:] == VOID).all() and (out["mask"][:, 37:] == VOID).all()
  assert (out["image"][30:] == MEAN_RGB).all() and (out["image"][:, 37:] == MEAN_RGB).all()
  big_image, big_mask = _blocks(e + 1, 20)
  with pytest.raises(TaskConfigError, match=r"'big'.*eval_size"):
    task.preprocess(_features(big_image, big_mask, "big"), np.random.default_rng(0), train=False)


def test_masks_decode_as_indices_and_must_match_the_image():
  task = SegmentationTask(_config())
  image, mask = _blocks(20, 30)
  features = _features(image, mask)
  features["mask"] = [_png(mask, "P")]  # VOC's own palette PNGs hold the indices too
  out = task.preprocess(features, np.random.default_rng(0), train=False)
  np.testing.assert_array_equal(out["mask"][:20, :30], mask)
  features["mask"] = [_png(mask[:, :29], "L")]
  with pytest.raises(ImageDecodeError, match="does not match"):
    task.preprocess(features, np.random.default_rng(0), train=False)
  features["mask"] = [_png(image)]
  with pytest.raises(ImageDecodeError, match="single-channel"):
    task.preprocess(features, np.random.default_rng(0), train=False)


# --- loss and metrics ---------------------------------------------------------------------------

def _outputs(rng, b=2, h=6, w=5):
  return {"unary": jnp.asarray(rng.normal(size=(b, h, w, L)), jnp.float32),
          "logits": jnp.asarray(rng.normal(size=(b, h, w, L)) * 3, jnp.float32)}


def test_loss_is_a_mean_over_non_void_pixels():
  task = SegmentationTask(_config(**{"loss.aux_unary_weight": 0.0}))
  rng = np.random.default_rng(0)
  outputs = _outputs(rng)
  labels = rng.integers(0, L, size=(2, 6, 5))
  labels[rng.random(labels.shape) < 0.3] = VOID
  batch = {"mask": jnp.asarray(labels, jnp.int32)}
  loss, aux = task.loss(outputs, batch)
  logits = np.asarray(outputs["logits"], np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  valid = labels != VOID
  expected = -np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], -1)[..., 0][valid]
  np.testing.assert_allclose(float(loss), expected.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(aux["pixel_accuracy"]),
                             (logits.argmax(-1) == labels)[valid].mean(), rtol=1e-6)
  # Logits at void pixels change nothing, not even the gradient elsewhere.
  noisy = dict(outputs, logits=jnp.where(jnp.asarray(valid)[..., None], outputs["logits"], 100.0))
  np.testing.assert_allclose(float(task.loss(noisy, batch)[0]), float(loss), rtol=1e-6)
  grad = jax.grad(lambda lg: task.loss(dict(outputs, logits=lg), batch)[0])(outputs["logits"])
  assert np.all(np.asarray(grad)[~valid] == 0)
  # A crop of void only: zero loss, finite gradient.
  void = {"mask": jnp.full((2, 6, 5), VOID, jnp.int32)}
  loss0, aux0 = task.loss(outputs, void)
  assert float(loss0) == 0.0 and float(aux0["pixel_accuracy"]) == 0.0
  assert np.isfinite(np.asarray(jax.grad(
      lambda lg: task.loss(dict(outputs, logits=lg), void)[0])(outputs["logits"]))).all()


def test_aux_unary_loss_is_added():
  rng = np.random.default_rng(1)
  outputs = _outputs(rng)
  batch = {"mask": jnp.asarray(rng.integers(0, L, size=(2, 6, 5)), jnp.int32)}
  plain, _ = SegmentationTask(_config(**{"loss.aux_unary_weight": 0.0})).loss(outputs, batch)
  both, aux = SegmentationTask(_config(**{"loss.aux_unary_weight": 0.5})).loss(outputs, batch)
  np.testing.assert_allclose(float(both), float(plain) + 0.5 * float(aux["ce_unary"]), rtol=1e-6)


def test_padded_eval_counts_every_real_pixel_once():
  """Examples split into padded batches, summed as the trainer does, on 8 devices, equal the
  metrics of the real pixels taken together."""
  task = SegmentationTask(_config())
  rng = np.random.default_rng(2)
  n, b, h, w = 11, 8, 6, 5
  labels = rng.integers(0, 4, size=(n, h, w))
  labels[rng.random(labels.shape) < 0.2] = VOID
  unary = rng.normal(size=(n, h, w, L)).astype(np.float32)
  logits = rng.normal(size=(n, h, w, L)).astype(np.float32)
  logits[..., :4] += 5 * np.eye(4)[np.where(labels == VOID, 0, labels)]  # mostly right

  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  stats_fn = jax.jit(task.eval_statistics)
  totals = {}
  for start in range(0, n, b):
    real = min(b, n - start)
    pad = lambda x: np.concatenate([x[start:start + real], np.zeros((b - real,) + x.shape[1:],
                                                                     x.dtype)])
    batch = {"mask": pad(labels).astype(np.int32),
             "_mask": (np.arange(b) < real).astype(np.float32)}
    outputs = {"unary": pad(unary), "logits": pad(logits)}
    stats = stats_fn(jax.device_put(outputs, sharded), jax.device_put(batch, sharded))
    for key, value in jax.device_get(stats).items():
      totals[key] = totals.get(key, 0) + np.asarray(value, np.float64)
  metrics = task.summarize(totals)
  cm = seg_metrics.confusion_matrix(labels, logits.argmax(-1), L)
  cm_unary = seg_metrics.confusion_matrix(labels, unary.argmax(-1), L)
  np.testing.assert_array_equal(totals["confusion"], cm)
  assert metrics["pixels"] == (labels != VOID).sum() and metrics["examples"] == n
  np.testing.assert_allclose(metrics["miou"], seg_metrics.mean_iou(cm))
  np.testing.assert_allclose(metrics["miou_unary"], seg_metrics.mean_iou(cm_unary))
  np.testing.assert_allclose(metrics["pixel_accuracy"], seg_metrics.pixel_accuracy(cm))
  assert 0.5 < metrics["miou"] <= 1 and metrics["miou_unary"] < metrics["miou"]


def test_summarize_hand_case():
  task = SegmentationTask(_config())
  cm = np.zeros((L, L))
  cm[0, 0], cm[0, 15] = 6, 2   # background: 6 right, 2 taken for person
  cm[15, 15], cm[15, 0] = 3, 1  # person: 3 right, 1 taken for background
  cm[8, 8] = 0                  # cat absent
  totals = {"confusion": cm, "confusion_unary": np.diag(np.diag(cm) + 1.0),
            "ce_sum": np.float64(6.0), "pixels": np.float64(12), "examples": np.float64(2)}
  m = task.summarize(totals)
  # background IoU 6 / (8 + 7 - 6) = 6/9; person 3 / (4 + 5 - 3) = 3/6.
  assert m["iou/background"] == pytest.approx(6 / 9)
  assert m["iou/person"] == pytest.approx(0.5)
  assert "iou/cat" not in m  # in neither truth nor prediction: no IoU
  assert m["miou"] == pytest.approx((6 / 9 + 0.5) / 2)
  assert m["miou_unary"] == pytest.approx(1.0)
  assert m["pixel_accuracy"] == pytest.approx(9 / 12)
  assert m["mean_class_accuracy"] == pytest.approx((6 / 8 + 3 / 4) / 2)
  assert m["loss"] == pytest.approx(0.5) and m["examples"] == 2
  assert sorted(k for k in m if k.startswith("iou/")) == ["iou/background", "iou/person"]


def test_visualize_rows_of_image_truth_prediction():
  task = SegmentationTask(_config())
  image, mask = _blocks(24, 30)
  padded = [task.preprocess(_features(image, mask), None, train=False) for _ in range(3)]
  batch = {"image": np.stack([p["image"] for p in padded]),
           "mask": np.stack([p["mask"] for p in padded]), "_mask": np.array([1.0, 1.0, 0.0])}
  predictions = np.eye(L, dtype=np.float32)[np.where(batch["mask"] == VOID, 0, batch["mask"])]
  picture = task.visualize(batch, predictions)
  assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
  # 2 real rows of 3 cells, the padding cut away, enlarged 3x (24x30 -> 72x90).
  assert picture.shape[1] > 3 * 90 and 2 * 72 < picture.shape[0] < 2 * (72 + 40)
  overlay = task.overlay(image, mask)
  np.testing.assert_array_equal(overlay, image)  # the image is the labels' colours


# --- configs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("module,arg", [
    (crf_rnn, None), (crf_rnn, "sample"), (crf_rnn, "full"), (crf_rnn, "test"),
    (crf_rnn, "full,nocrf"), (crf_rnn, "sample,nocrf"),
    (dpn, None), (dpn, "full"), (dpn, "test"), (dpn, "sample,unary"), (dpn, "sample,triple"),
    (dpn, "context,full"), (dpn, "full,joint"),
])
def test_configs_build_their_task_and_model(module, arg):
  config = module.get_config(arg)
  task = tasks.get_task(config)
  model = task.build_model()
  assert model.num_classes == L
  assert config.input.eval_size >= config.input.crop_size
  assert config.total_steps > 0 and config.batch_size % 8 == 0


def test_crf_rnn_trains_the_crf_on_top_of_the_fcn_run():
  for size in ("sample", "full"):
    fcn, crf = crf_rnn.get_config(f"{size},nocrf"), crf_rnn.get_config(size)
    assert not fcn.model.use_crf and fcn.init_from == ""
    assert crf.model.use_crf and crf.init_from == f"runs/crf_rnn_{size}_nocrf"
  full = crf_rnn.get_config("full")
  assert (full.model.train_iterations, full.model.eval_iterations) == (5, 10)
  assert full.optimizer.learning_rate == pytest.approx(1e-13 * 500 * 500 * full.batch_size)
  assert crf_rnn.get_config("test").init_from == ""


def test_dpn_stages_start_from_the_previous_stage_and_freeze():
  unary, triple = dpn.get_config("sample,unary"), dpn.get_config("sample,triple")
  context, joint = dpn.get_config("context"), dpn.get_config("full,joint")
  assert unary.init_from == "" and tuple(unary.optimizer.freeze) == ()
  assert triple.init_from == "runs/dpn_sample_unary" and triple.model.stage == "triple"
  assert tuple(triple.optimizer.freeze) == ("unary/.*",)
  assert context.init_from == "runs/dpn_sample_triple"
  assert set(context.optimizer.freeze) == {"unary/.*", "triple/.*"}
  assert joint.init_from == "runs/dpn_full_context" and tuple(joint.optimizer.freeze) == ()
  assert joint.optimizer.learning_rate < dpn.get_config("full,context").optimizer.learning_rate
  sample = dpn.get_config("sample")
  assert sample.model.stage == "joint" and sample.init_from == ""
  for bad in ("nope", "sample,full", "triple,joint"):
    with pytest.raises(ValueError, match="configs/dpn.py"):
      dpn.get_config(bad)
  with pytest.raises(ValueError, match="configs/crf_rnn.py"):
    crf_rnn.get_config("sample,test")


@pytest.mark.parametrize("override,message", [
    ({"model.name": "unet"}, "config.model.name"),
    ({"model.iterations": 3}, "config.model.iterations"),
    ({"model.dtype": "int8"}, "config.model.dtype"),
    ({"input.min_scale": 2.0}, "min_scale"),
    ({"data.eval_split": "test"}, "eval_split"),
    ({"data.dataset": "coco"}, "config.data.dataset"),
])
def test_config_errors_name_the_key(override, message):
  with pytest.raises(TaskConfigError, match=message):
    task = SegmentationTask(_config(**override))
    task.data_pattern("eval")


def test_missing_data_names_the_converter(tmp_path):
  task = SegmentationTask(_config(**{"data.dir": str(tmp_path / "none"),
                                     "data.make_samples": False}))
  with pytest.raises(MissingDataError, match="hcjax convert voc"):
    task.prepare_data()


# --- end to end ---------------------------------------------------------------------------------

def _write_voc(root, num_images: int = 16, seed: int = 0) -> str:
  """A tiny VOC2012 tree: a person and a cat rectangle on a textured background, void outlines."""
  rng = np.random.default_rng(seed)
  src = root / "VOC2012"
  for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    (src / sub).mkdir(parents=True, exist_ok=True)
  ids = []
  for i in range(num_images):
    h, w = int(rng.integers(24, 33)), int(rng.integers(28, 41))
    mask = np.zeros((h, w), np.uint8)
    image = rng.integers(90, 140, size=(h, w, 3)).astype(np.uint8)
    for label, color in ((15, (220, 60, 40)), (8, (40, 60, 220))):
      y, x = int(rng.integers(0, h - 10)), int(rng.integers(0, w - 10))
      mask[y:y + 10, x:x + 10] = label
      image[y:y + 10, x:x + 10] = color
      mask[y, x:x + 10] = VOID
    image_id = f"2012_{i:06d}"
    Image.fromarray(image).save(src / "JPEGImages" / f"{image_id}.jpg", quality=95)
    png = Image.fromarray(mask, "P")
    png.putpalette(voc.PALETTE.tobytes())
    png.save(src / "SegmentationClass" / f"{image_id}.png")
    ids.append(image_id)
  (src / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:12]) + "\n")
  (src / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[12:]) + "\n")
  return str(src)


@pytest.fixture(scope="module")
def voc_records(tmp_path_factory):
  """(VOC2012 folder, converted records) of the tiny set, through the real converter."""
  root = tmp_path_factory.mktemp("voc")
  src = _write_voc(root)
  voc.convert(src, str(root / "records"), shards=2, progress=False)
  return src, str(root / "records")


def test_train_evaluate_and_segment(voc_records, tmp_path):
  src, records = voc_records
  config = _config(**{"data.dir": records, "data.make_samples": False})
  workdir = tmp_path / "run"
  result = train.train_and_evaluate(config, str(workdir))
  assert result["step"] == config.total_steps
  for key in ("miou", "miou_unary", "pixel_accuracy", "mean_class_accuracy", "iou/person"):
    assert key in result
  assert 0 <= result["pixel_accuracy"] <= 1 and result["examples"] == 4
  pictures = os.listdir(workdir / "pictures")
  assert any(p.startswith("eval_predictions") and p.endswith(".png") for p in pictures)
  assert json.load(open(workdir / "final_metrics.json"))["step"] == config.total_steps

  # `hcjax segment`: a palette PNG of the image's size holding class indices.
  image = src + "/JPEGImages/2012_000013.jpg"
  h, w = np.asarray(Image.open(image)).shape[:2]
  assert segment.main(["--workdir", str(workdir), image, "-o", str(tmp_path / "out.png")]) == 0
  out = Image.open(tmp_path / "out.png")
  assert out.mode == "P" and out.size == (w, h)
  assert np.asarray(out).max() < L
  # Several inputs into a folder, the unary's labels as overlays; a larger image than eval_size.
  big = tmp_path / "big.png"
  Image.fromarray(np.full((config.input.eval_size + 5, 20, 3), 120, np.uint8)).save(big)
  assert segment.main(["--workdir", str(workdir), image, str(big), "-o", str(tmp_path / "dir"),
                       "--no-crf", "--overlay"]) == 0
  overlay = Image.open(tmp_path / "dir" / "2012_000013.png")
  assert overlay.mode == "RGB" and overlay.size == (w, h)
  assert Image.open(tmp_path / "dir" / "big.png").size == (20, config.input.eval_size + 5)
  # Clear errors: a missing image, a workdir without a checkpoint.
  with pytest.raises(MissingDataError, match="nope.jpg"):
    segment.main(["--workdir", str(workdir), str(tmp_path / "nope.jpg"), "-o", "x.png"])
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "config.json").write_text((workdir / "config.json").read_text())
  with pytest.raises(ConfigError, match="no checkpoint"):
    segment.main(["--workdir", str(tmp_path / "empty"), image, "-o", str(tmp_path / "y.png")])


def test_segment_helpers(tmp_path):
  assert segment.canvas_size(30, 40, 40) == (40, 40)
  assert segment.canvas_size(41, 20, 40) == (64, 40)
  assert segment.output_paths(["a/x.jpg"], "o.png") == ["o.png"]
  assert segment.output_paths(["a/x.jpg", "b/y.jpg"], "d") == ["d/x.png", "d/y.png"]
  with pytest.raises(ConfigError, match="'x'"):
    segment.output_paths(["a/x.jpg", "b/x.png"], "d")
  with pytest.raises(ConfigError, match="config.json"):
    segment.load_config(str(tmp_path))


@pytest.mark.slow
def test_dpn_stages_chain_through_init_from_and_freeze(voc_records, tmp_path):
  """`test,unary` then `test,triple` from it: the unary is loaded and stays frozen."""
  _, records = voc_records

  def run(stage, init_from):
    config = dpn.get_config(f"test,{stage}")
    config.data.dir, config.data.make_samples = records, False
    config.init_from, config.total_steps = init_from, 2
    train.train_and_evaluate(config, str(tmp_path / stage))
    return train.restore_for_inference(config, str(tmp_path / stage))[3].params

  unary = run("unary", "")
  triple = run("triple", str(tmp_path / "unary"))
  for a, b in zip(jax.tree.leaves(unary["unary"]), jax.tree.leaves(triple["unary"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert "triple" in triple and "triple" not in unary
  assert float(triple["triple_weight"]) != 1.0  # the new layer did train

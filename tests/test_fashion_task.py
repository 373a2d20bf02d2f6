"""The fashion task: landmarks move with the image under every augmentation, the loss pieces by
hand, padded eval, and one end-to-end run of configs/fashionnet.py:test with the two tools."""

from __future__ import annotations

import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from hcjax import cli, fashion, train
from hcjax.data import tfrecord
from hcjax.data.converters import deepfashion as df
from hcjax.data.samples import deepfashion as samples
from hcjax.tasks import TaskConfigError, get_task
from hcjax.tasks.fashion import (FashionTask, batch_hard_triplet, crop_matrix, positive_weights,
                                 weighted_bce)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import fashionnet  # noqa: E402  pylint: disable=g-import-not-at-top

COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255),
                    (0, 255, 255), (255, 128, 0), (128, 0, 255)], np.int32)
LANDMARKS = np.array([[40, 30], [80, 30], [25, 60], [95, 60], [45, 90], [75, 90], [40, 120],
                      [82, 118]], np.float32)


def _config(**overrides):
  config = fashionnet.get_config("test")
  config.update_from_flattened_dict(overrides)
  return config


def _features(tmp_path, bbox=(20, 20, 100, 130)) -> dict:
  """A 150x120 grey image with a 9x9 dot of a distinct colour at each landmark, through the
  converter's own encoding (df.encode) of a Record."""
  image = np.full((150, 120, 3), 128, np.uint8)
  for (x, y), c in zip(LANDMARKS.astype(int), COLOURS):
    image[y - 4:y + 5, x - 4:x + 5] = c
  path = tmp_path / "dots.png"
  Image.fromarray(image).save(path)
  record = df.Record("dots.png", "train", str(path), np.array(bbox, np.float32), LANDMARKS,
                     np.array([0, 1, 0, 0, 0, 1, 0, 0], np.int64), np.ones(8, np.int64), 3, 1,
                     category=4, attributes=np.array([1, -1, 0] * 20 + [1], np.int8).tobytes())
  return tfrecord.decode_example(df.encode(record))


def _check_dots(out, size):
  """Colour under each output landmark = the dot of that slot, or of its pair when flipped.
  Returns whether the sample was flipped."""
  pix = np.asarray(out["landmarks"]) * size - 0.5
  flipped = None
  order = np.arange(8)
  for a, b in df.FLIP_PAIRS:
    order[a], order[b] = b, a
  for k, (x, y) in enumerate(pix):
    if out["visibility"][k] == df.TRUNCATED:
      continue
    colour = out["image"][int(round(y)), int(round(x))].astype(np.int32)
    same = np.abs(colour - COLOURS[k]).max() < 60
    swapped = np.abs(colour - COLOURS[order[k]]).max() < 60
    assert same or swapped, (k, colour)
    this = swapped and not same
    flipped = this if flipped is None else flipped
    assert flipped == this
  return bool(flipped)


@pytest.mark.parametrize("kind", ["crop", "flip", "scale", "shift", "all"])
def test_landmarks_move_with_the_image_under_every_augmentation(tmp_path, kind):
  size = 64
  task = FashionTask(_config(**{"input.size": size}))
  ex = df.parse_example(_features(tmp_path))
  image = np.asarray(Image.open(tmp_path / "dots.png"))
  params = {"crop": {}, "flip": {"flip": True}, "scale": {"scale": 1.3},
            "shift": {"shift": (0.1, -0.08)}, "all": {"scale": 0.85, "shift": (-0.05, 0.1),
                                                      "flip": True}}[kind]
  m = crop_matrix(ex["bbox"], size, 0.1, **params)
  out = task.crop(image, {"landmarks": ex["landmarks"], "boxes": ex["bbox"][None],
                          "visibility": ex["landmark_visibility"],
                          "present": ex["landmark_present"]}, m)
  out["landmarks"] = (out["landmarks"] + 0.5) / size
  flipped = _check_dots(out, size)
  assert flipped == params.get("flip", False)
  if flipped:  # visibility travels with its landmark: slot 1 was occluded, now slot 0 is
    assert list(out["visibility"][:2]) == [1, 0]
  # The box moves with the image too.
  x1, y1, x2, y2 = out["boxes"][0]
  assert 0 <= x1 < x2 <= size and 0 <= y1 < y2 <= size


def test_train_preprocess_keeps_landmarks_on_their_dots(tmp_path):
  task = FashionTask(_config(**{"input.size": 64, "input.min_scale": 0.8, "input.max_scale": 1.3,
                                "input.shift": 0.1}))
  features = _features(tmp_path)
  flips = set()
  for seed in range(10):
    out = task.preprocess(features, np.random.default_rng(seed), train=True)
    assert out["image"].shape == (64, 64, 3) and out["image"].dtype == np.uint8
    assert out["landmarks"].shape == (8, 2) and out["landmarks"].dtype == np.float32
    flips.add(_check_dots(out, 64))
    assert out["category"] == 4 and out["attributes"].shape == (61,)
    assert set(np.unique(out["attributes"])) <= {-1, 0, 1}
  assert flips == {True, False}
  a = task.preprocess(features, np.random.default_rng(0), train=False)
  b = task.preprocess(features, np.random.default_rng(1), train=False)
  np.testing.assert_array_equal(a["image"], b["image"])
  assert not _check_dots(a, 64)


def test_landmarks_leaving_the_crop_become_truncated(tmp_path):
  task = FashionTask(_config(**{"input.size": 64}))
  ex = _features(tmp_path, bbox=(20, 20, 60, 60))  # the hem landmarks lie below the crop
  out = task.preprocess(ex, np.random.default_rng(0), train=False)
  assert (out["visibility"][6:] == df.TRUNCATED).all()
  assert out["visibility"][0] == 0


def test_weighted_bce_ignores_unknowns_by_hand():
  logits = jnp.array([[0.0, 2.0, -1.0], [1.0, 0.0, 3.0]])
  labels = jnp.array([[1, -1, 0], [0, 1, -1]])
  w = jnp.array([3.0, 2.0, 1.0])
  loss, count = weighted_bce(logits, labels, w)
  sp = lambda x: np.log1p(np.exp(x))  # BCE: positive -> softplus(-z), negative -> softplus(z)
  expected = (3 * sp(-0.0) + sp(2.0) + 2 * sp(-0.0) + sp(3.0)) / 4
  assert int(count) == 4
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  pw = positive_weights({"positives": [1, 10, 0], "negatives": [9, 5, 4]}, 3, 20.0)
  np.testing.assert_allclose(pw, [9.0, 1.0, 20.0])
  np.testing.assert_allclose(positive_weights({}, 2, 20.0), [1, 1])


def test_batch_hard_triplet_tiny_case():
  e = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [0.6, 0.8]])
  ids = jnp.array([0, 0, 1, 1, -1])
  loss, count, _ = batch_hard_triplet(e, ids, margin=0.5)
  r2 = np.sqrt(2.0)
  # anchor 0: pos d=√2, nearest neg (e2) d=0 -> 0.5+√2; anchor 1: pos √2, neg √2 -> 0.5;
  # anchor 2: pos (e3) 2, neg e0 0 -> 2.5; anchor 3: pos 2, neg e1 √2 -> 0.5+2-√2. e4: no id.
  expected = ((0.5 + r2) + 0.5 + 2.5 + (2.5 - r2)) / 4
  assert int(count) == 4
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  # An anchor without a positive in the batch counts nowhere.
  _, count, _ = batch_hard_triplet(e, jnp.array([0, 1, 2, 3, 4]), margin=0.5)
  assert int(count) == 0


def _outputs(b, rng):
  return {"category": jnp.asarray(rng.normal(size=(b, 13)), jnp.float32),
          "attributes": jnp.asarray(rng.normal(size=(b, 61)), jnp.float32),
          "landmarks": jnp.asarray(rng.uniform(size=(b, 8, 2)), jnp.float32),
          "visibility": jnp.asarray(rng.normal(size=(b, 8, 3)), jnp.float32),
          "embedding": jnp.asarray(rng.normal(size=(b, 8)), jnp.float32)}


def _batch(b, rng):
  return {"category": jnp.asarray(rng.integers(0, 13, b), jnp.int32),
          "attributes": jnp.asarray(rng.integers(-1, 2, (b, 61)), jnp.int32),
          "landmarks": jnp.asarray(rng.uniform(size=(b, 8, 2)), jnp.float32),
          "visibility": jnp.asarray(rng.integers(0, 3, (b, 8)), jnp.int32),
          "present": jnp.asarray(rng.integers(0, 2, (b, 8)), jnp.int32),
          "item_id": jnp.asarray(rng.integers(0, 3, b), jnp.int32)}


def test_padded_eval_counts_each_example_once_and_loss_is_finite():
  task = FashionTask(_config())
  rng = np.random.default_rng(0)
  out, batch = _outputs(6, rng), _batch(6, rng)
  loss, aux = task.loss(out, batch)
  assert np.isfinite(float(loss)) and {"category_ce", "attribute_bce", "landmark_l2",
                                       "visibility_ce"} <= set(aux)
  full = task.eval_statistics(out, {**batch, "_mask": jnp.ones(6)})
  # The same six examples in two batches of four, the last padded with two copies.
  parts = []
  for idx, mask in (([0, 1, 2, 3], [1, 1, 1, 1]), ([4, 5, 0, 1], [1, 1, 0, 0])):
    sl = lambda t: {k: v[np.array(idx)] for k, v in t.items()}
    parts.append(task.eval_statistics(sl(out), {**sl(batch), "_mask": jnp.asarray(mask)}))
  for key in full:
    np.testing.assert_allclose(np.asarray(parts[0][key]) + np.asarray(parts[1][key]),
                               np.asarray(full[key]), rtol=1e-5, err_msg=key)
  metrics = task.summarize({k: np.asarray(v, np.float64) for k, v in full.items()})
  for key in ("category_top3_accuracy", "category_top5_accuracy", "attribute_top3_recall",
              "attribute_top5_recall", "landmark_normalized_error", "landmark_detection_rate",
              "visibility_accuracy"):
    assert key in metrics and 0 <= metrics[key] <= 2, key
  assert metrics["examples"] == 6


def test_inshop_two_views_and_triplet_loss():
  task = FashionTask(_config(**{"data.benchmark": "inshop", "loss.triplet": 1.0}))
  rng = np.random.default_rng(1)
  batch = {**_batch(4, rng), "image": jnp.zeros((4, 32, 32, 3), jnp.uint8),
           "image2": jnp.ones((4, 32, 32, 3), jnp.uint8)}
  assert task.model_inputs(batch).shape == (8, 32, 32, 3)
  loss, aux = task.loss(_outputs(8, rng), batch)
  assert np.isfinite(float(loss)) and "triplet" in aux and "category_ce" in aux


@pytest.mark.parametrize("override,message", [
    ({"data.benchmark": "landmarks"}, "benchmark"),
    ({"model.trunk": "vgg19"}, "trunk"),
    ({"model.depth": 3}, "model.depth"),
    ({"loss.bogus": 1.0}, "loss.bogus"),
    ({"loss.item": 1.0}, "num_items"),
    ({"input.min_scale": 2.0}, "min_scale"),
])
def test_config_errors_name_the_key(override, message):
  with pytest.raises(TaskConfigError, match=message):
    FashionTask(_config(**override))


@pytest.mark.parametrize("arg", ["sample", "full", "test", "sample,inshop", "full,inshop",
                                 "test,resnet50"])
def test_configs_build_their_task(arg):
  config = fashionnet.get_config(arg)
  task = get_task(config)
  assert isinstance(task, FashionTask)
  task.build_model()


# --- end to end ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def category_records(tmp_path_factory):
  root = tmp_path_factory.mktemp("deepfashion")
  samples.write_sample_set(str(root / "src"), num_images=28, seed=0, benchmark="category")
  df.convert(str(root / "src" / "category"), str(root / "records"), benchmark="category",
             shards=2, progress=False)
  return root


def test_train_evaluate_and_tools(category_records, tmp_path):
  root = category_records
  config = _config(**{"data.dir": str(root / "records"), "data.make_samples": False})
  workdir = tmp_path / "run"
  result = train.train_and_evaluate(config, str(workdir))
  assert result["step"] == config.total_steps
  for key in ("category_top3_accuracy", "attribute_top5_recall", "landmark_normalized_error",
              "landmark_detection_rate"):
    assert key in result and np.isfinite(result[key]), key
  assert os.path.exists(root / "records" / "attribute_balance.json")
  assert any(p.startswith("eval_predictions") for p in os.listdir(workdir / "pictures"))

  images = sorted(str(p) for p in (root / "src" / "category" / "img").rglob("*.jpg"))
  out = tmp_path / "lm.png"
  assert cli.main(["fashion", "--workdir", str(workdir), images[0], "-o", str(out)]) == 0
  h, w = np.asarray(Image.open(images[0])).shape[:2]
  assert Image.open(out).size[0] >= w

  gallery = tmp_path / "gallery"
  gallery.mkdir()
  for i, p in enumerate(images[1:7]):
    Image.open(p).save(gallery / f"g{i}.png")
  strip = tmp_path / "strip.png"
  assert fashion.retrieve_main(["--workdir", str(workdir), "--gallery", str(gallery), "-k", "3",
                                images[0], "-o", str(strip)]) == 0
  assert Image.open(strip).size[0] > 4 * 128


def test_evaluate_retrieval_on_inshop_records(tmp_path):
  """Exact retrieval over the whole query and gallery splits (untrained net)."""
  import jax  # pylint: disable=g-import-not-at-top
  from hcjax.tasks.fashion import evaluate_retrieval  # pylint: disable=g-import-not-at-top
  samples.write_sample_set(str(tmp_path / "src"), num_images=24, seed=0, benchmark="inshop")
  df.convert(str(tmp_path / "src" / "inshop"), str(tmp_path / "rec"), benchmark="inshop",
             shards=1, progress=False)
  task = FashionTask(_config(**{"data.benchmark": "inshop", "data.dir": str(tmp_path / "rec")}))
  model = task.build_model()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
  metrics = evaluate_retrieval(task, model, variables, ks=(1, 5))
  assert metrics["queries"] > 0 and metrics["gallery"] > 0
  assert 0 <= metrics["top1_accuracy"] <= metrics["top5_accuracy"] <= 1


@pytest.mark.slow
def test_learns_category_and_landmarks_on_the_sample_set(tmp_path):
  """A short run on the rendered sample set: category top-3 beats chance (3/13) clearly and the
  landmark error falls well below its value at the start (and below predicting the centre)."""
  import json  # pylint: disable=g-import-not-at-top
  config = fashionnet.get_config("sample")
  config.update_from_flattened_dict({
      "data.dir": str(tmp_path / "rec"), "data.samples_dir": str(tmp_path / "src"),
      "data.num_sample_images": 320, "input.size": 64, "model.width": 8, "model.fc_width": 128,
      "total_steps": 240, "batch_size": 16, "eval_batch_size": 16, "optimizer.warmup_steps": 20,
      "log_every": 20, "eval_every": 0, "checkpoint_every": 0, "export_at_end": False})
  result = train.train_and_evaluate(config, str(tmp_path / "run"))
  logs = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
  train_logs = [l for l in logs if l["split"] == "train"]
  first, last = train_logs[0]["landmark_error"], train_logs[-1]["landmark_error"]
  print(f"category top3 {result['category_top3_accuracy']:.3f} top5 "
        f"{result['category_top5_accuracy']:.3f}; landmark normalised error eval "
        f"{result['landmark_normalized_error']:.4f}, train {first:.4f} -> {last:.4f}; "
        f"detection {result['landmark_detection_rate']:.3f}; attr top5 recall "
        f"{result['attribute_top5_recall']:.3f}")
  assert result["category_top3_accuracy"] > 1.5 * 3 / 13
  assert last < 0.6 * first
  assert result["landmark_normalized_error"] < 0.2

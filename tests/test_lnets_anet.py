"""LNets+ANet: locally shared convolution against a slow reference, localisation from response
maps, the box statistics by hand, "wild" placement, and the two training stages end to end on
the rendered CelebA sample set through the real converter and input pipeline."""

import glob
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hcjax import train
from hcjax.data import tfrecord
from hcjax.models import face_attributes as fa
from hcjax.tasks import face_attributes as task_lib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import lnets_anet  # noqa: E402  pylint: disable=g-import-not-at-top


# --- locally shared convolution -------------------------------------------------------------------

def locally_shared_conv_reference(x, kernel, bias=None):
  """Obviously correct and slow: every output pixel finds its region and sums its window."""
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  b, h, w, _ = x.shape
  gh, gw, kh, kw, _, f = kernel.shape
  row_edges = [i * h // gh for i in range(gh + 1)]
  col_edges = [j * w // gw for j in range(gw + 1)]
  top, left = (kh - 1) // 2, (kw - 1) // 2
  out = np.zeros((b, h, w, f))
  for y in range(h):
    i = max(k for k in range(gh) if row_edges[k] <= y)
    for xx in range(w):
      j = max(k for k in range(gw) if col_edges[k] <= xx)
      acc = np.zeros((b, f))
      if bias is not None:
        acc += np.asarray(bias, np.float64)[i, j]
      for dy in range(kh):
        for dx in range(kw):
          yy, xs = y + dy - top, xx + dx - left
          if 0 <= yy < h and 0 <= xs < w:
            acc += x[:, yy, xs, :] @ kernel[i, j, dy, dx]
      out[:, y, xx] = acc
  return out


@pytest.mark.parametrize("h, w, grid, ksize", [
    (8, 8, (2, 2), (3, 3)),      # equal regions
    (7, 9, (2, 3), (3, 3)),      # unequal regions
    (6, 5, (3, 1), (4, 2)),      # even kernels: XLA's SAME puts the extra pad after
    (5, 6, (5, 6), (3, 3)),      # one pixel per region: a locally connected layer
])
def test_locally_shared_conv_equals_slow_reference(h, w, grid, ksize):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
  kernel = rng.normal(size=grid + ksize + (3, 4)).astype(np.float32)
  bias = rng.normal(size=grid + (4,)).astype(np.float32)
  got = jax.jit(fa.locally_shared_conv)(jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(bias))
  np.testing.assert_allclose(np.asarray(got), locally_shared_conv_reference(x, kernel, bias),
                             atol=1e-4)


def test_locally_shared_conv_gradients():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(1, 5, 7, 2)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(2, 3, 3, 3, 2, 3)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(2, 3, 3)), jnp.float32)
  # Linear in each argument: central differences are exact up to float32 rounding.
  check_grads(jax.jit(fa.locally_shared_conv), (x, kernel, bias), order=1, modes=("rev",), eps=1e-2,
              atol=2e-2, rtol=2e-2)


def test_a_1x1_grid_is_an_ordinary_conv():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 9, 7, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(1, 1, 3, 3, 3, 5)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(1, 1, 5)), jnp.float32)
  layer = fa.LocallySharedConv(5, (3, 3), (1, 1))
  got = jax.jit(layer.apply)({"params": {"kernel": kernel, "bias": bias}}, x)
  conv = nn.Conv(5, (3, 3), padding="SAME")
  expected = jax.jit(conv.apply)({"params": {"kernel": kernel[0, 0], "bias": bias[0, 0]}}, x)
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
  # Initialised like a conv of the same fan-in (variance 1 / (3·3·3)), not of all regions.
  big = fa.LocallySharedConv.kernel_init(jax.random.PRNGKey(2), (4, 4, 3, 3, 3, 64))
  assert 0.9 < float(jnp.std(big)) * np.sqrt(27) < 1.1


def test_model_shapes_and_stages():
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  key = jax.random.PRNGKey(0)
  kw = dict(lnet_widths=(4, 8, 8), anet_widths=(4, 8), anet_grids=((1, 1), (2, 2)),
            feature_dim=6, patch_size=16)
  shape = lambda tree: jax.tree.map(lambda a: a.shape, tree)
  lnet = fa.LNetsANet(stage="lnet", **kw)
  variables = jax.eval_shape(lnet.init, key, x)
  assert set(variables["params"]) == {"lnet"}          # stage 1 builds no ANet
  out = shape(jax.eval_shape(lnet.apply, variables, x))
  assert out == {"logits": (2, 40), "lnet_logits": (2, 40), "response": (2, 4, 4), "box": (2, 4)}
  full = fa.LNetsANet(stage="anet", **kw)
  variables = shape(jax.eval_shape(full.init, key, x))
  assert set(variables["params"]) == {"lnet", "anet", "classifiers"}
  assert variables["params"]["anet"]["lsconv2"]["kernel"] == (2, 2, 3, 3, 4, 8)
  # Per-attribute linear classifiers on the concatenated features of the 3 patches.
  assert variables["params"]["classifiers"]["kernel"] == (3 * 6, 40)
  out = shape(jax.eval_shape(full.apply, jax.eval_shape(full.init, key, x), x))
  assert out["logits"] == (2, 40) and out["box"] == (2, 4)


# --- localisation ---------------------------------------------------------------------------------

def test_localize_a_known_blob():
  response = np.zeros((2, 12, 12), np.float32)
  response[0, 3:7, 2:8] = 1.0            # the face: rows 3-6, columns 2-7
  response[0, 5, 4] = 1.5                # its peak
  response[0, 9:11, 9:11] = 0.9          # a separate bright spot, not connected: ignored
  response[1] = 0.1
  response[1, 8, 1:3] = 2.0              # a thin blob touching another one diagonally ...
  response[1, 7, 3] = 1.2                # ... 8-connected: part of it
  box = np.asarray(jax.jit(lambda r: fa.localize(r, (96, 96), threshold=0.5, upsample=1))(
      jnp.asarray(response)))
  np.testing.assert_allclose(box[0], [2 * 8, 3 * 8, 8 * 8, 7 * 8])
  np.testing.assert_allclose(box[1], [1 * 8, 7 * 8, 4 * 8, 9 * 8])


def test_localize_a_smooth_blob_with_upsampling():
  yy, xx = np.mgrid[0:12, 0:12].astype(np.float32) + 0.5   # cell centres, in cells
  response = np.exp(-((xx - 4.0) ** 2 / (2 * 1.5 ** 2) + (yy - 7.0) ** 2 / (2 * 2.0 ** 2)))
  box = np.asarray(jax.jit(lambda r: fa.localize(r, (96, 120), threshold=0.5))(
      jnp.asarray(response[None])))[0]
  # Half maximum at 1.18 sigma around the centre; one cell = 8 px down, 10 px across.
  expected = [(4.0 - 1.18 * 1.5) * 10, (7.0 - 1.18 * 2.0) * 8, (4.0 + 1.18 * 1.5) * 10,
              (7.0 + 1.18 * 2.0) * 8]
  np.testing.assert_allclose(box, expected, atol=3.5)


def test_patch_coords_cover_the_box():
  image = np.broadcast_to(np.arange(40, dtype=np.float32)[None, None, :, None], (1, 30, 40, 1))
  box = jnp.array([[10.0, 5.0, 30.0, 25.0]])               # a 20 x 20 square
  patches = jax.jit(lambda i, b: fa.crop_patches(i, b, ((0, 0, 1.0), (0.25, 0, 0.5)), 10))(
      jnp.asarray(image), box)
  assert patches.shape == (1, 2, 10, 10, 1)
  # Sample j of the first patch sits at the centre of the j-th 2-px cell of [10, 30): x = 11+2j-0.5.
  np.testing.assert_allclose(np.asarray(patches[0, 0, 0, :, 0]), 10.5 + 2 * np.arange(10),
                             atol=1e-5)
  # The second: centre 20 + 5, side 10 -> [20, 30).
  np.testing.assert_allclose(np.asarray(patches[0, 1, 0, :, 0]), 20.0 + np.arange(10), atol=1e-5)


# --- box statistics -----------------------------------------------------------------------------

def test_box_iou_by_hand():
  a = jnp.array([[0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 0, 0]], jnp.float32)
  b = jnp.array([[1, 1, 3, 3], [1, 1, 3, 3], [2, 2, 3, 3], [0, 0, 2, 2], [0, 0, 0, 0]], jnp.float32)
  np.testing.assert_allclose(np.asarray(task_lib.box_iou(a, b)), [1 / 7, 4 / 16, 0, 1, 0],
                             atol=1e-6)


def _task(**overrides):
  config = lnets_anet.get_config("test")
  config.update_from_flattened_dict(overrides)
  return task_lib.FaceAttributesTask(config)


def test_localisation_statistics_by_hand():
  task = _task()
  true = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
  pred = np.array([[0, 0, 10, 5],      # IoU 0.5: counts (>= 0.5)
                   [5, 5, 15, 15],     # IoU 25 / 175
                   [0, 0, 1, 1]], np.float32)  # padding: must not count
  landmarks = np.zeros((3, 5, 2), np.float32)
  landmarks[0] = [[2, 2], [7, 2], [5, 4], [3, 7], [7, 7]]   # 3 of 5 inside [0, 10) x [0, 5)
  landmarks[1] = [[5, 5]] * 5                               # all inside
  batch = {"box": jnp.asarray(true), "landmarks": jnp.asarray(landmarks),
           "attributes": jnp.zeros((3, 40), jnp.int32), "_mask": jnp.array([1, 1, 0])}
  outputs = {"logits": jnp.full((3, 40), -1.0), "lnet_logits": jnp.full((3, 40), 1.0),
             "box": jnp.asarray(pred), "response": jnp.zeros((3, 4, 4))}
  stats = jax.tree.map(np.asarray, jax.jit(task.eval_statistics)(outputs, batch))
  assert stats["loc_hits"] == 1 and stats["count"] == 2
  np.testing.assert_allclose(stats["loc_iou"], 0.5 + 25 / 175, atol=1e-6)
  np.testing.assert_allclose(stats["loc_landmarks_in_box"], 3 / 5 + 1, atol=1e-6)
  metrics = task.summarize(stats)
  assert metrics["localization_accuracy"] == 0.5 and metrics["mean_accuracy"] == 1.0
  assert metrics["lnet_mean_accuracy"] == 0.0
  np.testing.assert_allclose(metrics["landmarks_in_box"], 0.8, atol=1e-6)
  assert 0 <= metrics["constant_box_localization_accuracy"] <= 1


def test_losses():
  labels = jnp.array([[1.0, 0.0]])
  logits = jnp.array([[0.5, -2.0]])
  task = _task(**{"loss.classifier": "hinge"})
  np.testing.assert_allclose(float(jax.jit(task._classifier_loss)(logits, labels)), 0.5 / 2)
  joint = _task(**{"loss.lnet_weight": 0.5})
  outputs = {"logits": jnp.zeros((1, 40)), "lnet_logits": jnp.zeros((1, 40))}
  total, aux = jax.jit(joint.loss)(outputs, {"attributes": jnp.zeros((1, 40), jnp.int32)})
  np.testing.assert_allclose(float(total), 1.5 * np.log(2), rtol=1e-6)
  assert set(aux) == {"lnet_loss", "anet_loss", "accuracy"}


def test_config_variants_and_errors():
  assert lnets_anet.parse_arg("") == ("sample", "joint")
  assert lnets_anet.parse_arg("full,anet") == ("full", "anet")
  anet = lnets_anet.get_config("sample,anet")
  assert anet.init_from == "runs/lnets_anet_sample_lnet" and anet.optimizer.freeze == (r"^lnet/",)
  assert lnets_anet.get_config("full").data.true_box == "landmarks"
  assert lnets_anet.get_config("sample,resnet").model.name == "resnet"
  with pytest.raises(ValueError, match="unknown variant"):
    lnets_anet.get_config("sample,lnet,anet")
  with pytest.raises(task_lib.TaskConfigError, match="config.model.stage"):
    _task(**{"model.stage": "both"})
  with pytest.raises(task_lib.TaskConfigError, match="config.input.placement"):
    _task(**{"input.placement": "random"})
  with pytest.raises(task_lib.TaskConfigError, match="patch_size"):
    _task(**{"model.patch_size": 2})


# --- data: the rendered sample set through the converter ----------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("celeba")
  config = _config(root, "test,lnet")
  task_lib.FaceAttributesTask(config).prepare_data()
  return root


def _config(root, variant, **overrides):
  config = lnets_anet.get_config(variant)
  config.data.dir = str(root / "tfrecords")
  config.data.samples_dir = str(root / "samples")
  config.update_from_flattened_dict(overrides)
  return config


def _records(root, n=12):
  path = sorted(glob.glob(str(root / "tfrecords" / "train-*.tfrecord")))[0]
  out = []
  for raw in tfrecord.read_records(path):
    out.append(tfrecord.decode_example(raw))
    if len(out) == n:
      break
  return out


def test_landmark_boxes_match_the_rendered_head_boxes(data_dir):
  ious = []
  for features in _records(data_dir):
    x, y, w, h = np.asarray(features["bbox"], np.float32)
    box = task_lib.landmark_box(np.asarray(features["landmarks"]).reshape(5, 2))
    ious.append(float(task_lib.box_iou(box, jnp.array([x, y, x + w, y + h]))))
  assert np.mean(ious) > 0.8 and min(ious) > 0.6, ious


def test_wild_placement_keeps_image_and_labels_together(data_dir):
  task = task_lib.FaceAttributesTask(_config(data_dir, "test", **{"input.image_size": 64}))
  for k, features in enumerate(_records(data_dir)):
    out = task.preprocess(features, np.random.default_rng(k), train=k % 2 == 0)
    assert out["image"].shape == (64, 64, 3) and out["image"].dtype == np.uint8
    box = out["box"]
    side = max(box[2] - box[0], box[3] - box[1]) / 64
    assert 0.45 - 0.05 <= side <= 0.85 + 0.05, (box, side)
    assert np.all(task_lib.points_in_box(jnp.asarray(out["landmarks"]), jnp.asarray(box)))
    again = task.preprocess(features, np.random.default_rng(k), train=k % 2 == 0)
    np.testing.assert_array_equal(out["image"], again["image"])
  # "aligned": the true box goes through the baseline's centre crop (rows 20..198) and resize.
  aligned = task_lib.FaceAttributesTask(_config(data_dir, "test", **{"input.placement": "aligned"}))
  features = _records(data_dir, 1)[0]
  out = aligned.preprocess(features, np.random.default_rng(0), train=False)
  x, y, w, h = np.asarray(features["bbox"], np.float32)
  np.testing.assert_allclose(out["box"], np.array([x, y - 20, x + w, y + h - 20]) * 32 / 178,
                             atol=1e-3)


# --- the two stages end to end ------------------------------------------------------------------

def test_lnet_then_anet_stages(data_dir, tmp_path):
  lnet_dir, anet_dir = tmp_path / "lnet", tmp_path / "anet"
  result = train.train_and_evaluate(_config(data_dir, "test,lnet"), str(lnet_dir))
  assert result["step"] == 4
  for key in ("mean_accuracy", "lnet_mean_accuracy", "localization_accuracy", "landmarks_in_box",
              "localization_mean_iou", "constant_box_localization_accuracy"):
    assert 0.0 <= result[key] <= 1.0, key
  assert os.listdir(lnet_dir / "pictures")

  config = _config(data_dir, "test,anet", init_from=str(lnet_dir))
  result2 = train.train_and_evaluate(config, str(anet_dir))
  assert result2["step"] == 4
  # LNet came from stage 1 and stayed frozen: the same boxes, the same LNet accuracy (up to an
  # example whose float rounding differs in the other program).
  n = result["examples"]
  assert abs(result2["localization_accuracy"] - result["localization_accuracy"]) <= 1 / n + 1e-9
  assert abs(result2["lnet_mean_accuracy"] - result["lnet_mean_accuracy"]) <= 2 / (40 * n) + 1e-9
  p1 = train.restore_for_inference(_config(data_dir, "test,lnet"), str(lnet_dir))[3].params
  p2 = train.restore_for_inference(config, str(anet_dir))[3].params
  for a, b in zip(jax.tree.leaves(p1["lnet"]), jax.tree.leaves(p2["lnet"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert "anet" in p2 and "classifiers" in p2

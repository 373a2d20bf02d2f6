"""The frame-synthesis task: triplet preprocessing, loss, DVF metrics, pictures and the configs."""

import io

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import dvf as dvf_config
from hcjax import tasks
from hcjax.data import ImageDecodeError
from hcjax.metrics import frames as frame_metrics
from hcjax.ops import regularizers
from hcjax.tasks import frame_synthesis
from hcjax.tasks.base import TaskConfigError

STEP = 20  # frame k of the synthetic triplets is base + STEP·k


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def _features(base: np.ndarray, motion: np.ndarray | None = None) -> dict:
  features = {f"frame{k}": [_png((base + STEP * k).astype(np.uint8))] for k in range(3)}
  features["id"] = [b"Class/v_Class_g01_c01/000001"]
  if motion is not None:
    features["motion_mask"] = [_png(motion)]
  return features


def _task(arg="test", **overrides):
  config = dvf_config.get_config(arg)
  config.update_from_flattened_dict(overrides)
  return tasks.get_task(config)


def _base(h=40, w=50, seed=0):
  return np.random.default_rng(seed).integers(0, 256 - 2 * STEP, (h, w, 3)).astype(np.uint8)


@pytest.mark.parametrize("mode", ["interpolate", "extrapolate"])
def test_train_preprocess_moves_the_three_frames_together(mode):
  task = _task(**{"model.mode": mode, "input.crop_size": 32})
  base = _base()
  seen_reversed, seen_flipped = set(), set()
  for seed in range(12):
    out = task.preprocess(_features(base), np.random.default_rng(seed), train=True)
    assert out["image"].shape == (32, 32, 6) and out["target"].shape == (32, 32, 3)
    a, b, target = (x.astype(np.int64) for x in (out["image"][..., :3], out["image"][..., 3:],
                                                 out["target"]))
    # One crop / flip for all: the frames differ by the same constant everywhere.
    step = int(b[0, 0, 0] - a[0, 0, 0])
    np.testing.assert_array_equal(b - a, step)
    if mode == "interpolate":
      assert abs(step) == 2 * STEP
      np.testing.assert_array_equal(target - a, step // 2)
    else:
      assert abs(step) == STEP
      np.testing.assert_array_equal(target - a, 2 * step)
    seen_reversed.add(step < 0)
    # The first input is a window of frame 0 or 2 (time reversal), maybe mirrored.
    first = a - (0 if step > 0 else (2 * STEP if mode == "interpolate" else 2 * STEP))
    found = False
    for flipped in (False, True):
      src = base[:, ::-1] if flipped else base
      for top in range(base.shape[0] - 31):
        for left in range(base.shape[1] - 31):
          if np.array_equal(src[top:top + 32, left:left + 32], first):
            found = True
            seen_flipped.add(flipped)
    assert found
    assert out["valid"].all() and out["has_motion"] == 0
  assert seen_reversed == {False, True} and seen_flipped == {False, True}


def test_eval_preprocess_pads_to_the_canvas_and_marks_the_frame():
  task = _task(**{"input.eval_size": (48, 64)})
  motion = np.zeros((40, 50), np.uint8)
  motion[10:20, 5:30] = 255
  out = task.preprocess(_features(_base(), motion), np.random.default_rng(0), train=False)
  assert out["image"].shape == (48, 64, 6) and out["target"].shape == (48, 64, 3)
  assert out["valid"][:40, :50].all() and out["valid"].sum() == 40 * 50
  np.testing.assert_array_equal(out["motion_mask"][:40, :50], motion // 255)
  assert out["motion_mask"].sum() == 250 and out["has_motion"] == 1
  np.testing.assert_array_equal(out["image"][40:, :50], np.repeat(out["image"][39:40, :50], 8, 0))
  with pytest.raises(TaskConfigError, match="larger than config.input.eval_size"):
    _task(**{"input.eval_size": (32, 64)}).preprocess(_features(_base()), None, train=False)


def test_bad_records_name_the_record():
  task = _task()
  features = _features(_base())
  features["frame2"] = [_png(_base(30, 50))]
  with pytest.raises(ImageDecodeError, match="v_Class_g01_c01.*different sizes"):
    task.preprocess(features, np.random.default_rng(0), train=False)
  del features["frame2"]
  with pytest.raises(ImageDecodeError, match="no frame2"):
    task.preprocess(features, np.random.default_rng(0), train=False)


def _outputs(batch=2, h=16, w=24, seed=0, scales=1):
  rng = np.random.default_rng(seed)
  out = {"frame": jnp.asarray(rng.uniform(-1, 1, (batch, h, w, 3)), jnp.float32),
         "flow": jnp.asarray(rng.uniform(-.1, .1, (batch, h, w, 2)), jnp.float32),
         "mask": jnp.asarray(rng.uniform(0, 1, (batch, h, w, 1)), jnp.float32)}
  out["scales"] = tuple({"frame": jnp.asarray(rng.uniform(-1, 1, (batch, h // f, w // f, 3)),
                                              jnp.float32)} for f in (4, 2)[3 - scales:]) + (
      {"frame": out["frame"]},)
  return out


def test_loss_is_l1_plus_weighted_total_variations():
  task = _task()
  outputs = _outputs()
  target = np.random.default_rng(1).integers(0, 256, (2, 16, 24, 3)).astype(np.uint8)
  loss, aux = task.loss(outputs, {"target": jnp.asarray(target)})
  t = target / 127.5 - 1.0
  l1 = np.abs(np.asarray(outputs["frame"]) - t).mean()
  want = (l1 + 0.01 * regularizers.total_variation(outputs["flow"])
          + 0.005 * regularizers.total_variation(outputs["mask"]))
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(aux["l1"], l1, rtol=1e-5)


def test_multiscale_loss_adds_each_scale_against_the_block_mean_target():
  task = _task("test,multiscale", **{"loss.scale_weights": (0.25, 0.5, 1.0)})
  outputs = _outputs(h=32, w=32, scales=3)
  target = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
  outputs["frame"] = outputs["frame"] * 0.5  # the fused frame differs from the finest scale's
  loss, aux = task.loss(outputs, {"target": jnp.asarray(target)})
  t = target / 127.5 - 1.0
  want = 0.0
  for weight, scale, f in zip((0.25, 0.5, 1.0), outputs["scales"], (4, 2, 1)):
    small = t.reshape(2, 32 // f, f, 32 // f, f, 3).mean(axis=(2, 4))
    want += weight * np.abs(np.asarray(scale["frame"]) - small).mean()
  np.testing.assert_allclose(aux["l1_scales"], want, rtol=1e-5)
  fused = np.abs(np.asarray(outputs["frame"]) - t).mean()
  np.testing.assert_allclose(aux["l1"], fused, rtol=1e-5)
  np.testing.assert_allclose(loss, fused + want + 0.01 * aux["tv_flow"] + 0.005 * aux["tv_mask"],
                             rtol=1e-5)


def test_eval_statistics_follow_dvfs_evaluation():
  task = _task(**{"input.eval_size": (16, 24)})
  rng = np.random.default_rng(0)
  f0, f2 = (rng.integers(0, 256, (3, 16, 24, 3)).astype(np.uint8) for _ in range(2))
  target = rng.integers(0, 256, (3, 16, 24, 3)).astype(np.uint8)
  motion = np.zeros((3, 16, 24), np.uint8)
  motion[0, 4:9, 3:20] = 1
  valid = np.ones((3, 16, 24), np.uint8)
  valid[1, :, 20:] = 0                         # example 1 is a 20-wide frame on the canvas
  frame = target.astype(np.float32) / 127.5 - 1.0
  frame[0] += 0.1                              # example 0 is off a bit; example 1 is perfect
  frame[1, :, 20:] = 0.3                       # except in its padding, which must not count
  batch = {"image": jnp.asarray(np.concatenate([f0, f2], -1)), "target": jnp.asarray(target),
           "motion_mask": jnp.asarray(motion), "valid": jnp.asarray(valid),
           "has_motion": jnp.asarray([1, 0, 0]), "_mask": jnp.asarray([1, 1, 0])}
  stats = task.eval_statistics({"frame": jnp.asarray(frame)}, batch)
  totals = {k: np.asarray(v, np.float64) for k, v in stats.items()}
  metrics = task.summarize(totals)
  pred0 = np.clip(np.round((frame[0] + 1) * 127.5), 0, 255)
  err = (pred0 - target[0]) ** 2
  assert metrics["examples"] == 2
  # Example 1 is perfect (infinite PSNR): counted in neither mean, as eval_voxelflow.m.
  np.testing.assert_allclose(metrics["psnr"], 10 * np.log10(255 ** 2 / err.mean()), rtol=1e-5)
  masked = err[motion[0] > 0].mean()
  np.testing.assert_allclose(metrics["psnr_motion"], 10 * np.log10(255 ** 2 / masked), rtol=1e-5)
  assert metrics["motion_examples"] == 1
  average = np.round((f0.astype(np.float64) + f2) / 2)
  psnrs = [10 * np.log10(255 ** 2 / ((average[i] - target[i])[valid[i] > 0] ** 2).mean())
           for i in (0, 1)]
  np.testing.assert_allclose(metrics["baseline_psnr"], np.mean(psnrs), rtol=1e-5)
  ssims = [frame_metrics.ssim(average[i:i + 1, :, :w], target[i:i + 1, :, :w])[0]
           for i, w in ((0, 24), (1, 20))]
  np.testing.assert_allclose(metrics["baseline_ssim"], np.mean(ssims), rtol=1e-5)


def test_flow_colours():
  flow = np.zeros((2, 3, 2), np.float32)
  flow[0, 0] = (1, 0)
  flow[0, 1] = (-1, 0)
  flow[0, 2] = (0.5, 0)
  rgb = frame_synthesis.flow_to_rgb(flow)
  assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
  np.testing.assert_array_equal(rgb[1], 255)                 # no motion: white
  assert tuple(rgb[0, 0]) != tuple(rgb[0, 1])                # opposite directions differ
  assert rgb[0, 2].min() > rgb[0, 0].min()                   # slower: paler


def test_visualize_shows_six_panels_per_example():
  task = _task(**{"input.eval_size": (16, 24)})
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (3, 16, 24, 6)).astype(np.uint8),
           "target": rng.integers(0, 256, (3, 16, 24, 3)).astype(np.uint8),
           "valid": np.ones((3, 16, 24), np.uint8), "_mask": np.array([1, 1, 0])}
  outputs = _outputs(3, 16, 24)
  picture = task.visualize(batch, {k: np.asarray(v) for k, v in task.predict(outputs).items()})
  assert picture.dtype == np.uint8 and picture.ndim == 3
  assert picture.shape[1] > 6 * 96 and picture.shape[0] > 2 * 96   # 2 real examples, enlarged


@pytest.mark.parametrize("arg", ["sample", "ucf101", "test", "sample,tf", "ucf101,multiscale",
                                 "test,multiscale,extrapolate"])
def test_every_config_variant_builds_its_model(arg):
  task = _task(arg)
  model = task.build_model()
  assert type(model).__name__ == frame_synthesis.MODELS[task.config.model.name]
  assert task.crop_size % task.multiple == 0
  assert all(v % task.multiple == 0 for v in task.eval_size)


def test_config_errors():
  with pytest.raises(ValueError, match="unknown variant"):
    dvf_config.get_config("sample,ucf101")
  with pytest.raises(ValueError, match="unknown variant"):
    dvf_config.get_config("slow")
  with pytest.raises(TaskConfigError, match="crop_size"):
    _task(**{"input.crop_size": 30})
  with pytest.raises(TaskConfigError, match="config.model.mode"):
    _task(**{"model.mode": "backwards"})
  with pytest.raises(TaskConfigError, match="scale_weights"):
    _task("test,multiscale", **{"loss.scale_weights": (1.0,)})


@pytest.mark.slow  # over 25 s on a 2-core CPU; run with -m slow
def test_the_loss_trains_every_parameter_of_the_multiscale_model():
  """Every layer, the fusion included, gets a gradient from the task's loss."""
  import jax  # pylint: disable=g-import-not-at-top
  task = _task("test,multiscale")
  model = task.build_model()
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (2, 32, 32, 6)), jnp.uint8),
           "target": jnp.asarray(rng.integers(0, 256, (2, 32, 32, 3)), jnp.uint8)}
  variables = model.init(jax.random.PRNGKey(0), task.model_inputs(batch), train=False)

  def loss_fn(params):
    outputs, _ = model.apply({**variables, "params": params}, task.model_inputs(batch),
                             train=True, mutable=["batch_stats"])
    return task.loss(outputs, batch)[0]

  grads = jax.grad(loss_fn)(variables["params"])
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert float(jnp.abs(g).max()) > 0, jax.tree_util.keystr(path)

"""Observer: TensorBoard events readable by TensorBoard itself, jsonl, pictures, progress, NaN guard."""

from __future__ import annotations

import json
import math
import os
import time

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from hcjax import observe


def read_events(workdir):
  acc = event_accumulator.EventAccumulator(
      os.path.join(workdir, "tensorboard"),
      size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0,
                     event_accumulator.TENSORS: 0})
  acc.Reload()
  return acc


def picture(h=24, w=32):
  return (np.arange(h * w * 3).reshape(h, w, 3) % 256).astype(np.uint8)


def test_scalars_images_and_text_are_readable_by_tensorboard(tmp_path):
  with observe.Observer(str(tmp_path), progress=False) as obs:
    obs.scalars(1, {"loss": np.float32(2.5), "grad_norm": jnp.asarray(1.25)})
    obs.scalars(2, {"loss": 1.5, "grad_norm": np.array([0.5])})
    obs.scalars(2, {"accuracy": 0.75}, split="eval")
    obs.image(2, "eval_predictions", picture())
    obs.text(2, "note", "hello")
  acc = read_events(tmp_path)
  loss = acc.Scalars("train/loss")
  assert [e.step for e in loss] == [1, 2]
  np.testing.assert_allclose([e.value for e in loss], [2.5, 1.5])
  assert [e.value for e in acc.Scalars("train/grad_norm")] == [1.25, 0.5]
  assert [(e.step, e.value) for e in acc.Scalars("eval/accuracy")] == [(2, 0.75)]
  images = acc.Images("eval_predictions")
  assert len(images) == 1 and images[0].step == 2
  assert (images[0].width, images[0].height) == (32, 24)
  assert any("note" in tag for tag in acc.Tags()["tensors"])
  assert "step 2 note: hello" in (tmp_path / "log.txt").read_text()


def test_metrics_jsonl_has_one_complete_line_per_call(tmp_path):
  obs = observe.Observer(str(tmp_path), progress=False)
  obs.scalars(10, {"loss": np.float64(0.25), "lr": jnp.float32(0.5)})
  # Flushed at once: a reader sees the line before close (a crash would leave it complete).
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows == [{"step": 10, "split": "train", "time": rows[0]["time"], "loss": 0.25, "lr": 0.5}]
  assert abs(rows[0]["time"] - time.time()) < 60
  obs.scalars(20, {"accuracy": 1.0}, split="eval")
  obs.close()
  obs.close()  # idempotent
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], r["split"]) for r in rows] == [(10, "train"), (20, "eval")]
  assert rows[1]["accuracy"] == 1.0


def test_non_scalar_metrics_are_skipped_and_reserved_names_refused(tmp_path):
  with observe.Observer(str(tmp_path), progress=False) as obs:
    obs.scalars(1, {"loss": 1.0, "per_class": np.ones(3), "name": "abc"})
    with pytest.raises(ValueError, match="step"):
      obs.scalars(1, {"step": 1.0})
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows[0]["loss"] == 1.0 and "per_class" not in rows[0] and "name" not in rows[0]


def test_config_json_round_trips_with_sorted_keys(tmp_path):
  config = {"b": 1, "a": {"z": [1, 2], "y": 0.5}, "mesh": (("data", 8), ("fsdp", 1)),
            "np": np.int32(3), "name": "x"}
  with observe.Observer(str(tmp_path), config=config, progress=False):
    pass
  text = (tmp_path / "config.json").read_text()
  assert json.loads(text) == {"b": 1, "a": {"z": [1, 2], "y": 0.5},
                              "mesh": [["data", 8], ["fsdp", 1]], "np": 3, "name": "x"}
  assert text.index('"a"') < text.index('"b"') and "\n  " in text


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_png_has_the_picture_size(tmp_path, dtype):
  pic = picture(20, 30)
  if dtype == np.float32:
    pic = pic.astype(np.float32) / 255.0
  with observe.Observer(str(tmp_path), progress=False) as obs:
    path = obs.image(7, "eval/grid", pic)
  assert path == os.path.join(str(tmp_path), "pictures", "eval_grid_0000007.png")
  with Image.open(path) as png:
    assert png.size == (30, 20) and png.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(png), picture(20, 30))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -np.inf, np.float32("nan")])
def test_non_finite_loss_raises_naming_step_and_quantity(tmp_path, bad):
  with observe.Observer(str(tmp_path), progress=False) as obs:
    with pytest.raises(observe.NonFiniteError, match=r"step 13\b") as e:
      obs.check_finite(13, {"loss": bad, "grad_norm": 1.0})
  message = str(e.value)
  assert "loss" in message and "grad_norm" not in message
  assert int(message.split("step ")[1].split()[0].strip(":,")) == 13
  assert isinstance(e.value, FloatingPointError)
  assert "non-finite" in (tmp_path / "log.txt").read_text()


def test_finite_values_pass_and_every_bad_quantity_is_named(tmp_path):
  obs = observe.Observer(str(tmp_path), progress=False)
  obs.check_finite(1, {"loss": 0.5, "grad_norm": jnp.float32(3.0), "big": 1e300})
  with pytest.raises(observe.NonFiniteError) as e:
    obs.check_finite(2, {"loss": math.nan, "grad_norm": math.inf, "ok": 1.0})
  assert "loss=nan" in str(e.value) and "grad_norm=inf" in str(e.value)
  assert "ok" not in str(e.value)
  obs.close()


def test_non_chief_writes_nothing_and_shows_nothing(tmp_path, capsys):
  workdir = tmp_path / "run"
  obs = observe.Observer(str(workdir), config={"a": 1}, is_chief=False, total_steps=10,
                         global_batch_size=4, progress=True, log_interval_s=0.0)
  obs.write_config({"a": 1})
  for step in range(1, 11):
    obs.step(step)
  obs.scalars(10, {"loss": 1.0})
  assert obs.image(10, "grid", picture()) is None
  obs.text(10, "note", "hi")
  with pytest.raises(observe.NonFiniteError):  # every process stops, not just the chief
    obs.check_finite(10, {"loss": math.nan})
  obs.close()
  assert not workdir.exists()
  captured = capsys.readouterr()
  assert captured.err == "" and captured.out == ""


def test_non_tty_prints_periodic_status_lines_and_no_bar(tmp_path, capsys):
  obs = observe.Observer(str(tmp_path), total_steps=100, global_batch_size=8, start_step=0,
                         log_interval_s=0.05)
  for step in range(1, 31):
    obs.step(step)
    if step % 10 == 0:
      obs.scalars(step, {"loss": 1.0 / step})
    time.sleep(0.005)
  obs.close()
  err = capsys.readouterr().err
  assert "\r" not in err and "%|" not in err and "it/s" not in err
  lines = err.strip().splitlines()
  assert "first step" in lines[0] and "compilation" in lines[0]
  status = [l for l in lines if "step/s" in l]
  assert len(status) >= 2
  last = status[-1]
  assert "step 30/100 (30.0%)" in last and "examples/s" in last and "ETA" in last
  assert "loss 0.0333" in last
  rate = float(last.split(" step/s")[0].split()[-1])
  assert 10 < rate < 400


def test_tty_mode_shows_a_bar(tmp_path, capsys):
  with observe.Observer(str(tmp_path), total_steps=5, global_batch_size=2, progress=True) as obs:
    for step in range(1, 6):
      obs.step(step)
    obs.scalars(5, {"loss": 0.5})
  err = capsys.readouterr().err
  assert "5/5" in err and "%|" in err and "loss=0.5" in err
  assert "first step" not in err and "ETA" not in err


def test_rate_meter_excludes_the_first_step_and_uses_a_window():
  meter = observe.RateMeter(window=4)
  assert meter.steps_per_sec() is None
  meter.update(1, now=100.0)  # the first step finished after a long compilation
  assert meter.steps_per_sec() is None
  for i in range(2, 6):
    meter.update(i, now=100.0 + 0.1 * (i - 1))
  assert meter.steps_per_sec() == pytest.approx(10.0)
  for i in range(6, 10):  # slower now; the window forgets the fast steps
    meter.update(i, now=100.4 + 0.5 * (i - 5))
  assert meter.steps_per_sec() == pytest.approx(2.0)


def test_resume_drops_records_past_the_start_step(tmp_path):
  with observe.Observer(str(tmp_path), progress=False) as obs:
    for step in range(1, 11):
      obs.scalars(step, {"loss": float(step)})
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 11, "split": "tr')  # cut short by a crash
  with observe.Observer(str(tmp_path), start_step=5, progress=False) as obs:
    for step in (6, 7):
      obs.scalars(step, {"loss": 100.0 + step})
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], r["loss"]) for r in rows] == [(s, float(s)) for s in range(1, 6)] + [
      (6, 106.0), (7, 107.0)]
  loss = read_events(tmp_path).Scalars("train/loss")
  assert [(e.step, e.value) for e in loss] == [(s, float(s)) for s in range(1, 6)] + [
      (6, 106.0), (7, 107.0)]


def test_image_grid_shape_and_captions():
  images = np.stack([np.full((16, 20, 3), 60 * i, np.uint8) for i in range(5)])
  captions = [f"image {i}\nline two" for i in range(5)]
  colors = [[(200, 30, 30), (40, 160, 40)] for _ in range(5)]
  grid = observe.image_grid(images, captions, cols=3, caption_height=30, caption_colors=colors)
  assert grid.dtype == np.uint8
  # Captions are wider than the 20-pixel images, so the cells widen to fit them.
  rows, pad, cell_h = 2, 2, 16 + 30
  assert grid.shape[0] == rows * cell_h + (rows + 1) * pad and grid.shape[2] == 3
  cell_w = (grid.shape[1] - 4 * pad) // 3
  assert grid.shape[1] == 3 * cell_w + 4 * pad and cell_w >= 20
  caption = grid[pad + 16:pad + cell_h, pad:pad + cell_w]
  assert (caption != 255).any(axis=-1).sum() > 20  # text was drawn
  red = (caption[..., 0] > 150) & (caption[..., 1] < 120)
  green = (caption[..., 1] > 120) & (caption[..., 0] < 120)
  assert red.any() and green.any()
  # The first image sits in the top-left cell, horizontally centred.
  left = pad + (cell_w - 20) // 2
  np.testing.assert_array_equal(grid[pad:pad + 16, left:left + 20], images[0])
  # The sixth cell is empty background.
  assert (grid[pad + cell_h + pad:, pad + 2 * (cell_w + pad):] == 255).all()


def test_image_grid_without_captions_and_with_floats():
  images = np.random.default_rng(0).random((4, 8, 10, 3)).astype(np.float32)
  grid = observe.image_grid(images, cols=2, pad=1)
  assert grid.shape == (2 * 8 + 3, 2 * 10 + 3, 3)
  np.testing.assert_array_equal(grid[1:9, 1:11], (images[0] * 255 + 0.5).astype(np.uint8))
  auto = observe.image_grid(images, ["a\nb\nc"] * 4, cols=8)
  assert auto.shape[0] > 8 + 3 * 10 and auto.shape[1] >= 4 * 10 + 5
  with pytest.raises(ValueError, match="captions"):
    observe.image_grid(images, ["a"], cols=2)

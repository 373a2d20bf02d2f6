"""The rendered CelebA-Spoof sample set: the original layout, labels, boxes, depth, attacks."""

import json
import os

import numpy as np
import pytest
from PIL import Image, ImageFilter

from hcjax.data.converters import celeba_spoof as converter
from hcjax.data.samples import celeba
from hcjax.data.samples import celeba_spoof as samples

N = 40  # 20 live, 20 spoof: every spoof type at least once


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("celeba_spoof_samples")
  summary = samples.write_sample_set(str(out), num_images=N, seed=0)
  assert summary["num_images"] == N
  assert sum(s["images"] for s in summary["splits"].values()) == N
  return out


def _labels(sample_dir):
  meta = sample_dir / "metas" / "intra_test"
  return {split: json.load(open(meta / f"{split}_label.json")) for split in ("train", "test")}


def test_original_layout_and_labels(sample_dir):
  lists = _labels(sample_dir)
  assert sum(len(v) for v in lists.values()) == N
  for split, entries in lists.items():
    for key, labels in entries.items():
      _, folder_split, subject, kind, name = key.split("/")
      assert folder_split == split and subject.isdigit() and kind in ("live", "spoof")
      assert name.endswith(".jpg") and name[:-4].isdigit() and len(name) == 10
      assert len(labels) == 44
      assert all(type(v) is int for v in labels)  # pylint: disable=unidiomatic-typecheck
      assert set(labels[:40]) <= {0, 1}
      live = kind == "live"
      assert labels[43] == (0 if live else 1)
      assert (labels[40] == 0) == live and 0 <= labels[40] <= 10
      if live:  # CelebA-Spoof labels live images' light and place as "Live"
        assert labels[41] == 0 and labels[42] == 0
      else:
        assert 1 <= labels[41] <= 4 and 1 <= labels[42] <= 2
      image = Image.open(sample_dir / key)
      assert image.format == "JPEG" and image.mode == "RGB"
      assert samples.SIZE_RANGE[0] <= max(image.size) <= samples.SIZE_RANGE[1]
      bb = (sample_dir / key.replace(".jpg", "_BB.txt")).read_text()
      assert bb.endswith("\n") and bb.count("\n") == 1
      fields = bb.split()
      assert len(fields) == 5 and all(f.lstrip("-").isdigit() for f in fields[:4])
      x, y, w, h = (int(f) for f in fields[:4])
      assert 0 <= x and 0 <= y and w >= 1 and h >= 1 and x + w <= 224 and y + h <= 224
      assert 0.9 < float(fields[4]) < 1.0
      depth = sample_dir / key.replace(".jpg", "_depth.png")
      assert depth.exists() == live
      if live:
        d = Image.open(depth)
        assert d.mode == "L" and d.size == image.size
  for split in ("train", "test"):
    for subject in os.listdir(sample_dir / "Data" / split):
      assert sorted(os.listdir(sample_dir / "Data" / split / subject)) == ["live", "spoof"]
  # Every spoof type is present; as many live as spoof images.
  types = [v[40] for entries in lists.values() for v in entries.values()]
  assert set(types) == set(range(11)) and types.count(0) == N // 2
  assert "CelebA-Spoof" in (sample_dir / "README.md").read_text()


def test_the_converter_reads_it_with_depth(sample_dir, tmp_path):
  info = converter.convert(str(sample_dir), str(tmp_path), shards=2, progress=False)
  splits = info["splits"]
  assert sum(s["num_examples"] for s in splits.values()) == N
  for s in splits.values():
    assert s["num_depth"] == s["num_live"] > 0 and s["num_spoof"] > 0


def test_subject_disjoint_splits(sample_dir):
  lists = _labels(sample_dir)
  subjects = {split: {int(k.split("/")[2]) for k in entries} for split, entries in lists.items()}
  assert subjects["train"] and subjects["test"] and not subjects["train"] & subjects["test"]
  assert max(subjects["train"]) < min(subjects["test"])
  # Each subject has live and spoof pictures.
  for entries in lists.values():
    for subject in {k.split("/")[2] for k in entries}:
      kinds = {k.split("/")[3] for k in entries if k.split("/")[2] == subject}
      assert kinds == {"live", "spoof"}


def test_default_plan():
  plan = samples.sample_plan(samples.NUM_IMAGES, 0)
  assert len(plan) == samples.NUM_IMAGES
  for split in ("train", "test"):
    items = [i for i in plan if i.split == split]
    assert {i.spoof_type for i in items} == set(range(11)), split
    assert {i.illumination for i in items if not i.live} == {1, 2, 3, 4}
    assert {i.environment for i in items if not i.live} == {1, 2}
  live = sum(i.live for i in plan)
  assert live == samples.NUM_IMAGES - samples.NUM_IMAGES // 2
  test_subjects = {i.subject for i in plan if i.split == "test"}
  assert abs(len(test_subjects) / samples.num_subjects(samples.NUM_IMAGES) - 0.2) < 0.02
  with pytest.raises(ValueError, match="num_images >= 4"):
    samples.sample_plan(3)


def test_deterministic(sample_dir, tmp_path):
  samples.write_sample_set(str(tmp_path), num_images=N, seed=0)
  for root, _, files in os.walk(sample_dir):
    for name in files:
      path = os.path.join(root, name)
      again = os.path.join(tmp_path, os.path.relpath(path, sample_dir))
      assert open(path, "rb").read() == open(again, "rb").read(), path
  other = samples.render_example(0, N, seed=1)
  same = samples.render_example(0, N, seed=0)
  assert other.image.shape != same.image.shape or not np.array_equal(other.image, same.image)


def test_boxes_and_depth_are_true(sample_dir):
  lists = _labels(sample_dir)
  plan = samples.sample_plan(N, 0)
  for item in plan:
    example = samples.render_example(item.index, N, 0)
    stored = np.asarray(Image.open(sample_dir / item.id))
    assert stored.shape == example.image.shape
    # The JPEG is the rendered picture (up to what JPEG does to halftone dots and pixel grids).
    smooth = lambda a: np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(1.5)), float)
    error = float(np.abs(smooth(stored) - smooth(example.image)).mean())
    assert error < 5, (item, error)
    assert lists[item.split][item.id] == example.labels
    h, w = stored.shape[:2]
    bb = converter.read_bb(str(sample_dir / item.id.replace(".jpg", "_BB.txt")))
    x, y, bw, bh = converter.face_box(bb, w, h)
    # The renderer's own face mask (computed per pixel through the inverse geometry) fills the
    # box drawn from the face outline, up to the 224-grid rounding of the _BB.txt format.
    ys, xs = np.nonzero(example.face_mask)
    assert len(xs) > 100, item
    mask_box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    tol = 2 + max(w, h) / 224
    assert abs(x - mask_box[0]) <= tol and abs(y - mask_box[1]) <= tol, (item, mask_box, bb)
    assert abs(x + bw - mask_box[2]) <= tol + 1 and abs(y + bh - mask_box[3]) <= tol + 1, (
        item, mask_box, bb)
    if item.live:
      depth = np.asarray(Image.open(sample_dir / item.id.replace(".jpg", "_depth.png")))
      np.testing.assert_array_equal(depth, example.depth)
      assert (depth > 0).sum() == example.face_mask.sum()
      assert (depth[example.face_mask] > 0).all() and (depth[~example.face_mask] == 0).all()
    else:
      assert example.depth is None


def test_face_mask_and_depth_follow_the_rendered_face():
  """On the canvas: the mask covers the drawn skin; the nose is the highest point."""
  traits = samples._identity_traits(0, 3)  # pylint: disable=protected-access
  rng = np.random.default_rng(5)
  attrs = samples._image_attributes(traits, rng)  # pylint: disable=protected-access
  for k in ("Rosy_Cheeks", "Heavy_Makeup", "5_o_Clock_Shadow", "Eyeglasses", "Blurry"):
    attrs[k] = False
  blue = np.zeros((celeba.HEIGHT, celeba.WIDTH, 3), np.uint8) + np.array([0, 0, 255], np.uint8)
  # pylint: disable-next=protected-access
  image, face, matte = samples._render_person(traits, attrs, rng, blue, matte=True)
  xs, ys = np.meshgrid(np.arange(celeba.WIDTH) + 0.5, np.arange(celeba.HEIGHT) + 0.5)
  inside, depth = face.field(xs, ys)
  core = np.asarray(Image.fromarray(inside.astype(np.uint8) * 255).filter(
      ImageFilter.MinFilter(5))) > 0
  pixels = np.asarray(image, np.float32)[core]
  ratio = np.median(pixels, axis=0) / np.asarray(traits["skin"], np.float32)
  assert ((ratio > 0.65) & (ratio < 1.3)).all(), ratio
  assert (matte[inside] > 0.5).all()  # the person's matte holds the face
  assert (depth[~inside] == 0).all() and depth[inside].min() > 0.1
  # pylint: disable-next=protected-access
  tip = samples._apply(face.pose, [(celeba.CENTER[0], samples.NOSE_Y)])[0]
  top = np.unravel_index(np.argmax(depth), depth.shape)
  assert np.hypot(top[1] + 0.5 - tip[0], top[0] + 0.5 - tip[1]) < 12


def _peakiness(gray: np.ndarray, mask: np.ndarray) -> float:
  """Largest high-frequency FFT peak over the median there, inside a masked region."""
  ys, xs = np.nonzero(mask > 0.99)
  crop = gray[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
  m = (mask > 0.99)[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
  blurred = np.asarray(Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).filter(
      ImageFilter.GaussianBlur(3)), np.float32)
  high = (crop - blurred) * m
  spectrum = np.abs(np.fft.fftshift(np.fft.fft2(high * np.outer(np.hanning(high.shape[0]),
                                                                 np.hanning(high.shape[1])))))
  fy = np.fft.fftshift(np.fft.fftfreq(high.shape[0]))[:, None]
  fx = np.fft.fftshift(np.fft.fftfreq(high.shape[1]))[None, :]
  band = (np.hypot(fx, fy) > 0.15)
  return float(spectrum[band].max() / np.median(spectrum[band]))


def _examples(kinds, count, lights=(1, 2), num_images=samples.NUM_IMAGES):
  plan = samples.sample_plan(num_images, 0)
  picked = [i for i in plan if i.spoof_type in kinds and i.illumination in lights][:count]
  return [samples.render_example(i.index, num_images, 0) for i in picked]


def test_screen_replays_have_a_pixel_grid():
  gray = lambda e: e.image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  screens = [_peakiness(gray(e), e.regions["screen"]) for e in _examples(samples.SCREENS, 6)]
  lives = [_peakiness(gray(e), e.face_mask.astype(np.float32)) for e in _examples((0,), 6)]
  assert np.median(screens) > 2 * np.median(lives), (screens, lives)


def test_prints_have_a_paper_border():
  prints = [e for e in _examples((1, 3), 12, lights=(1,)) if e.regions["border"].sum() > 50]
  assert len(prints) >= 6
  for e in prints:
    rgb = e.image.astype(np.float32)
    border = rgb[e.regions["border"] > 0.99]
    face = rgb[e.face_mask]
    # White paper: brighter than the printed face and nearly colourless.
    assert border.mean() > face.mean(), e.item
    assert np.median(border.max(axis=1) - border.min(axis=1)) < 0.25 * np.median(border.max(1)) + 8


def test_cli_writes_the_sample_set(tmp_path, capsys):
  from hcjax import cli  # pylint: disable=g-import-not-at-top
  assert cli.main(["samples", "celeba_spoof", "--out", str(tmp_path / "s"), "--num-images",
                   "24"]) == 0
  assert "celeba_spoof sample set" in capsys.readouterr().out
  assert (tmp_path / "s" / "metas" / "intra_test" / "train_label.json").exists()

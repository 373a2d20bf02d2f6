"""The UCF-101 sample set: UCF-101's layout, real photographs under exactly known motion,
determinism, exact motion masks, conversion (build and CLI)."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from hcjax import cli
from hcjax.data import tfrecord, transforms
from hcjax.data.samples import ucf101
from hcjax.errors import ConfigError

N, F = 10, 8  # videos, frames per video: a quick set


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("ucf_samples")
  summary = ucf101.write_sample_set(str(out), num_videos=N, num_frames=F, seed=0)
  assert summary["splits"] == {"train": 8, "test": 2} and summary["dvf_test_triplets"] == 4
  return out


@pytest.fixture(scope="module")
def clips():
  return [ucf101.render_clip(i, seed=0, num_frames=F) for i in range(2 * len(ucf101.CLASSES) *
                                                                       ucf101.NUM_GROUPS)][::3]


def _tree(root):
  return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _png(path):
  return np.asarray(Image.open(path))


def test_ucf101_layout(sample_dir):
  names = [ucf101.video_name(i) for i in range(N)]
  assert len(set(names)) == N
  for action, group, clip in names:
    folder = sample_dir / "UCF-101" / action / f"v_{action}_g{group:02d}_c{clip:02d}"
    frames = sorted(os.listdir(folder))
    assert frames == [f"frame_{t:04d}.png" for t in range(1, F + 1)]
    image = Image.open(folder / frames[0])
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (128, 96)
  lists = sample_dir / "ucfTrainTestlist"
  assert (lists / "classInd.txt").read_text() == "".join(
      f"{i + 1} {c}\n" for i, c in enumerate(ucf101.CLASSES))
  train = (lists / "trainlist01.txt").read_text().splitlines()
  test = (lists / "testlist01.txt").read_text().splitlines()
  assert len(train) == 8 and len(test) == 2
  for line in train:  # `Class/v_Class_gXX_cYY.avi label`, groups g02.. only: group-disjoint
    entry, label = line.split()
    action = entry.split("/")[0]
    assert entry == f"{action}/v_{entry.split('/v_')[1]}" and entry.endswith(".avi")
    assert int(label) == ucf101.CLASSES.index(action) + 1 and "_g01_" not in entry
  assert all("_g01_" in line and len(line.split()) == 1 for line in test)
  dvf = sorted(os.listdir(sample_dir / "dvf_test"), key=int)
  assert dvf == ["1", "11", "21", "31"]  # numbered like DVF's 1, 11, 21, ...
  for n in dvf:
    assert sorted(os.listdir(sample_dir / "dvf_test" / n)) == [
        "frame_00.png", "frame_01_gt.png", "frame_02.png", "motion_mask.png"]
    assert Image.open(sample_dir / "dvf_test" / n / "motion_mask.png").mode == "L"
  info = json.loads((sample_dir / "sample_info.json").read_text())
  assert [d["start"] for d in info["dvf_test"]] == [0, 4, 0, 4]
  for d in info["dvf_test"]:  # the DVF triplets are frames of the test videos
    for name, t in (("frame_00", 0), ("frame_01_gt", 1), ("frame_02", 2)):
      np.testing.assert_array_equal(
          _png(sample_dir / "dvf_test" / d["folder"] / f"{name}.png"),
          _png(sample_dir / "UCF-101" / d["video"] / f"frame_{d['start'] + t + 1:04d}.png"))


def test_deterministic(sample_dir, tmp_path):
  ucf101.write_sample_set(str(tmp_path), num_videos=N, num_frames=F, seed=0)
  files = _tree(sample_dir)
  assert files == _tree(tmp_path)
  assert len(files) == N * F + 4 * 4 + 3 + 2  # frames, DVF folders, lists, README + info
  for name in files:
    assert (sample_dir / name).read_bytes() == (tmp_path / name).read_bytes(), name
  assert not np.array_equal(ucf101.render_clip(0, seed=1).frame(0),
                            ucf101.render_clip(0, seed=0).frame(0))


def test_rewriting_replaces_the_whole_set(tmp_path):
  ucf101.write_sample_set(str(tmp_path), num_videos=N, num_frames=F)
  ucf101.write_sample_set(str(tmp_path), num_videos=3, num_frames=F)
  assert sorted(os.listdir(tmp_path / "dvf_test"), key=int) == ["1", "11"]
  assert os.listdir(tmp_path / "UCF-101") == ["PanLeft"]
  assert len(os.listdir(tmp_path / "UCF-101" / "PanLeft")) == 3


def test_classes_name_the_camera_motion(clips):
  seen = set()
  for clip in clips:
    vy, vx = clip.camera.velocity
    rate = clip.camera.zoom_rate
    seen.add(clip.action)
    expected = {"PanLeft": vx < 0 == vy, "PanRight": vx > 0 == vy, "TiltUp": vy < 0 == vx,
                "TiltDown": vy > 0 == vx, "ZoomIn": rate < 0, "ZoomOut": rate > 0,
                "StaticCamera": vx == vy == rate == 0}[clip.action]
    assert expected, clip.name
    if clip.action != "ZoomIn" and clip.action != "ZoomOut":
      assert rate == 0
    assert 1 <= len(clip.layers) <= 2
    for layer in clip.layers:  # a few pixels a frame, far below DVF's quarter-width range
      assert np.hypot(*layer.velocity) <= 3.5 + 1e-9
      assert clip.action != "StaticCamera" or np.hypot(*layer.velocity) > 0
  assert seen == set(ucf101.CLASSES)


def _visible(clip, t, index):
  """Pixels where layer `index` (-1: the camera's background) is all that shows at frame t."""
  covers = [layer.render(t, clip.size)[0] for layer in clip.layers]
  if index < 0:
    return np.all([c == 0 for c in covers], axis=0)
  return (covers[index] == 1) & np.all([c == 0 for c in covers[index + 1:]], axis=0)


def _shift_error(clip, t, index, displacement):
  """Mean |frame t+2 - frame t moved by `displacement`| where layer `index` alone shows at both
  frames, away from its outline."""
  a, b = clip.frame(t).astype(np.float64), clip.frame(t + 2).astype(np.float64)
  inside = ndimage.binary_erosion(_visible(clip, t + 2, index), iterations=3)
  ys, xs = np.nonzero(inside)
  src_y, src_x = ys - displacement[0], xs - displacement[1]
  keep = (src_y >= 1) & (src_y <= a.shape[0] - 2) & (src_x >= 1) & (src_x <= a.shape[1] - 2)
  before = ndimage.binary_erosion(_visible(clip, t, index), iterations=2)
  keep &= ndimage.map_coordinates(before.astype(float), [src_y, src_x], order=0) > 0
  moved = np.stack([ndimage.map_coordinates(a[..., c], [src_y[keep], src_x[keep]], order=1)
                    for c in range(3)], -1)
  return np.abs(moved - b[ys[keep], xs[keep]]).mean(), int(keep.sum())


def test_cutouts_and_background_move_by_the_declared_displacement(clips):
  # Frame t+2 is best predicted by frame t moved by the declared displacement: better than by
  # one half a pixel off, and by far better than by one 1.5 px off.
  checked = 0
  for clip in clips:
    if clip.camera.zoom_rate == 0:  # the background pans by -velocity (zoom 1)
      true = -2 * np.array(clip.camera.velocity)
      right, n = _shift_error(clip, 2, -1, true)
      if n > 200:
        assert right < _shift_error(clip, 2, -1, true + (0.0, 0.5))[0], clip.name
        assert right < 0.5 * _shift_error(clip, 2, -1, true + (0.0, 1.5))[0], clip.name
        checked += 1
    for i, layer in enumerate(clip.layers):
      if layer.growth == 0:
        true = 2 * np.array(layer.velocity)
        right, n = _shift_error(clip, 2, i, true)
        if n > 200:
          assert right < _shift_error(clip, 2, i, true + (0.5, 0.0))[0], (clip.name, layer.kind)
          assert right < 0.5 * _shift_error(clip, 2, i, true + (1.5, 0.0))[0], clip.name
          checked += 1
  assert checked >= 20


def test_cutout_pixels_are_the_photo_resampled_at_the_declared_place(clips):
  for clip in clips[:6]:
    top = len(clip.layers) - 1
    layer = clip.layers[top]
    for t in (0, F - 1):
      frame = clip.frame(t).astype(np.float64)
      ys, xs = np.nonzero(_visible(clip, t, top))
      uy, ux = layer.texel(t, ys.astype(float), xs.astype(float))
      # Declared path: centre(t) = start + t * velocity, scale(t) = scale0 * exp(growth * t).
      centre = np.array(layer.start) + t * np.array(layer.velocity)
      scale = layer.scale0 * np.exp(layer.growth * t)
      np.testing.assert_allclose(uy, (layer.alpha.shape[0] - 1) / 2 + (ys - centre[0]) / scale)
      expected = np.stack([ndimage.map_coordinates(layer.rgb[..., c].astype(float), [uy, ux],
                                                   order=1, mode="nearest") for c in range(3)], -1)
      assert np.abs(frame[ys, xs] - expected).max() <= 1.0


def test_motion_masks_are_exact(clips, sample_dir):
  for clip in clips:
    for t0 in (0, F - 3):
      mask = clip.motion_mask(t0, t0 + 2)
      frames = [clip.frame(t) for t in range(t0, t0 + 3)]
      # Outside the mask the three frames are identical ...
      for frame in frames[1:]:
        np.testing.assert_array_equal(frame[~mask], frames[0][~mask])
      if clip.action == "StaticCamera":
        # ... and inside it is exactly where a moving cut-out shows at one of the frames.
        shown = np.zeros(clip.size, bool)
        for t in range(t0, t0 + 3):
          for layer in clip.layers:
            shown |= layer.render(t, clip.size)[0] > 0
        np.testing.assert_array_equal(mask, shown)
        assert 0.02 < mask.mean() < 0.9
      elif all(np.hypot(*layer.velocity) > 0 for layer in clip.layers):
        assert mask.all()  # the camera moves every background pixel, and every cut-out moves
  info = json.loads((sample_dir / "sample_info.json").read_text())
  for d in info["dvf_test"]:
    written = _png(sample_dir / "dvf_test" / d["folder"] / "motion_mask.png")
    assert set(np.unique(written)) <= {0, 255}
    action, name = d["video"].split("/")
    index = next(i for i in range(N) if ucf101.render_clip(i, 0, num_frames=F).name == name)
    clip = ucf101.render_clip(index, 0, num_frames=F)
    np.testing.assert_array_equal(written == 255, clip.motion_mask(d["start"], d["start"] + 2))
    assert clip.action == action


def test_build_converts_it_and_keeps_it(tmp_path):
  samples, records = tmp_path / "samples", tmp_path / "records"
  info = ucf101.build(str(samples), str(records), num_videos=6, seed=0, shards=2, num_frames=F)
  assert info["splits"]["train"]["num_examples"] + info["stats"]["train"]["dropped_static"] == (
      4 * (F - 2))  # stride 1: every triplet of the 4 train videos
  assert info["splits"]["test"]["num_examples"] == 4 and info["motion_masks"]["test"]
  assert sum(info["file_counts"].values()) == info["splits"]["train"]["num_examples"] + 4
  test = []
  for path in sorted(records.glob("test-*.tfrecord")):
    test += [tfrecord.decode_example(r) for r in tfrecord.read_records(str(path))]
  assert [ex["id"][0].decode() for ex in test] == ["1", "11", "21", "31"]
  for ex in test:
    folder = samples / "dvf_test" / ex["id"][0].decode()
    assert ex["frame1"][0] == (folder / "frame_01_gt.png").read_bytes()
    np.testing.assert_array_equal(transforms.decode_image(ex["motion_mask"][0], 1)[..., 0],
                                  _png(folder / "motion_mask.png"))
    assert ex["height"].tolist() == [96] and ex["width"].tolist() == [128]
  stamp = (records / "dataset_info.json").stat().st_mtime_ns
  assert ucf101.build(str(samples), str(records), num_videos=6, seed=0, num_frames=F) == info
  assert (records / "dataset_info.json").stat().st_mtime_ns == stamp
  with pytest.raises(ConfigError, match="made with"):
    ucf101.build(str(samples), str(tmp_path / "other"), num_videos=7, seed=0, num_frames=F)


def test_cli_samples_and_convert(tmp_path, capsys):
  assert cli.main(["samples", "ucf101", "--out", str(tmp_path), "--num-images", "6",
                   "--seed", "3"]) == 0
  assert "ucf101 sample set ->" in capsys.readouterr().out
  assert len(os.listdir(tmp_path / "UCF-101")) == 2  # 6 videos: 5 PanLeft, 1 PanRight
  assert cli.main(["convert", "ucf101", "--src", str(tmp_path / "UCF-101"), "--out",
                   str(tmp_path / "tf"), "--dvf-test", str(tmp_path / "dvf_test"), "--quiet"]) == 0
  out = capsys.readouterr().out
  assert "train" in out and "test" in out
  info = json.loads((tmp_path / "tf" / "dataset_info.json").read_text())
  assert info["splits"]["test"]["num_examples"] == 3 * 2  # 2 test videos x starts 0, 4, 8
  with pytest.raises(ValueError, match="num_videos >= 2"):
    ucf101.write_sample_set(str(tmp_path / "x"), num_videos=1)

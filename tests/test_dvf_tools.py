"""Deep Voxel Flow end to end: the sample set trains, then `hcjax interpolate` and `hcjax slowmo`."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from configs import dvf as dvf_config
from hcjax import cli, interpolate, train
from hcjax.data import ImageDecodeError, MissingDataError
from hcjax.errors import ConfigError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A `configs/dvf.py:test` run on the embedded sample set, built on first use."""
  root = tmp_path_factory.mktemp("dvf")
  config = dvf_config.get_config("test")
  config.data.samples_dir = str(root / "samples")
  config.data.dir = str(root / "records")
  result = train.train_and_evaluate(config, str(root / "run"))
  return root, config, result


def test_train_reports_dvf_metrics_and_pictures(run):
  root, config, result = run
  assert result["step"] == config.total_steps
  for key in ("psnr", "ssim", "psnr_motion", "baseline_psnr", "baseline_ssim",
              "baseline_psnr_motion"):
    assert key in result, key
  # The sample set's test triplets carry motion masks (DVF's test layout).
  assert result["motion_examples"] == result["examples"] > 0
  assert 10 < result["baseline_psnr"] < 50 and 0 < result["baseline_ssim"] <= 1
  pictures = os.listdir(root / "run" / "pictures")
  assert any(p.startswith("eval_predictions") for p in pictures)
  metrics = json.load(open(root / "run" / "final_metrics.json"))
  assert metrics["step"] == config.total_steps


def _frame(shift: int, size=(40, 52)) -> np.ndarray:
  y, x = np.mgrid[0:size[0], 0:size[1]]
  image = np.stack([(x + shift) * 4 % 256, y * 5 % 256, (x + y + shift) * 3 % 256], -1)
  return image.astype(np.uint8)


def test_interpolate_writes_the_middle_frame_at_the_input_size(run, tmp_path, capsys):
  root, _, _ = run
  a, b = tmp_path / "a.png", tmp_path / "b.png"
  Image.fromarray(_frame(0)).save(a)
  Image.fromarray(_frame(4)).save(b)
  out, flow = tmp_path / "out" / "mid.png", tmp_path / "flow.png"
  assert cli.main(["interpolate", "--workdir", str(root / "run"), str(a), str(b), "-o", str(out),
                   "--flow", str(flow)]) == 0
  mid = np.asarray(Image.open(out))
  assert mid.shape == (40, 52, 3) and mid.dtype == np.uint8
  assert Image.open(flow).size == (104, 40)          # flow | mask side by side
  assert "mid.png" in capsys.readouterr().out
  # The tool's frames are the model's, synthesised at t from one flow.
  interp = interpolate.Interpolator(str(root / "run"))
  frames, pixels, mask = interp(_frame(0), _frame(4), (0.25, 0.5))
  assert frames.shape == (2, 40, 52, 3) and pixels.shape == (40, 52, 2) and mask.shape == (40, 52)
  np.testing.assert_array_equal(frames[1], mid)
  assert 0 <= mask.min() and mask.max() <= 1


def test_interpolate_errors(run, tmp_path):
  root, _, _ = run
  a, b = tmp_path / "a.png", tmp_path / "b.png"
  Image.fromarray(_frame(0)).save(a)
  Image.fromarray(_frame(0, (30, 52))).save(b)
  with pytest.raises(ImageDecodeError, match="differ in size"):
    interpolate.interpolate_main(["--workdir", str(root / "run"), str(a), str(b), "-o",
                                  str(tmp_path / "x.png")])
  with pytest.raises(MissingDataError, match="nope.png"):
    interpolate.interpolate_main(["--workdir", str(root / "run"), str(a), str(tmp_path / "nope.png"),
                                  "-o", str(tmp_path / "x.png")])
  with pytest.raises(ConfigError, match="--t"):
    interpolate.interpolate_main(["--workdir", str(root / "run"), str(a), str(a), "-o", "x.png",
                                  "--t", "1.5"])
  with pytest.raises(ConfigError, match="config.json"):
    interpolate.interpolate_main(["--workdir", str(tmp_path), str(a), str(a), "-o", "x.png"])
  assert cli.main(["interpolate", "--workdir", str(tmp_path), str(a), str(a), "-o", "x.png"]) == 2


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_slowmo_inserts_factor_minus_one_frames_between_each_pair(run, tmp_path, suffix):
  root, _, _ = run
  src = tmp_path / f"in{suffix}"
  frames = [_frame(2 * i) for i in range(4)]
  writer = interpolate.VideoWriter(str(src), fps=10)
  for frame in frames:
    writer.write(frame)
  writer.close()
  out = tmp_path / f"out{suffix}"
  assert cli.main(["slowmo", "--workdir", str(root / "run"), str(src), "--factor", "3", "-o",
                   str(out), "--quiet"]) == 0
  decoded, fps, _ = interpolate.read_video(str(out))
  decoded = list(decoded)
  assert len(decoded) == 4 + 3 * 2
  assert decoded[0].shape[:2] == (40, 52)
  assert fps == pytest.approx(10, rel=0.05)
  if suffix == ".gif":  # palette-quantised but lossless enough: the originals come back in place
    for i, frame in enumerate(frames):
      assert np.abs(decoded[3 * i].astype(int) - frame).mean() < 8


def test_slowmo_errors(run, tmp_path):
  root, _, _ = run
  with pytest.raises(MissingDataError, match="none.mp4"):
    interpolate.slowmo_main(["--workdir", str(root / "run"), str(tmp_path / "none.mp4"), "-o",
                             "x.mp4"])
  bad = tmp_path / "bad.mp4"
  bad.write_bytes(b"not a video")
  with pytest.raises(ImageDecodeError, match="bad.mp4"):
    interpolate.slowmo_main(["--workdir", str(root / "run"), str(bad), "-o", "x.mp4"])
  with pytest.raises(ConfigError, match="--factor"):
    interpolate.slowmo_main(["--workdir", str(root / "run"), str(bad), "-o", "x.mp4",
                             "--factor", "1"])

"""CelebA converter: exact parsing of the original files, malformed lines, CLI errors."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hcjax import cli
from hcjax.data import AnnotationError, MissingDataError, pipeline, tfrecord
from hcjax.data.converters import celeba

NAMES = celeba.ATTRIBUTE_NAMES


def write_celeba(root, n=10, bbox=True):
  """A tiny CelebA in the original layout, written with the real files' spacing."""
  rng = np.random.default_rng(0)
  os.makedirs(root / "img_align_celeba")
  attrs = rng.choice([-1, 1], size=(n, 40))
  names = [f"{i + 1:06d}.jpg" for i in range(n)]
  for i, name in enumerate(names):
    Image.fromarray(np.full((218, 178, 3), i * 20, np.uint8)).save(
        root / "img_align_celeba" / name, quality=90)
  with open(root / "list_attr_celeba.txt", "w") as f:
    f.write(f"{n}\n" + " ".join(NAMES) + " \n")
    for name, row in zip(names, attrs):
      f.write(name + " " + " ".join(f"{v:2d}" for v in row) + "\n")
  with open(root / "list_eval_partition.txt", "w") as f:
    for i, name in enumerate(names):
      f.write(f"{name} {0 if i < n - 4 else (1 if i < n - 2 else 2)}\n")
  landmarks = rng.integers(60, 160, size=(n, 10))
  with open(root / "list_landmarks_align_celeba.txt", "w") as f:
    f.write(f"{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
            "leftmouth_y rightmouth_x rightmouth_y\n")
    for name, row in zip(names, landmarks):
      f.write(f"{name:<10}" + "".join(f"{v:>6d}" for v in row) + "\n")
  with open(root / "identity_CelebA.txt", "w") as f:
    for i, name in enumerate(names):
      f.write(f"{name} {i // 2 + 1}\n")
  if bbox:
    with open(root / "list_bbox_celeba.txt", "w") as f:
      f.write(f"{n}\nimage_id x_1 y_1 width height\n")
      for i, name in enumerate(names):
        f.write(f"{name}    {95 + i}    71   226   313\n")
  return names, attrs, landmarks


def test_convert_reads_every_field_exactly(tmp_path):
  names, attrs, landmarks = write_celeba(tmp_path / "src")
  info = celeba.convert(str(tmp_path / "src"), str(tmp_path / "out"), shards=2, progress=False)
  assert info["splits"]["train"]["num_examples"] == 6
  assert info["splits"]["validation"]["num_examples"] == 2
  assert info["splits"]["test"]["num_examples"] == 2
  assert info["attribute_names"] == list(NAMES)
  on_disk = json.load(open(tmp_path / "out" / "dataset_info.json"))
  assert on_disk["file_counts"] == {"train-00000-of-00002.tfrecord": 3,
                                    "train-00001-of-00002.tfrecord": 3,
                                    "validation-00000-of-00002.tfrecord": 1,
                                    "validation-00001-of-00002.tfrecord": 1,
                                    "test-00000-of-00002.tfrecord": 1,
                                    "test-00001-of-00002.tfrecord": 1}
  seen = {}
  for path in sorted((tmp_path / "out").glob("*.tfrecord")):
    for record in tfrecord.read_records(str(path)):
      ex = tfrecord.decode_example(record)
      seen[ex["filename"][0].decode()] = ex
  assert sorted(seen) == names
  for i, name in enumerate(names):
    ex = seen[name]
    np.testing.assert_array_equal(ex["attributes"], (attrs[i] > 0).astype(int))
    np.testing.assert_array_equal(ex["landmarks"], landmarks[i])
    assert ex["identity"].tolist() == [i // 2 + 1]
    assert ex["bbox"].tolist() == [95 + i, 71, 226, 313]
    assert ex["image"][0] == (tmp_path / "src" / "img_align_celeba" / name).read_bytes()
    image = np.asarray(Image.open(io.BytesIO(ex["image"][0])))
    assert image.shape == (218, 178, 3)


def test_converted_split_feeds_the_pipeline(tmp_path):
  write_celeba(tmp_path / "src", n=12)
  celeba.convert(str(tmp_path / "src"), str(tmp_path / "out"), shards=2, progress=False)
  cfg = pipeline.PipelineConfig(pattern=str(tmp_path / "out" / "train-*"), batch_size=4,
                                train=False)
  with pipeline.InputIterator(
      cfg, lambda f, rng: {"attributes": f["attributes"]}, process_index=0, process_count=1) as it:
    assert len(it) == 2 and it.total_examples == 8
    assert sum(int(b["_mask"].sum()) for b in it) == 8


def test_optional_bbox_file(tmp_path):
  write_celeba(tmp_path / "src", bbox=False)
  celeba.convert(str(tmp_path / "src"), str(tmp_path / "out"), shards=1, progress=False)
  ex = tfrecord.decode_example(next(tfrecord.read_records(
      str(tmp_path / "out" / "train-00000-of-00001.tfrecord"))))
  assert "bbox" not in ex


def _replace_line(path, number, text):
  lines = open(path).read().split("\n")
  lines[number - 1] = text
  open(path, "w").write("\n".join(lines))


@pytest.mark.parametrize("file,line,text,message", [
    ("list_attr_celeba.txt", 4, "000002.jpg " + " ".join(["1"] * 39), "expected an image name and 40"),
    ("list_attr_celeba.txt", 5, "000003.jpg " + " ".join(["1"] * 39 + ["0"]), "attribute Young must be one of"),
    ("list_attr_celeba.txt", 2, " ".join(NAMES[:-1]), "first difference at position 40"),
    ("list_attr_celeba.txt", 1, "11", "count line says 11"),
    ("list_attr_celeba.txt", 1, "ten", "count must be an integer"),
    ("list_eval_partition.txt", 3, "000003.jpg 5", "partition must be one of"),
    ("list_eval_partition.txt", 3, "000003.jpg", "expected `image value`"),
    ("list_landmarks_align_celeba.txt", 5, "000003.jpg 1 2 3 4 5 6 7 8 9 x", "landmark must be an integer"),
    ("identity_CelebA.txt", 2, "000002.jpg 1 2", "expected `image value`"),
    ("list_bbox_celeba.txt", 3, "000001.jpg 1 2 3", "expected an image name and 4"),
])
def test_malformed_lines_name_file_and_line(tmp_path, file, line, text, message):
  write_celeba(tmp_path / "src")
  _replace_line(tmp_path / "src" / file, line, text)
  with pytest.raises(AnnotationError, match=message) as e:
    celeba.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  assert e.value.path.endswith(file)
  assert e.value.line == (1 if "count line" in message else line)
  assert f"{file}, line {e.value.line}:" in str(e.value)


def test_image_missing_from_partition_file(tmp_path):
  write_celeba(tmp_path / "src")
  _replace_line(tmp_path / "src" / "list_eval_partition.txt", 4, "")
  with pytest.raises(AnnotationError, match="000004.jpg has no row in .*list_eval_partition"):
    celeba.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)


def test_missing_image_and_missing_files(tmp_path):
  write_celeba(tmp_path / "src")
  os.remove(tmp_path / "src" / "img_align_celeba" / "000007.jpg")
  with pytest.raises(MissingDataError, match="000007.jpg"):
    celeba.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  os.remove(tmp_path / "src" / "list_attr_celeba.txt")
  with pytest.raises(MissingDataError, match="list_attr_celeba.txt"):
    celeba.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  with pytest.raises(MissingDataError, match="img_align_celeba"):
    celeba.convert(str(tmp_path / "nowhere"), str(tmp_path / "out"), progress=False)


def test_cli_convert_prints_summary_and_one_line_errors(tmp_path, capsys):
  write_celeba(tmp_path / "src")
  assert cli.main(["convert", "celeba", "--src", str(tmp_path / "src"), "--out",
                   str(tmp_path / "out"), "--shards", "2", "--quiet"]) == 0
  out = capsys.readouterr().out
  assert "train" in out and "6 examples" in out
  _replace_line(tmp_path / "src" / "list_eval_partition.txt", 2, "000002.jpg 9")
  assert cli.main(["convert", "celeba", "--src", str(tmp_path / "src"), "--out",
                   str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "list_eval_partition.txt, line 2" in err


def test_console_script_error_exit_code(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "hcjax.cli", "convert", "celeba", "--src", str(tmp_path / "none"),
       "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert result.stderr.startswith("hcjax: error:") and "Traceback" not in result.stderr

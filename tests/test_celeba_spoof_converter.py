"""CelebA-Spoof converter: crops, labels and ids from files in the original layout; every error."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from hcjax.data import AnnotationError, ImageDecodeError, MissingDataError, tfrecord
from hcjax.data.converters import celeba_spoof as cs

RED, BLUE = (200, 30, 30), (20, 40, 220)


def _labels(spoof_type: int, rng, illumination=None, environment=None):
  attrs = rng.integers(0, 2, size=40).tolist()
  live = spoof_type == 0
  return attrs + [spoof_type, 0 if live else illumination or 1, 0 if live else environment or 2,
                  0 if live else 1]


# id -> (width, height, _BB.txt line, format). The first image checks the crop arithmetic: width
# scale 448/224 = 2, height scale 336/224 = 1.5; box 50.7 40.2 100.9 120.6 -> integer parts
# 50 40 100 120 -> face x 100, y 60, w 200, h 180; margin 0.2 -> 40 and 36 pixels per side ->
# crop x 60..340, y 24..276.
IMAGES = {
    "Data/train/101/live/000001.jpg": (448, 336, "50.7 40.2 100.9 120.6 0.99", "JPEG"),
    # 300/224, 400/224: face x int(10*1.339)=13, y int(20*1.786)=35, w int(150*1.339)=200,
    # h int(160*1.786)=285; margin 40 / 57 -> clamped to x 0..253, y 0..377.
    "Data/train/101/live/000002.jpg": (300, 400, "10 20 150 160 0.5", "JPEG"),
    "Data/train/101/spoof/000003.png": (224, 224, "0 0 224 224 0.9", "PNG"),
    "Data/train/102/live/000004.jpg": (224, 224, "0 0 224 224 0.8", "JPEG"),  # whole image
    "Data/train/102/spoof/000005.jpg": (320, 240, "30 30 120 120 0.7", "JPEG"),
    "Data/test/201/live/000006.jpg": (256, 256, "40 40 100 120 0.6", "JPEG"),
    "Data/test/201/spoof/000007.png": (200, 180, "20 10 150 170 0.95", "PNG"),
    "Data/test/202/spoof/000008.jpg": (224, 224, "150 150 100 100 0.9", "JPEG"),
}
EXPECTED_BOXES = {"Data/train/101/live/000001.jpg": (60, 24, 280, 252),
                  "Data/train/101/live/000002.jpg": (0, 0, 253, 377),
                  "Data/train/102/live/000004.jpg": (0, 0, 224, 224),
                  # 150+100+20 runs past 224: clamped.
                  "Data/test/202/spoof/000008.jpg": (130, 130, 94, 94)}
SPOOF_TYPES = {"000003": 2, "000005": 9, "000007": 10, "000008": 1}


def _write_labels(path, entries):
  """One entry per line, so entry i (0-based) is on line i + 2."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in entries)
            + "\n}\n")


def write_celeba_spoof(root):
  """A tiny CelebA_Spoof folder: images with a red face rectangle on blue, _BB.txt, label lists."""
  rng = np.random.default_rng(0)
  labels = {}
  for image_id, (w, h, bb, fmt) in IMAGES.items():
    path = root / image_id
    os.makedirs(path.parent, exist_ok=True)
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = BLUE
    if image_id in EXPECTED_BOXES:
      x, y, bw, bh = EXPECTED_BOXES[image_id]
      image[y:y + bh, x:x + bw] = RED
    # JPEG at 4:4:4 and quality 100, so the rectangle's edges stay sharp in the source.
    Image.fromarray(image).save(path, format=fmt, **(
        {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}))
    (root / (os.path.splitext(image_id)[0] + "_BB.txt")).write_text(bb + "\n")
    stem = os.path.basename(os.path.splitext(image_id)[0])
    labels[image_id] = _labels(SPOOF_TYPES.get(stem, 0), rng)
  for split in ("train", "test"):
    _write_labels(root / "metas" / "intra_test" / f"{split}_label.json",
                  [(k, v) for k, v in labels.items() if k.startswith(f"Data/{split}/")])
  return labels


def _read_all(out):
  seen = {}
  for path in sorted(out.glob("*.tfrecord")):
    split = path.name.split("-")[0]
    for record in tfrecord.read_records(str(path)):
      ex = tfrecord.decode_example(record)
      seen[ex["id"][0].decode()] = (split, ex)
  return seen


def _decode(png_or_jpeg: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(png_or_jpeg)))


def test_convert_reads_every_field_exactly(tmp_path):
  labels = write_celeba_spoof(tmp_path / "src")
  info = cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), shards=2, progress=False)
  assert list(info["splits"]) == ["train", "test"]
  train, test = info["splits"]["train"], info["splits"]["test"]
  assert (train["num_examples"], train["num_live"], train["num_spoof"], train["num_subjects"]) == (
      5, 3, 2, 2)
  assert (test["num_examples"], test["num_subjects"]) == (3, 2)
  assert train["files"] == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  assert info["spoof_type_names"][10] == "3D Mask" and info["illumination_names"][3] == "Back"
  assert info["environment_names"] == ["Live", "Indoor", "Outdoor"]
  assert info["attribute_names"][-1] == "Young" and info["margin"] == 0.2
  on_disk = json.load(open(tmp_path / "out" / "dataset_info.json"))
  assert sum(on_disk["file_counts"].values()) == 8

  seen = _read_all(tmp_path / "out")
  assert sorted(seen) == sorted(IMAGES)
  for image_id, (split, ex) in seen.items():
    w, h, bb, _ = IMAGES[image_id]
    assert split == image_id.split("/")[1]
    np.testing.assert_array_equal(ex["labels"], labels[image_id])
    assert ex["subject"].tolist() == [int(image_id.split("/")[2])]
    assert ex["image_size"].tolist() == [h, w]
    assert ex["face_score"][0] == pytest.approx(float(bb.split()[4]))
    crop = _decode(ex["image"][0])
    x, y, cw, ch = ex["box"].tolist()
    assert crop.shape == (ch, cw, 3)
    assert 0 <= x and 0 <= y and x + cw <= w and y + ch <= h
    if image_id in EXPECTED_BOXES:
      assert tuple(ex["box"].astype(int)) == EXPECTED_BOXES[image_id]
      # Exactly the red rectangle: one pixel too many would bring in a blue row or column.
      assert np.abs(crop.astype(int) - RED).max() < 20
  assert seen["Data/train/101/live/000001.jpg"][1]["face_box"].tolist() == [100, 60, 200, 180]
  # The whole image as a crop keeps the original JPEG bytes; PNGs are re-encoded as JPEG.
  assert seen["Data/train/102/live/000004.jpg"][1]["image"][0] == (
      tmp_path / "src" / "Data/train/102/live/000004.jpg").read_bytes()
  png_crop = seen["Data/train/101/spoof/000003.png"][1]["image"][0]
  assert png_crop[:2] == b"\xff\xd8"
  assert all("depth" not in ex and "reflection" not in ex for _, ex in seen.values())


def test_margin_zero_is_the_reference_crop(tmp_path):
  write_celeba_spoof(tmp_path / "src")
  cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), shards=1, margin=0.0, progress=False)
  seen = _read_all(tmp_path / "out")
  # client.py: x, y, w, h scaled by int(); crop y:y+h, x:x+w clamped to the image.
  assert seen["Data/train/101/live/000001.jpg"][1]["box"].tolist() == [100, 60, 200, 180]
  assert seen["Data/train/101/live/000002.jpg"][1]["box"].tolist() == [13, 35, 200, 285]
  assert seen["Data/test/202/spoof/000008.jpg"][1]["box"].tolist() == [150, 150, 74, 74]
  with pytest.raises(ValueError, match="--margin must be"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), margin=-0.1, progress=False)


def test_exif_orientation_is_applied(tmp_path):
  write_celeba_spoof(tmp_path / "src")
  path = tmp_path / "src" / "Data/train/102/live/000004.jpg"
  image = np.zeros((224, 112, 3), np.uint8)  # stored 112 wide, 224 tall; shown rotated 90 deg
  image[:] = BLUE
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(image).save(path, quality=95, exif=exif)
  cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), shards=1, progress=False)
  ex = _read_all(tmp_path / "out")["Data/train/102/live/000004.jpg"][1]
  assert ex["image_size"].tolist() == [112, 224]
  assert _decode(ex["image"][0]).shape == (112, 224, 3)


def test_geometric_maps_beside_images_and_in_folders(tmp_path):
  write_celeba_spoof(tmp_path / "src")
  rng = np.random.default_rng(1)
  depth = rng.integers(0, 256, size=(336, 448), dtype=np.uint8)
  Image.fromarray(depth, "L").save(tmp_path / "src" / "Data/train/101/live/000001_depth.png")
  reflection = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
  os.makedirs(tmp_path / "refl" / "Data/test/202/spoof")
  Image.fromarray(reflection).save(tmp_path / "refl" / "Data/test/202/spoof/000008.png")
  info = cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), shards=1, progress=False,
                    reflection=str(tmp_path / "refl"))
  assert info["splits"]["train"]["num_depth"] == 1 and info["splits"]["test"]["num_reflection"] == 1
  seen = _read_all(tmp_path / "out")
  ex = seen["Data/train/101/live/000001.jpg"][1]
  np.testing.assert_array_equal(_decode(ex["depth"][0]), depth[24:276, 60:340])
  assert "reflection" not in ex
  ex = seen["Data/test/202/spoof/000008.jpg"][1]
  np.testing.assert_array_equal(_decode(ex["reflection"][0]), reflection[130:224, 130:224])
  # A map folder that matches nothing is a layout mistake; a map of another size is an error.
  with pytest.raises(MissingDataError, match="holds no map"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), depth=str(tmp_path), progress=False)
  Image.fromarray(depth[:100], "L").save(tmp_path / "src" / "Data/train/101/live/000001_depth.png")
  with pytest.raises(ImageDecodeError, match="000001_depth.png: depth map is 448x100"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)


def test_protocol_folder(tmp_path):
  labels = write_celeba_spoof(tmp_path / "src")
  ids = sorted(labels)
  protocol = tmp_path / "src" / "metas" / "protocol1"
  _write_labels(protocol / "train_label.json", [(k, labels[k]) for k in ids if "/101/" in k])
  _write_labels(protocol / "val_label.json", [(k, labels[k]) for k in ids if "/102/" in k])
  (protocol / "notes.txt").write_text("ignored")
  for given in ("metas/protocol1", str(protocol)):
    info = cs.convert(str(tmp_path / "src"), str(tmp_path / f"out{len(given)}"), shards=1,
                      progress=False, protocol=given)
    assert {k: v["num_examples"] for k, v in info["splits"].items()} == {"train": 3, "val": 2}
    assert info["splits"]["val"]["label_file"] == str(protocol / "val_label.json")
  seen = _read_all(tmp_path / f"out{len('metas/protocol1')}")
  assert {image_id for image_id, (split, _) in seen.items() if split == "val"} == {
      k for k in ids if "/102/" in k}
  with pytest.raises(MissingDataError, match="protocol folder not found"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "o"), protocol="metas/nothing", progress=False)
  with pytest.raises(MissingDataError, match="no \\*_label.json"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "o"), protocol=str(tmp_path / "out15"),
               progress=False)


def test_splits_must_be_subject_disjoint(tmp_path):
  labels = write_celeba_spoof(tmp_path / "src")
  entries = [(k, v) for k, v in labels.items() if k.startswith("Data/test/")]
  entries.append(("Data/train/102/live/000004.jpg", labels["Data/train/102/live/000004.jpg"]))
  _write_labels(tmp_path / "src" / "metas/intra_test/test_label.json", entries)
  with pytest.raises(AnnotationError, match="subject 102 is also in split 'train'.*subject-disjoint"
                     ) as e:
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  assert e.value.path.endswith("test_label.json") and e.value.line == len(entries) + 1
  assert not (tmp_path / "out").exists()  # checked before anything is written


TRAIN_JSON = "metas/intra_test/train_label.json"


@pytest.mark.parametrize("entry,change,message", [
    (1, lambda v: v[:43], "expected a list of 44 integer labels, got 43 values"),
    (1, lambda v: "live", "expected a list of 44 integer labels, got str"),
    (1, lambda v: {"live": 1}, "expected a list of 44 integer labels, got an object"),
    (2, lambda v: v[:3] + [2] + v[4:], r"attribute 3 \(Bags_Under_Eyes\) must be 0 or 1, got 2"),
    (2, lambda v: v[:40] + [11] + v[41:], r"label 40 \(spoof_type\) must be in 0..10, got 11"),
    (2, lambda v: v[:40] + [10**30] + v[41:], r"label 40 \(spoof_type\) must be in 0..10, got 1000"),
    (2, lambda v: v[:41] + [5] + v[42:], r"label 41 \(illumination\) must be in 0..4, got 5"),
    (2, lambda v: v[:42] + [3, 1], r"label 42 \(environment\) must be in 0..2, got 3"),
    (2, lambda v: v[:43] + [2], r"label 43 \(live_spoof\) must be in 0..1, got 2"),
    (0, lambda v: v[:43] + [1], "label 43 says spoof .* but the image is in a live/ folder"),
    (2, lambda v: v[:40] + [0] + v[41:], "spoof type 0 .*Live.* contradicts live/spoof label 1"),
    (0, lambda v: v[:40] + [3] + v[41:43] + [0], "spoof type 3 .*A4.* contradicts"),
    (3, lambda v: v[:5] + [1.0] + v[6:], "label 5 must be an integer, got 1.0"),
    (3, lambda v: v[:5] + [True] + v[6:], "label 5 must be an integer, got True"),
])
def test_bad_label_entries_name_file_entry_and_line(tmp_path, entry, change, message):
  labels = write_celeba_spoof(tmp_path / "src")
  entries = [(k, v) for k, v in labels.items() if k.startswith("Data/train/")]
  key = entries[entry][0]
  entries[entry] = (key, change(list(entries[entry][1])))
  _write_labels(tmp_path / "src" / TRAIN_JSON, entries)
  with pytest.raises(AnnotationError, match=message) as e:
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  assert e.value.path.endswith("train_label.json") and e.value.line == entry + 2
  assert f"entry {key!r}" in str(e.value)


@pytest.mark.parametrize("key,message", [
    ("Data/train/101/live", "expected an image path Data/<split>/<subject>/live|spoof/<name>"),
    ("Data/train/101/fake/000001.jpg", "expected an image path"),
    ("Images/train/101/live/000001.jpg", "expected an image path"),
    ("Data/train/101/live/000001.gif", "expected an image path"),
    ("Data/../101/live/000001.jpg", "expected an image path"),
    ("Data/train/abc/live/000001.jpg", "the subject folder must be a number, got 'abc'"),
])
def test_bad_entry_paths(tmp_path, key, message):
  labels = write_celeba_spoof(tmp_path / "src")
  entries = [(k, v) for k, v in labels.items() if k.startswith("Data/train/")]
  entries.insert(2, (key, labels["Data/train/101/live/000001.jpg"]))
  _write_labels(tmp_path / "src" / TRAIN_JSON, entries)
  with pytest.raises(AnnotationError, match=message) as e:
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  assert e.value.line == 4 and e.value.path.endswith("train_label.json")


@pytest.mark.parametrize("text,line,message", [
    ('{\n  "Data/train/101/live/000001.jpg": [0, 1,\n}', 3, "not valid JSON"),
    ('[["Data/train/101/live/000001.jpg", []]]', 1, "expected a JSON object"),
    ("{}", 1, "names no images"),
])
def test_malformed_json(tmp_path, text, line, message):
  write_celeba_spoof(tmp_path / "src")
  (tmp_path / "src" / TRAIN_JSON).write_text(text)
  with pytest.raises(AnnotationError, match=message) as e:
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  assert e.value.line == line and e.value.path.endswith("train_label.json")


def test_duplicate_entry(tmp_path):
  labels = write_celeba_spoof(tmp_path / "src")
  entries = [(k, v) for k, v in labels.items() if k.startswith("Data/train/")]
  entries.append(entries[1])
  _write_labels(tmp_path / "src" / TRAIN_JSON, entries)
  with pytest.raises(AnnotationError, match="listed twice"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)


BB_FILE = "Data/train/101/spoof/000003_BB.txt"


@pytest.mark.parametrize("text,message", [
    ("10 20 30 40", "expected `x y w h score`, got 4 fields"),
    ("10 20 30 40 0.9 7", "got 6 fields"),
    ("", "got 0 fields"),
    ("10 twenty 30 40 0.9", "y must be a number, got 'twenty'"),
    ("10 20 30 40 nan", "score must be finite"),
    ("10 20 0 40 0.9", "width and height must be >= 1"),
    ("10 20 30 -40 0.9", "width and height must be >= 1"),
    ("300 20 30 40 0.9", "lies outside the 224x224 image"),
])
def test_bad_box_files_name_file_and_line(tmp_path, text, message):
  write_celeba_spoof(tmp_path / "src")
  (tmp_path / "src" / BB_FILE).write_text(text + "\n")
  with pytest.raises(AnnotationError, match=message) as e:
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  assert e.value.path.endswith("000003_BB.txt") and e.value.line == 1
  assert "000003_BB.txt, line 1:" in str(e.value)


def test_missing_files_stop_or_are_counted(tmp_path):
  write_celeba_spoof(tmp_path / "src")
  os.remove(tmp_path / "src" / "Data/train/101/live/000002.jpg")
  with pytest.raises(MissingDataError, match="entry 'Data/train/101/live/000002.jpg': image not"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  os.remove(tmp_path / "src" / "Data/test/201/live/000006_BB.txt")
  info = cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), shards=1, progress=False,
                    skip_missing=True)
  assert info["splits"]["train"]["num_examples"] == 4
  assert info["splits"]["train"]["num_skipped_missing"] == 1
  assert info["splits"]["test"]["skipped_examples"] == ["Data/test/201/live/000006.jpg"]
  assert len(_read_all(tmp_path / "out")) == 6
  only_test = tmp_path / "only_test"
  os.makedirs(only_test)
  os.link(tmp_path / "src" / "metas/intra_test/test_label.json", only_test / "test_label.json")
  with pytest.raises(MissingDataError, match="face box file not found: .*000006_BB.txt"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False,
               protocol=str(only_test))


def test_missing_folders_and_bad_images(tmp_path):
  with pytest.raises(MissingDataError, match="no Data/ folder"):
    cs.convert(str(tmp_path / "nowhere"), str(tmp_path / "out"), progress=False)
  write_celeba_spoof(tmp_path / "src")
  (tmp_path / "src" / "Data/test/201/spoof/000007.png").write_bytes(b"not an image")
  with pytest.raises(ImageDecodeError, match="000007.png: cannot decode image"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  os.rename(tmp_path / "src" / "metas", tmp_path / "src" / "metas_")
  with pytest.raises(MissingDataError, match="metas/intra_test"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
  with pytest.raises(ValueError, match="--shards"):
    cs.convert(str(tmp_path / "src"), str(tmp_path / "out"), shards=0, progress=False)


def test_cli_converts_and_rejects_options_of_other_datasets(tmp_path, capsys):
  from hcjax import cli  # pylint: disable=g-import-not-at-top
  src = tmp_path / "CelebA_Spoof"
  write_celeba_spoof(src)
  out = tmp_path / "out"
  assert cli.main(["convert", "celeba_spoof", "--src", str(src), "--out", str(out), "--shards",
                   "2", "--margin", "0", "--quiet"]) == 0
  printed = capsys.readouterr().out
  assert "train" in printed and "test" in printed
  info = json.load(open(out / "dataset_info.json"))
  assert info["margin"] == 0
  with pytest.raises(SystemExit):
    cli.main(["convert", "voc", "--src", str(src), "--out", str(out), "--margin", "0.1"])
  assert "only for celeba_spoof" in capsys.readouterr().err

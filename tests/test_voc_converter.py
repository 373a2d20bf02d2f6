"""VOC 2012 converter: exact records, mask formats, SBD train_aug arithmetic, clear errors, CLI."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from scipy import io as sio

from hcjax import cli
from hcjax.data import (AnnotationError, ImageDecodeError, MissingDataError, pipeline, tfrecord,
                        transforms)
from hcjax.data.converters import voc

TRAIN = ("2007_000032", "2007_000039", "2007_000063", "2008_000123", "2011_003276")
VAL = ("2007_000033", "2009_000012", "2010_000004")


def _mask(rng, h, w, labels=(0, 1, 8, 15, 20)):
  """Blocks of VOC labels with a 255 void outline around the middle block, as in VOC."""
  mask = rng.choice(labels, size=(h // 4 + 1, w // 4 + 1)).astype(np.uint8)
  mask = np.kron(mask, np.ones((4, 4), np.uint8))[:h, :w]
  mask[h // 3:2 * h // 3, w // 3] = 255
  return mask


def _save_palette_png(mask, path):
  img = Image.fromarray(mask, "P")
  img.putpalette(voc.PALETTE.tobytes())
  img.save(path)


def _save_jpeg(path, h, w, value):
  Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path, quality=90)


def write_voc(root, train=TRAIN, val=VAL, seed=0):
  """A tiny VOC2012 folder in the original layout; returns {id: mask}."""
  rng = np.random.default_rng(seed)
  for d in ("JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation")):
    os.makedirs(root / d, exist_ok=True)
  masks = {}
  for i, image_id in enumerate(train + val):
    h, w = 20 + 3 * i, 30 + 2 * i  # sizes differ, as in VOC
    _save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", h, w, 10 * i)
    masks[image_id] = _mask(rng, h, w)
    _save_palette_png(masks[image_id], root / "SegmentationClass" / f"{image_id}.png")
  for name, ids in (("train", train), ("val", val), ("trainval", sorted(train + val))):
    (root / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("".join(i + "\n" for i in ids))
  return masks


def read_split(out, split):
  examples = []
  for path in sorted(out.glob(f"{split}-*.tfrecord")):
    examples += [tfrecord.decode_example(r) for r in tfrecord.read_records(str(path))]
  return examples


def _decoded_mask(ex):
  return transforms.decode_image(ex["mask"][0], channels=1)[..., 0]


def test_convert_reads_every_field_exactly(tmp_path):
  masks = write_voc(tmp_path / "VOC2012")
  info = voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), shards=2, progress=False)
  assert info["splits"]["train"] == {"num_examples": 5, "files": [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]}
  assert info["splits"]["val"]["num_examples"] == 3
  on_disk = json.loads((tmp_path / "out" / "dataset_info.json").read_text())
  assert on_disk["file_counts"] == {"train-00000-of-00002.tfrecord": 2,
                                    "train-00001-of-00002.tfrecord": 3,
                                    "val-00000-of-00002.tfrecord": 1,
                                    "val-00001-of-00002.tfrecord": 2}
  assert on_disk["dataset"] == "voc" and on_disk["ignore_label"] == 255
  assert on_disk["class_names"][0] == "background" and on_disk["class_names"][15] == "person"
  assert len(on_disk["class_names"]) == 21 and len(on_disk["palette"]) == 256
  for split, ids in (("train", TRAIN), ("val", VAL)):
    examples = read_split(tmp_path / "out", split)
    assert [ex["id"][0].decode() for ex in examples] == list(ids)  # list order kept
    for ex in examples:
      image_id = ex["id"][0].decode()
      assert ex["image"][0] == (tmp_path / "VOC2012" / "JPEGImages" / f"{image_id}.jpg").read_bytes()
      mask = _decoded_mask(ex)
      np.testing.assert_array_equal(mask, masks[image_id])
      assert Image.open(io.BytesIO(ex["mask"][0])).mode == "L"
      assert ex["height"].tolist() == [mask.shape[0]] and ex["width"].tolist() == [mask.shape[1]]


def test_converted_split_feeds_the_pipeline(tmp_path):
  masks = write_voc(tmp_path / "VOC2012")
  voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), shards=2, progress=False)
  cfg = pipeline.PipelineConfig(pattern=str(tmp_path / "out" / "val-*"), batch_size=2, train=False)

  def preprocess(features, rng):
    del rng
    mask = transforms.decode_image(features["mask"][0], channels=1)[..., 0]
    return {"void": (mask == voc.IGNORE_LABEL).sum(), "pixels": np.int64(mask.size)}

  with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
    batches = list(it)
  void = sum(int((b["void"] * b["_mask"]).sum()) for b in batches)
  assert sum(int(b["_mask"].sum()) for b in batches) == 3
  assert void == sum(int((masks[i] == 255).sum()) for i in VAL)


def test_palette_and_colours():
  assert voc.PALETTE.shape == (256, 3) and voc.PALETTE.dtype == np.uint8
  # The devkit's colours: background, aeroplane, cat, person, tvmonitor, void.
  assert voc.PALETTE[[0, 1, 8, 15, 20, 255]].tolist() == [
      [0, 0, 0], [128, 0, 0], [64, 0, 0], [192, 128, 128], [0, 64, 128], [224, 224, 192]]
  assert len(set(map(tuple, voc.PALETTE.tolist()))) == 256
  mask = np.array([[0, 15], [255, 8]], np.uint8)
  assert voc.colorize(mask).tolist() == [[[0, 0, 0], [192, 128, 128]],
                                         [[224, 224, 192], [64, 0, 0]]]
  assert len(voc.CLASS_NAMES) == 21 and voc.IGNORE_LABEL == 255


def test_read_mask_accepts_palette_grey_and_rgb(tmp_path):
  mask = _mask(np.random.default_rng(1), 13, 17, labels=tuple(range(21)))
  _save_palette_png(mask, tmp_path / "p.png")
  Image.fromarray(mask, "L").save(tmp_path / "l.png")
  Image.fromarray(voc.colorize(mask)).save(tmp_path / "rgb.png")
  for name in ("p.png", "l.png", "rgb.png"):
    got = voc.read_mask(str(tmp_path / name))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, mask)


@pytest.mark.parametrize("what", ["unknown colour", "label 21", "mode"])
def test_read_mask_refuses_what_is_no_voc_label(tmp_path, what):
  path = tmp_path / "m.png"
  mask = np.zeros((6, 7), np.uint8)
  if what == "unknown colour":
    rgb = voc.colorize(mask)
    rgb[2, 3] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    message = r"colour \(1, 2, 3\) at row 2, column 3"
  elif what == "label 21":
    mask[4, 5] = 21
    _save_palette_png(mask, path)
    message = "label 21 at row 4, column 5 is not a VOC class"
  else:
    Image.fromarray(np.stack([mask, mask], -1), "LA").save(path)
    message = "image mode 'LA'"
  with pytest.raises(ImageDecodeError, match=message) as e:
    voc.read_mask(str(path))
  assert str(path) in str(e.value)


def _bad_size(root):
  _save_palette_png(np.zeros((5, 5), np.uint8), root / "SegmentationClass" / "2007_000039.png")


def _bad_label(root):
  mask = np.zeros((23, 32), np.uint8)  # 2007_000039 is image 1: 23x32
  mask[3, 4] = 40
  _save_palette_png(mask, root / "SegmentationClass" / "2007_000039.png")


def _bad_colour(root):
  rgb = np.zeros((23, 32, 3), np.uint8)
  rgb[0, 0] = (10, 200, 10)
  Image.fromarray(rgb).save(root / "SegmentationClass" / "2007_000039.png")


def _lists(root):
  return root / "ImageSets" / "Segmentation"


@pytest.mark.parametrize("damage,error,message", [
    (lambda r: os.remove(_lists(r) / "val.txt"), MissingDataError, "VOC val list not found: .*val.txt"),
    (lambda r: os.remove(r / "JPEGImages" / "2008_000123.jpg"), MissingDataError,
     "train.txt, line 4 names an image whose JPEG is missing: .*JPEGImages/2008_000123.jpg"),
    (lambda r: os.remove(r / "SegmentationClass" / "2009_000012.png"), MissingDataError,
     "val.txt, line 2 names an image whose mask is missing: .*SegmentationClass/2009_000012.png"),
    (_bad_size, ImageDecodeError,
     "2007_000039.png: mask is 5x5 but its image .*2007_000039.jpg is 32x23"),
    (_bad_label, ImageDecodeError, "2007_000039.png: label 40 at row 3, column 4 is not a VOC class"),
    (_bad_colour, ImageDecodeError, r"2007_000039.png: colour \(10, 200, 10\) at row 0, column 0"),
    (lambda r: os.rename(r / "SegmentationClass", r / "Seg"), MissingDataError,
     "no SegmentationClass/ folder"),
    (lambda r: os.rename(r / "JPEGImages", r / "JPEG"), MissingDataError, "no JPEGImages/ folder"),
])
def test_missing_and_bad_files_are_named(tmp_path, damage, error, message):
  write_voc(tmp_path / "VOC2012")
  damage(tmp_path / "VOC2012")
  with pytest.raises(error, match=message):
    voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), progress=False)


@pytest.mark.parametrize("file,text,line,message", [
    ("train.txt", "2007_000032\n2007_000039 x y\n", 2, "expected one image id per line, got 3"),
    ("train.txt", "2007_000032\n\n2007_000032\n", 3, "2007_000032 listed twice .first on line 1"),
    ("val.txt", "2007_000033\n2007_000063\n", 2, "2007_000063 is also in .*train.txt"),
    ("val.txt", "JPEGImages/2007_000033.jpg\n", 1, "expected an image id such as 2007_000032"),
    ("val.txt", "\n\n", 1, "the list names no images"),
])
def test_malformed_lists_name_file_and_line(tmp_path, file, text, line, message):
  write_voc(tmp_path / "VOC2012")
  (_lists(tmp_path / "VOC2012") / file).write_text(text)
  with pytest.raises(AnnotationError, match=message) as e:
    voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), progress=False)
  assert e.value.path.endswith(file) and e.value.line == line
  assert f"{file}, line {line}:" in str(e.value)


def test_src_may_be_the_devkit_folder(tmp_path):
  write_voc(tmp_path / "VOCdevkit" / "VOC2012")
  info = voc.convert(str(tmp_path), str(tmp_path / "out"), shards=1, progress=False)
  assert info["source"] == str(tmp_path / "VOCdevkit" / "VOC2012")


# SBD fixture: VOC train a b c, val d e; SBD train.txt b f d g, val.txt h e.
SBD_TRAIN = ("2007_000039", "2008_000002", "2007_000033", "2008_000003")
SBD_VAL = ("2008_000008", "2009_000012")
ADDED = ("2008_000002", "2008_000003", "2008_000008")  # f g h: SBD minus VOC train, VOC val


def _sbd_images(voc_root, sbd_root):
  """SBD-only images: f and g in VOC's JPEGImages (as in VOC2012), h only in SBD's img/."""
  sizes = {i: (16 + k, 24 + k) for k, i in enumerate(SBD_TRAIN + SBD_VAL)}
  for k, image_id in enumerate(ADDED):
    folder = sbd_root / "img" if image_id == ADDED[2] else voc_root / "JPEGImages"
    os.makedirs(folder, exist_ok=True)
    _save_jpeg(folder / f"{image_id}.jpg", *sizes[image_id], 50 + k)
  return sizes


def test_sbd_mat_files_make_train_aug(tmp_path):
  voc_masks = write_voc(tmp_path / "VOC2012", train=TRAIN[:3], val=VAL[:2])
  sbd = tmp_path / "benchmark_RELEASE" / "dataset"
  os.makedirs(sbd / "cls")
  sizes = _sbd_images(tmp_path / "VOC2012", sbd)
  rng = np.random.default_rng(3)
  sbd_masks = {}
  for image_id in SBD_TRAIN + SBD_VAL:  # SBD masks: labels 0..20, no void
    h, w = sizes[image_id] if image_id in ADDED else voc_masks[image_id].shape
    sbd_masks[image_id] = _mask(rng, h, w, labels=(0, 3, 12, 19))
    sbd_masks[image_id][sbd_masks[image_id] == 255] = 0
    sio.savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": {
        "Segmentation": sbd_masks[image_id], "Boundaries": np.zeros((1, 20), object),
        "CategoriesPresent": np.unique(sbd_masks[image_id])}})
  (sbd / "train.txt").write_text("".join(i + "\n" for i in SBD_TRAIN))
  (sbd / "val.txt").write_text("".join(i + "\n" for i in SBD_VAL))
  info = voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), shards=2,
                     sbd=str(tmp_path / "benchmark_RELEASE"), progress=False)
  assert info["train_aug"] == {
      "sbd": str(sbd), "sbd_format": "mat", "voc_train": 3, "sbd_images": 6, "sbd_added": 3,
      "sbd_in_voc_val_dropped": 2}
  train = read_split(tmp_path / "out", "train")
  assert [ex["id"][0].decode() for ex in train] == list(TRAIN[:3] + ADDED)
  assert info["splits"]["train"]["num_examples"] == 6 and info["splits"]["val"]["num_examples"] == 2
  for ex in train:
    image_id = ex["id"][0].decode()
    # VOC's own (finer, void-outlined) annotation wins for VOC train images.
    expected = voc_masks[image_id] if image_id in TRAIN else sbd_masks[image_id]
    np.testing.assert_array_equal(_decoded_mask(ex), expected)
  assert train[-1]["image"][0] == (sbd / "img" / f"{ADDED[2]}.jpg").read_bytes()
  assert [ex["id"][0].decode() for ex in read_split(tmp_path / "out", "val")] == list(VAL[:2])

  sio.savemat(sbd / "cls" / f"{ADDED[1]}.mat",
              {"GTcls": {"Segmentation": np.full(sizes[ADDED[1]], 30, np.uint8)}})
  with pytest.raises(ImageDecodeError, match=f"{ADDED[1]}.mat: label 30 at row 0, column 0"):
    voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), sbd=str(sbd), progress=False)
  sio.savemat(sbd / "cls" / f"{ADDED[1]}.mat", {"other": np.zeros(3)})
  with pytest.raises(ImageDecodeError, match="no GTcls.Segmentation"):
    voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), sbd=str(sbd), progress=False)
  os.remove(sbd / "cls" / f"{ADDED[0]}.mat")
  with pytest.raises(MissingDataError, match=f"train.txt, line 2 names an image whose SBD mask"):
    voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), sbd=str(sbd), progress=False)


def test_sbd_segmentation_class_aug_pngs(tmp_path):
  """The widely shared pre-converted layout: grey SegmentationClassAug/ PNGs + train_aug.txt."""
  voc_masks = write_voc(tmp_path / "VOC2012", train=TRAIN[:3], val=VAL[:2])
  aug = tmp_path / "aug"
  os.makedirs(aug / "SegmentationClassAug")
  sizes = _sbd_images(tmp_path / "VOC2012", aug)
  masks = {}
  for k, image_id in enumerate(ADDED):
    masks[image_id] = np.full(sizes[image_id], k + 1, np.uint8)
    Image.fromarray(masks[image_id], "L").save(aug / "SegmentationClassAug" / f"{image_id}.png")
  # DeepLab's list format (image and mask paths) and bare ids, both accepted.
  lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in ("2007_000039",) + ADDED[:2]]
  lines += ["2009_000012", ADDED[2]]
  (aug / "train_aug.txt").write_text("\n".join(lines) + "\n")
  info = voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), shards=1, sbd=str(aug),
                     progress=False)
  assert info["train_aug"]["sbd_format"] == "png"
  assert (info["train_aug"]["sbd_added"], info["train_aug"]["sbd_in_voc_val_dropped"]) == (3, 1)
  train = read_split(tmp_path / "out", "train")
  assert [ex["id"][0].decode() for ex in train] == list(TRAIN[:3] + ADDED)
  for ex in train:
    image_id = ex["id"][0].decode()
    np.testing.assert_array_equal(_decoded_mask(ex), {**voc_masks, **masks}[image_id])

  (aug / "train_aug.txt").write_text(
      "/JPEGImages/2007_000039.jpg /SegmentationClassAug/2007_000040.png\n")
  with pytest.raises(AnnotationError, match="train_aug.txt, line 1: .* name different ids"):
    voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), sbd=str(aug), progress=False)
  os.remove(aug / "train_aug.txt")
  with pytest.raises(MissingDataError, match="no train_aug.txt"):
    voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), sbd=str(aug), progress=False)
  with pytest.raises(MissingDataError, match="no SBD cls/ folder"):
    voc.convert(str(tmp_path / "VOC2012"), str(tmp_path / "out"), sbd=str(tmp_path / "VOC2012"),
                progress=False)


def test_cli_convert_and_one_line_errors(tmp_path, capsys):
  write_voc(tmp_path / "VOC2012")
  assert cli.main(["convert", "voc", "--src", str(tmp_path / "VOC2012"), "--out",
                   str(tmp_path / "out"), "--shards", "2", "--quiet"]) == 0
  out = capsys.readouterr().out
  assert "train" in out and "5 examples" in out and "3 examples" in out
  assert "21 classes: background aeroplane" in out and "255 = void" in out
  assert cli.main(["convert", "voc", "--src", str(tmp_path / "nowhere"), "--out",
                   str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("hcjax: error: no JPEGImages/ folder under")
  assert cli.main(["convert", "voc", "--src", str(tmp_path / "VOC2012"), "--out",
                   str(tmp_path / "out"), "--sbd", str(tmp_path / "nowhere")]) == 2
  assert "--sbd folder not found" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    cli.main(["convert", "celeba", "--src", "x", "--out", "y", "--sbd", "z"])
  assert e.value.code == 2

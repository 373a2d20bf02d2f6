"""The VOC sample set: VOC's layout, exact masks cut from real photos, determinism, CLI."""

import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import data as photos

from hcjax import cli
from hcjax.data import tfrecord, transforms
from hcjax.data.converters import voc as converter
from hcjax.data.samples import voc

N = 40


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("voc_samples")
  summary = voc.write_sample_set(str(out), num_images=N, seed=0)
  assert summary["num_images"] == N and summary["splits"] == {"train": 32, "val": 8}
  return out


@pytest.fixture(scope="module")
def scenes():
  return [voc.render_example(i, seed=0) for i in range(60)]


def _tree(root):
  return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_voc_layout(sample_dir):
  root = sample_dir / "VOC2012"
  lists = root / "ImageSets" / "Segmentation"
  train = (lists / "train.txt").read_text().split("\n")
  val = (lists / "val.txt").read_text().split("\n")
  assert train[-1] == "" and val[-1] == ""
  ids = [f"2012_{i:06d}" for i in range(1, N + 1)]
  assert val[:-1] == ids[4::5] and train[:-1] == [i for i in ids if i not in val]
  assert (lists / "trainval.txt").read_text() == "".join(i + "\n" for i in ids)
  sizes = set()
  for image_id in ids:
    image = Image.open(root / "JPEGImages" / f"{image_id}.jpg")
    assert image.format == "JPEG" and image.mode == "RGB"
    sizes.add(image.size)
    for folder in ("SegmentationClass", "SegmentationObject"):
      mask = Image.open(root / folder / f"{image_id}.png")
      assert mask.mode == "P" and mask.size == image.size
      assert mask.getpalette()[:3 * 256] == converter.PALETTE.ravel().tolist()
    classes = np.asarray(Image.open(root / "SegmentationClass" / f"{image_id}.png"))
    objects = np.asarray(Image.open(root / "SegmentationObject" / f"{image_id}.png"))
    np.testing.assert_array_equal(classes == 255, objects == 255)
    np.testing.assert_array_equal(classes == 0, objects == 0)
    for k in set(np.unique(objects)) - {0, 255}:  # each instance is one class
      assert len(np.unique(classes[objects == k])) == 1
    assert set(np.unique(objects)) - {0, 255} == set(range(1, objects[objects != 255].max() + 1))
  assert sizes == {(160, 120), (120, 160)}


def test_the_converter_reads_it(sample_dir, tmp_path):
  info = converter.convert(str(sample_dir / "VOC2012"), str(tmp_path), shards=2, progress=False)
  assert {k: v["num_examples"] for k, v in info["splits"].items()} == {"train": 32, "val": 8}
  for path in sorted(tmp_path.glob("val-*.tfrecord")):
    for record in tfrecord.read_records(str(path)):
      ex = tfrecord.decode_example(record)
      image_id = ex["id"][0].decode()
      on_disk = converter.read_mask(
          str(sample_dir / "VOC2012" / "SegmentationClass" / f"{image_id}.png"))
      np.testing.assert_array_equal(transforms.decode_image(ex["mask"][0], 1)[..., 0], on_disk)


def test_deterministic(sample_dir, tmp_path):
  voc.write_sample_set(str(tmp_path / "again"), num_images=N, seed=0)
  files = _tree(sample_dir)
  assert files == _tree(tmp_path / "again")
  assert len(files) == 3 * N + 4  # images, two masks each, three lists, README
  for name in files:
    assert (sample_dir / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
  assert not np.array_equal(voc.render_example(0, seed=1).image, voc.render_example(0, seed=0).image)


def test_masks_are_exact(scenes):
  for scene in scenes:
    # Void is exactly the outlines: pixels with a different instance among their 3x3 neighbours.
    band = (ndimage.grey_dilation(scene.instances, size=3, mode="nearest")
            != ndimage.grey_erosion(scene.instances, size=3, mode="nearest"))
    np.testing.assert_array_equal(scene.mask == 255, band)
    np.testing.assert_array_equal(scene.mask[(scene.instances == 0) & ~band], 0)
    h, w = scene.mask.shape
    for k, obj in enumerate(scene.objects, start=1):
      region = (scene.instances == k) & ~band
      assert (scene.mask[region] == obj.class_id).all()
      # Every labelled pixel holds the object's own pixel, unchanged.
      ys, xs = np.nonzero(region)
      assert obj.alpha[ys - obj.top, xs - obj.left].all()
      np.testing.assert_array_equal(scene.image[ys, xs], obj.rgb[ys - obj.top, xs - obj.left])
      # And the object's pixels that no later object covers are all its own.
      oy, ox = np.nonzero(obj.alpha)
      oy, ox = oy + obj.top, ox + obj.left
      keep = (oy >= 0) & (oy < h) & (ox >= 0) & (ox < w)
      later = scene.instances[oy[keep], ox[keep]]
      assert ((later == k) | (later > k)).all()


def test_objects_are_cut_from_the_photographs():
  rng = np.random.default_rng(0)
  for kind, photo in (("astronaut", photos.astronaut()), ("chelsea", photos.chelsea()),
                      ("motorcycle", photos.stereo_motorcycle()[0])):
    _, outline, (top, left) = voc._traced(kind)  # pylint: disable=protected-access
    rgb, alpha = voc.cutout(kind, rng, outline.shape)  # native size: no resampling
    crop = photo[top:top + rgb.shape[0], left:left + rgb.shape[1]]
    np.testing.assert_array_equal(rgb[alpha], crop[alpha])
    assert 0.4 < alpha.mean() < 0.95
  horse = ~photos.horse()
  ys, xs = np.nonzero(horse)
  _, alpha = voc.cutout("horse", rng, (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
  np.testing.assert_array_equal(alpha, horse[ys.min():ys.max() + 1, xs.min():xs.max() + 1])


def test_jpeg_keeps_the_pixels(sample_dir, scenes):
  for i in (0, 4, 17):
    image = np.asarray(Image.open(sample_dir / "VOC2012" / "JPEGImages" / f"2012_{i + 1:06d}.jpg"),
                       np.float32)
    scene = scenes[i]
    labelled = scene.mask != 255
    assert np.abs(image - scene.image)[labelled].mean() < 4


def test_classes_present_and_distinguishable(scenes, tmp_path):
  summary = voc.write_sample_set(str(tmp_path), num_images=N, seed=0)
  assert set(summary["images_with"]) == {"person", "cat", "diningtable", "horse", "motorbike"}
  assert all(n >= 3 for n in summary["images_with"].values())
  assert set(voc.CLASSES) == {converter.CLASS_NAMES[i] for i in (8, 11, 13, 14, 15)}
  # Objects of one class look alike: a 1-nearest-neighbour on colour statistics of the
  # visible object pixels (leave one out) names the class of most objects.
  features, labels = [], []
  for scene in scenes:
    for k, obj in enumerate(scene.objects, start=1):
      region = (scene.instances == k) & (scene.mask != 255)
      if region.sum() >= 150:
        pixels = scene.image[region].astype(np.float32)
        features.append(np.concatenate([pixels.mean(0), pixels.std(0)]))
        labels.append(obj.class_id)
  features, labels = np.array(features), np.array(labels)
  distances = np.linalg.norm(features[:, None] - features[None], axis=-1)
  np.fill_diagonal(distances, np.inf)
  accuracy = (labels[distances.argmin(1)] == labels).mean()
  assert len(labels) > 60 and accuracy > 0.9


def test_cli_samples(tmp_path, capsys):
  assert cli.main(["samples", "voc", "--out", str(tmp_path), "--num-images", "6", "--seed", "3"]) == 0
  assert "voc sample set ->" in capsys.readouterr().out
  assert len(os.listdir(tmp_path / "VOC2012" / "JPEGImages")) == 6
  assert cli.main(["convert", "voc", "--src", str(tmp_path / "VOC2012"), "--out",
                   str(tmp_path / "tf"), "--quiet"]) == 0
  with pytest.raises(ValueError, match="num_images >= 2"):
    voc.write_sample_set(str(tmp_path / "x"), num_images=1)

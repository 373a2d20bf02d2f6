"""The rendered CelebA sample set: exact file formats, determinism, split, visible labels."""

import filecmp
import os

import numpy as np
import pytest
from PIL import Image

from hcjax.data.converters import celeba as converter
from hcjax.data.samples import celeba

N = 90


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("celeba_samples")
  summary = celeba.write_sample_set(str(out), num_images=N, num_identities=30, seed=0)
  assert summary["num_images"] == N
  return out


def _rows(path, skip):
  lines = open(path).read().split("\n")
  assert lines[-1] == ""
  return lines[:skip], [l.split() for l in lines[skip:-1]]


def test_exact_celeba_formats(sample_dir):
  head, rows = _rows(sample_dir / "list_attr_celeba.txt", 2)
  assert head[0] == str(N)
  assert head[1] == " ".join(converter.ATTRIBUTE_NAMES) + " "  # the real file's trailing space
  assert [r[0] for r in rows] == [f"{i:06d}.jpg" for i in range(1, N + 1)]
  values = np.array([[int(v) for v in r[1:]] for r in rows])
  assert values.shape == (N, 40) and set(np.unique(values)) == {-1, 1}
  first = open(sample_dir / "list_attr_celeba.txt").read().split("\n")[2]
  assert first.startswith("000001.jpg ") and all(first[11 + 3 * k:13 + 3 * k] in ("-1", " 1")
                                                 for k in range(40))
  head, rows = _rows(sample_dir / "list_landmarks_align_celeba.txt", 2)
  assert head == [str(N), celeba.LANDMARK_HEADER]
  assert all(len(r) == 11 for r in rows)
  _, rows = _rows(sample_dir / "list_eval_partition.txt", 0)
  assert {r[1] for r in rows} == {"0", "1", "2"}
  head, rows = _rows(sample_dir / "list_bbox_celeba.txt", 2)
  assert head[1] == "image_id x_1 y_1 width height" and all(len(r) == 5 for r in rows)
  image = Image.open(sample_dir / "img_align_celeba" / "000001.jpg")
  assert image.size == (178, 218) and image.format == "JPEG" and image.mode == "RGB"


def test_the_converter_reads_it(sample_dir, tmp_path):
  info = converter.convert(str(sample_dir), str(tmp_path), shards=2, progress=False)
  assert sum(s["num_examples"] for s in info["splits"].values()) == N


def test_deterministic(sample_dir, tmp_path):
  celeba.write_sample_set(str(tmp_path / "again"), num_images=N, num_identities=30, seed=0)
  for name in ("list_attr_celeba.txt", "list_landmarks_align_celeba.txt", "identity_CelebA.txt",
               "list_eval_partition.txt", "list_bbox_celeba.txt"):
    assert filecmp.cmp(sample_dir / name, tmp_path / "again" / name, shallow=False), name
  for i in (1, N // 2, N):
    name = f"{i:06d}.jpg"
    assert (sample_dir / "img_align_celeba" / name).read_bytes() == (
        tmp_path / "again" / "img_align_celeba" / name).read_bytes()
  other, *_ = celeba.render_example(0, 30, seed=1)
  same, *_ = celeba.render_example(0, 30, seed=0)
  assert not np.array_equal(np.asarray(other), np.asarray(same))


def test_identity_disjoint_split(sample_dir):
  ids = dict(l.split() for l in open(sample_dir / "identity_CelebA.txt").read().split("\n") if l)
  parts = dict(l.split() for l in open(sample_dir / "list_eval_partition.txt").read().split("\n") if l)
  by_split = {p: {ids[k] for k, v in parts.items() if v == p} for p in "012"}
  assert all(by_split.values())
  assert not by_split["0"] & by_split["1"] and not by_split["0"] & by_split["2"]
  assert not by_split["1"] & by_split["2"]
  images_per_identity = np.bincount([int(v) for v in ids.values()])[1:]
  assert images_per_identity.min() >= 2  # identities recur with other poses and lighting


def _examples(n=160):
  return [celeba.render_example(i, 40) for i in range(n)]


@pytest.fixture(scope="module")
def examples():
  return _examples()


def test_landmarks_sit_on_the_drawn_features(examples):
  dark_pupils, rows = 0, 0
  for image, attributes, landmarks, _, _ in examples:
    lm = np.array(landmarks).reshape(5, 2)
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]          # left is on the image's left
    assert lm[0, 1] < lm[2, 1] < lm[3, 1]                       # eyes above nose above mouth
    assert np.all(lm[:, 0] > 0) and np.all(lm[:, 0] < 178) and np.all(lm[:, 1] < 218)
    if attributes["Blurry"] or attributes["Narrow_Eyes"]:
      continue
    gray = np.asarray(image.convert("L"), np.float32)
    for k in (0, 1):  # the pupil is darker than the cheek 12 px below
      x, y = np.round(lm[k]).astype(int)
      rows += 1
      dark_pupils += gray[y - 1:y + 2, x - 1:x + 2].mean() + 30 < gray[y + 12, x - 2:x + 3].mean()
  assert dark_pupils / rows > 0.95


def _region(image, landmarks, dx0, dx1, dy0, dy1):
  lm = np.array(landmarks).reshape(5, 2)
  cx, cy = lm[:2].mean(0)
  arr = np.asarray(image, np.float32)
  return arr[int(cy + dy0):int(cy + dy1), int(cx + dx0):int(cx + dx1)]


def test_attributes_are_visible(examples):
  # Hair colour: brightness of the strip above the forehead.
  top = {k: [] for k in ("Blond_Hair", "Black_Hair")}
  glasses, no_glasses, lips_red, lips_plain = [], [], [], []
  for image, a, lm, _, _ in examples:
    if a["Wearing_Hat"] or a["Blurry"]:
      continue
    strip = _region(image, lm, -8, 8, -48, -40).mean()
    for k in top:
      if a[k]:
        top[k].append(strip)
    bridge = _region(image, lm, -3, 3, -1, 2).min()  # between the eyes: the glasses' bridge
    (glasses if a["Eyeglasses"] else no_glasses).append(bridge)
    m = np.array(lm).reshape(5, 2)
    mouth = np.asarray(image, np.float32)[int(m[3, 1]) - 3:int(m[3, 1]) + 4,
                                          int(m[3, 0]) + 3:int(m[4, 0]) - 3]
    redness = (mouth[..., 0] - mouth[..., 1:].mean(-1)).max()
    (lips_red if a["Wearing_Lipstick"] else lips_plain).append(redness)
  assert np.mean(top["Blond_Hair"]) > np.mean(top["Black_Hair"]) + 80
  assert np.mean(glasses) + 60 < np.mean(no_glasses)
  assert np.mean(lips_red) > np.mean(lips_plain) + 40


def test_label_logic_is_consistent(examples):
  for _, a, _, _, _ in examples:
    assert a["No_Beard"] == (not (a["Mustache"] or a["Goatee"] or a["5_o_Clock_Shadow"]))
    if not a["Male"]:
      assert not (a["Mustache"] or a["Goatee"] or a["Wearing_Necktie"])
    assert sum(a[h] for h in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")) <= 1
    if a["Bald"]:
      assert not (a["Bangs"] or a["Black_Hair"] or a["Blond_Hair"])
  rates = {n: np.mean([e[1][n] for e in examples]) for n in celeba.ATTRIBUTE_NAMES}
  assert 0.2 < rates["Male"] < 0.7 and 0.25 < rates["Smiling"] < 0.75
  assert rates["No_Beard"] > 0.6 and rates["Bald"] < 0.15
  assert sum(0.02 < r < 0.98 for r in rates.values()) >= 36  # nearly all attributes vary

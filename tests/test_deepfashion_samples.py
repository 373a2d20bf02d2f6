"""The rendered DeepFashion sample set: the three layouts convert, determinism, and labels that are
true by construction (categories, landmarks on the drawn garment, identities, drawn attributes)."""

import os

import numpy as np
import pytest
from PIL import Image

from hcjax.data import tfrecord
from hcjax.data.converters import deepfashion as converter
from hcjax.data.samples import deepfashion as samples

N = 90  # 41 category, 27 in-shop, 22 landmark pictures


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("deepfashion_samples")
  summary = samples.write_sample_set(str(out), num_images=N, seed=0)
  assert summary["num_images"] == N
  assert sum(summary[b]["images"] for b in converter.BENCHMARKS) == N
  return out, summary


def _rows(path):
  lines = open(path).read().split("\n")
  assert lines[-1] == "" and int(lines[0]) == len(lines) - 3
  return lines[1], [line.split() for line in lines[2:-1]]


def _read(out):
  seen = {}
  for path in sorted(out.glob("*.tfrecord")):
    for record in tfrecord.read_records(str(path)):
      ex = converter.parse_example(tfrecord.decode_example(record))
      seen[ex["id"]] = ex
  return seen


@pytest.mark.parametrize("name", converter.BENCHMARKS)
def test_each_benchmark_converts(sample_dir, tmp_path, name):
  root, summary = sample_dir
  info = converter.convert(str(root / name), str(tmp_path), benchmark=name, shards=2,
                           progress=False)
  splits = {s: v["num_examples"] for s, v in info["splits"].items()}
  expected = {k.replace("val", "validation"): v for k, v in summary[name]["splits"].items()}
  assert splits == expected and sum(splits.values()) == summary[name]["images"]
  assert info["annotation_stats"]["num_type_mismatch"] == 0
  assert info["annotation_stats"]["num_padded_landmark_rows"] == 0
  assert all(v == 0 for v in info["unpartitioned"].values())
  if name == "category":
    assert info["category_names"] == list(samples.CATEGORY_NAMES)
    assert info["category_types"] == [t for _, t in samples.CATEGORIES]
    assert info["attribute_names"] == list(samples.ATTRIBUTE_NAMES)  # "polka dot" kept whole
    assert info["num_attributes"] == len(samples.ATTRIBUTES) == 61
    assert info["annotation_stats"]["num_unknown_attribute_values"] > 0
  if name == "inshop":
    assert info["retrieval"]["num_query_without_gallery"] == 0
    assert info["num_items"] == summary["inshop"]["items"]
  for ex in _read(tmp_path).values():
    h, w = ex["image_size"]
    assert (h, w) in [s[::-1] for s in samples.SIZES[name]]
    x1, y1, x2, y2 = ex["bbox"]
    assert 0 <= x1 < x2 <= w - 1 and 0 <= y1 < y2 <= h - 1
    present = ex["landmark_present"] == 1
    assert present.tolist() == [int(s in converter.LANDMARK_SLOTS[ex["category_type"]])
                                for s in range(8)]
    inside = np.all((ex["landmarks"] >= 0) & (ex["landmarks"] <= [w - 1, h - 1]), axis=1)
    np.testing.assert_array_equal(ex["landmark_visibility"][present] == 2, ~inside[present])
    if name == "category":
      assert ex["attributes"].shape == (61,) and set(np.unique(ex["attributes"])) <= {-1, 0, 1}
      assert ex["category_type"] == samples.CATEGORIES[ex["category"]][1]


def test_file_formats(sample_dir):
  root, summary = sample_dir
  anno = root / "category" / "Anno"
  assert open(anno / "list_category_cloth.txt").read().split("\n")[2].split() == ["Blazer", "1"]
  header, rows = _rows(anno / "list_attr_cloth.txt")
  assert header.split() == ["attribute_name", "attribute_type"]
  assert [" ".join(r[:-1]) for r in rows] == list(samples.ATTRIBUTE_NAMES)
  assert sorted({int(r[-1]) for r in rows}) == [1, 2, 3, 4, 5]
  _, rows = _rows(anno / "list_landmarks.txt")
  for r in rows:
    assert r[0].startswith("img/") and r[0].endswith(".jpg")
    assert len(r) == {"1": 21, "2": 15, "3": 27}[r[1]] and 1 <= int(r[2]) <= 5
  _, rows = _rows(anno / "list_attr_img.txt")
  values = np.array([[int(v) for v in r[1:]] for r in rows])
  assert values.shape == (summary["category"]["images"], 61)
  assert set(np.unique(values)) == {-1, 0, 1}
  _, rows = _rows(root / "inshop" / "Anno" / "list_bbox_inshop.txt")
  assert all(len(r) == 7 and int(r[2]) in samples.POSE_NAMES for r in rows)
  assert all(r[0].split("/")[-1].split("_", 2)[1] == r[2] for r in rows)  # VV_P_pose.jpg
  items = open(root / "inshop" / "Anno" / "list_item_inshop.txt").read().split()
  assert int(items[0]) == len(items) - 1 and items[1] == "id_00000001"
  _, rows = _rows(root / "landmarks" / "Eval" / "list_eval_partition.txt")
  assert {r[1] for r in rows} == {"train", "val", "test"}
  image = Image.open(root / "landmarks" / rows[0][0])
  assert image.format == "JPEG" and image.mode == "RGB" and max(image.size) == 160


def test_deterministic(sample_dir, tmp_path):
  root, _ = sample_dir
  samples.write_sample_set(str(tmp_path), num_images=N, seed=0)
  files = sorted(os.path.relpath(os.path.join(d, f), root)
                 for d, _, fs in os.walk(root) for f in fs)
  again = sorted(os.path.relpath(os.path.join(d, f), tmp_path)
                 for d, _, fs in os.walk(tmp_path) for f in fs)
  assert files == again and len(files) == N + 15
  for name in files:
    assert (root / name).read_bytes() == (tmp_path / name).read_bytes(), name
  item = samples.make_item(3, seed=1)
  other = samples.render_view(item, 0).image
  assert not np.array_equal(np.asarray(other),
                            np.asarray(samples.render_view(samples.make_item(3), 0).image))


def test_every_category_and_clothes_type(sample_dir):
  root, _ = sample_dir
  _, rows = _rows(root / "category" / "Anno" / "list_category_img.txt")
  labels = [int(r[1]) for r in rows]
  assert sorted(set(labels)) == list(range(1, 14))
  assert np.bincount(labels).max() <= 4  # balanced: each block of 13 holds every category once
  for name, label in zip([r[0] for r in rows], labels):
    assert name.split("/")[1].endswith("_" + samples.CATEGORY_NAMES[label - 1])
  for benchmark, file in (("category", "list_landmarks.txt"), ("landmarks", "list_landmarks.txt"),
                          ("inshop", "list_landmarks_inshop.txt")):
    _, rows = _rows(root / benchmark / "Anno" / file)
    types = {r[1] for r in rows}
    assert types == {"1", "2", "3"} or benchmark == "inshop" and len(types) >= 2


def test_inshop_items_and_splits(sample_dir):
  root, _ = sample_dir
  _, rows = _rows(root / "inshop" / "Eval" / "list_eval_partition.txt")
  by_split = {s: {r[1] for r in rows if r[2] == s} for s in ("train", "query", "gallery")}
  assert all(by_split.values())
  assert not by_split["train"] & (by_split["query"] | by_split["gallery"])
  assert by_split["query"] == by_split["gallery"]  # every query item has gallery pictures
  _, bbox = _rows(root / "inshop" / "Anno" / "list_bbox_inshop.txt")
  clothes = {r[0]: r[1] for r in bbox}
  per_item: dict[str, list[str]] = {}
  for name, item, _ in rows:
    assert name.split("/")[3] == item
    per_item.setdefault(item, []).append(name)
  for item, names in per_item.items():
    assert len({n.rsplit("/", 2)[0] for n in names}) == 1        # one category folder
    assert len({clothes[n] for n in names}) == 1                  # one clothes type
    k = int(item[3:])
    design = samples.make_item(k, 0, "inshop")
    assert design.attributes == samples.make_item(k, 0, "inshop").attributes
    assert samples.INSHOP_FOLDERS[design.category_name][design.figure["female"]] in names[0]
  assert max(len(n) for n in per_item.values()) >= 3


def _garment_colour(view):
  arr = np.asarray(view.image, np.float32)
  return arr[view.garment_mask > 0.99].mean(0)


def test_item_views_look_alike():
  """The same item seen from several views keeps its colours; other items differ more."""
  means = {k: [_garment_colour(samples.render_view(samples.make_item(k, 0, "inshop"), v,
                                                   masks=True)) for v in range(4)]
           for k in range(1, 11)}
  within = [np.linalg.norm(c - np.mean(m, 0)) for m in means.values() for c in m]
  centres = [np.mean(m, 0) for m in means.values()]
  between = [np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1:]]
  assert np.median(within) * 3 < np.median(between)


@pytest.fixture(scope="module")
def views():
  out = []
  for benchmark in converter.BENCHMARKS:
    for k in range(1, 27):
      item = samples.make_item(k, 0, benchmark)
      out.append((item, samples.render_view(item, k % 3, masks=True)))
  return out


def test_landmarks_lie_on_the_drawn_garment(views):
  counts = np.zeros(3, int)
  frontal = 0
  for item, view in views:
    h, w = view.garment_mask.shape
    assert view.image.size == (w, h)
    slots = converter.LANDMARK_SLOTS[item.clothes_type]
    assert view.present.tolist() == [int(s in slots) for s in range(8)]
    lm = view.rounded_landmarks()
    for s in slots:
      x, y = lm[s]
      counts[view.visibility[s]] += 1
      if view.visibility[s] == converter.TRUNCATED:
        assert not (0 <= x < w and 0 <= y < h)
        continue
      assert 0 <= x < w and 0 <= y < h
      window = view.garment_mask[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3]
      if view.visibility[s] == converter.VISIBLE:
        assert window.max() > 0.5, (item.category_name, s)   # garment within 2 px
      x1, y1, x2, y2 = view.bbox
      assert x1 - 1 <= x <= x2 + 1 and y1 - 1 <= y <= y2 + 1
    covered = np.argwhere(view.garment_mask > 0.5)
    assert covered.size
    x1, y1, x2, y2 = view.bbox
    # The box is the outline's extent; rasterising may spill into the next pixel.
    assert covered[:, 1].min() >= x1 - 1 and covered[:, 1].max() <= x2 + 1
    assert covered[:, 0].min() >= y1 - 1 and covered[:, 0].max() <= y2 + 1
    # The wearer's left is on the picture's right in an upright frontal view, mirrored or not.
    if view.variation_type == 1 and view.pose_type == 1:
      for a, b in converter.FLIP_PAIRS:
        if view.present[a] and (view.visibility[[a, b]] < 2).all():
          frontal += 1
          assert view.landmarks[a, 0] > view.landmarks[b, 0]
  assert frontal > 20
  assert counts[0] > 4 * counts[1] and counts[1] >= 5 and counts[2] >= 5  # all three occur


def _body_pixels(view, threshold=0.99):
  """Body-frame coordinates of the pixels fully covered by the visible garment."""
  ys, xs = np.nonzero(view.garment_mask >= threshold)
  hom = np.stack([xs, ys, np.ones_like(xs)], 0).astype(np.float64)
  body = view.to_body @ hom
  return (body[:2] / body[2]).T, np.sqrt(abs(np.linalg.det(view.to_body[:2, :2])))


def test_sleeveless_garments_end_at_the_shoulder():
  seen = {"none": 0, "sleeved": 0}
  for k in range(1, 80):
    item = samples.make_item(k, 0, "category")
    if item.clothes_type == 2:
      continue
    view = samples.render_view(item, 0, masks=True, variation_type=1, pose_type=1)
    body, unit = _body_pixels(view)
    band = body[(body[:, 1] > 2) & (body[:, 1] < 30)]
    reach = np.abs(band[:, 0]).max() - item.figure["sw"]
    if item.design["sleeve"] == "none":
      seen["none"] += 1
      assert reach < 1.5 * unit, item.category_name
    else:
      seen["sleeved"] += 1
      assert reach > 2.5, item.category_name
  assert seen["none"] >= 5 and seen["sleeved"] >= 15


def _line(view, x, ys, vertical=True):
  """Luminance along a body-frame line (only where the garment is fully visible)."""
  pts = np.stack([np.full_like(ys, x), ys], 1) if vertical else np.stack([ys, np.full_like(ys, x)],
                                                                          1)
  img = np.asarray(view.image.convert("L"), np.float32)
  to_img = np.linalg.inv(view.to_body)
  p = np.c_[pts, np.ones(len(pts))] @ to_img.T
  px, py = np.round(p[:, 0] / p[:, 2]).astype(int), np.round(p[:, 1] / p[:, 2]).astype(int)
  h, w = img.shape
  ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
  ok[ok] &= view.garment_mask[py[ok], px[ok]] > 0.99
  return img[py.clip(0, h - 1), px.clip(0, w - 1)], ok


def _stripe_fit(signal, pos, period, duty):
  """Best correlation (over phases) of the signal with the stripe pattern of that period."""
  best = -1.0
  for phase in np.linspace(0, period, 40, endpoint=False):
    t = ((pos + phase) / period) % 1.0 < duty
    if t.all() or not t.any():
      continue
    best = max(best, abs(float(np.corrcoef(signal, t.astype(np.float32))[0, 1])))
  return best


def test_striped_garments_are_periodic_and_solid_ones_are_not():
  striped, solid = [], []
  for k in range(1, 200):
    item = samples.make_item(k, 0, "category")
    d = item.design
    if d["texture"] not in ("striped", "solid") or d["fabric"] in ("lace", "sheer"):
      continue
    view = samples.render_view(item, 0, masks=True, variation_type=1, pose_type=1)
    if d["texture"] == "striped" and d["vertical"]:  # across the body, beside the placket
      y, pos = (30.0 if item.clothes_type != 2 else 62.0), np.arange(2, 15, 0.25)
      lines = [(_line(view, y, sg * pos, vertical=False), sg * pos) for sg in (1, -1)]
    else:
      pos = np.arange(22, 40, 0.25) if item.clothes_type != 2 else np.arange(54, 72, 0.25)
      lines = [(_line(view, x, pos), pos) for x in (8.0, -8.0)]
    (signal, ok), pos = max(lines, key=lambda l: l[0][1].sum())
    if ok.mean() < 0.95:
      continue  # an arm or the second garment across the line
    if d["texture"] == "striped":
      striped.append((_stripe_fit(signal, pos + d["phase"][0], d["period"], d["duty"]),
                      signal.std()))
    else:
      solid.append((max(_stripe_fit(signal, pos, p, 0.5) for p in (4.5, 6.0, 8.0)),
                    signal.std()))
  assert len(striped) >= 8 and len(solid) >= 15
  # Stripe strength: fit to the item's own stripe pattern x luminance contrast along the line.
  assert min(fit for fit, _ in striped) > 0.7, striped
  assert min(fit * sd for fit, sd in striped) > 15, striped
  assert max(fit * sd for fit, sd in solid) < 12 and np.median([sd for _, sd in solid]) < 5, solid


def test_one_benchmark_and_bad_arguments(tmp_path):
  summary = samples.write_sample_set(str(tmp_path), num_images=6, benchmark="landmarks")
  assert sorted(os.listdir(tmp_path)) == ["README.md", "landmarks"]
  assert summary["landmarks"]["images"] == 6
  with pytest.raises(ValueError, match="benchmark must be one of"):
    samples.write_sample_set(str(tmp_path), num_images=6, benchmark="attributes")
  with pytest.raises(ValueError, match="too small"):
    samples.write_sample_set(str(tmp_path), num_images=4)


def test_cli_writes_the_sample_set_then_converts_it(tmp_path, capsys):
  from hcjax import cli  # pylint: disable=g-import-not-at-top
  assert cli.main(["samples", "deepfashion", "--out", str(tmp_path / "s"), "--num-images",
                   "40"]) == 0
  assert "deepfashion sample set" in capsys.readouterr().out
  assert cli.main(["convert", "deepfashion", "--benchmark", "inshop", "--src",
                   str(tmp_path / "s" / "inshop"), "--out", str(tmp_path / "r"), "--quiet"]) == 0
  assert "deepfashion (inshop)" in capsys.readouterr().out

"""DeepFashion converter: the three benchmarks' original files, variable-length landmark rows,
unknown attributes, names with spaces, malformed lines."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from hcjax.data import AnnotationError, MissingDataError, tfrecord
from hcjax.data.converters import deepfashion as df
from hcjax.metrics import fashion

CATEGORIES = (("Anorak", 1), ("Blazer", 1), ("Capris", 2), ("Dress", 3))
ATTRIBUTES = (("a-line", 3), ("abstract", 1), ("abstract chevron", 1), ("cotton", 2),
              ("v-neck", 4), ("boho", 5))


def _image(path, shade, size=(40, 30)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full((size[1], size[0], 3), shade, np.uint8)).save(path, quality=90)


def _landmark_row(rng, clothes, pad=False):
  """Values after the image name for one image, and the expected 8-slot arrays."""
  slots = df.LANDMARK_SLOTS[clothes]
  variation = int(rng.integers(1, 6))
  xy = np.zeros((8, 2), np.float32)
  vis = np.full(8, 2, np.int64)
  present = np.zeros(8, np.int64)
  values = [str(clothes), str(variation)]
  for slot in slots:
    v, x, y = int(rng.integers(0, 3)), int(rng.integers(0, 300)), int(rng.integers(0, 300))
    values += [str(v), f"{x:03d}", f"{y:03d}"]  # zero-padded as in the real files
    xy[slot], vis[slot], present[slot] = (x, y), v, 1
  if pad:
    values += ["0"] * (24 - 3 * len(slots))
  return values, (clothes, variation, xy, vis, present)


def _write_list(path, header, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(f"{len(rows)}\n{header}\n")
    for name, values in rows:
      f.write(f"{name:<60}" + "  ".join(values) + "\n")


def write_category(root, n=9):
  """A tiny Category and Attribute Prediction benchmark in the original layout."""
  rng = np.random.default_rng(0)
  names, truth = [], {}
  status = ["train"] * (n - 4) + ["val"] * 2 + ["test"] * 2
  for i in range(n):
    cat = i % len(CATEGORIES)
    name = f"img/{CATEGORIES[cat][0]}_Thing/img_{i + 1:08d}.jpg"
    _image(root / name, i * 20)
    lm_values, lm = _landmark_row(rng, CATEGORIES[cat][1])
    attrs = rng.choice([-1, -1, 1, 0], size=len(ATTRIBUTES))
    bbox = rng.integers(0, 20, size=2).tolist() + rng.integers(20, 40, size=2).tolist()
    names.append(name)
    truth[name] = dict(category=cat, attrs=attrs, bbox=bbox, lm_values=lm_values, lm=lm,
                       split={"val": "validation"}.get(status[i], status[i]))
  anno = root / "Anno"
  os.makedirs(anno)
  with open(anno / "list_category_cloth.txt", "w") as f:
    f.write(f"{len(CATEGORIES)}\ncategory_name  category_type\n")
    f.writelines(f"{c:<29}{t}\n" for c, t in CATEGORIES)
  with open(anno / "list_attr_cloth.txt", "w") as f:
    f.write(f"{len(ATTRIBUTES)}\nattribute_name  attribute_type\n")
    f.writelines(f"{a:<45}{t}\n" for a, t in ATTRIBUTES)
  _write_list(anno / "list_category_img.txt", "image_name  category_label",
              [(m, [str(truth[m]["category"] + 1)]) for m in names])
  _write_list(anno / "list_attr_img.txt", "image_name  attribute_labels",
              [(m, [f"{v:2d}" for v in truth[m]["attrs"]]) for m in names])
  _write_list(anno / "list_bbox.txt", "image_name  x_1  y_1  x_2  y_2",
              [(m, [f"{v:03d}" for v in truth[m]["bbox"]]) for m in names])
  _write_list(anno / "list_landmarks.txt", "image_name  clothes_type  variation_type  "
              "landmark_visibility_1  landmark_location_x_1  landmark_location_y_1 ...",
              [(m, truth[m]["lm_values"]) for m in names])
  _write_list(root / "Eval" / "list_eval_partition.txt", "image_name  evaluation_status",
              [(m, [s]) for m, s in zip(names, status)])
  return names, truth


def write_inshop(root, item_file=True):
  """A tiny In-shop Clothes Retrieval benchmark: items 1-3 train, 4-6 query/gallery."""
  rng = np.random.default_rng(1)
  rows, truth = [], {}
  plan = {1: ["train"] * 2, 2: ["train"] * 3, 3: ["train"], 4: ["query", "gallery", "gallery"],
          5: ["query", "query", "gallery"], 6: ["query"]}
  for item, statuses in plan.items():
    for j, status in enumerate(statuses):
      name = f"img/WOMEN/Dresses/id_{item:08d}/{j + 1:02d}_1_front.jpg"
      _image(root / name, item * 30 + j, size=(32, 32))
      clothes = 1 + (item + j) % 3
      lm_values, lm = _landmark_row(rng, clothes)
      truth[name] = dict(item=item, status=status, clothes=clothes, lm_values=lm_values, lm=lm,
                         bbox=[1 + j, 2, 30, 31 - item])
      rows.append(name)
  anno = root / "Anno"
  _write_list(root / "Eval" / "list_eval_partition.txt", "image_name item_id evaluation_status",
              [(m, [f"id_{truth[m]['item']:08d}", truth[m]["status"]]) for m in rows])
  _write_list(anno / "list_bbox_inshop.txt", "image_name  clothes_type  pose_type  x_1 y_1 x_2 y_2",
              [(m, [str(truth[m]["clothes"]), "1"] + [f"{v:03d}" for v in truth[m]["bbox"]])
               for m in rows])
  _write_list(anno / "list_landmarks_inshop.txt", "image_name  clothes_type  variation_type ...",
              [(m, truth[m]["lm_values"]) for m in rows])
  if item_file:  # the official file: count, then ids; no header; items in id order (7 unused)
    with open(anno / "list_item_inshop.txt", "w") as f:
      f.write("7\n" + "".join(f"id_{i:08d}\n" for i in range(1, 8)))
  return rows, truth


def write_fld(root):
  """A tiny Fashion Landmark Detection benchmark; two rows padded to 8 triples."""
  rng = np.random.default_rng(2)
  names, truth = [], {}
  for i in range(6):
    name = f"img/img_{i + 1:08d}.jpg"
    _image(root / name, 40 * i, size=(50, 36))
    clothes = 1 + i % 3
    lm_values, lm = _landmark_row(rng, clothes, pad=i in (0, 1))
    truth[name] = dict(lm_values=lm_values, lm=lm, bbox=[i, i, 40, 30],
                       status=("train", "train", "train", "val", "test", "test")[i])
    names.append(name)
  anno = root / "Anno"
  _write_list(anno / "list_landmarks.txt", "image_name clothes_type variation_type ...",
              [(m, truth[m]["lm_values"]) for m in names])
  _write_list(anno / "list_bbox.txt", "image_name x_1 y_1 x_2 y_2",
              [(m, [f"{v:03d}" for v in truth[m]["bbox"]]) for m in names])
  _write_list(root / "Eval" / "list_eval_partition.txt", "image_name evaluation_status",
              [(m, [truth[m]["status"]]) for m in names])
  return names, truth


def read_all(out):
  seen = {}
  for path in sorted(out.glob("*.tfrecord")):
    for record in tfrecord.read_records(str(path)):
      ex = df.parse_example(tfrecord.decode_example(record))
      seen[ex["id"]] = ex
  return seen


def _check_landmarks(ex, lm):
  clothes, variation, xy, vis, present = lm
  assert ex["category_type"] == clothes and ex["variation_type"] == variation
  np.testing.assert_array_equal(ex["landmarks"], xy)
  np.testing.assert_array_equal(ex["landmark_visibility"], vis)
  np.testing.assert_array_equal(ex["landmark_present"], present)


def test_category_benchmark_reads_every_field_exactly(tmp_path):
  names, truth = write_category(tmp_path / "src")
  info = df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="category", shards=2,
                    progress=False)
  assert {s: v["num_examples"] for s, v in info["splits"].items()} == {
      "train": 5, "validation": 2, "test": 2}
  assert info["category_names"] == [c for c, _ in CATEGORIES]
  assert info["category_types"] == [t for _, t in CATEGORIES]
  assert info["attribute_names"] == [a for a, _ in ATTRIBUTES]  # "abstract chevron" kept whole
  assert info["attribute_types"] == [t for _, t in ATTRIBUTES]
  assert info["attribute_type_names"] == list(fashion.ATTRIBUTE_TYPE_NAMES)
  assert info["flip_pairs"] == [[0, 1], [2, 3], [4, 5], [6, 7]]
  assert info["annotation_stats"]["num_unknown_attribute_values"] == sum(
      int((t["attrs"] == 0).sum()) for t in truth.values())
  assert info["annotation_stats"]["num_type_mismatch"] == 0
  assert info["unpartitioned"] == {"list_bbox.txt": 0, "list_landmarks.txt": 0,
                                   "list_category_img.txt": 0, "list_attr_img.txt": 0}
  on_disk = json.load(open(tmp_path / "out" / "dataset_info.json"))
  assert on_disk["file_counts"]["train-00000-of-00002.tfrecord"] == 2
  assert on_disk["splits"]["train"]["category_counts"] == [2, 1, 1, 1]
  seen = read_all(tmp_path / "out")
  assert sorted(seen) == sorted(names)
  for name in names:
    ex, t = seen[name], truth[name]
    assert ex["split"] == t["split"]
    assert ex["category"] == t["category"] and ex["item_id"] == -1
    assert ex["attributes"].dtype == np.int8
    np.testing.assert_array_equal(ex["attributes"], t["attrs"])
    np.testing.assert_array_equal(ex["bbox"], t["bbox"])
    _check_landmarks(ex, t["lm"])
    assert ex["image"] == (tmp_path / "src" / name).read_bytes()
    assert ex["image_size"].tolist() == [30, 40]


def test_anno_coarse_folder_of_the_newer_release(tmp_path):
  write_category(tmp_path / "src")
  os.rename(tmp_path / "src" / "Anno", tmp_path / "src" / "Anno_coarse")
  info = df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="category", shards=1,
                    progress=False)
  assert info["splits"]["train"]["num_examples"] == 5


def test_inshop_items_query_and_gallery(tmp_path):
  rows, truth = write_inshop(tmp_path / "src")
  info = df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="inshop", shards=3,
                    progress=False)
  assert info["item_names"] == [f"id_{i:08d}" for i in range(1, 8)] and info["num_items"] == 7
  assert {s: v["num_examples"] for s, v in info["splits"].items()} == {
      "train": 6, "query": 4, "gallery": 3}
  assert info["retrieval"] == {"num_query": 4, "num_gallery": 3, "num_query_items": 3,
                               "num_gallery_items": 2, "num_query_without_gallery": 1}
  assert info["splits"]["train"]["num_items"] == 3
  assert "attributes" not in info["features"]
  seen = read_all(tmp_path / "out")
  assert sorted(seen) == sorted(rows)
  for name in rows:
    ex, t = seen[name], truth[name]
    assert ex["item_id"] == t["item"] - 1  # index in list_item_inshop.txt
    assert ex["split"] == t["status"] and ex["category"] == -1 and "attributes" not in ex
    np.testing.assert_array_equal(ex["bbox"], t["bbox"])
    _check_landmarks(ex, t["lm"])


def test_inshop_without_item_file_uses_sorted_ids(tmp_path):
  write_inshop(tmp_path / "src", item_file=False)
  info = df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="inshop", shards=1,
                    progress=False)
  assert info["item_names"] == [f"id_{i:08d}" for i in range(1, 7)]


def test_landmark_benchmark_variable_and_padded_rows(tmp_path):
  names, truth = write_fld(tmp_path / "src")
  info = df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="landmarks",
                    shards=1, progress=False)
  assert info["annotation_stats"]["num_padded_landmark_rows"] == 2  # rows 0 (upper), 1 (lower)
  assert {s: v["num_examples"] for s, v in info["splits"].items()} == {
      "train": 3, "validation": 1, "test": 2}
  seen = read_all(tmp_path / "out")
  for name in names:
    _check_landmarks(seen[name], truth[name]["lm"])
    np.testing.assert_array_equal(seen[name]["bbox"], truth[name]["bbox"])
    assert seen[name]["category"] == -1 and seen[name]["item_id"] == -1
    assert seen[name]["image_size"].tolist() == [36, 50]


@pytest.mark.parametrize("clothes,slots", [(1, (0, 1, 2, 3, 6, 7)), (2, (4, 5, 6, 7)),
                                           (3, tuple(range(8)))])
def test_landmark_rows_land_in_canonical_slots(clothes, slots):
  n = len(slots)
  fields = [str(clothes), "2"] + sum(([str(j % 3), str(10 + j), str(20 + j)] for j in range(n)), [])
  lm = df.parse_landmarks("f.txt", 3, fields)
  assert lm.present.tolist() == [int(s in slots) for s in range(8)]
  for j, slot in enumerate(slots):
    assert lm.xy[slot].tolist() == [10 + j, 20 + j] and lm.visibility[slot] == j % 3
  assert all(lm.visibility[s] == df.TRUNCATED and not lm.xy[s].any()
             for s in range(8) if s not in slots)
  assert [df.LANDMARK_NAMES[s] for s in slots][-2:] == ["left_hem", "right_hem"]


def test_flip_pairs_swap_left_and_right():
  for a, b in df.FLIP_PAIRS:
    assert df.LANDMARK_NAMES[a].replace("left", "right") == df.LANDMARK_NAMES[b]
  assert sorted(sum(df.FLIP_PAIRS, ())) == list(range(8))


def _replace_line(path, number, text):
  lines = open(path).read().split("\n")
  lines[number - 1] = text
  open(path, "w").write("\n".join(lines))


def _row(path, number):
  return open(path).read().split("\n")[number - 1].split()


def _set(fields, index, value):
  """The row with field `index` replaced."""
  return " ".join(fields[:index] + [value] + fields[index + 1:])


def _cut(n):
  return lambda f: " ".join(f[:-n])


BBOX, ATTR, LM = "Anno/list_bbox.txt", "Anno/list_attr_img.txt", "Anno/list_landmarks.txt"
CAT, PART = "Anno/list_category_img.txt", "Eval/list_eval_partition.txt"
CATEGORY_CASES = [
    # (file, line, new line from the old fields, message)
    (BBOX, 4, _cut(1), "expected an image name and x_1 y_1 x_2 y_2"),
    (BBOX, 5, lambda f: _set(f, 3, "x"), "bbox x_2 must be an integer"),
    (BBOX, 6, lambda f: f"{f[0]} 30 2 10 4", "second corner"),
    (ATTR, 3, _cut(1), "expected an image name and 6 attribute"),
    (ATTR, 4, lambda f: _set(f, 3, "2"), "'abstract chevron'.*got '2'"),
    (ATTR, 1, lambda f: "10", "count line says 10 images but the file lists 9"),
    ("Anno/list_attr_cloth.txt", 5, lambda f: "abstract chevron 7",
     "type of attribute 'abstract chevron'"),
    ("Anno/list_attr_cloth.txt", 1, lambda f: "5", "count line says 5 attributes"),
    ("Anno/list_category_cloth.txt", 3, lambda f: "Anorak x", "type of category 'Anorak' must be"),
    ("Anno/list_category_cloth.txt", 1, lambda f: "3", "count line says 3 categories"),
    (CAT, 3, lambda f: f"{f[0]} 5", "category label must be in 1..4"),
    (CAT, 4, lambda f: f"{f[0]} one", "category label must be an integer"),
    (CAT, 1, lambda f: "nine", "image count must be an integer"),
    (LM, 3, _cut(3), "has 6 landmarks: expected 21 fields"),             # upper body
    (LM, 5, _cut(3), "has 4 landmarks: expected 15 fields"),             # lower body
    (LM, 6, lambda f: " ".join(f + ["0", "1", "2"]), "has 8 landmarks: expected 27"),  # full
    (LM, 4, lambda f: _set(f, 1, "4"), "clothes type must be one of"),
    (LM, 4, lambda f: _set(f, 3, "5"), "left_collar visibility"),
    (LM, 4, lambda f: _set(f, 5, "1.5"), "left_collar y must be"),
    (PART, 5, lambda f: f"{f[0]} validation", "status must be one of"),
    (PART, 6, lambda f: f"{f[0]}", "expected an image name and evaluation"),
]


@pytest.mark.parametrize("file,line,edit,message", CATEGORY_CASES)
def test_malformed_lines_name_file_and_line(tmp_path, file, line, edit, message):
  write_category(tmp_path / "src")
  path = tmp_path / "src" / file
  _replace_line(path, line, edit(_row(path, line)))
  with pytest.raises(AnnotationError, match=message) as e:
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="category",
               progress=False)
  assert e.value.path.endswith(os.path.basename(file))
  assert e.value.line == (1 if "count line" in message else line)
  assert f"{os.path.basename(file)}, line {e.value.line}:" in str(e.value)
  assert not (tmp_path / "out").exists()  # nothing written before everything is checked


@pytest.mark.parametrize("file", ["Anno/list_bbox.txt", "Anno/list_landmarks.txt",
                                  "Anno/list_category_img.txt", "Anno/list_attr_img.txt"])
def test_partitioned_image_missing_from_a_list(tmp_path, file):
  names, _ = write_category(tmp_path / "src")
  lines = open(tmp_path / "src" / file).read().split("\n")
  lines = [lines[0].replace("9", "8")] + [ln for ln in lines[1:] if not ln.startswith(names[4])]
  open(tmp_path / "src" / file, "w").write("\n".join(lines))
  message = f"{names[4]} has no row in .*{os.path.basename(file)}"
  with pytest.raises(AnnotationError, match=message) as e:
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="category", progress=False)
  assert e.value.path.endswith("list_eval_partition.txt") and e.value.line == 7


def test_duplicate_row(tmp_path):
  write_category(tmp_path / "src")
  path = tmp_path / "src" / "Anno" / "list_landmarks.txt"
  _replace_line(path, 7, " ".join(_row(path, 6)))
  with pytest.raises(AnnotationError, match=r"listed twice \(first on line 6\)") as e:
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="category", progress=False)
  assert e.value.line == 7


def test_inshop_malformed_lines(tmp_path):
  rows, _ = write_inshop(tmp_path / "src")
  part = tmp_path / "src" / "Eval" / "list_eval_partition.txt"
  _replace_line(part, 4, f"{rows[1]} id_00000009 train")
  with pytest.raises(AnnotationError, match="item id_00000009 .* not listed") as e:
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="inshop", progress=False)
  assert e.value.line == 4
  _replace_line(part, 4, f"{rows[1]} id_00000001 val")
  with pytest.raises(AnnotationError, match=r"one of \['train', 'query', 'gallery'\]"):
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="inshop", progress=False)
  _replace_line(part, 4, f"{rows[1]} id_00000001 train")
  bbox = tmp_path / "src" / "Anno" / "list_bbox_inshop.txt"
  _replace_line(bbox, 5, " ".join(_row(bbox, 5)[:1] + ["1", "7"] + _row(bbox, 5)[3:]))
  with pytest.raises(AnnotationError, match="pose type must be one of") as e:
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="inshop", progress=False)
  assert e.value.line == 5
  _replace_line(bbox, 5, " ".join(_row(bbox, 5)[:3]))
  with pytest.raises(AnnotationError, match="expected an image name and clothes type, pose type"):
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="inshop", progress=False)
  write_inshop(tmp_path / "src2")
  items = tmp_path / "src2" / "Anno" / "list_item_inshop.txt"
  _replace_line(items, 3, "id_00000001")
  with pytest.raises(AnnotationError, match="item id_00000001 listed twice") as e:
    df.convert(str(tmp_path / "src2"), str(tmp_path / "out"), benchmark="inshop", progress=False)
  assert e.value.path.endswith("list_item_inshop.txt") and e.value.line == 3


def test_padding_must_be_zeros(tmp_path):
  fields = ["2", "1"] + ["0", "5", "6"] * 4 + ["0", "0", "0"] * 3 + ["0", "0", "1"]
  with pytest.raises(AnnotationError, match="has 4 landmarks: expected 15 fields"):
    df.parse_landmarks("f.txt", 9, fields)


def test_missing_images_and_files(tmp_path):
  names, _ = write_category(tmp_path / "src")
  os.remove(tmp_path / "src" / names[2])
  with pytest.raises(MissingDataError, match=names[2]):
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="category", progress=False)
  info = df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="category",
                    shards=1, progress=False, skip_missing=True)
  assert info["splits"]["train"]["num_examples"] == 4
  assert info["splits"]["train"]["skipped_examples"] == [names[2]]
  os.remove(tmp_path / "src" / "Anno" / "list_attr_cloth.txt")
  with pytest.raises(MissingDataError, match="list_attr_cloth.txt"):
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="category", progress=False)
  os.rename(tmp_path / "src" / "Anno", tmp_path / "src" / "Annotations")
  with pytest.raises(MissingDataError, match="no Anno/ folder"):
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="landmarks",
               progress=False)
  with pytest.raises(MissingDataError, match="not found"):
    df.convert(str(tmp_path / "nowhere"), str(tmp_path / "out"), benchmark="inshop", progress=False)
  with pytest.raises(ValueError, match="benchmark must be one of"):
    df.convert(str(tmp_path / "src"), str(tmp_path / "out"), benchmark="attributes")


def test_cli_converts_each_benchmark_and_checks_its_options(tmp_path, capsys):
  from hcjax import cli  # pylint: disable=g-import-not-at-top
  write_category(tmp_path / "cat")
  assert cli.main(["convert", "deepfashion", "--benchmark", "category", "--src",
                   str(tmp_path / "cat"), "--out", str(tmp_path / "out"), "--shards", "2",
                   "--quiet"]) == 0
  assert "deepfashion (category)" in capsys.readouterr().out
  assert os.path.exists(tmp_path / "out" / "dataset_info.json")
  with pytest.raises(SystemExit):
    cli.main(["convert", "deepfashion", "--src", str(tmp_path / "cat"), "--out", "x"])
  assert "needs --benchmark" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cli.main(["convert", "voc", "--benchmark", "category", "--src", "x", "--out", "y"])
  assert "only for deepfashion" in capsys.readouterr().err

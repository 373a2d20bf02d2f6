"""UCF-101 / Vimeo-90K / DVF test set converter: exact triplet arithmetic, static filter, splits,
clear errors, CLI. Sources are written in the original formats (mpeg4 .avi with PyAV, frame
folders, Vimeo-90K's sequences/, DVF's numbered folders)."""

import io
import json

import av
import numpy as np
import pytest
from PIL import Image
from skimage import data as photos

from hcjax import cli
from hcjax.data import AnnotationError, ImageDecodeError, MissingDataError, tfrecord, transforms
from hcjax.data.converters import ucf101

CLASSES = ("ApplyEyeMakeup", "Basketball", "YoYo")


# --- writing sources in the original formats ------------------------------------------------------

def coded_frame(index, h=24, w=32):
  """A random texture rolled 5 px per frame (so frames differ) with the index in a corner."""
  texture = np.random.default_rng(7).integers(0, 256, (h, w + 200, 3), dtype=np.uint8)
  frame = np.ascontiguousarray(texture[:, 5 * index:5 * index + w])
  frame[:4, :4] = index
  return frame


def frame_index(encoded):
  return int(transforms.decode_image(encoded)[1, 1, 0])


def write_frames(folder, frames, ext=".png", name="frame_{:04d}"):
  folder.mkdir(parents=True, exist_ok=True)
  for i, frame in enumerate(frames):
    Image.fromarray(frame).save(folder / (name.format(i + 1) + ext))


def write_avi(path, frames):
  """An MPEG-4 part 2 (XviD-tagged) .avi at 25 fps, as UCF-101's."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), "w", format="avi") as container:
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
    stream.pix_fmt = "yuv420p"
    stream.bit_rate = 4_000_000
    stream.codec_context.codec_tag = "XVID"
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                             format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def video(cls, group, clip):
  return f"{cls}/v_{cls}_g{group:02d}_c{clip:02d}"


def write_lists(root, train, test, number=1, newline="\n"):
  """ucfTrainTestlist/ as in the official zip (CRLF there: newline="\\r\\n")."""
  lists = root / "ucfTrainTestlist"
  lists.mkdir(parents=True, exist_ok=True)
  (lists / "classInd.txt").write_bytes(
      "".join(f"{i + 1} {c}{newline}" for i, c in enumerate(CLASSES)).encode())
  (lists / f"trainlist{number:02d}.txt").write_bytes("".join(
      f"{v}.avi {CLASSES.index(v.split('/')[0]) + 1}{newline}" for v in train).encode())
  (lists / f"testlist{number:02d}.txt").write_bytes(
      "".join(f"{v}.avi{newline}" for v in test).encode())
  return lists


def read_split(out, split):
  examples = []
  for path in sorted(out.glob(f"{split}-*.tfrecord")):
    examples += [tfrecord.decode_example(r) for r in tfrecord.read_records(str(path))]
  return examples


def ids(examples):
  return [ex["id"][0].decode() for ex in examples]


def indices(ex):
  return tuple(frame_index(ex[k][0]) for k in ("frame0", "frame1", "frame2"))


# --- UCF-101 frame folders: exact arithmetic ------------------------------------------------------

@pytest.mark.parametrize("n,stride,gap", [(14, 3, 2), (20, 8, 1), (7, 1, 3), (6, 4, 3)])
def test_triplet_arithmetic_is_exact(n, stride, gap):
  got = list(ucf101._triplets(range(n), stride, gap))  # pylint: disable=protected-access
  want = [(i, i, i + gap, i + 2 * gap) for i in range(0, n, stride) if i + 2 * gap < n]
  assert got == want
  assert ucf101.triplet_starts(n, stride, gap) == [w[0] for w in want]


@pytest.mark.parametrize("stride,gap", [(3, 2), (8, 1), (1, 1), (2, 4)])
def test_frame_folders_give_exactly_the_frames_asked_for(tmp_path, stride, gap):
  train = [video("Basketball", 8, 1), video("ApplyEyeMakeup", 9, 2)]
  test = [video("YoYo", 1, 1)]
  lengths = {train[0]: 14, train[1]: 9, test[0]: 11}
  for v, n in lengths.items():
    write_frames(tmp_path / "UCF-101" / v, [coded_frame(i) for i in range(n)])
  write_lists(tmp_path, train, test)
  info = ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "out"), shards=2,
                        stride=stride, gap=gap, progress=False)
  for split, videos in (("train", train), ("test", test)):
    examples = read_split(tmp_path / "out", split)
    want = [(v, i) for v in videos for i in range(0, lengths[v] - 2 * gap, stride)]
    assert ids(examples) == [f"{v}/{i:06d}" for v, i in want]
    for ex, (v, i) in zip(examples, want):
      assert indices(ex) == (i, i + gap, i + 2 * gap)
      folder = tmp_path / "UCF-101" / v
      for k, key in enumerate(("frame0", "frame1", "frame2")):  # the files' own bytes
        assert ex[key][0] == (folder / f"frame_{i + k * gap + 1:04d}.png").read_bytes()
      assert ex["height"].tolist() == [24] and ex["width"].tolist() == [32]
      assert "motion_mask" not in ex
    assert info["splits"][split]["num_examples"] == len(want)
    assert info["stats"][split]["triplets"] == len(want)
    assert info["stats"][split]["dropped_static"] == 0
  assert info["extraction"]["train"] == {"stride": stride, "gap": gap, "static_psnr": 30.0,
                                         "max_per_video": None}
  on_disk = json.loads((tmp_path / "out" / "dataset_info.json").read_text())
  assert on_disk["dataset"] == "ucf101" and on_disk["layout"] == "ucf101"
  assert sum(on_disk["file_counts"].values()) == sum(
      s["num_examples"] for s in on_disk["splits"].values())


def test_frames_sorted_by_name_with_numbers_as_numbers_and_jpeg_kept(tmp_path):
  v = video("YoYo", 8, 1)
  folder = tmp_path / "UCF-101" / v
  write_frames(folder, [coded_frame(i) for i in range(12)], name="img_{}")  # img_1 ... img_12
  (folder / "notes.txt").write_text("not a frame")
  write_lists(tmp_path, [v], [])
  (tmp_path / "ucfTrainTestlist" / "testlist01.txt").write_text(f"{video('YoYo', 1, 1)}.avi\n")
  write_frames(tmp_path / "UCF-101" / video("YoYo", 1, 1),
               [coded_frame(i, 32, 40) for i in range(5)], ext=".jpg")
  ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "out"), stride=5, progress=False)
  # img_10 sorted before img_2 would make the first triplet (0, 9, 10).
  assert [indices(ex) for ex in read_split(tmp_path / "out", "train")] == [(0, 1, 2), (5, 6, 7)]
  test = read_split(tmp_path / "out", "test")
  assert len(test) == 1 and test[0]["frame0"][0][:2] == b"\xff\xd8"  # JPEG bytes as they were
  assert test[0]["height"].tolist() == [32] and test[0]["width"].tolist() == [40]


def test_static_threshold_is_psnr_of_the_outer_frames(tmp_path):
  # Frame t = base + t: frames two apart differ by exactly 2 everywhere, PSNR 42.11 dB.
  base = np.random.default_rng(0).integers(0, 200, (16, 24, 3), dtype=np.uint8)
  v = video("Basketball", 9, 1)
  write_frames(tmp_path / "UCF-101" / v, [base + t for t in range(10)])
  write_lists(tmp_path, [v], [video("YoYo", 1, 1)])
  write_frames(tmp_path / "UCF-101" / video("YoYo", 1, 1), [base] * 3)  # identical: always static
  expected = 10 * np.log10(255 ** 2 / 4)
  assert ucf101.psnr(base, base + 2) == pytest.approx(expected)
  src = str(tmp_path / "UCF-101")
  for threshold, kept in ((expected - 0.01, 0), (expected + 0.01, 4), (None, 4), ("auto", 0)):
    out = tmp_path / f"out_{threshold}"
    info = ucf101.convert(src, str(out), stride=2, static_psnr=threshold, progress=False)
    assert info["splits"]["train"]["num_examples"] == kept
    assert info["stats"]["train"]["dropped_static"] == 4 - kept
    assert info["stats"]["train"]["candidates"] == 4
    assert info["splits"]["test"]["num_examples"] == (1 if threshold is None else 0)


def test_max_triplets_per_video_keeps_an_even_spread(tmp_path):
  v = video("YoYo", 9, 1)
  frames = [coded_frame(i) for i in range(30)]
  frames[6] = frames[4].copy()  # triplet 4 = (4, 5, 6): outer frames equal -> static
  write_frames(tmp_path / "UCF-101" / v, frames)
  write_lists(tmp_path, [v], [video("YoYo", 1, 1)])
  write_frames(tmp_path / "UCF-101" / video("YoYo", 1, 1), frames[:3])
  info = ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "out"), stride=2,
                        max_triplets_per_video=4, progress=False)
  kept = [0, 2, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26]  # 14 starts, 4 is static
  assert [indices(ex)[0] for ex in read_split(tmp_path / "out", "train")] == [
      kept[j * len(kept) // 4] for j in range(4)]
  assert info["stats"]["train"] == {
      "sources": 1, "candidates": 14, "dropped_static": 1, "dropped_cap": 9, "too_short": 0,
      "shorter_than_header": 0, "triplets": 4}


# --- UCF-101 .avi videos --------------------------------------------------------------------------

def test_avi_videos_are_decoded_and_static_ones_dropped(tmp_path):
  photo = photos.astronaut()[::4, ::4]  # 128x128
  moving = [photo[20:68, 3 * i:3 * i + 64] for i in range(20)]  # pans 3 px a frame
  still = [photo[60:108, 30:94]] * 12
  train = [video("Basketball", 8, 1), video("Basketball", 8, 2)]
  write_avi(tmp_path / "UCF-101" / f"{train[0]}.avi", moving)
  write_avi(tmp_path / "UCF-101" / f"{train[1]}.avi", still)
  write_avi(tmp_path / "UCF-101" / f"{video('YoYo', 1, 1)}.avi", moving[:9])
  write_lists(tmp_path, train, [video("YoYo", 1, 1)], newline="\r\n")
  info = ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "out"), shards=2,
                        progress=False)
  examples = read_split(tmp_path / "out", "train")
  assert ids(examples) == [f"{train[0]}/{i:06d}" for i in (0, 8, 16)]
  assert info["stats"]["train"]["dropped_static"] == 2  # the still video's starts 0 and 8
  assert info["file_counts"] == {"train-00000-of-00002.tfrecord": 3,
                                 "train-00001-of-00002.tfrecord": 0,
                                 "test-00000-of-00001.tfrecord": 1}
  for ex, start in zip(examples, (0, 8, 16)):
    assert ex["height"].tolist() == [48] and ex["width"].tolist() == [64]
    for k, key in enumerate(("frame0", "frame1", "frame2")):
      assert Image.open(io.BytesIO(ex[key][0])).format == "PNG"
      frame = transforms.decode_image(ex[key][0]).astype(np.float32)
      errors = [np.abs(frame - f).mean() for f in moving]  # lossy codec: approximately
      assert int(np.argmin(errors)) == start + k and errors[start + k] < 8


def test_truncated_video_is_converted_as_far_as_it_goes_and_counted(tmp_path):
  photo = photos.astronaut()[::4, ::4]
  v = video("YoYo", 8, 1)
  path = tmp_path / "UCF-101" / f"{v}.avi"
  write_avi(path, [photo[20:68, 3 * i:3 * i + 64] for i in range(30)])
  path.write_bytes(path.read_bytes()[:len(path.read_bytes()) * 2 // 3])
  write_lists(tmp_path, [v], [])
  info = _convert_train_only(tmp_path)
  assert info["stats"]["train"]["shorter_than_header"] == 1
  assert info["stats"]["train"]["candidates"] < 4  # 30 frames would give starts 0, 8, 16, 24


def test_unreadable_video_is_named(tmp_path):
  v = video("YoYo", 8, 1)
  path = tmp_path / "UCF-101" / f"{v}.avi"
  path.parent.mkdir(parents=True)
  path.write_bytes(b"RIFF" + bytes(range(256)) * 8)
  write_lists(tmp_path, [v], [])
  with pytest.raises(ImageDecodeError, match="cannot open the video") as e:
    _convert_train_only(tmp_path)
  assert str(path) in str(e.value)


def _convert_train_only(tmp_path):
  (tmp_path / "ucfTrainTestlist" / "testlist01.txt").write_text(f"{video('YoYo', 1, 1)}.avi\n")
  write_frames(tmp_path / "UCF-101" / video("YoYo", 1, 1), [coded_frame(i) for i in range(3)])
  return ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "out"), progress=False)


# --- split lists and their errors -----------------------------------------------------------------

def test_official_split_lists_are_honoured(tmp_path):
  everything = [video(c, g, k) for c in CLASSES for g in (1, 2, 8, 9) for k in (1, 2)]
  for v in everything:
    write_frames(tmp_path / "UCF-101" / v, [coded_frame(i) for i in range(3)])
  train2 = [v for v in everything if "_g08_" in v or "_g01_" in v][:-1]  # one video left out
  test2 = [v for v in everything if "_g02_" in v]
  write_lists(tmp_path, [everything[-1]], [everything[0]], number=1)
  write_lists(tmp_path, train2, test2, number=2, newline="\r\n")
  info = ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "out"), split_number=2,
                        progress=False)
  assert ids(read_split(tmp_path / "out", "train")) == [f"{v}/000000" for v in train2]
  assert ids(read_split(tmp_path / "out", "test")) == [f"{v}/000000" for v in test2]
  assert info["lists"]["train"].endswith("trainlist02.txt") and info["split_number"] == 2
  # --splits elsewhere; a list folder inside --src is found too.
  moved = tmp_path / "elsewhere"
  (tmp_path / "ucfTrainTestlist").rename(moved)
  with pytest.raises(MissingDataError, match="ucfTrainTestlist"):
    ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "o2"), progress=False)
  info = ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "o2"), splits_dir=str(moved),
                        progress=False)
  assert info["splits"]["train"]["num_examples"] == 1


@pytest.mark.parametrize("line,message", [
    ("Basketball/v_Basketball_g08_c01.avi 2 extra", "expected `Class/v_Class_gXX_cYY.avi"),
    ("v_Basketball_g08_c01.avi 2", "expected a video such as"),
    ("Basketball/v_Basketball_g08_c01.avi two", "the class label must be an integer"),
    ("Basketball/v_Basketball_g08_c01.avi 3", "label 3 is class 'YoYo'"),
    ("Dancing/v_Dancing_g08_c01.avi", "class 'Dancing' is not in classInd.txt"),
    ("YoYo/v_YoYo_g09_c01.avi 3", "listed twice"),
    ("YoYo/v_YoYo_g01_c01.avi 3", "is also in"),
])
def test_malformed_list_lines_name_file_and_line(tmp_path, line, message):
  vs = [video("YoYo", 9, 1), video("YoYo", 1, 1)]
  for v in vs:
    write_frames(tmp_path / "UCF-101" / v, [coded_frame(i) for i in range(3)])
  lists = write_lists(tmp_path, [vs[0], vs[0]], [vs[1]])
  train = lists / "trainlist01.txt"
  content = train.read_text().splitlines()
  train.write_text(f"{content[0]}\n\n{line}\n")
  where = "testlist01.txt, line 1" if message == "is also in" else "trainlist01.txt, line 3"
  with pytest.raises(AnnotationError, match=message) as e:
    ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "out"), progress=False)
  assert where in str(e.value)


def test_missing_video_names_list_and_line(tmp_path):
  v = video("YoYo", 9, 1)
  write_frames(tmp_path / "UCF-101" / v, [coded_frame(i) for i in range(3)])
  write_lists(tmp_path, [v, video("YoYo", 9, 2)], [])
  with pytest.raises(MissingDataError, match=r"trainlist01.txt, line 2: YoYo/v_YoYo_g09_c02.avi "
                     r"is missing"):
    _convert_train_only(tmp_path)
  assert not (tmp_path / "out").exists()  # checked before anything is written


def test_frames_of_different_sizes_are_an_error_naming_the_file(tmp_path):
  v = video("YoYo", 9, 1)
  frames = [coded_frame(i) for i in range(5)]
  frames[2] = coded_frame(2, 24, 30)
  write_frames(tmp_path / "UCF-101" / v, frames)
  write_lists(tmp_path, [v], [])
  with pytest.raises(ImageDecodeError, match="30x24 but .*frame_0001.png is 32x24") as e:
    _convert_train_only(tmp_path)
  assert str(tmp_path / "UCF-101" / v / "frame_0003.png") in str(e.value)


def test_corrupt_frame_file_is_named(tmp_path):
  v = video("YoYo", 9, 1)
  write_frames(tmp_path / "UCF-101" / v, [coded_frame(i) for i in range(3)])
  bad = tmp_path / "UCF-101" / v / "frame_0002.png"
  bad.write_bytes(bad.read_bytes()[:60])
  write_lists(tmp_path, [v], [])
  with pytest.raises(ImageDecodeError, match="cannot decode image") as e:
    _convert_train_only(tmp_path)
  assert str(bad) in str(e.value)


# --- Vimeo-90K ------------------------------------------------------------------------------------

def write_vimeo(root, train, test):
  for k, seq in enumerate(train + test):
    folder = root / "sequences" / seq
    if k == 1:  # an identical triplet: kept unless a threshold is given
      write_frames(folder, [coded_frame(9)] * 3, name="im{}")
    else:
      write_frames(folder, [coded_frame(3 * k + i) for i in range(3)], name="im{}")
  (root / "tri_trainlist.txt").write_text("\n".join(train) + "\n\n")
  (root / "tri_testlist.txt").write_text("\n".join(test))  # no newline at the end


def test_vimeo_triplets(tmp_path):
  train, test = ["00001/0001", "00001/0002", "00002/0001"], ["00003/0007"]
  write_vimeo(tmp_path / "vimeo_triplet", train, test)
  src = str(tmp_path / "vimeo_triplet")
  info = ucf101.convert(src, str(tmp_path / "out"), shards=2, progress=False)
  assert info["layout"] == "vimeo" and info["dataset"] == "vimeo90k_triplet"
  got = read_split(tmp_path / "out", "train")
  assert ids(got) == train and ids(read_split(tmp_path / "out", "test")) == test
  for ex, seq in zip(got, train):
    for k in (1, 2, 3):
      assert ex[f"frame{k - 1}"][0] == (tmp_path / "vimeo_triplet" / "sequences" / seq /
                                        f"im{k}.png").read_bytes()
  info = ucf101.convert(src, str(tmp_path / "out2"), static_psnr=30, progress=False)
  assert ids(read_split(tmp_path / "out2", "train")) == [train[0], train[2]]
  assert info["stats"]["train"]["dropped_static"] == 1
  with pytest.raises(ucf101.OptionError, match="--stride is only for UCF-101"):
    ucf101.convert(src, str(tmp_path / "out3"), stride=2, progress=False)


@pytest.mark.parametrize("problem", ["malformed", "missing"])
def test_vimeo_errors(tmp_path, problem):
  write_vimeo(tmp_path, ["00001/0001", "00001/0002"], ["00003/0007"])
  if problem == "malformed":
    (tmp_path / "tri_testlist.txt").write_text("00003/0007\n00003 0008\n")
    with pytest.raises(AnnotationError, match=r"tri_testlist.txt, line 2: expected a sequence"):
      ucf101.convert(str(tmp_path), str(tmp_path / "out"), progress=False)
  else:
    (tmp_path / "sequences" / "00001" / "0002" / "im2.png").unlink()
    with pytest.raises(MissingDataError, match=r"tri_trainlist.txt, line 2: 00001/0002 is "
                       r"missing .*im2.png"):
      ucf101.convert(str(tmp_path), str(tmp_path / "out"), progress=False)


# --- DVF's test set -------------------------------------------------------------------------------

def write_dvf(root, numbers, masks=True, mask_root=None, middle="frame_01_gt.png"):
  truth = {}
  for k, n in enumerate(numbers):
    folder = root / str(n)
    folder.mkdir(parents=True)
    for name, i in (("frame_00.png", 0), (middle, 1), ("frame_02.png", 2)):
      Image.fromarray(coded_frame(10 * k + i)).save(folder / name)
    mask = np.zeros((24, 32), np.uint8)
    mask[k:k + 5, 3:9] = 255
    truth[str(n)] = mask
    if masks:
      (mask_root or root).joinpath(str(n)).mkdir(parents=True, exist_ok=True)
      Image.fromarray(mask).save((mask_root or root) / str(n) / "motion_mask.png")
  return truth


def test_dvf_test_set_alone_in_numeric_order_with_masks(tmp_path):
  truth = write_dvf(tmp_path / "ucf101_interp_ours", [1, 11, 101, 21], middle="frame_01.png")
  info = ucf101.convert(str(tmp_path / "ucf101_interp_ours"), str(tmp_path / "out"),
                        progress=False)
  assert info["layout"] == "dvf_test" and list(info["splits"]) == ["test"]
  assert info["motion_masks"] == {"test": True}
  examples = read_split(tmp_path / "out", "test")
  assert ids(examples) == ["1", "11", "21", "101"]
  for ex in examples:
    assert Image.open(io.BytesIO(ex["motion_mask"][0])).mode == "L"
    np.testing.assert_array_equal(transforms.decode_image(ex["motion_mask"][0], 1)[..., 0],
                                  truth[ex["id"][0].decode()])
  with pytest.raises(ucf101.OptionError, match="benchmark"):
    ucf101.convert(str(tmp_path / "ucf101_interp_ours"), str(tmp_path / "o"), static_psnr=30,
                   progress=False)


def test_dvf_test_replaces_the_test_list_and_masks_come_from_their_own_tree(tmp_path):
  v = video("YoYo", 9, 1)
  write_frames(tmp_path / "UCF-101" / v, [coded_frame(i) for i in range(3)])
  write_lists(tmp_path, [v], [])
  (tmp_path / "ucfTrainTestlist" / "testlist01.txt").unlink()  # not needed with --dvf-test
  masks = tmp_path / "motion_masks_ucf101_interp"
  truth = write_dvf(tmp_path / "ucf101_interp_ours", [1, 11], mask_root=masks)
  # Identical outer frames: DVF's triplets are never dropped.
  static = tmp_path / "ucf101_interp_ours" / "1" / "frame_02.png"
  static.write_bytes((tmp_path / "ucf101_interp_ours" / "1" / "frame_00.png").read_bytes())
  info = ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "out"), progress=False,
                        dvf_test=str(tmp_path / "ucf101_interp_ours"))
  assert info["motion_masks"] == {"train": False, "test": True}
  test = read_split(tmp_path / "out", "test")
  assert ids(test) == ["1", "11"] and indices(test[1]) == (10, 11, 12)
  np.testing.assert_array_equal(transforms.decode_image(test[1]["motion_mask"][0], 1)[..., 0],
                                truth["11"])
  (masks / "11" / "motion_mask.png").unlink()
  with pytest.raises(MissingDataError, match="no motion_mask.png for triplet .*11"):
    ucf101.convert(str(tmp_path / "UCF-101"), str(tmp_path / "o2"), progress=False,
                   dvf_test=str(tmp_path / "ucf101_interp_ours"))


def test_dvf_mask_of_another_size_is_named(tmp_path):
  write_dvf(tmp_path / "dvf", [1])
  Image.fromarray(np.zeros((20, 32), np.uint8)).save(tmp_path / "dvf" / "1" / "motion_mask.png")
  with pytest.raises(ImageDecodeError, match="motion mask is 32x20 but .*frame_00.png is 32x24"):
    ucf101.convert(str(tmp_path / "dvf"), str(tmp_path / "out"), progress=False)


# --- workers, CLI ---------------------------------------------------------------------------------

def test_workers_write_the_same_bytes_and_the_cli(tmp_path, capsys):
  vs = [video("YoYo", 9, k) for k in (1, 2, 3)] + [video("YoYo", 1, 1)]
  for k, v in enumerate(vs):
    write_frames(tmp_path / "UCF-101" / v, [coded_frame(i + k) for i in range(9 + k)])
  write_lists(tmp_path, vs[:3], vs[3:])
  src = str(tmp_path / "UCF-101")
  assert cli.main(["convert", "ucf101", "--src", src, "--out", str(tmp_path / "a"), "--quiet",
                   "--stride", "2", "--shards", "2"]) == 0
  assert "ucf101 -> " in capsys.readouterr().out
  assert cli.main(["convert", "ucf101", "--src", src, "--out", str(tmp_path / "b"), "--quiet",
                   "--stride", "2", "--shards", "2", "--workers", "2"]) == 0
  names = sorted(p.name for p in (tmp_path / "a").iterdir())
  assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and len(names) == 4
  for name in names:
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
  # A user error is one line; an option that does not apply is a usage error.
  assert cli.main(["convert", "ucf101", "--src", str(tmp_path / "nope"), "--out",
                   str(tmp_path / "c")]) == 2
  assert "hcjax: error: --src folder not found" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    cli.main(["convert", "voc", "--src", src, "--out", str(tmp_path / "c"), "--stride", "2"])
  assert e.value.code == 2 and "--stride is only for ucf101" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cli.main(["convert", "ucf101", "--src", src, "--out", str(tmp_path / "c"), "--layout",
              "vimeo", "--gap", "2"])
  assert "--gap is only for UCF-101 videos" in capsys.readouterr().err

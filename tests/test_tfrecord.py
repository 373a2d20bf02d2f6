"""TFRecord framing, CRCs, GZIP, Example codec, and robustness to corrupt files."""

import gzip
import os
import random
import struct
import tracemalloc

import numpy as np
import pytest

from hcjax.data import CorruptRecordError, tfrecord

# The first 5 records of the Morris sequence as written by TensorFlow's tf.io.TFRecordWriter
# (the file grain ships as test data): b"1", b"1 1", b"2 1", b"1 2 1 1", b"1 1 1 2 2 1".
TF_WRITTEN = bytes.fromhex(
    "01000000000000000175de4131c30c4ad60300000000000000b099490e31203159bed8de03000000000000"
    "00b099490e322031b4f2345f0700000000000000bbd79f11312032203120319886ebb80b00000000000000"
    "8615f504312031203120322032203161692698")
TF_RECORDS = [b"1", b"1 1", b"2 1", b"1 2 1 1", b"1 1 1 2 2 1"]


def test_masked_crc32c_matches_tensorflow_framing():
  # The length field of the first record: uint64 1, masked CRC as TensorFlow wrote it.
  length = struct.pack("<Q", 1)
  assert struct.pack("<I", tfrecord.masked_crc32c(length)) == TF_WRITTEN[8:12]
  assert struct.pack("<I", tfrecord.masked_crc32c(b"1")) == TF_WRITTEN[13:17]


def test_reads_tensorflow_written_file(tmp_path):
  path = tmp_path / "tf.tfrecord"
  path.write_bytes(TF_WRITTEN)
  assert list(tfrecord.read_records(str(path))) == TF_RECORDS
  assert tfrecord.count_records(str(path)) == 5


def test_reads_tensorflow_written_gzip_file(tmp_path):
  # TensorFlow's GZIP option is a plain gzip stream around the same framing.
  path = tmp_path / "tf.tfrecord.gz"
  path.write_bytes(gzip.compress(TF_WRITTEN))
  assert list(tfrecord.read_records(str(path))) == TF_RECORDS
  other = tmp_path / "tf_gzip_no_suffix"
  other.write_bytes(gzip.compress(TF_WRITTEN))
  assert list(tfrecord.read_records(str(other), compression="gzip")) == TF_RECORDS


def test_grain_package_test_file_if_present():
  import grain  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(grain.__file__), "_src", "python", "testdata",
                      "morris_sequence_first_5.tfrecord")
  if not os.path.exists(path):
    pytest.skip("grain ships no TFRecord test data in this version")
  assert list(tfrecord.read_records(path)) == TF_RECORDS


def test_writer_produces_tensorflow_bytes(tmp_path):
  path = tmp_path / "ours.tfrecord"
  assert tfrecord.write_records(str(path), TF_RECORDS) == 5
  assert path.read_bytes() == TF_WRITTEN
  assert not os.path.exists(str(path) + ".incomplete")


@pytest.mark.parametrize("compression,suffix", [(None, ""), ("gzip", ""), (None, ".gz")])
def test_round_trip(tmp_path, compression, suffix):
  records = [os.urandom(n) for n in (0, 1, 100, 70000)]
  path = str(tmp_path / f"r.tfrecord{suffix}")
  tfrecord.write_records(path, records, compression=compression)
  assert list(tfrecord.read_records(path, compression=compression)) == records
  if compression or suffix:
    assert open(path, "rb").read(2) == b"\x1f\x8b"  # really gzip


def test_example_codec_round_trip():
  features = {
      "image": b"\xff\xd8jpeg",
      "names": [b"a", b"bc"],
      "text": "unicode \u00e9",
      "ints": np.array([[1, -2], [3, 2**40]], np.int64),
      "bools": np.array([True, False]),
      "floats": np.array([0.5, -1.25, 3e8], np.float64),
  }
  decoded = tfrecord.decode_example(tfrecord.encode_example(features))
  assert decoded["image"] == [b"\xff\xd8jpeg"]
  assert decoded["names"] == [b"a", b"bc"]
  assert decoded["text"] == ["unicode \u00e9".encode()]
  np.testing.assert_array_equal(decoded["ints"], [1, -2, 3, 2**40])
  assert decoded["ints"].dtype == np.int64
  np.testing.assert_array_equal(decoded["bools"], [1, 0])
  assert decoded["floats"].dtype == np.float32
  np.testing.assert_allclose(decoded["floats"], [0.5, -1.25, 3e8])


def test_example_matches_protobuf_reference():
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  ref = tf_example_pb2.Example()
  ref.features.feature["x"].int64_list.value.extend([7, 8])
  ref.features.feature["y"].float_list.value.append(1.5)
  ours = tfrecord.decode_example(ref.SerializeToString())
  np.testing.assert_array_equal(ours["x"], [7, 8])
  np.testing.assert_array_equal(ours["y"], [1.5])
  again = tf_example_pb2.Example.FromString(tfrecord.encode_example(ours))
  assert again == ref


def test_unencodable_feature_is_a_type_error():
  with pytest.raises(TypeError, match="feature 'bad'"):
    tfrecord.encode_example({"bad": np.array(["x"], dtype=object)})


def test_undecodable_example_names_file_and_offset():
  with pytest.raises(CorruptRecordError, match=r"f\.tfrecord at byte offset 42"):
    tfrecord.decode_example(b"\xff\xff\xff garbage", path="f.tfrecord", offset=42)


def _write(tmp_path, data, name="c.tfrecord"):
  path = tmp_path / name
  path.write_bytes(data)
  return str(path)


def test_truncated_file_names_offset(tmp_path):
  path = _write(tmp_path, TF_WRITTEN[:-3])
  with pytest.raises(CorruptRecordError) as e:
    list(tfrecord.read_records(path))
  assert e.value.path == path
  assert e.value.offset == len(TF_WRITTEN) - (12 + 11 + 4)  # start of the last record
  assert "c.tfrecord" in str(e.value) and "byte offset" in str(e.value)


def test_data_crc_mismatch(tmp_path):
  data = bytearray(TF_WRITTEN)
  data[12 + 17] ^= 0x01  # payload of the second record
  path = _write(tmp_path, bytes(data))
  with pytest.raises(CorruptRecordError, match="data CRC mismatch") as e:
    list(tfrecord.read_records(path))
  assert e.value.offset == 17
  # Without verification the flipped byte comes through.
  assert list(tfrecord.read_records(path, verify=False))[1] == b"0 1"


def test_huge_length_field_does_not_allocate(tmp_path):
  header = struct.pack("<Q", 2**62)
  data = header + struct.pack("<I", tfrecord.masked_crc32c(header)) + b"x" * 100
  for name in ("huge.tfrecord", "huge.tfrecord.gz"):
    raw = gzip.compress(data) if name.endswith(".gz") else data
    path = _write(tmp_path, raw, name)
    tracemalloc.start()
    with pytest.raises(CorruptRecordError):
      list(tfrecord.read_records(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 * 2**20


def _fuzz_cases(rng):
  records = [os.urandom(rng.randint(0, 300)) for _ in range(6)]
  tmp = bytearray()
  for r in records:
    length = struct.pack("<Q", len(r))
    tmp += length + struct.pack("<I", tfrecord.masked_crc32c(length)) + r
    tmp += struct.pack("<I", tfrecord.masked_crc32c(r))
  clean = bytes(tmp)
  cases = [clean[:rng.randint(0, len(clean))] for _ in range(40)]
  for _ in range(80):
    flipped = bytearray(clean)
    for _ in range(rng.randint(1, 4)):
      flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    cases.append(bytes(flipped))
  cases += [os.urandom(rng.randint(1, 200)) for _ in range(40)]
  for _ in range(20):  # random (often absurd) length fields with a valid length CRC
    length = struct.pack("<Q", rng.getrandbits(64))
    cases.append(length + struct.pack("<I", tfrecord.masked_crc32c(length)) + os.urandom(50))
  return records, cases


@pytest.mark.parametrize("gz", [False, True])
def test_fuzzed_files_raise_only_corrupt_record_error(tmp_path, gz):
  rng = random.Random(1234 + gz)
  records, cases = _fuzz_cases(rng)
  tracemalloc.start()
  for i, case in enumerate(cases):
    path = _write(tmp_path, gzip.compress(case) if gz else case, f"f{i}.tfrecord" + (".gz" if gz else ""))
    try:
      got = list(tfrecord.read_records(path))
    except CorruptRecordError as e:
      assert e.path == path
    else:
      # Whatever reads cleanly must be an intact prefix of the real records.
      assert got == records[:len(got)]
    for verify in (False,):
      try:
        list(tfrecord.read_records(path, verify=verify))
      except CorruptRecordError:
        pass
    try:
      tfrecord.count_records(path)
    except CorruptRecordError:
      pass
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert peak < 32 * 2**20


def test_corrupt_gzip_stream(tmp_path):
  data = bytearray(gzip.compress(TF_WRITTEN))
  data[len(data) // 2] ^= 0xFF
  path = _write(tmp_path, bytes(data), "bad.tfrecord.gz")
  with pytest.raises(CorruptRecordError):
    list(tfrecord.read_records(path))


def test_reader_seek_and_tell(tmp_path):
  path = _write(tmp_path, TF_WRITTEN)
  with tfrecord.RecordReader(path) as reader:
    reader.read_next()
    offset = reader.tell()
    rest = [reader.read_next() for _ in range(4)]
    reader.seek(offset)
    assert [reader.read_next() for _ in range(4)] == rest
    assert reader.read_next() is None

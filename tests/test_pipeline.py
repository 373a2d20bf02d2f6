"""Input pipeline: file sharding over processes, eval padding, exact resume, corrupt records."""

import collections
import json
import os

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from hcjax.data import CorruptRecordError, MissingDataError, ShardingError, pipeline, tfrecord

RECORDS_PER_FILE = (7, 9, 4, 12, 5, 8)


def make_files(directory, counts=RECORDS_PER_FILE, split="train"):
  os.makedirs(directory, exist_ok=True)
  for f, n in enumerate(counts):
    tfrecord.write_records(
        os.path.join(directory, f"{split}-{f:05d}-of-{len(counts):05d}.tfrecord"),
        [tfrecord.encode_example({"id": np.array([1000 * f + i]),
                                  "pixels": np.full(6, f + i, np.float32)}) for i in range(n)])
  return os.path.join(directory, f"{split}-*")


def preprocess(features, rng):
  """Module-level so worker processes can unpickle it; uses the example's own generator."""
  return {"id": features["id"][0],
          "pixels": features["pixels"].reshape(2, 3) + rng.uniform(size=(2, 3)).astype(np.float32),
          "coin": rng.integers(0, 1 << 30)}


def all_ids(counts=RECORDS_PER_FILE):
  return sorted(1000 * f + i for f, n in enumerate(counts) for i in range(n))


def eval_pass(pattern, batch_size, process_index, process_count):
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=batch_size, train=False)
  with pipeline.InputIterator(cfg, preprocess, process_index=process_index,
                              process_count=process_count) as it:
    batches = list(it)
    assert len(batches) == len(it)
  return batches


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_eval_covers_every_example_exactly_once(tmp_path, process_count):
  pattern = make_files(tmp_path)
  seen, lengths = [], set()
  for p in range(process_count):
    batches = eval_pass(pattern, 4 * process_count, p, process_count)
    lengths.add(len(batches))
    for b in batches:
      assert b["id"].shape == (4,) and b["_mask"].shape == (4,)
      seen += b["id"][b["_mask"] > 0].tolist()
      assert np.all(b["id"][b["_mask"] == 0] == 0)  # padding is zeros
  assert len(lengths) == 1  # every process runs the same number of eval steps
  assert sorted(seen) == all_ids()
  total_mask = len(seen)
  assert total_mask == sum(RECORDS_PER_FILE)


def test_two_processes_read_disjoint_files_covering_the_split(tmp_path):
  pattern = make_files(tmp_path)
  per_process = []
  for p in range(2):
    cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=2, num_epochs=1, shuffle_window=5)
    with pipeline.InputIterator(cfg, preprocess, process_index=p, process_count=2) as it:
      ids = [i for b in it for i in b["id"].tolist()]
      n_files = len(it.files)
    per_process.append(ids)
    assert n_files == 3
  assert not set(per_process[0]) & set(per_process[1])
  union = sorted(per_process[0] + per_process[1])
  assert len(union) == len(set(union))
  # Train drops each process's remainder (at most one partial local batch each).
  assert set(union) <= set(all_ids()) and len(all_ids()) - len(union) <= 2


def test_per_example_randomness_does_not_depend_on_process_count(tmp_path):
  pattern = make_files(tmp_path)
  def coins(process_count):
    out = {}
    for p in range(process_count):
      for b in eval_pass(pattern, 2 * process_count, p, process_count):
        for i, c, m in zip(b["id"], b["coin"], b["_mask"]):
          if m:
            out[int(i)] = int(c)
    return out
  one, two = coins(1), coins(2)
  assert one == two and len(one) == sum(RECORDS_PER_FILE)
  assert len(set(one.values())) > len(one) - 2  # really random per example


def test_train_epochs_reshuffle_and_repeat(tmp_path):
  pattern = make_files(tmp_path)
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=5, shuffle_window=16, seed=3)
  with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
    ids = [i for _ in range(36) for i in next(it)["id"].tolist()]  # 4 epochs of 45
  counts = collections.Counter(ids)
  assert sorted(counts) == all_ids()
  # Like tf.data's repeat -> interleave -> shuffle, neighbouring epochs blend at their borders,
  # but over 4 epochs every example comes 4 times, give or take one at the borders.
  assert set(counts.values()) <= {3, 4, 5} and sum(counts.values()) == 180
  first, second = ids[:45], ids[45:90]
  assert first[:20] != second[:20]  # a new order every epoch
  assert first != sorted(first)


def test_seed_changes_order(tmp_path):
  pattern = make_files(tmp_path)
  def first_ids(seed):
    cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=9, shuffle_window=16, seed=seed)
    with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
      return next(it)["id"].tolist()
  assert first_ids(0) == first_ids(0)
  assert first_ids(0) != first_ids(1)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_exact_resume_at_arbitrary_points(tmp_path, num_workers):
  pattern = make_files(tmp_path)
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=4, shuffle_window=8, cycle_length=3,
                                num_workers=num_workers, seed=11)
  n = 30  # over two epochs
  with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
    reference, states = [], []
    for _ in range(n):
      states.append(json.loads(json.dumps(it.get_state())))  # really JSON
      reference.append(next(it))
  for k in ((0, 1, 7, 13, 22, 29) if num_workers == 0 else (1, 13, 29)):
    with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
      it.set_state(states[k])
      for expected in reference[k:k + 4]:
        got = next(it)
        for key in expected:
          np.testing.assert_array_equal(got[key], expected[key], err_msg=f"resume at {k}: {key}")


def test_workers_keep_epochs_balanced_on_equal_shards(tmp_path):
  # Workers take turns; with the equal-size shards converters write, no file is oversampled.
  counts = (6,) * 6
  pattern = make_files(tmp_path, counts=counts)
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=6, shuffle_window=4, num_workers=2)
  with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
    ids = [i for _ in range(24) for i in next(it)["id"].tolist()]  # 4 epochs
  seen = collections.Counter(ids)
  assert sorted(seen) == all_ids(counts)
  assert set(seen.values()) <= {3, 4, 5}


def test_eval_resume_mid_pass(tmp_path):
  pattern = make_files(tmp_path)
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=4, train=False)
  with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
    full = [b["id"].tolist() for b in it]
  with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
    next(it), next(it), next(it)
    state = it.get_state()
  with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
    it.set_state(state)
    assert [b["id"].tolist() for b in it] == full[3:]


def test_fewer_files_than_processes(tmp_path):
  pattern = make_files(tmp_path, counts=(3, 3))
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=3)
  with pytest.raises(ShardingError, match="2 file.*3 processes"):
    pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=3)


def test_missing_files(tmp_path):
  cfg = pipeline.PipelineConfig(pattern=str(tmp_path / "nothing-*"), batch_size=2)
  with pytest.raises(MissingDataError, match="nothing-"):
    pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1)


def test_bad_config_values():
  with pytest.raises(ValueError, match="on_corrupt"):
    pipeline.PipelineConfig(pattern="x", batch_size=2, on_corrupt="ignore")
  with pytest.raises(ValueError, match="batch_size"):
    pipeline.PipelineConfig(pattern="x", batch_size=0)


def _corrupt_second_record(path):
  data = bytearray(open(path, "rb").read())
  first_len = int.from_bytes(data[:8], "little")
  second = 12 + first_len + 4
  data[second + 12 + 3] ^= 0xFF  # payload byte of the second record
  open(path, "wb").write(bytes(data))
  return second


def test_corrupt_record_errors_by_default_and_names_file_and_offset(tmp_path):
  pattern = make_files(tmp_path, counts=(6, 6))
  bad = sorted(tmp_path.glob("train-*"))[0]
  offset = _corrupt_second_record(str(bad))
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=4, train=False)
  with pytest.raises(CorruptRecordError) as e:
    with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
      list(it)
  assert e.value.path == str(bad) and e.value.offset == offset


def test_corrupt_records_skipped_and_counted(tmp_path):
  pattern = make_files(tmp_path, counts=(6, 6))
  files = sorted(tmp_path.glob("train-*"))
  _corrupt_second_record(str(files[0]))
  # A garbage tail: an unreadable length field loses the rest of that file.
  with open(files[1], "ab") as f:
    f.write(b"\x01\x02\x03garbage-garbage")
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=4, train=False, on_corrupt="skip")
  with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
    ids = [i for b in it for i, m in zip(b["id"].tolist(), b["_mask"]) if m]
    assert it.num_skipped == 2
  assert sorted(ids) == [i for i in all_ids((6, 6)) if i != 1]


def test_global_arrays_on_a_mesh(tmp_path):
  pattern = make_files(tmp_path)
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  sharding = NamedSharding(mesh, P(("data", "fsdp")))
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=8, train=False)
  with pipeline.InputIterator(cfg, preprocess, sharding=sharding, process_index=0,
                              process_count=1) as it:
    batch = next(it)
  assert isinstance(batch["pixels"], jax.Array)
  assert batch["pixels"].shape == (8, 2, 3)
  assert batch["pixels"].sharding.is_equivalent_to(sharding, 3)
  assert len(batch["pixels"].addressable_shards) == 8
  assert batch["pixels"].addressable_shards[0].data.shape == (1, 2, 3)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_train_skips_and_counts_corrupt_records(tmp_path, num_workers):
  pattern = make_files(tmp_path, counts=(6, 6))
  _corrupt_second_record(str(sorted(tmp_path.glob("train-*"))[0]))
  cfg = pipeline.PipelineConfig(pattern=pattern, batch_size=11, num_epochs=1, shuffle_window=0,
                                on_corrupt="skip", num_workers=num_workers)
  with pipeline.InputIterator(cfg, preprocess, process_index=0, process_count=1) as it:
    batch = next(it)
    assert "_skipped" not in batch
    assert sorted(batch["id"].tolist()) == [i for i in all_ids((6, 6)) if i != 1]
    assert it.num_skipped == 1
    with pytest.raises(StopIteration):
      next(it)

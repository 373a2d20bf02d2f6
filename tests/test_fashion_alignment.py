"""The DFA cascade (hcjax.models.fashion_alignment) and its task (fashion_landmarks): shapes,
auto-routing by the true / predicted pseudo-label, mini-batch k-means against a numpy reference,
frozen centroids at evaluation, masked landmarks, the inherited preprocess, and a short run."""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from hcjax.data import tfrecord
from hcjax.data.converters import deepfashion as df
from hcjax.models.fashion_alignment import (FashionAlignment, MiniBatchKMeans, kmeans_assign,
                                            kmeans_seed, kmeans_update)
from hcjax.tasks import TaskConfigError, get_task
from hcjax.tasks.fashion_landmarks import FashionLandmarksTask

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import fld  # noqa: E402  pylint: disable=g-import-not-at-top

SIZE = 32
K = 3


def _config(**overrides):
  config = fld.get_config("test")
  config.update_from_flattened_dict(overrides)
  return config


def _variables(model, inputs, seed=0, scale=0.05):
  """Random parameters and zero batch stats of the right shapes, without compiling init."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), inputs, train=False))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, scale, s.shape), s.dtype),
                        shapes["params"])
  stats = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["batch_stats"])
  return {"params": params, "batch_stats": stats}


def _batch(b, rng):
  visibility = rng.integers(0, 3, (b, 8))
  visibility[:, :3] = 0                      # every example has valid landmarks
  return {"image": jnp.asarray(rng.integers(0, 256, (b, SIZE, SIZE, 3)), jnp.uint8),
          "landmarks": jnp.asarray(rng.uniform(0.1, 0.9, (b, 8, 2)), jnp.float32),
          "visibility": jnp.asarray(visibility, jnp.int32),
          "present": jnp.asarray(np.r_[np.ones(6), np.zeros(2)][None].repeat(b, 0), jnp.int32)}


@pytest.fixture(scope="module")
def cascade():
  """A tiny three-stage cascade, random parameters, jitted train / eval applications."""
  task = FashionLandmarksTask(_config())
  model = FashionAlignment(num_stages=3, num_clusters=K, width=1, fc_width=4, dropout_rate=0.0)
  batch = _batch(4, np.random.default_rng(0))
  variables = _variables(model, task.model_inputs({"image": batch["image"]}))
  train_apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  eval_apply = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["batch_stats"]))
  return task, model, variables, batch, train_apply, eval_apply


def test_output_shapes_and_inference_from_the_image_alone(cascade):
  task, _, variables, batch, train_apply, eval_apply = cascade
  b, s = 4, 3
  out, stats = train_apply(variables, task.model_inputs(batch))
  expected = {"landmarks": (b, 8, 2), "stages": (b, s, 8, 2), "visibility": (b, 8, 3),
              "stage_visibility": (b, s, 8, 3), "pseudo_logits": (b, s, K), "routes": (b, s),
              "landmarks_soft": (b, 8, 2), "offsets": (b, s - 1, K, 8, 2),
              "pseudo_labels": (b, s)}
  assert {k: v.shape for k, v in out.items()} == expected
  np.testing.assert_array_equal(out["landmarks"], out["stages"][:, -1])
  assert jax.tree.map(jnp.shape, stats["batch_stats"]["clusters2"]) == {
      "centroids": (K, 8, 2), "counts": (K, 8), "seeded": (K,)}
  # Evaluation from the image alone (export, the trainer's init) equals evaluation given the
  # truth: the truth only adds the true pseudo-labels.
  alone, _ = eval_apply(variables, task.model_inputs({"image": batch["image"]}))
  given, _ = eval_apply(variables, task.model_inputs(batch))
  assert "pseudo_labels" not in alone and "pseudo_labels" in given
  for key in alone:
    np.testing.assert_array_equal(alone[key], given[key], err_msg=key)
  predictions = task.predict(alone)
  assert predictions["stages"].shape == (b, s, 8, 2)
  assert predictions["pseudo_labels"].shape == (b, s, K)


def test_training_without_the_truth_is_an_error(cascade):
  _, model, variables, batch, _, _ = cascade
  with pytest.raises(ValueError, match="true landmarks"):
    model.apply(variables, batch["image"].astype(jnp.float32), train=True,
                mutable=["batch_stats"])


def test_routing_takes_the_true_branch_in_training_and_the_predicted_at_eval():
  """Zero weights make every head its bias: branch k of a stage moves all landmarks by its own
  offset, stage 2's classifier predicts branch 2 and stage 3's branch 1 for everyone, and the
  residual centroids are set so the examples' true pseudo-labels are 0, 1, 2, 0 at both stages.
  Stage 3 starts from stage 2's PREDICTED branch, in training too."""
  model = FashionAlignment(num_stages=3, num_clusters=K, width=1, fc_width=4, max_offset=0.25,
                           dropout_rate=0.0)
  image = jnp.zeros((4, SIZE, SIZE, 3))
  variables = _variables(model, image)
  params = jax.tree.map(jnp.zeros_like, variables["params"])
  unit = lambda rows: np.repeat(np.array(rows, np.float32)[:, None], 8, 1)       # [K, 8, 2]
  offsets = {2: unit([[0.02, -0.01], [-0.03, 0.02], [0.01, 0.04]]),
             3: unit([[0.005, 0.0], [0.0, -0.006], [-0.004, 0.003]])}
  predicted = {2: 2, 3: 1}
  centroids = np.zeros((K, 8, 2), np.float32)
  centroids[0, :, 0], centroids[1, :, 0], centroids[2, :, 1] = 0.1, -0.1, 0.1
  stats = variables["batch_stats"]
  for s in (2, 3):
    params[f"stage{s}"]["offsets"]["bias"] = jnp.asarray(
        np.arctanh(offsets[s] / 0.25).reshape(-1))
    params[f"stage{s}"]["pseudo_label"]["bias"] = jnp.asarray(
        np.eye(K)[predicted[s]] * 2.0, jnp.float32)
    # Stage 3's residuals are measured from stage 2's predicted-branch output.
    shift = 0.0 if s == 2 else offsets[2][predicted[2]]
    stats[f"clusters{s}"] = {"centroids": jnp.asarray(centroids - shift), "seeded": jnp.ones(K),
                             "counts": jnp.full((K, 8), 100.0)}
  variables = {"params": params, "batch_stats": stats}
  true_labels = np.array([0, 1, 2, 0])
  noise = np.random.default_rng(0).uniform(-0.005, 0.005, (4, 8, 2))
  truth = 0.5 + centroids[true_labels] + noise            # stage 1 predicts 0.5 everywhere
  inputs = {"image": image, "landmarks": jnp.asarray(truth, jnp.float32),
            "landmark_valid": jnp.ones((4, 8), bool)}

  @jax.jit
  def apply(variables, inputs):
    return (model.apply(variables, inputs, train=True, mutable=["batch_stats"])[0],
            model.apply(variables, inputs, train=False),
            model.apply(variables, inputs["image"], train=False))

  out, *evaluated = apply(variables, inputs)
  chained = 0.5 + offsets[2][predicted[2]]
  np.testing.assert_allclose(out["stages"][:, 0], 0.5, atol=1e-6)
  np.testing.assert_array_equal(out["pseudo_labels"][:, 1:], np.c_[true_labels, true_labels])
  np.testing.assert_array_equal(out["routes"][:, 1:], np.c_[true_labels, true_labels])
  np.testing.assert_allclose(out["stages"][:, 1], 0.5 + offsets[2][true_labels], atol=1e-6)
  np.testing.assert_allclose(out["stages"][:, 2], chained + offsets[3][true_labels], atol=1e-6)

  p = np.exp(np.eye(K)[predicted[3]] * 2.0) / np.exp(np.eye(K)[predicted[3]] * 2.0).sum()
  for out in evaluated:  # evaluation: the predicted branches, truth given or not
    np.testing.assert_array_equal(out["routes"][:, 1:], [[2, 1]] * 4)
    np.testing.assert_allclose(out["stages"][:, 1], np.broadcast_to(chained, (4, 8, 2)),
                               atol=1e-6)
    np.testing.assert_allclose(out["landmarks"],
                               np.broadcast_to(chained + offsets[3][1], (4, 8, 2)), atol=1e-6)
    np.testing.assert_allclose(out["landmarks_soft"],
                               np.broadcast_to(chained + np.einsum("k,kld->ld", p, offsets[3]),
                                               (4, 8, 2)), atol=1e-6)


def test_soft_routing_mixes_the_branches_in_training_and_at_eval():
  """routing="soft": each refinement stage adds the predicted-probability mixture of its
  branches, whatever the true pseudo-labels, and the next stage starts from it."""
  model = FashionAlignment(num_stages=3, num_clusters=K, width=1, fc_width=4, max_offset=0.25,
                           dropout_rate=0.0, routing="soft")
  image = jnp.zeros((2, SIZE, SIZE, 3))
  variables = _variables(model, image)
  params = jax.tree.map(jnp.zeros_like, variables["params"])
  rng = np.random.default_rng(3)
  offsets, probs = {}, {}
  for s in (2, 3):
    offsets[s] = rng.uniform(-0.05, 0.05, (K, 8, 2)).astype(np.float32)
    logits = rng.normal(size=K).astype(np.float32)
    probs[s] = np.exp(logits) / np.exp(logits).sum()
    params[f"stage{s}"]["offsets"]["bias"] = jnp.asarray(np.arctanh(offsets[s] / 0.25).reshape(-1))
    params[f"stage{s}"]["pseudo_label"]["bias"] = jnp.asarray(logits)
  variables = {"params": params, "batch_stats": variables["batch_stats"]}
  inputs = {"image": image, "landmarks": jnp.full((2, 8, 2), 0.3),
            "landmark_valid": jnp.ones((2, 8), bool)}
  stage2 = 0.5 + np.einsum("k,kld->ld", probs[2], offsets[2])
  stage3 = stage2 + np.einsum("k,kld->ld", probs[3], offsets[3])
  trained = model.apply(variables, inputs, train=True, mutable=["batch_stats"])[0]
  for out in (trained, model.apply(variables, image, train=False)):
    np.testing.assert_allclose(out["stages"][:, 1], np.broadcast_to(stage2, (2, 8, 2)), atol=1e-5)
    np.testing.assert_allclose(out["landmarks"], np.broadcast_to(stage3, (2, 8, 2)), atol=1e-5)
    np.testing.assert_allclose(out["landmarks_soft"], out["landmarks"], atol=1e-6)
  with pytest.raises(ValueError, match="routing"):
    FashionAlignment(num_stages=2, width=1, fc_width=4, routing="best").init(
        jax.random.PRNGKey(0), image, train=False)


# --- mini-batch k-means ---------------------------------------------------------------------------

def _distance(x, valid, c):
  return float(np.sum(((x - c) ** 2).sum(-1) * valid))


def _reference_step(x, valid, centroids, counts, seeded):
  """Farthest-first seeding, then Sculley (2010) one point at a time with rate 1/v."""
  c, v, seeded = centroids.copy(), counts.copy(), seeded.copy()
  for k in range(len(c)):
    if seeded[k]:
      continue
    best, pick = 0.0, None
    for b in range(len(x)):
      if not valid[b].any():
        continue
      if seeded.any():
        score = min(_distance(x[b], valid[b], c[j]) for j in np.flatnonzero(seeded))
      else:
        score = float(valid[b].sum())
      if score > best:
        best, pick = score, b
    if pick is not None:
      c[k][valid[pick]] = x[pick][valid[pick]]
      seeded[k] = True
  labels = np.full(len(x), -1)
  for b in range(len(x)):
    if valid[b].any() and seeded.any():
      d = [_distance(x[b], valid[b], c[j]) if seeded[j] else np.inf for j in range(len(c))]
      labels[b] = int(np.argmin(d))
  for b, k in enumerate(labels):  # the assignments were cached before the updates
    if k < 0:
      continue
    for l in np.flatnonzero(valid[b]):
      v[k, l] += 1
      c[k, l] += (x[b, l] - c[k, l]) / v[k, l]
  return c, v, seeded, labels


def test_minibatch_kmeans_matches_a_numpy_reference():
  rng = np.random.default_rng(3)
  clusters, points = 4, 5
  module = MiniBatchKMeans(clusters, num_points=points)
  state = {"batch_stats": module.init(jax.random.PRNGKey(0), None)["batch_stats"]}
  c, v = np.zeros((clusters, points, 2)), np.zeros((clusters, points))
  seeded = np.zeros(clusters, bool)
  step_fn = jax.jit(lambda state, x, valid: module.apply(state, x, valid, update=True,
                                                        mutable=["batch_stats"]))
  for step in range(4):
    x = rng.normal(size=(6, points, 2)).astype(np.float32)
    valid = rng.random((6, points)) < 0.7
    if step == 0:
      x[1] = x[0]                       # a duplicate must not seed a second centroid
      valid[1] = valid[0] = True
      valid[2:] = False                 # nothing valid: no label, no update
    if step == 1:
      valid[0] = False
    labels, updated = step_fn(state, jnp.asarray(x), jnp.asarray(valid))
    c, v, seeded, expected = _reference_step(x, valid, c, v, seeded)
    state = updated
    got = state["batch_stats"]
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(np.asarray(got["seeded"]) > 0, seeded)
    np.testing.assert_allclose(got["counts"], v)
    np.testing.assert_allclose(got["centroids"], c, atol=1e-5)
    if step == 0:
      assert seeded.tolist() == [True, False, False, False]   # one distinct example
  assert seeded.all()
  # The pure functions compose to the same step.
  x = jnp.asarray(rng.normal(size=(5, points, 2)), jnp.float32)
  valid = jnp.ones((5, points), bool)
  cs, sd = kmeans_seed(x, valid, got["centroids"], got["seeded"] > 0)
  labels = kmeans_assign(x, valid, cs, sd)
  _, counts = kmeans_update(x, valid, labels, cs, got["counts"])
  np.testing.assert_allclose(np.asarray(counts).sum() - np.asarray(got["counts"]).sum(), 5 * points)


def test_kmeans_forgetting_caps_the_weight_of_the_past():
  """With max_count 2 a centroid at its cap moves a third of the way to each new point (the past
  weighs 2 points); without a cap it is the running mean of all its points."""
  x = jnp.full((1, 1, 2), 3.0)
  valid, label = jnp.ones((1, 1), bool), jnp.array([0])
  c, n = kmeans_update(x, valid, label, jnp.zeros((1, 1, 2)), jnp.full((1, 1), 2.0), max_count=2.0)
  np.testing.assert_allclose(c, 1.0)
  np.testing.assert_allclose(n, 2.0)
  c, n = kmeans_update(x, valid, label, c, n, max_count=2.0)
  np.testing.assert_allclose(c, (2 * 1.0 + 3.0) / 3.0)
  c, n = kmeans_update(x, valid, label, jnp.zeros((1, 1, 2)), jnp.full((1, 1), 2.0))
  c, n = kmeans_update(x, valid, label, c, n)
  np.testing.assert_allclose(c, (3 * 1.0 + 3.0) / 4.0)
  np.testing.assert_allclose(n, 4.0)


def test_centroids_change_in_training_only(cascade):
  task, _, variables, batch, train_apply, eval_apply = cascade
  inputs = task.model_inputs(batch)
  _, stats = eval_apply(variables, inputs)
  for a, b in zip(jax.tree.leaves(stats["batch_stats"]), jax.tree.leaves(variables["batch_stats"])):
    np.testing.assert_array_equal(a, b)
  _, trained = train_apply(variables, inputs)
  for s in ("clusters1", "clusters2", "clusters3"):
    assert float(trained["batch_stats"][s]["seeded"].sum()) >= 1
    assert float(trained["batch_stats"][s]["counts"].sum()) > 0
  _, again = eval_apply({**variables, "batch_stats": trained["batch_stats"]}, inputs)
  for a, b in zip(jax.tree.leaves(again["batch_stats"]), jax.tree.leaves(trained["batch_stats"])):
    np.testing.assert_array_equal(a, b)


def test_masked_landmarks_do_not_affect_the_loss(cascade):
  """Occluded, truncated and absent landmarks may hold anything (here a shift, then NaN): the
  outputs, the pseudo-labels, the centroid updates, the loss, its pieces and its gradient stay
  exactly the same."""
  task, _, variables, batch, train_apply, _ = cascade
  invalid = ~((np.asarray(batch["visibility"]) == 0) & (np.asarray(batch["present"]) > 0))
  assert invalid.any() and (~invalid).any()

  @jax.jit
  def loss_and_grad(out, b):  # gradient with respect to every float output
    floats = {k: v for k, v in out.items() if jnp.issubdtype(v.dtype, jnp.floating)}
    ints = {k: v for k, v in out.items() if k not in floats}
    return jax.value_and_grad(lambda f: task.loss({**f, **ints}, b), has_aux=True)(floats)

  results = []
  for value in (None, 0.37, np.nan):
    b = batch
    if value is not None:
      b = {**batch, "landmarks": jnp.where(jnp.asarray(invalid)[..., None],
                                           batch["landmarks"] + value, batch["landmarks"])}
    out, stats = train_apply(variables, task.model_inputs(b))
    results.append((out, stats, loss_and_grad(out, b)))
  for other in results[1:]:
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(other)):
      np.testing.assert_array_equal(a, b)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(results[-1][2][1]))
  # While a visible landmark does move the loss.
  out, loss = results[0][0], results[0][2][0][0]
  shifted = {**batch, "landmarks": batch["landmarks"].at[0, 0].add(0.1)}
  assert float(loss_and_grad(out, shifted)[0][0]) != float(loss)


# --- task -----------------------------------------------------------------------------------------

COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255),
                    (0, 255, 255), (255, 128, 0), (128, 0, 255)], np.int32)


def test_preprocess_inherits_landmarks_that_move_with_the_image(tmp_path):
  """A dot of its own colour under each landmark; after every random crop / scale / shift /
  flip of training the colour under each output landmark is its slot's (or, flipped, its
  pair's, with left and right swapped)."""
  points = np.array([[40, 30], [80, 30], [25, 60], [95, 60], [45, 90], [75, 90], [40, 120],
                     [82, 118]], np.float32)
  image = np.full((150, 120, 3), 128, np.uint8)
  for (x, y), colour in zip(points.astype(int), COLOURS):
    image[y - 4:y + 5, x - 4:x + 5] = colour
  Image.fromarray(image).save(tmp_path / "dots.png")
  record = df.Record("dots.png", "train", str(tmp_path / "dots.png"),
                     np.array([20, 20, 100, 130], np.float32), points, np.zeros(8, np.int64),
                     np.ones(8, np.int64), 3, 1)
  features = tfrecord.decode_example(df.encode(record))
  task = FashionLandmarksTask(_config(**{"input.size": 64, "input.min_scale": 0.8,
                                         "input.max_scale": 1.3, "input.shift": 0.1}))
  pair = np.arange(8)
  for a, b in df.FLIP_PAIRS:
    pair[a], pair[b] = b, a
  flips = set()
  for seed in range(10):
    out = task.preprocess(features, np.random.default_rng(seed), train=True)
    assert set(out) == {"image", "landmarks", "visibility", "present"}
    pix = np.round(out["landmarks"] * 64 - 0.5).astype(int)
    colours = [out["image"][y, x].astype(np.int32) for x, y in pix]
    same = all(np.abs(c - COLOURS[k]).max() < 60 for k, c in enumerate(colours))
    swapped = all(np.abs(c - COLOURS[pair[k]]).max() < 60 for k, c in enumerate(colours))
    assert same != swapped, seed
    flips.add(swapped)
  assert flips == {True, False}


def _outputs(b, rng, stages=3):
  return {"stages": jnp.asarray(rng.uniform(size=(b, stages, 8, 2)), jnp.float32),
          "stage_visibility": jnp.asarray(rng.normal(size=(b, stages, 8, 3)), jnp.float32),
          "visibility": jnp.asarray(rng.normal(size=(b, 8, 3)), jnp.float32),
          "landmarks_soft": jnp.asarray(rng.uniform(size=(b, 8, 2)), jnp.float32),
          "pseudo_logits": jnp.asarray(rng.normal(size=(b, stages, K)), jnp.float32),
          "pseudo_labels": jnp.asarray(rng.integers(-1, K, (b, stages)), jnp.int32)}


def test_eval_counts_every_example_once_per_stage(tmp_path):
  task = FashionLandmarksTask(_config(**{"data.dir": str(tmp_path)}))
  rng = np.random.default_rng(0)
  out, batch = _outputs(6, rng), _batch(6, rng)
  out["landmarks"] = out["stages"][:, -1]
  loss, aux = jax.jit(task.loss)(out, batch)
  assert np.isfinite(float(loss))
  assert {"stage1_error", "stage3_error", "landmark_l2", "visibility_ce", "pseudo_label_ce",
          "stage2_pseudo_accuracy"} <= set(aux)
  statistics = jax.jit(task.eval_statistics)
  full = statistics(out, {**batch, "_mask": jnp.ones(6)})
  parts = []
  for idx, mask in (([0, 1, 2, 3], [1, 1, 1, 1]), ([4, 5, 0, 1], [1, 1, 0, 0])):
    sl = lambda t: {k: v[np.array(idx)] for k, v in t.items()}
    parts.append(statistics(sl(out), {**sl(batch), "_mask": jnp.asarray(mask)}))
  for key in full:
    np.testing.assert_allclose(np.asarray(parts[0][key]) + np.asarray(parts[1][key]),
                               np.asarray(full[key]), rtol=1e-5, err_msg=key)
  metrics = task.summarize({k: np.asarray(v, np.float64) for k, v in full.items()})
  for s in (1, 2, 3):
    assert 0 <= metrics[f"stage{s}_normalized_error"] <= 2
    assert 0 <= metrics[f"stage{s}_detection_rate"] <= 1
    assert 0 <= metrics[f"stage{s}_pseudo_accuracy"] <= 1
  assert metrics["landmark_normalized_error"] == metrics["stage3_normalized_error"]
  assert metrics["examples"] == 6 and "baseline_normalized_error" not in metrics


@pytest.mark.parametrize("override,message", [
    ({"data.benchmark": "inshop"}, "benchmark"),
    ({"model.trunk": "resnet50"}, "model.trunk"),
    ({"model.num_stages": 0}, "num_stages"),
    ({"model.max_offset": 0.0}, "max_offset"),
    ({"model.kmeans_max_count": -1.0}, "kmeans_max_count"),
    ({"loss.category": 1.0}, "loss.category"),
    ({"input.size": 16}, "input.size"),
])
def test_config_errors_name_the_key(override, message):
  with pytest.raises(TaskConfigError, match=message):
    FashionLandmarksTask(_config(**override))


@pytest.mark.parametrize("arg", ["sample", "full", "test", "sample,category"])
def test_configs_build_their_task(arg):
  task = get_task(fld.get_config(arg))
  assert isinstance(task, FashionLandmarksTask)
  model = task.build_model()
  assert isinstance(model, FashionAlignment) and model.num_stages == 3


# --- end to end -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_training_lowers_landmark_error_and_keeps_the_clusters(tmp_path):
  """configs/fld.py:test through hcjax.train on the rendered FLD-format sample set: stage 1's
  error falls; the centroids are seeded, updated and checkpointed through the trainer's
  batch_stats; the eval reports every stage and the mean-shape baseline; the export runs."""
  from hcjax import export, train  # pylint: disable=g-import-not-at-top
  config = _config(**{"data.dir": str(tmp_path / "rec"), "data.samples_dir": str(tmp_path / "src"),
                      "total_steps": 40, "log_every": 1, "checkpoint_every": 20,
                      "export_at_end": True})
  assert not os.path.exists(tmp_path / "src")
  result = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert os.path.isdir(tmp_path / "src" / "landmarks" / "Eval")   # built on first use
  logs = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
  errors = [l["stage1_error"] for l in logs if l["split"] == "train"]
  first, last = np.mean(errors[:3]), np.mean(errors[-3:])
  print(f"stage 1 train error {first:.4f} -> {last:.4f}; eval " + ", ".join(
      f"stage{s} {result[f'stage{s}_normalized_error']:.4f}" for s in (1, 2, 3))
      + f", mean shape {result['baseline_normalized_error']:.4f}")
  assert last < 0.8 * first
  for key in ("stage1_normalized_error", "stage3_detection_rate", "baseline_normalized_error",
              "soft_normalized_error", "stage2_pseudo_accuracy", "visibility_accuracy"):
    assert np.isfinite(result[key]), key
  assert any(p.startswith("eval_predictions") for p in os.listdir(tmp_path / "run" / "pictures"))

  restored = train.inference_config(str(tmp_path / "run"), "fashion_landmarks")
  _, _, _, state = train.restore_for_inference(restored, str(tmp_path / "run"))
  for s in ("clusters1", "clusters2", "clusters3"):
    clusters = jax.tree.map(np.asarray, state.batch_stats[s])
    assert clusters["seeded"].tolist() == [1.0] * K, s
    assert clusters["counts"].min() >= 0 and clusters["counts"].max() > 0, s
    assert np.abs(clusters["centroids"]).sum() > 0, s
  assert float(np.asarray(state.batch_stats["clusters3"]["counts"]).max()) <= 50.0  # the cap

  run = export.load_exported(str(tmp_path / "run" / "export"))
  images = np.zeros((2, SIZE, SIZE, 3), np.uint8)
  predictions = run(images)
  assert np.asarray(predictions["landmarks"]).shape == (2, 8, 2)
  assert np.asarray(predictions["stages"]).shape == (2, 3, 8, 2)

  # `hcjax fashion` serves cascade runs too: landmarks only, drawn on the original image.
  from hcjax import cli  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  photo = tmp_path / "garment.png"
  Image.fromarray(np.full((50, 40, 3), 200, np.uint8)).save(photo)
  assert cli.main(["fashion", "--workdir", str(tmp_path / "run"), str(photo),
                   "-o", str(tmp_path / "drawn.png")]) == 0
  assert Image.open(tmp_path / "drawn.png").size[0] >= 40

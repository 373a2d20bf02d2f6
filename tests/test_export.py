"""Export: StableHLO with a symbolic batch + msgpack parameters, equal to in-process outputs."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest

from hcjax import export
from hcjax.models.resnet import ResNet


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  out = tmp_path_factory.mktemp("export")
  model = ResNet(depth=18, num_outputs=5, width=8, stem="small")
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(1), x, train=False)
  # Non-trivial BatchNorm statistics, as after training.
  _, stats = model.apply(variables, x * 2 + 1, train=True, mutable=["batch_stats"])
  variables = {"params": variables["params"], "batch_stats": stats["batch_stats"]}

  def apply_fn(v, images):
    return {"logits": model.apply(v, images, train=False),
            "probabilities": jax.nn.sigmoid(model.apply(v, images, train=False))}

  export.export_model(apply_fn, variables, jax.ShapeDtypeStruct((32, 32, 3), jnp.float32),
                      str(out), metadata={"names": list("abcde")})
  return out, jax.jit(apply_fn), variables


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_exported_equals_in_process(exported, batch):
  out, apply_fn, variables = exported
  run = export.load_exported(str(out))
  x = np.random.default_rng(batch).normal(size=(batch, 32, 32, 3)).astype(np.float32)
  got, expected = run(x), apply_fn(variables, x)
  for key in ("logits", "probabilities"):
    assert got[key].shape == (batch, 5)
    np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), atol=1e-5)


def test_params_are_msgpack_not_pickle(exported):
  out, _, variables = exported
  data = (out / "params.msgpack").read_bytes()
  assert not data.startswith(b"\x80")  # pickle's protocol header
  tree = msgpack.unpackb(data, raw=False)
  kernel = tree["params"]["head"]["kernel"]
  assert kernel["shape"] == list(variables["params"]["head"]["kernel"].shape)
  import json  # pylint: disable=g-import-not-at-top
  meta = json.loads((out / "meta.json").read_text())
  assert meta["input_shape"] == [32, 32, 3] and meta["names"] == list("abcde")


def test_standalone_loader_runs_without_hcjax(exported, tmp_path):
  out, apply_fn, variables = exported
  x = np.random.default_rng(7).normal(size=(2, 32, 32, 3)).astype(np.float32)
  np.save(tmp_path / "x.npy", x)
  # hcjax is made unimportable: the loader must need nothing from it.
  code = ("import sys, numpy as np\n"
          "sys.modules['hcjax'] = None\n"
          f"sys.path.insert(0, {str(out)!r})\n"
          "import run_exported\n"
          f"run, meta = run_exported.load({str(out)!r})\n"
          f"y = run(np.load({str(tmp_path / 'x.npy')!r}))['logits']\n"
          f"np.save({str(tmp_path / 'y.npy')!r}, np.asarray(y))\n"
          "assert not any(m.startswith('hcjax.') for m in sys.modules)\n")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["JAX_PLATFORMS"] = "cpu"
  result = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.asarray(apply_fn(variables, x)["logits"]),
                             atol=1e-5)
  script = subprocess.run([sys.executable, str(out / "run_exported.py"), str(tmp_path / "x.npy")],
                          env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
  assert script.returncode == 0, script.stderr[-2000:]
  assert "(2, 5)" in script.stdout


def test_errors(exported, tmp_path):
  out, _, _ = exported
  run = export.load_exported(str(out))
  with pytest.raises(ValueError, match=r"expected input \[B, 32, 32, 3\] of float32"):
    run(np.zeros((2, 16, 16, 3), np.float32))
  with pytest.raises(ValueError, match="float32"):
    run(np.zeros((2, 32, 32, 3), np.float64))
  with pytest.raises(FileNotFoundError, match="model.stablehlo"):
    export.load_exported(str(tmp_path))


def test_several_platforms_lower_on_cpu(tmp_path):
  def apply_fn(v, x):
    return x @ v["w"]
  export.export_model(apply_fn, {"w": np.ones((3, 2), np.float32)},
                      jax.ShapeDtypeStruct((3,), jnp.float32), str(tmp_path),
                      platforms=("cpu", "cuda", "tpu"))
  run = export.load_exported(str(tmp_path))
  np.testing.assert_allclose(run(np.ones((4, 3), np.float32)), np.full((4, 2), 3.0))


def test_metadata_cannot_redefine_what_the_loader_reads(tmp_path):
  with pytest.raises(ValueError, match="input_shape"):
    export.export_model(lambda v, x: x @ v["w"], {"w": np.ones((3, 2), np.float32)},
                        jax.ShapeDtypeStruct((3,), jnp.float32), str(tmp_path),
                        metadata={"input_shape": [1]})

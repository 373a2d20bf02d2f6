"""The quickstart notebook runs top to bottom (its `test` variant: a few steps)."""

import json
import os

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
  nb = json.load(open(os.path.join(REPO, "notebooks", "quickstart.ipynb")))
  monkeypatch.setenv("HCJAX_REPO", REPO)
  monkeypatch.setenv("HCJAX_NOTEBOOK_VARIANT", "test")
  monkeypatch.setenv("HCJAX_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  monkeypatch.chdir(tmp_path)
  namespace = {}
  code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
  assert len(code_cells) >= 4
  for cell in code_cells:
    source = "".join(cell["source"])
    if "config = quickstart.get_config(VARIANT)" in source:
      # Keep the sample data inside the test's directory.
      source += (f"\nconfig.data.dir = {str(tmp_path / 'tfrecords')!r}"
                 f"\nconfig.data.samples_dir = {str(tmp_path / 'samples')!r}")
    exec(compile(source, "quickstart.ipynb", "exec"), namespace)  # pylint: disable=exec-used
  assert 0.0 <= namespace["result"]["mean_accuracy"] <= 1.0
  assert len(namespace["top"]) == 8
  assert namespace["probabilities"].shape == (40,)

"""The MLP study's quick mode end to end (real numerics in the simulator, in one process):
its CLI, the per-seed JSON, and the published section."""

import json
import subprocess

import pytest
from conftest import PY, ROOT

pytestmark = pytest.mark.timeout(300)


def test_mlp_study_quick(tmp_path):
    pytest.importorskip("sklearn", reason="digits comes from scikit-learn (mpicode[data])")
    out = tmp_path / "mlp.json"
    r = subprocess.run([PY, "-m", "studies.mlp_study", "--quick", "--data-dir",
                        str(tmp_path / "d"), "--json", str(out)], capture_output=True,
                       text=True, timeout=280, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    d = json.loads(out.read_text())
    assert d["meta"]["seeds"] == 2 and (tmp_path / "d" / "digits.h5").exists()
    cells = {(x["scenario"], x["scheme"]): x for x in d["rows"]}
    assert set(cells) == {(s, k) for s in ("shifted-exp", "trace-AR")
                          for k in ("uncoded", "two-stage", "ignore-stragglers")}
    for (scen, k), x in cells.items():
        assert len(x["final_accuracy"]) == 2 and all(0.5 < a <= 1 for a in x["final_accuracy"])
        assert x["iterations"] == [34, 34]  # 3 epochs of 1437 rows in batches of 128
        if k == "two-stage":  # exact: the same model as uncoded, seed by seed
            assert x["final_accuracy"] == cells[scen, "uncoded"]["final_accuracy"]
    # the trace is realised per seed: the two seeds' iteration times differ
    assert len(set(cells["trace-AR", "uncoded"]["mean_iter_s"])) == 2
    assert "| shifted-exp | ignore-stragglers |" in r.stdout

    from studies import mlp_publish
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{mlp_publish.START}\nold\n{mlp_publish.END}\nb\n")
    mlp_publish.write(tmp_path, readme, d["rows"], d["compare"], d["meta"], "two-stage")
    text = readme.read_text()
    assert "old" not in text and text.startswith("a\n") and text.endswith("b\n")
    assert "uncoded's final test accuracy" in text and "(./mlp.json)" in text
    assert (tmp_path / "mlp.md").read_text().startswith("# MLP on digits")

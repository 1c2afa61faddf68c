"""The experiment suite: the verdict rules on made-up numbers, and the quick suite end to end
(one ``mpiexec`` job of 5 ranks, the simulator sweep, tables, figures, README section)."""

import json
import subprocess

import h5py
import pytest
from conftest import PY, ROOT

from mpicode import launcher
from studies import publish, verdicts
from studies.suite import Suite

pytestmark = pytest.mark.timeout(420)


# -- rules ---------------------------------------------------------------------------------


# -- the quick suite end to end ------------------------------------------------------------
def test_quick_suite(tmp_path):
    pytest.importorskip("sklearn", reason="the suite builds the scikit-learn datasets "
                        "(pip install 'mpicode[data]')")
    out = tmp_path / "results"
    readme = tmp_path / "README.md"
    readme.write_text("# project\n\nkept\n")
    r = subprocess.run([PY, "-m", "studies", "--quick", "--out", str(out),
                        "--readme", str(readme)], capture_output=True, text=True,
                       timeout=360, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    suite = Suite.make(quick=True)
    for cell in suite.cells():  # one complete HDF5 run per cell
        with h5py.File(out / f"{cell.name}.h5", "r") as f:
            assert f.attrs["status"] == "complete", cell.name
            assert int(f.attrs["n_done"]) == cell.options["iterations"], cell.name
            if cell.trace:  # every comparison replays its scenario's trace
                cfg = json.loads(f.attrs["config"])
                assert cfg["stragglers"] == f"trace:{out / cell.trace}.h5"
    for name in ("results.md", "summary.json", "load.png", "comm.png", "fairness.png",
                 "noniid.png", "scale.png", "accuracy_bimodal.png", "mpi_seeded.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    ids = [c["id"] for c in summary["claims"]]
    assert ids == ["1", "1b", "2", "3", "4"]
    for c in summary["claims"]:
        assert c["verdict"] in (verdicts.HOLDS, verdicts.FAILS, verdicts.MIXED)
        assert c["rule"] and c["evidence"]
    # the seeded MPI comparison: every (scenario, placement), ratios paired by seed with CIs
    sd = summary["seeded"]
    assert sd["seeds"] == suite.seeds >= 2
    cases = {(c["scenario"], c["placement"]) for c in sd["compare"]["two-stage"]}
    assert len(cases) == 3 * 2
    for c in sd["compare"]["two-stage"] + sd["compare"]["two-stage (paper)"]:
        assert len(c["t_loss"]["ratios"]) == suite.seeds
        assert c["verdict"] in ("faster", "slower", "tie", "n/a")
        assert c["best_loss"] not in ("two-stage", "two-stage (paper)")
    assert [t["id"] for t in summary["targets16"]] == ["16a", "16b"]
    # claim 2 comes from the seeded scheduler study, in virtual time and MPI
    comm = json.loads((out / "comm_study.json").read_text())
    assert {c["block"] for c in comm["compare"]} == {"virtual", "mpi"}
    assert summary["comm_study"] and (out / "comm_study.md").stat().st_size > 0
    text = readme.read_text()
    assert text.startswith("# project\n\nkept\n")
    assert publish.START in text and publish.END in text and "results/results.md" in text
    # the simulator study (the shipped traces among its scenarios, the coded comparison) and
    # the MLP study are published next to the claims
    study = json.loads((out / "study.json").read_text())
    assert {"trace-SE", "trace-AR"} <= {r["scenario"] for r in study["rows"]}
    assert study["meta"]["coded"] and "best of frc and cyclic" in text
    mlp = json.loads((out / "mlp.json").read_text())
    assert mlp["rows"] and "<!-- mlp:start -->" in text and "results/mlp.json" in text
    table = (out / "results.md").read_text()
    assert "| 1 |" in table and "| 4 |" in table


def test_inner_job_at_the_wrong_size_exits_2_with_one_line(tmp_path):
    """The suite's MPI job launched with the wrong number of ranks: every rank exits 2, one
    line names the size (no MPI_Abort banner, nothing written)."""
    from conftest import mpiexec_cmd
    env = launcher.launch_env(timeout=100)
    r = subprocess.run([*mpiexec_cmd(2), PY, "-m", "mpi4py", "-m",
                        "studies.mpirun", "--inner", "--out", str(tmp_path / "o"),
                        "--data-dir", str(tmp_path / "d")], capture_output=True, text=True,
                       timeout=130, cwd=ROOT, env=env)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stderr)
    assert lines[0].startswith("experiments: need ") and lines[0].endswith("got 2")
    assert "Abort" not in r.stderr and not (tmp_path / "o").exists()

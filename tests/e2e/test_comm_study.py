"""The claim-2 study end to end in quick mode: virtual time and the MPI block (one
``mpiexec`` job of 5 ranks), through its command line."""

import json
import subprocess

import pytest
from conftest import PY, ROOT

pytestmark = pytest.mark.timeout(240)


def test_quick_comm_study_with_mpi(tmp_path):
    out = tmp_path / "comm.json"
    r = subprocess.run([PY, "-m", "studies.comm_study", "--quick", "--json",
                        str(out)], capture_output=True, text=True, timeout=200, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    d = json.loads(out.read_text())
    blocks = {c["block"] for c in d["compare"]}
    assert blocks == {"virtual", "mpi"}
    mpi = [x for x in d["rows"] if x["block"] == "mpi"]
    assert {x["scheduler"] for x in mpi} == {"max-weight", "lyapunov"}
    for x in mpi:
        assert x["iterations_done"] == [4, 4]
        # exact schemes: every scheduler reaches the same loss at the same iteration
        assert x["loss_at_target"] == pytest.approx(mpi[0]["loss_at_target"], rel=1e-9)
    assert "claim 2" in r.stdout and "| two-stage | max-weight |" in r.stdout

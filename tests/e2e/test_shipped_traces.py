"""``python -m mpicode.io.shipped`` (what ``make data`` runs for the traces)."""

import subprocess

import pytest
from conftest import PY, ROOT

from mpicode.io.traces import read_trace

pytestmark = pytest.mark.timeout(120)


def test_shipped_traces_cli_builds_both_and_keeps_them(tmp_path):
    cmd = [PY, "-m", "mpicode.io.shipped", "--data-dir", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=100, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    shapes = {n: read_trace(str(tmp_path / f"trace-{n}.h5"))[0].shape for n in ("SE", "AR")}
    assert shapes == {"SE": (43, 32), "AR": (44, 4)}
    before = (tmp_path / "trace-SE.h5").stat().st_mtime_ns
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert r.returncode == 0 and (tmp_path / "trace-SE.h5").stat().st_mtime_ns == before

"""`mpicode traces import` and `--stragglers trace:TRACE.h5` through the CLI (subprocesses
with timeouts): one-line errors with exit 2, the shipped traces replayed in simulate and train."""

import h5py
import numpy as np
from conftest import ROOT, mpicode, mpirun

SE = ROOT / "data" / "traces" / "bytedance-SE.csv"
AR = ROOT / "data" / "traces" / "bytedance-AR.csv"


def _import(src, out, *extra):
    return mpicode(["traces", "import", src, "--out", out, "--duration-col", "compute", *extra],
                   timeout=120)


def test_import_cli_and_bad_file(tmp_path):
    r = _import(AR, tmp_path / "ar.h5", "--license", "Apache-2.0")
    assert r.returncode == 0, r.stderr
    assert "44 iterations x 4 workers" in r.stdout and "trace:" in r.stdout
    with h5py.File(tmp_path / "ar.h5", "r") as f:
        assert f.attrs["license"] == "Apache-2.0" and f["durations"].shape == (44, 4)
    bad = tmp_path / "bad.csv"
    bad.write_text("iteration,worker,compute\n0,0,1.5\n0,1,-2\n")
    r = _import(bad, tmp_path / "bad.h5")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "negative duration" in r.stderr
    r = mpicode(["traces", "import", AR, "--out", tmp_path / "x.h5"], timeout=60)  # no compute
    assert r.returncode == 2 and "no column 'duration'" in r.stderr and "compute" in r.stderr
    assert not (tmp_path / "bad.h5").exists() and not (tmp_path / "x.h5").exists()


def test_simulate_replays_a_trace_and_trace_map(tmp_path):
    assert _import(AR, tmp_path / "ar.h5").returncode == 0
    base = ["simulate", "--iterations", "50", "--samples", "300", "--features", "5",
            "--stragglers", f"trace:{tmp_path / 'ar.h5'}", "--quiet"]
    r = mpicode(base + ["--workers", "8", "--out", tmp_path / "r.h5"], timeout=180)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "4 workers x 44 iterations" in r.stderr and "--trace-map" in r.stderr
    r = mpicode(base + ["--workers", "8", "--trace-map", "tile", "--delay-unit", "0.1",
                        "--compute", "none", "--out", tmp_path / "r.h5"], timeout=180)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "r.h5", "r") as f:
        n = f.attrs["n_done"]
        dt = f["iterations/t_end"][:n] - f["iterations/t_start"][:n]
    with h5py.File(tmp_path / "ar.h5", "r") as f:
        rel = f["relative"][()]
    # uncoded waits for the slowest worker: AR's worker 0 (replayed by workers 0 and 4),
    # iteration t replaying trace row t mod 44; each iteration at least unit x that factor
    want = 0.1 * rel[np.arange(n) % 44].max(axis=1)
    assert n == 50 and np.all(dt >= want * (1 - 1e-9)) and np.all(dt < want * 1.05 + 0.01)


def test_train_replays_the_first_workers_of_the_32_worker_trace(tmp_path):
    assert _import(SE, tmp_path / "se.h5").returncode == 0
    r = mpirun(5, ["train", "--iterations", "5", "--samples", "300", "--features", "5",
                   "--stragglers", f"trace:{tmp_path / 'se.h5'}", "--delay-mode", "virtual",
                   "--delay-unit", "0.002", "--out", tmp_path / "t.h5", "--quiet"], timeout=180)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["n_done"] == 5

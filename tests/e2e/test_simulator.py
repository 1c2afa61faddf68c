"""The simulator (serial twin of the MPI runtime), virtual clock, traces, reproducibility."""

import h5py
import numpy as np
import pytest
from conftest import mpicode, mpirun

from mpicode import registry

pytestmark = pytest.mark.timeout(300)


def _files_equal(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for grp in ("iterations", "workers", "tasks", "model"):
            assert set(fa[grp]) == set(fb[grp]), grp
            for k in fa[grp]:
                x, y = fa[grp][k][...], fb[grp][k][...]
                assert x.dtype == y.dtype and x.shape == y.shape, (grp, k)
                assert x.tobytes() == y.tobytes(), (grp, k)
        for k in ("n_done", "n_tasks", "partition_cost", "scheme", "seed"):
            assert fa.attrs[k] == fb.attrs[k], k


@pytest.mark.parametrize("scheme", list(registry.schemes()))
def test_simulate_is_bit_for_bit_reproducible(tmp_path, scheme):
    args = ["simulate", "--workers", 6, "--iterations", 12, "--scheme", scheme,
            "--stragglers-tolerated", 1, "--stragglers", "pareto", "--samples", 600,
            "--features", 8, "--seed", 11, "--partition-cost", 1e-4, "--quiet"]
    for name in ("a", "b"):
        r = mpicode([*args, "--out", tmp_path / f"{name}.h5"])
        assert r.returncode == 0, r.stderr
    _files_equal(tmp_path / "a.h5", tmp_path / "b.h5")
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f.attrs["mode"] == "simulated" and f.attrs["status"] == "complete"
        assert np.all(np.isfinite(f["iterations/loss"][:]))


def test_simulate_compute_none_at_scale(tmp_path):
    r = mpicode(["simulate", "--workers", 2000, "--iterations", 3, "--compute", "none",
                 "--scheme", "two-stage", "--stragglers", "shifted-exp", "--out",
                 tmp_path / "s.h5", "--quiet"])
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f.attrs["n_done"] == 3 and f["workers/finish_s"].shape == (3, 2000)
        assert np.all(np.isnan(f["iterations/loss"][:]))


def _record(tmp_path, n=5, iterations=6):
    rec = tmp_path / "rec.h5"
    r = mpirun(n, ["train", "--scheme", "uncoded", "--stragglers", "bimodal", "--slowdown", 4,
                   "--delay-unit", 0.01, "--iterations", iterations, "--samples", 600,
                   "--features", 8, "--seed", 5, "--out", rec, "--quiet"])
    assert r.returncode == 0, r.stderr
    return rec


def test_train_and_simulate_make_the_same_decisions_from_a_trace(tmp_path):
    """Equivalence at 5 ranks: with the same trace, virtual delays and partition cost, the MPI
    runtime and the simulator dispatch the same tasks, decode from the same messages, and
    train to the same model."""
    rec = _record(tmp_path)
    common = ["--scheme", "two-stage", "--stragglers", f"trace:{rec}", "--iterations", 6,
              "--samples", 600, "--features", 8, "--seed", 5, "--partition-cost", 2e-3,
              "--delay-mode", "virtual", "--quiet", "--stragglers-tolerated", 1]
    r = mpirun(5, ["train", *common, "--out", tmp_path / "mpi.h5"])
    assert r.returncode == 0, r.stderr
    r = mpicode(["simulate", "--workers", 4, *common, "--out", tmp_path / "sim.h5"])
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "mpi.h5", "r") as fm, h5py.File(tmp_path / "sim.h5", "r") as fs:
        assert fm.attrs["mode"] == "mpi" and fs.attrs["mode"] == "simulated"
        for k in ("iteration", "worker", "stage", "n_partitions", "first_partition", "used",
                  "cancelled", "t_dispatch", "t_done", "delay_s"):
            np.testing.assert_array_equal(fm["tasks"][k][:], fs["tasks"][k][:], err_msg=k)
        assert fm["tasks/stage"][:].max() == 2, "the trace should trigger stage 2"
        for k in ("coverage", "load", "stage2", "n_stage2", "t_end", "bytes_up"):
            np.testing.assert_array_equal(fm["iterations"][k][:], fs["iterations"][k][:], k)
        np.testing.assert_allclose(fm["iterations/loss"][:], fs["iterations/loss"][:],
                                   rtol=1e-12)
        np.testing.assert_allclose(fm["model/w"][:], fs["model/w"][:], rtol=1e-12)


def test_trace_replay_errors(tmp_path):
    rec = _record(tmp_path, n=3, iterations=3)
    r = mpicode(["simulate", "--workers", 4, "--stragglers", f"trace:{rec}", "--iterations", 3,
                 "--out", tmp_path / "x.h5"])
    assert r.returncode == 2 and "recorded with N=2" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = mpicode(["simulate", "--workers", 2, "--stragglers", f"trace:{rec}", "--iterations", 9,
                 "--out", tmp_path / "x.h5"])
    assert r.returncode == 2 and "holds 3 iterations" in r.stderr
    r = mpirun(5, ["train", "--stragglers", f"trace:{rec}", "--iterations", 3, "--out",
                   tmp_path / "y.h5", "--quiet"])
    assert r.returncode == 2 and "recorded with N=2" in r.stderr
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()
    r = mpicode(["simulate", "--stragglers", "trace:/no/such.h5", "--out", tmp_path / "z.h5"])
    assert r.returncode == 2 and "trace" in r.stderr


def test_trace_replays_recorded_delays_exactly(tmp_path):
    rec = _record(tmp_path, n=3, iterations=4)
    r = mpicode(["simulate", "--workers", 2, "--scheme", "uncoded", "--stragglers",
                 f"trace:{rec}", "--iterations", 4, "--samples", 600, "--features", 8,
                 "--out", tmp_path / "rep.h5", "--quiet"])
    assert r.returncode == 0, r.stderr
    with h5py.File(rec, "r") as a, h5py.File(tmp_path / "rep.h5", "r") as b:
        np.testing.assert_allclose(a["tasks/delay_s"][:], b["tasks/delay_s"][:], rtol=1e-12)


def test_default_partition_cost_is_not_measured(tmp_path):
    """Without --partition-cost, two runs with the same options are bit-identical (the default
    is the documented kernel model, not a timing of this machine)."""
    from mpicode.simulator import model_partition_cost
    args = ["simulate", "--workers", 16, "--compute", "none", "--iterations", 4, "--scheme",
            "two-stage", "--stragglers", "shifted-exp", "--samples", 3200, "--features", 50,
            "--quiet"]
    for name in ("a", "b"):
        r = mpicode([*args, "--out", tmp_path / f"{name}.h5"])
        assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        assert a.attrs["partition_cost"] == model_partition_cost(3200 / 64, 50)
        for g in ("iterations", "tasks", "workers"):
            for k in a[g]:
                np.testing.assert_array_equal(a[g][k][:], b[g][k][:], err_msg=f"{g}/{k}")

"""``mpicode calibrate`` at 3 ranks (quick sizes), then ``simulate --profile`` with its profile;
bad profiles and outputs are one-line errors with exit code 2."""

import json

import h5py
import numpy as np
import pytest
from conftest import mpicode, mpirun

from mpicode.profile import PROFILE_KEYS, load_profile, rank0_table

pytestmark = pytest.mark.timeout(400)


def test_calibrate_quick_then_simulate_with_the_profile(tmp_path):
    prof = tmp_path / "p.toml"
    r = mpirun(3, ["calibrate", "--quick", "--quiet", "--out", prof], timeout=240)
    assert r.returncode == 0, r.stderr
    text = prof.read_text()
    for h in ("# machine:", "# date:", "# command: mpiexec -n 3", "# MPI library:"):
        assert h in text, h
    vals = load_profile(str(prof))
    assert set(vals) <= set(PROFILE_KEYS) and "dispatch_s" in vals
    table = vals.pop("rank0_table")  # rank 0's per-action CPU model (docs/design.md §2.6)
    assert all(v is None or (np.isfinite(v) and v >= 0) for v in vals.values())
    assert vals["kernel_elements_per_s"] > 0
    assert vals["rank0_factor"] > 0 and vals["rank0_send_s"] > 0 and vals["rank0_recv_s"] > 0
    assert {"two-stage", "uncoded", "engine", "default"} <= set(json.loads(rank0_table(table)))
    args = ["simulate", "--workers", 4, "--iterations", 5, "--scheme", "two-stage",
            "--stragglers", "shifted-exp", "--samples", 600, "--features", 8, "--quiet"]
    r = mpicode([*args, "--profile", prof, "--out", tmp_path / "a.h5"])
    assert r.returncode == 0, r.stderr
    r = mpicode([*args, "--out", tmp_path / "b.h5"])
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        ia, ib = a["iterations"], b["iterations"]
        # the profile's coordinator phases are in the rows (the first row has no previous
        # bookkeeping for rank 0's cost model to charge), and rows tile the time
        assert ia["log_s"][0] == pytest.approx(vals["coord_log_s"], rel=1e-12)
        assert np.all(ia["log_s"][1:] > vals["coord_log_s"])
        phases = sum(ia[k][:] for k in ("log_s", "wait_s", "decode_s", "update_s", "eval_s"))
        np.testing.assert_allclose(ia["t_end"][:] - ia["t_start"][:], phases, rtol=1e-9)
        assert ia["t_end"][-1] > ib["t_end"][-1]
        # without a profile: no constant phases, rank 0's actions charged by the reference
        assert ib["log_s"][0] == 0 and np.all(ib["log_s"][1:] > 0)
        assert np.all(ib["policy_s"][:] > 0) and np.all(ib["coord_busy"][:] > 0)


def test_calibrate_refuses_an_existing_output(tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text("")
    r = mpirun(2, ["calibrate", "--quick", "--out", prof])
    assert r.returncode == 2 and "exists" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text, msg", [("dispatch_s = -1\n", "must be >= 0"),
                                       ("nonsense = 1\n", "unknown key"),
                                       ("[x\n", "TOML syntax error")])
def test_simulate_with_a_bad_profile(tmp_path, text, msg):
    prof = tmp_path / "bad.toml"
    prof.write_text(text)
    r = mpicode(["simulate", "--workers", 2, "--iterations", 2, "--profile", prof, "--out",
                 tmp_path / "x.h5"])
    assert r.returncode == 2 and msg in r.stderr and "profile" in r.stderr
    assert r.stderr.startswith("mpicode: error: ") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()


def test_train_virtual_and_simulate_agree_with_a_profile(tmp_path):
    """With the same trace and profile, ``train --delay-mode virtual`` and ``simulate`` make
    the same decisions at the same virtual times (the cost model is one, in the engine)."""
    rec = tmp_path / "rec.h5"
    r = mpirun(4, ["train", "--stragglers", "bimodal", "--slowdown", 4, "--delay-unit", 0.01,
                   "--iterations", 5, "--samples", 600, "--features", 8, "--seed", 5,
                   "--out", rec, "--quiet"])
    assert r.returncode == 0, r.stderr
    prof = tmp_path / "p.toml"
    prof.write_text("dispatch_s = 4e-4\nmsg_latency_s = 1e-4\nmsg_bandwidth = 1e8\n"
                    "coord_log_s = 2e-3\ncoord_decode_s = 1e-4\ncoord_update_s = 1e-4\n"
                    "coord_eval_s = 5e-4\nkernel_elements_per_s = 1e8\n")
    common = ["--scheme", "two-stage", "--stragglers", f"trace:{rec}", "--iterations", 5,
              "--samples", 600, "--features", 8, "--seed", 5, "--delay-mode", "virtual",
              "--quiet", "--profile", prof]
    r = mpirun(4, ["train", *common, "--out", tmp_path / "mpi.h5"])
    assert r.returncode == 0, r.stderr
    r = mpicode(["simulate", "--workers", 3, *common, "--out", tmp_path / "sim.h5"])
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "mpi.h5", "r") as fm, h5py.File(tmp_path / "sim.h5", "r") as fs:
        for k in ("iteration", "worker", "stage", "n_partitions", "used", "t_dispatch",
                  "t_done"):
            np.testing.assert_array_equal(fm["tasks"][k][:], fs["tasks"][k][:], err_msg=k)
        for k in ("load", "t_end", "log_s", "decode_s", "eval_s"):
            np.testing.assert_array_equal(fm["iterations"][k][:], fs["iterations"][k][:], k)
        assert fm["iterations/log_s"][0] == 2e-3

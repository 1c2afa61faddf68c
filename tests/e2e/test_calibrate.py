"""``mpicode calibrate`` at 3 ranks (quick sizes), then ``simulate --profile`` with its profile;
bad profiles and outputs are one-line errors with exit code 2."""

import h5py
import numpy as np
import pytest
from conftest import mpicode, mpirun

from mpicode.profile import PROFILE_KEYS, load_profile

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
    assert all(v is None or (np.isfinite(v) and v >= 0) for v in vals.values())
    assert vals["kernel_elements_per_s"] > 0
    args = ["simulate", "--workers", 4, "--iterations", 5, "--scheme", "two-stage",
            "--stragglers", "shifted-exp", "--samples", 600, "--features", 8, "--quiet"]
    r = mpicode([*args, "--profile", prof, "--out", tmp_path / "a.h5"])
    assert r.returncode == 0, r.stderr
    r = mpicode([*args, "--out", tmp_path / "b.h5"])
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        ia, ib = a["iterations"], b["iterations"]
        # the profile's coordinator phases are in the rows, and rows tile the time
        np.testing.assert_allclose(ia["log_s"][:], vals["coord_log_s"], rtol=1e-12)
        phases = sum(ia[k][:] for k in ("log_s", "wait_s", "decode_s", "update_s", "eval_s"))
        np.testing.assert_allclose(ia["t_end"][:] - ia["t_start"][:], phases, rtol=1e-9)
        assert ia["t_end"][-1] > ib["t_end"][-1]
        assert np.all(ib["log_s"][:] == 0)


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

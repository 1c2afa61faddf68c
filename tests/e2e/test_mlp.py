"""MLP with mini-batches end to end: every exact scheme decodes the same batch gradients as
uncoded (loss trajectories equal to 1e-9 over 20 iterations), in the simulator and at 5 MPI
ranks; the optimizer state survives a resume; the MLP learns digits.

    python -m pytest -q tests/e2e/test_mlp.py
"""

import h5py
import numpy as np
import pytest
from conftest import mpicode, mpirun

from mpicode.schemes import SCHEMES

pytestmark = pytest.mark.timeout(600)

# exact by class; two-stage is exact unless --max-wait is given (not given here)
EXACT = sorted(name for name, cls in SCHEMES.items() if cls.exact)
MLP = ["--model", "mlp", "--hidden", "12,8", "--activation", "tanh", "--batch-size", 64,
       "--optimizer", "nesterov", "--lr", 0.1, "--samples", 600, "--features", 10,
       "--iterations", 20, "--seed", 4, "--stragglers", "shifted-exp",
       "--stragglers-tolerated", 1, "--quiet", "--eval-every", 1]


def _losses(path):
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        it = f["iterations"]
        n = int(f.attrs["n_done"])
        return it["loss"][:n], f["model/w"][...]


def test_exact_list_is_derived_from_the_scheme_classes():
    assert "uncoded" in EXACT and "ignore-stragglers" not in EXACT  # the reference; inexact
    assert all(SCHEMES[name].exact for name in EXACT)


def _compare(runs):
    ref, w_ref = runs["uncoded"]
    assert ref.size == 20 and np.all(np.isfinite(ref))
    assert ref[-1] < ref[0]  # it trains
    for name, (loss, w) in runs.items():
        np.testing.assert_allclose(loss, ref, rtol=1e-9, atol=0, err_msg=name)
        np.testing.assert_allclose(w, w_ref, rtol=1e-8, atol=1e-10, err_msg=name)


def test_simulator_exact_schemes_match_uncoded(tmp_path):
    runs = {}
    for name in EXACT:
        out = tmp_path / f"{name}.h5"
        r = mpicode(["simulate", "--workers", 4, "--scheme", name, "--partition-cost", 1e-3,
                     *MLP, "--out", out], timeout=300)
        assert r.returncode == 0, r.stderr
        runs[name] = _losses(out)
    _compare(runs)


def test_mpi_exact_schemes_match_uncoded_at_5_ranks(tmp_path):
    runs = {}
    for name in EXACT:
        out = tmp_path / f"{name}.h5"
        r = mpirun(5, ["train", "--scheme", name, "--delay-unit", 0.002, *MLP, "--out", out],
                   timeout=180)
        assert r.returncode == 0, r.stderr
        runs[name] = _losses(out)
    _compare(runs)


def test_adam_state_survives_resume(tmp_path):
    base = ["simulate", "--workers", 4, "--partition-cost", 1e-3, "--model", "mlp",
            "--hidden", 8, "--batch-size", 32, "--optimizer", "adam", "--lr", 0.01,
            "--samples", 300, "--features", 6, "--quiet"]
    out, ref = tmp_path / "r.h5", tmp_path / "ref.h5"
    assert mpicode([*base, "--iterations", 5, "--out", out]).returncode == 0
    r = mpicode(["simulate", "--resume", out, "--iterations", 9, "--quiet"])
    assert r.returncode == 0, r.stderr
    assert mpicode([*base, "--iterations", 9, "--out", ref]).returncode == 0
    (la, wa), (lb, wb) = _losses(out), _losses(ref)
    assert la.tobytes() == lb.tobytes() and wa.tobytes() == wb.tobytes()
    with h5py.File(out, "r") as f:
        assert int(f["checkpoint/optimizer/t"][()]) == 9


def test_mlp_learns_digits(tmp_path):
    r = mpicode(["data", "bundled", "--out-dir", tmp_path], timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "digits-mlp.h5"
    r = mpicode(["simulate", "--compute", "real", "--dataset", tmp_path / "digits.h5",
                 "--model", "mlp", "--hidden", 64, "--optimizer", "adam", "--lr", 0.01,
                 "--batch-size", 128, "--iterations", 300, "--workers", 4,
                 "--partition-cost", 1e-3, "--eval-every", 50, "--quiet", "--out", out],
                timeout=300)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        acc = f["iterations"]["accuracy"][int(f.attrs["n_done"]) - 1]
    assert acc >= 0.95

"""Every model x every driver, end to end: ``train`` at 3 ranks (real delays),
``train --delay-mode virtual`` and ``simulate``, each on the built-in synthetic data that
follows the model (binary, 4 classes, a linear target). A model that crashes one driver
(``least-squares`` once did: ``rmse`` was not in the log schema) fails here. Tiny runs:
400 x 5 data, 4 iterations, every launch bounded by a subprocess timeout."""

import h5py
import numpy as np
import pytest
from conftest import mpicode, mpirun

MODELS = ("logistic", "softmax", "least-squares")
DRIVERS = ("train", "train-virtual", "simulate")
COMMON = ["--samples", 400, "--features", 5, "--iterations", 4, "--quiet", "--lr", 0.2]

pytestmark = pytest.mark.timeout(600)


def _run(driver: str, out, extra=()):
    if driver == "simulate":
        return mpicode(["simulate", "--workers", 2, "--partition-cost", 1e-3, *COMMON,
                        "--out", out, *extra], timeout=240)
    virtual = ["--delay-mode", "virtual", "--partition-cost", 1e-3] \
        if driver == "train-virtual" else []
    return mpirun(3, ["train", *COMMON, *virtual, "--out", out, *extra], timeout=240)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_under_every_driver(tmp_path, model, driver):
    out = tmp_path / "m.h5"
    r = _run(driver, out, ["--model", model, "--eval-every", 1])  # every row's evaluation
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and int(f.attrs["n_done"]) == 4
        assert f.attrs["model"] == model
        loss = f["iterations/loss"][:]
        assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
        # the workers' loss of each broadcast model is rank 0's evaluation of it
        np.testing.assert_allclose(f["iterations/train_loss"][1:], loss[:-1], rtol=1e-12)
        w = f["model/w"][:]
        assert np.all(np.isfinite(w)) and w.size == (5 * 4 if model == "softmax" else 5)
        rmse = f["iterations/rmse"][:]
        if model == "least-squares":
            np.testing.assert_array_equal(rmse, f["iterations/accuracy"][:])
            assert np.all(rmse > 0)
        else:
            assert np.all(np.isnan(rmse))


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_diverging_model_fails_with_one_line(tmp_path, driver):
    """``--lr 1e308``: status failed, one line naming the iteration and --lr, exit 1."""
    out = tmp_path / "d.h5"
    r = _run(driver, out, ["--lr", "1e308"])
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "diverged at iteration 0" in lines[0] and "smaller --lr" in lines[0]
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "failed" and "model" not in f


def test_diabetes_trains_with_least_squares(tmp_path):
    """The bundled regression set (``make data``) trains: it needs scikit-learn to build."""
    pytest.importorskip("sklearn")
    r = mpicode(["data", "bundled", "--out-dir", tmp_path / "data"], timeout=240)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "dia.h5"
    r = mpicode(["simulate", "--workers", 2, "--partition-cost", 1e-3, "--model",
                 "least-squares", "--dataset", tmp_path / "data" / "diabetes.h5",
                 "--iterations", 4, "--lr", 0.1, "--quiet", "--out", out], timeout=240)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and np.all(np.isfinite(f["iterations/rmse"][:]))

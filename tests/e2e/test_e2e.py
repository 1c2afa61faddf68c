"""End-to-end runs of `mpicode train` under mpiexec, launched from serial pytest with a timeout."""

import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from conftest import MPIEXEC, PY, ROOT, mpirun, wait_until

from mpicode.analysis.report import read_run, render

pytestmark = pytest.mark.timeout(300)

SMALL = ["--samples", 800, "--features", 10, "--quiet"]


def test_demo_run_and_report(tmp_path):
    out = tmp_path / "demo.h5"
    r = mpirun(5, ["train", "--config", ROOT / "jobs/configs/demo.toml", "--iterations", 8,
                   "--out", out, "--quiet"])
    assert r.returncode == 0, r.stderr
    run = read_run(str(out))
    assert run["attrs"]["status"] == "complete"
    assert run["n"] == 8 and run["attrs"]["n_workers"] == 4
    for k in ("format_version", "mpicode_version", "created", "config", "scheme", "n_workers",
              "n_partitions", "seed", "mpi_library", "status", "n_done"):
        assert k in run["attrs"], k
    for k in ("iteration", "t_start", "t_end", "train_loss", "train_metric", "coverage",
              "load", "decode_s"):
        assert np.all(np.isfinite(run["iterations"][k])), k
    # --eval-every auto: rank 0 evaluated the first and the last iteration at least; between
    # its evaluations the workers' train_loss gives the loss of every model
    for k in ("loss", "test_loss", "accuracy"):
        assert np.all(np.isfinite(run["iterations"][k][[0, -1]])), k
    from mpicode.analysis import loss_after_step
    assert np.all(np.isfinite(loss_after_step(run)))
    assert run["workers"]["finish_s"].shape == (8, 4)
    assert not (tmp_path / "demo.h5.part").exists()
    table = render([str(out)])
    assert "complete" in table and "two-stage" in table


def _bimodal(tmp_path, scheme):
    out = tmp_path / f"{scheme}.h5"
    # worker 0..3; slow_fraction 0.25 -> exactly one persistently slow worker, 10x slower
    r = mpirun(5, ["train", "--scheme", scheme, "--stragglers", "bimodal", "--slowdown", 10,
                   "--delay-unit", 0.02, "--iterations", 5, "--stragglers-tolerated", 1,
                   "--seed", 4, "--out", out, *SMALL])
    assert r.returncode == 0, r.stderr
    return read_run(str(out))


def test_bimodal_ignore_stragglers_does_not_wait(tmp_path):
    unc = _bimodal(tmp_path, "uncoded")
    ign = _bimodal(tmp_path, "ignore-stragglers")
    # the slow worker: largest injected delay per task
    t = unc["tasks"]
    slow = int(t["worker"][np.argmax(t["delay_s"])])
    # uncoded: every iteration waited for the slow worker's result
    fin_u = unc["workers"]["finish_s"]
    assert np.all(np.isfinite(fin_u[:, slow]))
    assert np.all(unc["iterations"]["wait_s"] >= fin_u[:, slow])
    assert np.all(fin_u[:, slow] >= np.nanmax(np.delete(fin_u, slow, axis=1), axis=1))
    # ignore-stragglers: decoded before the slow worker could finish, never used its result
    fin_i = ign["workers"]["finish_s"]
    assert np.all(np.isnan(fin_i[:, slow]))
    assert np.all(ign["workers"]["used"][:, slow] == 0)
    ti = ign["tasks"]
    slow_delay = ti["delay_s"][ti["worker"] == slow]
    assert np.all(ign["iterations"]["wait_s"] < slow_delay)
    assert np.all(ign["iterations"]["coverage"] == 0.75)


def kill_session(p, sig=signal.SIGKILL):
    """Kill mpiexec and every rank (they share the session started for mpiexec)."""
    subprocess.run(["pkill", f"-{int(sig)}", "-s", str(p.pid)], check=False)
    p.wait(timeout=30)
    gone = wait_until(lambda: subprocess.run(["pgrep", "-s", str(p.pid)],
                                             capture_output=True).returncode != 0, 30)
    assert gone, "ranks survived SIGKILL"


@pytest.mark.parametrize("kill_after", [1.5, 3.0])
def test_sigkill_leaves_readable_rows(tmp_path, kill_after):
    out = tmp_path / "killed.h5"
    cmd = [MPIEXEC, "-n", "3", PY, "-m", "mpi4py", "-m", "mpicode", "train", "--iterations",
           "100000", "--stragglers", "shifted-exp", "--delay-unit", "0.005", "--out", str(out),
           *map(str, SMALL)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    part = tmp_path / "killed.h5.part"
    wait_until(part.exists, 60)
    time.sleep(kill_after)
    kill_session(p)
    assert part.exists() and not out.exists()
    with h5py.File(part, "r", locking=False) as f:
        n = int(f.attrs["n_done"])
        assert n >= 1
        # "failed" once the watchdog noticed the writer died
        assert f.attrs["status"] in ("running", "failed")
        for k in f["iterations"]:
            d = f["iterations"][k]
            assert d.shape[0] >= n
        it = f["iterations/iteration"][:n]
        np.testing.assert_array_equal(it, np.arange(n))
        for k in ("t_start", "t_end", "train_loss", "coverage", "load"):
            assert np.all(np.isfinite(f["iterations"][k][:n])), k
        assert np.all(np.diff(f["iterations/t_end"][:n]) > 0)
        assert f["workers/finish_s"][:n].shape == (n, 2)


def test_force_overwrites_an_existing_output(tmp_path):
    """(The refusal without --force is in test_bad_input.py.)"""
    out = tmp_path / "keep.h5"
    out.write_bytes(b"precious")
    r = mpirun(3, ["train", "--out", out, "--iterations", 2, "--force", *SMALL], timeout=60)
    assert r.returncode == 0, r.stderr
    assert read_run(str(out))["n"] == 2


def test_coded_schemes_agree_at_9_ranks():
    """The pytest-mpi agreement test, at 9 ranks (make test-mpi runs it at 5)."""
    import os
    env = dict(os.environ, MPIEXEC_TIMEOUT="200")
    r = subprocess.run([MPIEXEC, "-n", "9", PY, "-m", "mpi4py", "-m", "pytest", "-q",
                        "-p", "no:cacheprovider", "--with-mpi", "--only-mpi",
                        "tests/mpi/test_mpi.py::test_coded_schemes_agree_with_uncoded"],
                       cwd=ROOT, capture_output=True, text=True, timeout=230, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1 passed" in r.stdout


def test_rows_tile_training_time(tmp_path):
    """One clock: consecutive rows tile training time with no gap, and each row's phases add
    up to its duration (an accounting identity, not a timing assertion)."""
    out = tmp_path / "t.h5"
    r = mpirun(3, ["train", "--out", out, "--iterations", 6, "--eval-every", 2, *SMALL],
               timeout=90)
    assert r.returncode == 0, r.stderr
    it = read_run(str(out))["iterations"]
    np.testing.assert_array_equal(it["t_start"][1:], it["t_end"][:-1])
    phases = it["log_s"] + it["wait_s"] + it["decode_s"] + it["update_s"] + it["eval_s"]
    np.testing.assert_allclose(phases, it["t_end"] - it["t_start"], rtol=0, atol=1e-9)
    assert (it["eval_s"][[0, 2, 4]] == 0).all() and (it["eval_s"][[1, 3, 5]] > 0).all()

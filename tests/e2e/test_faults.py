"""Faults: kills, signals, hung and dying workers, full disks, checkpoint and resume.

Every test is bounded (subprocess timeouts + MPIEXEC_TIMEOUT); none may hang. Run them alone
with ``make test-faults``.
"""

import os
import resource
import signal
import subprocess

import h5py
import numpy as np
import pytest
from conftest import MPIEXEC, PY, ROOT, mpicode, mpirun, run_attr, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

SMALL = ["--samples", 600, "--features", 8, "--quiet"]
COMPARED = ("iterations", "workers", "tasks")


def datasets(path):
    with h5py.File(path, "r", locking=False) as f:
        n, nt = int(f.attrs["n_done"]), int(f.attrs["n_tasks"])
        out = {}
        for g in COMPARED:
            for k, d in f[g].items():
                out[f"{g}/{k}"] = d[:nt] if g == "tasks" else d[:n]
        if "model" in f:
            out["model/w"] = f["model/w"][...]
        return out, dict(f.attrs)


def assert_bit_identical(a, b, exclude=()):
    """Every logged value equal, bit for bit, but the fields in ``exclude``."""
    da, _ = datasets(a)
    db, _ = datasets(b)
    assert set(da) == set(db)
    for k in sorted(set(da) - set(exclude)):
        assert da[k].dtype == db[k].dtype and da[k].shape == db[k].shape, k
        assert da[k].tobytes() == db[k].tobytes(), k


def wait_status(path, want, timeout=20):
    assert wait_until(lambda: run_attr(path, "status") == want, timeout, 0.2), \
        f"{path}: status never became {want}"


# ---- resume: bit-identical in virtual time ---------------------------------------------
SIM = ["simulate", "--workers", 6, "--iterations", 16, "--scheme", "two-stage",
       "--stragglers", "shifted-exp", "--channel", "rayleigh", "--scheduler", "lyapunov",
       "--partition-cost", 1e-3, "--seed", 3, "--log-slots", *SMALL]


def test_simulate_killed_and_resumed_is_bit_identical(tmp_path):
    ref = tmp_path / "ref.h5"
    assert mpicode([*SIM, "--out", ref]).returncode == 0
    out = tmp_path / "cut.h5"
    env = dict(os.environ, MPICODE_FAULT="kill:11", MPICODE_TEST_FAULTS="1")
    r = subprocess.run([PY, "-m", "mpicode", *map(str, SIM), "--out", str(out),
                        "--checkpoint-every", "4"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL
    part = tmp_path / "cut.h5.part"
    wait_status(part, "failed")  # the watchdog saw the writer die
    with h5py.File(part, "r", locking=False) as f:  # rows are written in blocks: those
        # after the last write (here the checkpoint at 8) may be lost, never more
        assert 8 <= int(f.attrs["n_done"]) <= 11 and int(f["checkpoint/iteration"][()]) == 8
    r = mpicode(["simulate", "--resume", out, "--quiet"])
    assert r.returncode == 0, r.stderr
    assert_bit_identical(ref, out)
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and "resumed" in f.attrs
        np.testing.assert_array_equal(f["slots/slot"][:], h5py.File(ref)["slots/slot"][:])


def test_resume_extends_a_complete_run(tmp_path):
    out = tmp_path / "r.h5"
    base = ["simulate", "--workers", 4, "--partition-cost", 1e-3, *SMALL]
    assert mpicode([*base, "--iterations", 5, "--out", out]).returncode == 0
    r = mpicode(["simulate", "--resume", out, "--iterations", 9, "--quiet"])
    assert r.returncode == 0, r.stderr
    ref = tmp_path / "ref.h5"
    assert mpicode([*base, "--iterations", 9, "--out", ref]).returncode == 0
    assert_bit_identical(ref, out)


def _trace(tmp_path):
    rec = tmp_path / "trace.h5"
    r = mpirun(4, ["train", "--stragglers", "bimodal", "--delay-unit", 0.005,
                   "--iterations", 10, "--out", rec, *SMALL])
    assert r.returncode == 0, r.stderr
    return rec


def test_train_virtual_killed_and_resumed_is_bit_identical(tmp_path):
    rec = _trace(tmp_path)
    args = ["train", "--scheme", "two-stage", "--stragglers", f"trace:{rec}",
            "--delay-mode", "virtual", "--partition-cost", 1e-3, "--iterations", 10,
            "--checkpoint-every", 3, *SMALL]
    ref = tmp_path / "ref.h5"
    assert mpirun(4, [*args, "--out", ref]).returncode == 0
    out = tmp_path / "cut.h5"
    r = mpirun(4, [*args, "--out", out],
               env={"MPICODE_FAULT": "kill:7", "MPICODE_TEST_FAULTS": "1"})
    assert r.returncode != 0
    wait_status(tmp_path / "cut.h5.part", "failed")
    r = mpirun(4, ["train", "--resume", out, "--quiet"])
    assert r.returncode == 0, r.stderr
    # n_stale counts real late MPI messages (wall clock): the one field outside the claim;
    # bytes_up is counted in virtual time and is covered
    assert_bit_identical(ref, out, exclude=("iterations/n_stale",))


# ---- signals -----------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_checkpoints_marks_interrupted_and_exits_cleanly(tmp_path, sig):
    out = tmp_path / "s.h5"
    cmd = [MPIEXEC, "-n", "4", PY, "-m", "mpi4py", "-m", "mpicode", "train", "--iterations",
           "100000", "--stragglers", "shifted-exp", "--delay-unit", "0.01", "--out", str(out),
           *map(str, SMALL)]
    env = dict(os.environ, MPIEXEC_TIMEOUT="120")
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    part = tmp_path / "s.h5.part"
    wait_until(lambda: int(run_attr(part, "n_done") or 0) >= 3, 60, 0.2)
    p.send_signal(sig)  # mpiexec forwards it to every rank
    _, err = p.communicate(timeout=60)
    assert p.returncode == 3, err
    assert "interrupted" in err and "Traceback" not in err
    with h5py.File(out, "r") as f:
        n = int(f.attrs["n_done"])
        assert f.attrs["status"] == "interrupted" and n >= 3
        assert int(f["checkpoint/iteration"][()]) == n
    r = mpirun(4, ["train", "--resume", out, "--iterations", n + 3, "--quiet"])
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and int(f.attrs["n_done"]) == n + 3
        np.testing.assert_array_equal(f["iterations/iteration"][:], np.arange(n + 3))


# ---- workers that hang or die ---------------------------------------------------------------
def test_hung_worker_is_left_out_and_coded_scheme_carries_on(tmp_path):
    out = tmp_path / "h.h5"
    r = mpirun(5, ["train", "--scheme", "two-stage", "--stragglers", "shifted-exp",
                   "--delay-unit", 0.005, "--iterations", 12, "--dead-after", 2,
                   "--out", out, *SMALL], env={"MPICODE_FAULT": "hang:2:3",
                                           "MPICODE_TEST_FAULTS": "1"})
    assert r.returncode == 0, r.stderr
    assert "left out of planning" in r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and int(f.attrs["n_done"]) == 12
        assert np.all(f["iterations/coverage"][:] == 1.0)
        active = f["workers/active"][:]
        assert active[:3, 1].all() and not active[-1, 1]  # worker 1 is rank 2
        tk = {k: f["tasks"][k][:] for k in ("iteration", "worker", "stage")}
        late = tk["iteration"] >= 6
        assert not np.any(tk["worker"][late] == 1), "a dead worker gets no more work"


def test_dying_worker_ends_the_job_fails_the_run_and_resume_works(tmp_path):
    out = tmp_path / "d.h5"
    # bounded: MPIEXEC_TIMEOUT=60 and the subprocess timeout; a hang fails, not a clock check
    r = mpirun(4, ["train", "--scheme", "two-stage", "--iterations", 10,
                   "--checkpoint-every", 2, "--out", out, *SMALL],
               env={"MPICODE_FAULT": "die:2:5", "MPICODE_TEST_FAULTS": "1"}, timeout=60)
    # MPICH's launcher ends the job with the dead rank's code (17), usually, not always,
    # with its "BAD TERMINATION" banner
    assert r.returncode != 0
    part = tmp_path / "d.h5.part"
    wait_status(part, "failed")
    with h5py.File(part, "r", locking=False) as f:
        # the launcher kills the job as soon as it sees the death: an iteration or two
        # may still complete with a coded scheme
        ck, n = int(f["checkpoint/iteration"][()]), int(f.attrs["n_done"])
        assert ck % 2 == 0 and 4 <= ck <= n
    r = mpirun(4, ["train", "--resume", out, "--quiet"])
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and int(f.attrs["n_done"]) == 10


# ---- full disk ------------------------------------------------------------------------------
def _check_kept(path, stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "stopped before the disk is full" in lines[0], stderr
    assert "Traceback" not in stderr
    with h5py.File(path, "r") as f:
        n = int(f.attrs["n_done"])
        assert f.attrs["status"] == "failed" and n > 0
        np.testing.assert_array_equal(f["iterations/iteration"][:n], np.arange(n))
        assert np.all(np.isfinite(f["iterations/t_end"][:n]))
        assert 0 < int(f["checkpoint/iteration"][()]) <= n


def test_file_size_limit_stops_cleanly_with_rows_kept(tmp_path):
    out = tmp_path / "full.h5"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (6_000_000, 6_000_000))

    r = subprocess.run([PY, "-m", "mpicode", "simulate", "--workers", "64", "--iterations",
                        "100000", "--compute", "none", "--checkpoint-every", "5", "--out",
                        str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, preexec_fn=limit)
    assert r.returncode == 1, r.stderr
    _check_kept(out, r.stderr)


def test_full_disk_stops_train_cleanly_with_rows_kept(small_disk):
    out = small_disk / "train.h5"
    r = mpirun(3, ["train", "--iterations", 100000, "--checkpoint-every", 10, "--out", out,
                   "--features", 2000, "--samples", 400, "--quiet"], timeout=120)
    assert r.returncode == 1, r.stderr
    _check_kept(out, r.stderr)


def test_no_room_is_an_error_before_training(small_disk):
    (small_disk / "filler").write_bytes(b"x" * 600_000)
    r = mpirun(3, ["train", "--iterations", 5, "--out", small_disk / "t.h5", *SMALL])
    assert r.returncode == 2 and "no room for the run log" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (small_disk / "t.h5").exists() and not (small_disk / "t.h5.part").exists()


# ---- issue 27: fault injection is inert in normal runs ---------------------------------------
def test_fault_variables_are_inert_without_the_test_switch(tmp_path):
    mark = tmp_path / "elsewhere" / "mark"
    env = {k: v for k, v in os.environ.items() if k != "MPICODE_TEST_FAULTS"}
    env.update(MPICODE_FAULT="kill:1,pause:checkpoint:not-a-number", MPICODE_FAULT_MARK=str(mark))
    out = tmp_path / "n.h5"
    r = subprocess.run([PY, "-m", "mpicode", *map(str, SIM), "--checkpoint-every", "2",
                        "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr  # neither killed nor a traceback for the bad item
    assert not mark.exists() and not mark.parent.exists()
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete"

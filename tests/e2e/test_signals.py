"""Signals and stuck processes, end to end: TERM, INT, USR1, STOP (+TERM), KILL of rank 0 and
of a worker, at start-up, mid-iteration, during a checkpoint and at shutdown.

Each case checks every rank's exit code (a wrapper records ``code.<rank>`` and ``pid.<rank>``
beside the work directory), one line on stderr (``mpiexec``'s own two lines for Ctrl-C and
its termination banner for a killed rank are not ours and are set aside), no traceback, the
run file's status, and an md5 of every file of the work directory before and after: only the
run's own file may appear. Every launch is bounded by a subprocess timeout (never a clock
assertion); the cases are tiny (400 x 5 data, a few iterations) so that a loaded 2-core
machine runs them.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import pytest
from conftest import PY, ROOT, mpicode, mpiexec_cmd, run_attr, wait_until

from mpicode import launcher

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

LIMIT = 240  # seconds per MPI launch (subprocess timeout); MPIEXEC_TIMEOUT below it
SMALL = ["--samples", 400, "--features", 5, "--quiet", "--flush-every", 0]  # rows seen at once
SLOW = ["--stragglers", "shifted-exp", "--delay-unit", 0.02]  # iterations of ~50 ms

WRAPPER = """\
import os, sys
rank = os.environ.get("PMI_RANK", "x")
d = os.environ["MPICODE_CODES"]
from mpicode.cli import main
with open(os.path.join(d, f"pid.{rank}"), "w") as f:
    f.write(str(os.getpid()))
code = "exception"
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    raise
finally:
    with open(os.path.join(d, f"code.{rank}"), "w") as f:
        f.write(str(code))
"""
NOT_OURS = ("[mpiexec@", "=", "YOUR APPLICATION TERMINATED", "This typically refers",
            "Please see the FAQ")


def md5s(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def our_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines()
            if ln.strip() and not ln.lstrip().startswith(NOT_OURS)]


class Job:
    """One ``mpiexec -n n python -m mpi4py WRAPPER train ...`` in the background."""

    def __init__(self, tmp: Path, n: int, args: list, env: dict | None = None):
        self.work, self.codes, self.n = tmp / "work", tmp / "codes", n
        self.work.mkdir(exist_ok=True)
        self.codes.mkdir(exist_ok=True)
        (self.codes / "wrapper.py").write_text(WRAPPER)
        self.mark = tmp / "mark"
        e = launcher.launch_env(timeout=LIMIT - 20, MPICODE_CODES=str(self.codes),
                                MPICODE_FAULT_MARK=str(self.mark), MPICODE_TEST_FAULTS="1",
                                **(env or {}))
        e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), e.get("PYTHONPATH")]))
        self.before = md5s(self.work)
        cmd = [*mpiexec_cmd(n), PY, "-m", "mpi4py", str(self.codes / "wrapper.py"),
               *map(str, args)]
        self.p = subprocess.Popen(cmd, cwd=self.work, env=e, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.t0 = time.monotonic()

    def left(self) -> float:
        return max(1.0, LIMIT - (time.monotonic() - self.t0))

    def pid(self, rank: int) -> int:
        assert wait_until(lambda: (self.codes / f"pid.{rank}").exists(), self.left())
        return int((self.codes / f"pid.{rank}").read_text())

    def started(self) -> None:
        for r in range(self.n):
            self.pid(r)

    def rows(self, at_least: int) -> None:
        part = self.work / "out.h5.part"
        assert wait_until(lambda: int(run_attr(part, "n_done") or 0) >= at_least, self.left(),
                          0.1), "the run never got going"

    def marked(self) -> None:
        assert wait_until(self.mark.exists, self.left(), 0.05), "fault point never reached"

    def finish(self) -> tuple[int, list[str], dict]:
        _, err = self.p.communicate(timeout=self.left())
        assert "Traceback" not in err, err
        codes = {p.name[5:]: p.read_text() for p in self.codes.glob("code.*")}
        return self.p.returncode, our_lines(err), codes

    def files(self) -> set[str]:
        after = md5s(self.work)
        changed = {k for k in self.before if after.get(k) != self.before[k]}
        assert not changed, f"inputs changed: {changed}"
        return set(after) - set(self.before)


def status(path: Path):
    with h5py.File(path, "r", locking=False) as f:
        ck = int(f["checkpoint/iteration"][()]) if "checkpoint" in f else None
        return str(f.attrs["status"]), int(f.attrs["n_done"]), ck, "model" in f


def resume_ok(work: Path, n: int, extra: int = 2) -> None:
    """The run continues from its checkpoint to ``extra`` more iterations and completes."""
    out = work / "out.h5"
    _, done, ck, _ = status(out if out.exists() else work / "out.h5.part")
    from conftest import mpirun
    r = mpirun(n, ["train", "--resume", out, "--iterations", ck + extra, "--quiet"],
               timeout=LIMIT - 30)
    assert r.returncode == 0, r.stderr
    st, done, _, model = status(out)
    assert st == "complete" and done == ck + extra and model


# ---- clean stops: TERM, INT, USR1 in four states -------------------------------------------

@dataclass
class Stop:
    sig: int
    state: str  # start-up | mid-iteration | checkpoint | shutdown


STOPS = [Stop(s, st) for st in ("start-up", "mid-iteration", "checkpoint", "shutdown")
         for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)]


def _stop_args(state: str) -> tuple[list, dict]:
    if state == "start-up":
        return ["--iterations", 3], {}
    if state == "mid-iteration":
        return ["--iterations", 100000, *SLOW], {}
    if state == "checkpoint":
        return ["--iterations", 4, "--checkpoint-every", 2], {"MPICODE_FAULT": "pause:checkpoint:3"}
    return ["--iterations", 2], {"MPICODE_FAULT": "pause:shutdown:3"}


@pytest.mark.parametrize("case", STOPS, ids=[f"{c.sig.name}-{c.state}" for c in STOPS])
def test_clean_stop(tmp_path, case):
    args, env = _stop_args(case.state)
    job = Job(tmp_path, 3, ["train", "--out", "out.h5", *SMALL, *args], env)
    if case.state == "start-up":
        job.started()
    elif case.state == "mid-iteration":
        job.rows(2)
    else:
        job.marked()
    job.p.send_signal(case.sig)  # mpiexec forwards it to every rank
    rc, lines, codes = job.finish()
    new = job.files()
    if case.state == "shutdown":  # the training had finished: nothing to interrupt
        assert rc == 0 and codes == {r: "0" for r in "012"} and lines == [], (rc, lines)
        assert new == {"out.h5"} and status(job.work / "out.h5")[0] == "complete"
        return
    assert rc == 3 and codes == {r: "3" for r in "012"}, (rc, codes, lines)
    assert len(lines) == 1 and lines[0].startswith("mpicode: interrupted"), lines
    if case.state == "start-up" and "during start-up" in lines[0]:
        assert new == set(), new  # stopped before the run file existed
        return
    assert new == {"out.h5"}, new
    st, done, ck, _ = status(job.work / "out.h5")
    assert st == "interrupted" and ck == done
    if case.sig != signal.SIGUSR1:
        resume_ok(job.work, 3)


# ---- stuck workers (SIGSTOP) ---------------------------------------------------------------

def _alive(pid: int) -> bool:
    """Still running or stopped (a zombie waiting to be reaped is gone); waits a little
    for the launcher's kill to land."""
    def gone():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except OSError:
            return True
    return not wait_until(gone, 30, 0.2)


def _stop_worker(job: Job, rank: int = 2) -> int:
    pid = job.pid(rank)
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_stopped_worker_coded_scheme_completes_and_the_job_is_aborted(tmp_path):
    """A coded scheme carries on without the stuck worker; the shutdown is bounded by
    --stop-timeout: the run is complete with /model/w, one line names the rank, exit 1."""
    job = Job(tmp_path, 4, ["train", "--out", "out.h5", *SMALL, *SLOW, "--scheme", "two-stage",
                            "--iterations", 12, "--dead-after", 2, "--stop-timeout", 5])
    job.rows(2)
    _stop_worker(job)
    rc, lines, codes = job.finish()
    # rank 0 aborts the job (no code of its own: MPI_Abort(1) is mpiexec's code), the stopped
    # rank is killed, the others had finished their work and exited 0 after STOP
    assert rc == 1 and set(codes.values()) <= {"0"} and set(codes) <= {"1", "3"}, (rc, codes)
    assert len(lines) == 2 and "left out of planning" in lines[0], lines  # --dead-after
    assert "worker rank 2 did not acknowledge STOP within --stop-timeout 5 s" in lines[1]
    assert "the run itself is complete" in lines[1]
    assert job.files() == {"out.h5"}
    st, done, _, model = status(job.work / "out.h5")
    assert st == "complete" and done == 12 and model


@pytest.mark.parametrize("scheme", ["uncoded", "speed-aware"])
def test_stopped_worker_max_wait_fails_with_a_checkpoint(tmp_path, scheme):
    """A scheme that needs every worker: --max-wait ends the run (failed, resumable) with one
    line naming the silent worker and rank."""
    job = Job(tmp_path, 3, ["train", "--out", "out.h5", *SMALL, *SLOW, "--scheme", scheme,
                            "--iterations", 100000, "--checkpoint-every", 1, "--max-wait", 3,
                            "--stop-timeout", 3])
    job.rows(2)
    pid = _stop_worker(job)
    rc, lines, codes = job.finish()
    # rank 0 aborted (its code is mpiexec's), 2 killed, 1 may die in MPI_Finalize first
    assert rc == 1 and set(codes.values()) <= {"1"} and set(codes) <= {"1"}, (rc, codes)
    assert len(lines) == 1 and "waited more than --max-wait 3 s" in lines[0], lines
    assert "worker 1 (rank 2)" in lines[0] and "did not acknowledge STOP" in lines[0]
    assert job.files() == {"out.h5.part"} or job.files() == {"out.h5"}
    out = job.work / "out.h5"
    st, done, ck, model = status(out)
    assert st == "failed" and ck == done and not model
    assert not _alive(pid), "the stopped worker outlived the job"
    resume_ok(job.work, 3)


@pytest.mark.parametrize("state", ["mid-iteration", "checkpoint", "shutdown"])
def test_stopped_worker_then_sigterm_ends_within_the_stop_timeout(tmp_path, state):
    """STOP+TERM: a stuck worker, then SIGTERM mid-iteration (uncoded waits for it), during
    a checkpoint, or at shutdown (two-stage finished without it): the job ends within
    --stop-timeout, the run file is closed with its status, one line names the rank."""
    env = {"checkpoint": {"MPICODE_FAULT": "pause:checkpoint:3"},
           "shutdown": {"MPICODE_FAULT": "pause:shutdown:3"}}.get(state, {})
    args = {"mid-iteration": ["--scheme", "uncoded", "--iterations", 100000],
            "checkpoint": ["--scheme", "uncoded", "--iterations", 100000],
            "shutdown": ["--scheme", "two-stage", "--iterations", 12, "--dead-after", 2]}[state]
    job = Job(tmp_path, 4, ["train", "--out", "out.h5", *SMALL, *SLOW, *args,
                            "--checkpoint-every", 3, "--stop-timeout", 4], env)
    if state == "checkpoint":
        job.marked()  # rank 0 is in the checkpoint's pause: stop a worker, then TERM
        _stop_worker(job)
    else:
        job.rows(2)
        _stop_worker(job)
        if state == "shutdown":
            job.marked()
        else:
            time.sleep(1)  # rank 0 now waits for the stopped worker's result
    job.p.send_signal(signal.SIGTERM)
    rc, lines, codes = job.finish()
    lines = [ln for ln in lines if "left out of planning" not in ln]  # --dead-after's warning
    assert len(lines) == 1, (rc, lines, codes)
    assert "did not acknowledge STOP within --stop-timeout 4 s" in lines[0]
    assert job.files() == {"out.h5"}
    st, done, ck, model = status(job.work / "out.h5")
    # rank 0 aborts the job (MPI_Abort: its code is mpiexec's), the stopped rank is killed;
    # a worker that got STOP may be killed in MPI_Finalize before it records its own code
    if state == "shutdown":  # the training had finished
        assert rc == 1 and st == "complete" and model and "run itself is complete" in lines[0]
        assert set(codes.values()) <= {"0"} and "0" not in codes and "2" not in codes, codes
    else:
        assert rc == 3 and set(codes.values()) <= {"3"} and "2" not in codes, (rc, codes)
        assert st == "interrupted" and ck == done
        assert lines[0].startswith("mpicode: interrupted")


# ---- KILL: the launcher ends the job, the watchdog marks the file -------------------------

@pytest.mark.parametrize("who,state", [(0, "mid-iteration"), (2, "mid-iteration"),
                                       (0, "checkpoint"), (2, "shutdown"), (0, "start-up")])
def test_sigkill(tmp_path, who, state):
    env = {"checkpoint": {"MPICODE_FAULT": "pause:checkpoint:3"},
           "shutdown": {"MPICODE_FAULT": "pause:shutdown:3"}}.get(state, {})
    its = 100000 if state in ("mid-iteration", "checkpoint") else 3
    job = Job(tmp_path, 3, ["train", "--out", "out.h5", *SMALL, *SLOW, "--iterations", its,
                            "--checkpoint-every", 2], env)
    if state == "mid-iteration":
        job.rows(3)
    elif state == "start-up":
        job.started()
    else:
        job.marked()
    os.kill(job.pid(who), signal.SIGKILL)
    rc, lines, codes = job.finish()
    assert rc != 0 and "0" not in codes.values(), (rc, codes)  # no rank claims success
    assert len(lines) <= 1, lines
    new = job.files()
    assert new <= {"out.h5.part", "out.h5"}, new
    if state == "start-up" and not new:
        return
    if state == "shutdown":  # killed after the last iteration: the run is whole, not closed
        part = job.work / "out.h5.part"
        assert wait_until(lambda: run_attr(part, "status") == "failed", 60, 0.2)
        return
    part = job.work / "out.h5.part"
    if new == {"out.h5.part"}:
        assert wait_until(lambda: run_attr(part, "status") == "failed", 60, 0.2)
        if status(part)[2] is not None:
            resume_ok(job.work, 3)


# ---- issue 27: a worker stopped during start-up; a worker killed mid-run -------------------

def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def test_worker_stopped_at_startup_then_sigterm_names_it(tmp_path):
    """Worker 1 (rank 2) stops itself at the first start-up step (``stop:2``: a kill -STOP
    right there); SIGTERM to mpiexec then ends the job within the start-up grace (the
    subprocess bound, far below MPIEXEC_TIMEOUT, fails a hang), with one line naming it."""
    job = Job(tmp_path, 4, ["train", "--out", "out.h5", *SMALL, "--iterations", 3],
              {"MPICODE_FAULT": "stop:2"})
    pid = job.pid(2)
    assert wait_until(lambda: _stopped(pid), job.left(), 0.05), "the worker never stopped"
    job.p.send_signal(signal.SIGTERM)
    _, err = job.p.communicate(timeout=60)
    lines = our_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("mpicode: interrupted (signal 15) during start-up"), lines[0]
    assert "no answer from worker 1 (rank 2); nothing written" in lines[0], lines[0]
    assert job.p.returncode == 3, job.p.returncode
    assert job.files() == set()
    os.kill(pid, signal.SIGKILL)


def test_worker_stopped_at_startup_times_out_naming_it(tmp_path):
    job = Job(tmp_path, 3, ["train", "--out", "out.h5", *SMALL, "--iterations", 3,
                            "--startup-timeout", 5], {"MPICODE_FAULT": "stop:1"})
    pid = job.pid(1)
    _, err = job.p.communicate(timeout=90)
    lines = our_lines(err)
    assert len(lines) == 1 and job.p.returncode == 1, (job.p.returncode, err)
    assert "waited more than --startup-timeout 5 s: no answer from worker 0 (rank 1)" in lines[0]
    assert job.files() == set()
    os.kill(pid, signal.SIGKILL)


def test_killed_worker_is_named_before_the_job_ends(tmp_path):
    """SIGKILL of worker 1 (rank 2) mid-run: rank 0's helper names it (with its pid) before
    the launcher ends the job; the run is resumable as before."""
    job = Job(tmp_path, 3, ["train", "--out", "out.h5", *SMALL, *SLOW, "--iterations", 100000,
                            "--checkpoint-every", 2])
    job.rows(3)
    pid = job.pid(2)
    os.kill(pid, signal.SIGKILL)
    rc, lines, codes = job.finish()
    assert rc != 0 and len(lines) == 1, (rc, lines)
    assert lines[0].startswith(f"mpicode: error: worker 1 (rank 2, pid {pid}) died during the "
                               "run"), lines[0]
    assert "continue with --resume" in lines[0]
    part = job.work / "out.h5.part"
    assert wait_until(lambda: run_attr(part, "status") == "failed", 60, 0.2)
    resume_ok(job.work, 3)


# ---- the serial twin -----------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1],
                         ids=lambda s: s.name)
def test_simulate_signal(tmp_path, sig):
    work = tmp_path / "work"
    work.mkdir()
    before = md5s(work)
    args = ["simulate", "--workers", 4, "--iterations", 10 ** 7, "--compute", "none",
            "--partition-cost", 1e-3, "--out", "out.h5", "--quiet"]
    p = subprocess.Popen([PY, "-m", "mpicode", *map(str, args)],
                         cwd=work, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = work / "out.h5.part"
    assert wait_until(lambda: int(run_attr(part, "n_done") or 0) >= 3, LIMIT, 0.1)
    p.send_signal(sig)
    _, err = p.communicate(timeout=LIMIT)
    assert p.returncode == 3 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mpicode: interrupted"), lines
    after = md5s(work)
    assert set(after) - set(before) == {"out.h5"}
    st, done, ck, _ = status(work / "out.h5")
    assert st == "interrupted" and ck == done
    r = mpicode(["simulate", "--resume", work / "out.h5", "--iterations", done + 2, "--quiet"])
    assert r.returncode == 0, r.stderr

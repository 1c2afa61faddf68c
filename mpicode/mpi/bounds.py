"""Bounds on every wait of ``mpicode train``: the end of an iteration (``--max-wait`` for the
schemes that cannot do without a worker), the shutdown (``--stop-timeout``), and the exit of
a job whose worker never answered (a stopped or stuck process: ``kill -STOP``)::

    mpiexec -n 5 python -m mpi4py -m mpicode train --scheme uncoded --max-wait 30 \\
        --stop-timeout 10

A job that cannot end cleanly (a worker that never acknowledged STOP would hang
``MPI_Finalize``) is aborted after rank 0 closed its run log and printed its one line; MPICH's
own abort message is not printed (stderr is closed first), so the line stays the only one.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from mpi4py import MPI

from mpicode.engine.loop import STOP, Stalled
from mpicode.mpi.comm import Backoff
from mpicode.mpi.protocol import TAG_ACK, TAG_STOP


def overdue(coord, it: int, waited: float) -> None:
    """``--max-wait S`` for a scheme that has no give-up rule of its own (all but two-stage,
    whose ``max_wait`` decodes what is covered): raise Stalled, naming the workers whose
    tasks are still pending, once the iteration waited more than S wall seconds."""
    limit = coord.cfg.max_wait
    if limit is None or waited <= limit or getattr(coord.scheme, "max_wait", None) is not None:
        return
    silent = sorted({t.worker for t in coord.scheme.pending()})
    who = ", ".join(f"worker {w} (rank {w + 1})" for w in silent) or "no worker"
    raise Stalled(f"iteration {it} waited more than --max-wait {limit:g} s: no result from "
                  f"{who}")


def exit_code(status: str, error: str | None) -> int:
    """The job's exit code for a run that ended with ``status``: 1 failed, 3 interrupted."""
    return 1 if error or status == "failed" else (3 if status == "interrupted" else 0)


def stop_workers(comm, sends, n_workers: int, timeout: float, code: int = 0) -> list[int]:
    """Send STOP (carrying the job's exit ``code``, which every worker exits with) to every
    worker and drain stale messages until each ACKed or ``timeout`` seconds passed. Returns
    the ranks that did not ACK (then the pending sends are left: waiting could hang too)."""
    from mpicode.engine import faults
    faults.pause("shutdown")  # fault tests: a signal at shutdown
    for r in range(1, n_workers + 1):
        sends.isend(comm, np.array([float(code)]), r, TAG_STOP)
    waiting = set(range(1, n_workers + 1))
    backoff = Backoff()
    status = MPI.Status()
    t_end = time.perf_counter() + timeout
    while waiting and time.perf_counter() < t_end:
        msg = comm.Improbe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
        if msg is None:
            backoff.sleep()
            continue
        msg.Recv(np.empty(status.Get_count(MPI.DOUBLE)))
        if status.Get_tag() == TAG_ACK:
            waiting.discard(status.Get_source())
        backoff.reset()
    if not waiting:
        sends.waitall()
    return sorted(waiting)


def silent_ranks_text(ranks: list[int], timeout: float) -> str:
    which = ", ".join(map(str, ranks))
    return (f"worker rank{'s' if len(ranks) > 1 else ''} {which} did not acknowledge STOP "
            f"within --stop-timeout {timeout:g} s: job aborted")


def abort_quietly(comm, code: int) -> None:
    """``MPI_Abort`` without MPICH's own message: the caller printed the one line."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.close(2)  # MPICH's "Abort(...) on node 0" would be a second line; nothing opens fd 2
    comm.Abort(code)
    os._exit(code)  # not reached


def ending(cfg, status: str, error: str | None, n_done: int, signum, silent: list[int]
           ) -> tuple[int, str | None]:
    """(exit code, the one stderr line or None) of a finished ``train`` on rank 0:
    1 failed, 3 interrupted (resumable), 1 when only the shutdown failed (the run itself is
    complete in the file), else 0."""
    stuck = f"; {silent_ranks_text(silent, cfg.stop_timeout)}" if silent else ""
    if error:
        return 1, f"mpicode: error: {error}; kept {n_done} iterations in {cfg.out}{stuck}"
    if status == "interrupted":
        return 3, (f"mpicode: interrupted (signal {signum}): {n_done} iterations and a "
                   f"checkpoint in {cfg.out}; continue with --resume {cfg.out}{stuck}")
    if silent:
        return 1, (f"mpicode: error: {silent_ranks_text(silent, cfg.stop_timeout)}; the run "
                   f"itself is complete in {cfg.out} ({n_done} iterations)")
    return 0, None


def agree_on_stop(comm) -> int:
    """The largest stop signal any rank received so far (0: none): a barrier that also
    makes every rank take the same decision. A numpy buffer, no pickle."""
    mine = np.array([STOP["signal"] or 0], np.int64)
    out = np.zeros_like(mine)
    comm.Allreduce(mine, out, op=MPI.MAX)
    return int(out[0])

"""Bounds on the waits of ``mpicode train`` that only MPI has: the shutdown
(``--stop-timeout``), the exit of a job whose worker never answered (a stopped or stuck
process: ``kill -STOP``), and start-up signals (``--max-wait`` for an iteration is the event
loop's, :mod:`mpicode.engine.events`)::

    mpiexec -n 5 python -m mpi4py -m mpicode train --scheme uncoded --max-wait 30 \\
        --stop-timeout 10

A job that cannot end cleanly (a worker that never acknowledged STOP would hang
``MPI_Finalize``) is aborted after rank 0 closed its run log and printed its one line; MPICH's
own abort message is not printed (stderr is closed first), so the line stays the only one.
"""

from __future__ import annotations

import fcntl
import os
import stat
import sys
import termios
import time

import numpy as np
from mpi4py import MPI

from mpicode.engine import faults
from mpicode.engine.signals import STOP
from mpicode.mpi.comm import Backoff
from mpicode.wire import TAG_ACK, TAG_STOP


def exit_code(status: str, error: str | None) -> int:
    """The job's exit code for a run that ended with ``status``: 1 failed, 3 interrupted."""
    return 1 if error or status == "failed" else (3 if status == "interrupted" else 0)


def stop_workers(comm, sends, n_workers: int, timeout: float, code: int = 0) -> list[int]:
    """Send STOP (carrying the job's exit ``code``, which every worker exits with) to every
    worker and drain stale messages until each ACKed or ``timeout`` seconds passed. Returns
    the ranks that did not ACK (then the pending sends are left: waiting could hang too)."""
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


def drain_pipe(fd: int, timeout: float = 2.0) -> None:
    """Wait (bounded) until the reader of the pipe ``fd`` took what was written: under
    ``mpiexec`` stderr is a pipe to Hydra's proxy, and an ``MPI_Abort`` that reaches the
    proxy before it read the pipe loses the line just printed (seen on a loaded machine)."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        t_end = time.monotonic() + timeout
        buf = bytearray(4)
        while time.monotonic() < t_end:
            fcntl.ioctl(fd, termios.FIONREAD, buf)
            if int.from_bytes(buf, sys.byteorder) == 0:
                break
            time.sleep(0.01)
        time.sleep(0.1)  # the proxy forwards what it read before it handles the abort
    except OSError:
        pass


def abort_quietly(comm, code: int) -> None:
    """``MPI_Abort`` without MPICH's own message: the caller printed the one line."""
    sys.stdout.flush()
    sys.stderr.flush()
    drain_pipe(1)
    drain_pipe(2)
    os.close(2)  # MPICH's "Abort(...) on node 0" would be a second line; nothing opens fd 2
    comm.Abort(code)
    os._exit(code)  # not reached


def agree_on_stop(st, what: str = "agreeing on a stop signal") -> int:
    """The largest stop signal any rank received so far (0: none): a barrier that also
    makes every rank take the same decision. A start-up step of ``st``
    (:class:`mpicode.mpi.startup.Startup`): bounded and interruptible. No pickle."""
    mine = np.array([STOP["signal"] or 0], np.int64)
    return int(st.reduce_buffer(mine, what, op=MPI.MAX)[0])

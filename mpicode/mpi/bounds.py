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
from mpicode.mpi.comm import PROC_FAILED, Backoff, failed_ranks
from mpicode.wire import TAG_ACK, TAG_STOP


def exit_code(status: str, error: str | None) -> int:
    """The job's exit code for a run that ended with ``status``: 1 failed, 3 interrupted."""
    return 1 if error or status == "failed" else (3 if status == "interrupted" else 0)


def stop_workers(comm, sends, n_workers: int, timeout: float, code: int = 0,
                 dead=frozenset()) -> list[int]:
    """Send STOP (carrying the job's exit ``code``, which every worker exits with) to every
    worker but the ``dead`` ranks and drain stale messages until each ACKed or ``timeout``
    seconds passed (a rank found dead meanwhile, under ULFM, is no longer waited for).
    Returns the ranks that did not ACK (then the pending sends are left: waiting could hang
    too). With ``dead`` ranks STOP also says "exit without MPI_Finalize" (:func:`exit_now`):
    Open MPI 5's finalize sometimes waits forever on a rank that died (its PMIx fence; seen
    about once in five runs here, open-mpi/ompi#11404)."""
    faults.pause("shutdown")  # fault tests: a signal at shutdown
    waiting = set(range(1, n_workers + 1)) - set(dead)
    stop = np.array([float(code)] + ([1.0] if dead else []))
    for r in sorted(waiting):
        try:
            sends.isend(comm, stop, r, TAG_STOP)
        except MPI.Exception as e:
            if e.Get_error_class() not in PROC_FAILED:
                raise
            waiting -= set(failed_ranks(comm))
    backoff = Backoff()
    status = MPI.Status()
    t_end = time.perf_counter() + timeout
    while waiting and time.perf_counter() < t_end:
        try:
            msg = comm.Improbe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
        except MPI.Exception as e:  # a worker died at the end (ULFM): stop waiting for it
            if e.Get_error_class() not in PROC_FAILED:
                raise
            gone = set(failed_ranks(comm))
            waiting -= gone
            for r in gone:
                sends.forget(r)
            continue
        if msg is None:
            backoff.sleep()
            continue
        msg.Recv(np.empty(status.Get_count(MPI.DOUBLE)))
        if status.Get_tag() == TAG_ACK:
            waiting.discard(status.Get_source())
        backoff.reset()
    if not waiting:
        for r in dead:
            sends.forget(r)
        sends.waitall(timeout=max(1.0, t_end - time.perf_counter()))
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


def exit_now(code: int) -> None:
    """Leave without ``MPI_Finalize`` (a job in which a rank died, under ULFM: see
    :func:`stop_workers`); the exit code is still the job's."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def agree_on_stop(st, what: str = "agreeing on a stop signal") -> int:
    """The largest stop signal any rank received so far (0: none): a barrier that also
    makes every rank take the same decision. A start-up step of ``st``
    (:class:`mpicode.mpi.startup.Startup`): bounded and interruptible. No pickle."""
    mine = np.array([STOP["signal"] or 0], np.int64)
    return int(st.reduce_buffer(mine, what, op=MPI.MAX)[0])

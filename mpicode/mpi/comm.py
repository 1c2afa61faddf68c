"""Point-to-point plumbing: the polling backoff, a pool of pending sends, the world.

Both sides poll with matched probes (``Improbe``) and an exponential sleep backoff, reset on
every arrival: MPICH's blocking calls spin, and a spinning rank steals a core from a worker
(manufacturing the very stragglers we study).
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from mpicode.engine.clock import Backoff  # noqa: F401  (re-exported: the worker's poll)


def _fine_timer_slack() -> None:
    """Linux lets a sleep overshoot by the thread's timer slack (50 us by default), which
    would make the backoff's first, 10 us sleeps five times too long and every message wait
    for it. 1 us of slack costs nothing measurable here."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


_fine_timer_slack()


# the error classes of a dead rank under ULFM (mpi4py names them even where the MPI does not
# implement fault tolerance)
PROC_FAILED = {c for c in (getattr(MPI, "ERR_PROC_FAILED", None),
                           getattr(MPI, "ERR_PROC_FAILED_PENDING", None),
                           getattr(MPI, "ERR_REVOKED", None)) if c is not None}


def failed_ranks(comm: MPI.Comm) -> list[int]:
    """Acknowledge the failures ``comm`` knows of (so that receives from any source work
    again) and return the failed ranks (ULFM: ``MPI_Comm_ack_failed``,
    ``MPI_Comm_get_failed``)."""
    comm.Ack_failed()
    grp = comm.Get_failed()
    try:
        world = comm.Get_group()
        ranks = MPI.Group.Translate_ranks(grp, list(range(grp.Get_size())), world)
        world.Free()
    finally:
        grp.Free()
    return sorted(int(r) for r in ranks if r != MPI.UNDEFINED)


class SendPool:
    """Nonblocking sends whose buffers stay alive (and untouched) until completed. A send to
    a rank that died completes in error (ULFM): it is dropped, not raised."""

    def __init__(self):
        self.pending: list[tuple[MPI.Request, np.ndarray, int]] = []

    def isend(self, comm: MPI.Comm, buf: np.ndarray, dest: int, tag: int) -> MPI.Request:
        req = comm.Isend(buf, dest=dest, tag=tag)
        self.pending.append((req, buf, dest))
        if len(self.pending) > 64:
            self.prune()
        return req

    def prune(self) -> None:
        self.pending = [(r, b, d) for r, b, d in self.pending if not _done(r)]

    def forget(self, dest: int) -> None:
        """Drop the sends to ``dest`` (it died: they will never complete normally)."""
        self.pending = [(r, b, d) for r, b, d in self.pending if d != dest]

    def waitall(self, timeout: float | None = None) -> bool:
        """Wait for every send (bounded by ``timeout`` seconds if given: False if some never
        completed, then they are left)."""
        if self.pending and timeout is None:
            MPI.Request.Waitall([r for r, _, _ in self.pending])
        elif self.pending:
            t_end, backoff = time.perf_counter() + timeout, Backoff()
            while self.pending and time.perf_counter() < t_end:
                self.prune()
                backoff.sleep()
            if self.pending:
                return False
        self.pending = []
        return True


def _done(req: MPI.Request) -> bool:
    try:
        return req.Test()
    except MPI.Exception as e:  # its destination died (ULFM): done, in error
        if e.Get_error_class() in PROC_FAILED:
            return True
        raise


def mpi_library() -> str:
    """The MPI library's first version line (the ``mpi_library`` run attribute). Open MPI's
    string ends in a NUL, which an HDF5 string attribute cannot hold."""
    return MPI.Get_library_version().replace("\x00", "").splitlines()[0].strip()


def world() -> MPI.Comm:
    return MPI.COMM_WORLD


def finalize() -> None:
    """Finalize MPI now (every rank), so a usage error exits without MPI_Abort noise."""
    if MPI.Is_initialized() and not MPI.Is_finalized():
        MPI.Finalize()

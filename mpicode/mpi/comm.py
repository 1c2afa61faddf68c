"""Point-to-point plumbing: the polling backoff, a pool of pending sends, the world.

Both sides poll with matched probes (``Improbe``) and an exponential sleep backoff, reset on
every arrival: MPICH's blocking calls spin, and a spinning rank steals a core from a worker
(manufacturing the very stragglers we study).
"""

from __future__ import annotations

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


class SendPool:
    """Nonblocking sends whose buffers stay alive (and untouched) until completed."""

    def __init__(self):
        self.pending: list[tuple[MPI.Request, np.ndarray]] = []

    def isend(self, comm: MPI.Comm, buf: np.ndarray, dest: int, tag: int) -> MPI.Request:
        req = comm.Isend(buf, dest=dest, tag=tag)
        self.pending.append((req, buf))
        if len(self.pending) > 64:
            self.prune()
        return req

    def prune(self) -> None:
        self.pending = [(r, b) for r, b in self.pending if not r.Test()]

    def waitall(self) -> None:
        if self.pending:
            MPI.Request.Waitall([r for r, _ in self.pending])
        self.pending = []


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

"""Point-to-point plumbing: the polling backoff, a pool of pending sends, the world.

Both sides poll with matched probes (``Improbe``) and an exponential sleep backoff, reset on
every arrival: MPICH's blocking calls spin, and a spinning rank steals a core from a worker
(manufacturing the very stragglers we study).
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI


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


class Backoff:
    """Exponential sleep backoff from ``lo`` to ``hi`` seconds (mpi4py.futures style), after
    a few yields (``sleep(0)``): a message that is about to land costs no sleep, and an idle
    rank still gives its core away within microseconds."""

    def __init__(self, lo: float = 1e-5, hi: float = 1e-3, yields: int = 4):
        self.lo, self.hi, self.yields = lo, hi, yields
        self.dt = lo
        self.n = 0

    def reset(self) -> None:
        self.dt = self.lo
        self.n = 0

    def sleep(self, limit: float | None = None) -> None:
        if self.n < self.yields:
            self.n += 1
            time.sleep(0)
            return
        dt = self.dt if limit is None else max(0.0, min(self.dt, limit))
        time.sleep(dt)
        self.dt = min(self.hi, self.dt * 2)


class SendPool:
    """Nonblocking sends whose buffers stay alive (and untouched) until completed."""

    def __init__(self):
        self.pending: list[tuple[MPI.Request, np.ndarray]] = []

    def isend(self, comm: MPI.Comm, buf: np.ndarray, dest: int, tag: int) -> None:
        self.pending.append((comm.Isend(buf, dest=dest, tag=tag), buf))
        if len(self.pending) > 64:
            self.prune()

    def prune(self) -> None:
        self.pending = [(r, b) for r, b in self.pending if not r.Test()]

    def waitall(self) -> None:
        if self.pending:
            MPI.Request.Waitall([r for r, _ in self.pending])
        self.pending = []


def mpi_library() -> str:
    return MPI.Get_library_version().splitlines()[0].strip()


def world() -> MPI.Comm:
    return MPI.COMM_WORLD


def finalize() -> None:
    """Finalize MPI now (every rank), so a usage error exits without MPI_Abort noise."""
    if MPI.Is_initialized() and not MPI.Is_finalized():
        MPI.Finalize()

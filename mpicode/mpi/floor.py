"""Plain mpi4py loops that bound what the runtime can do on these ranks: a buffer ping-pong
(message latency and bandwidth, for ``mpicode calibrate``) and a Bcast + Reduce of one
gradient (the communication floor of an iteration, for ``mpicode bench overhead``).

Called collectively by every rank of ``comm`` from those commands::

    mpiexec -n 5 python -m mpi4py -m mpicode calibrate --out profile.toml
    mpicode bench overhead     # launches its own mpiexec jobs
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from mpicode.mpi.comm import Backoff


def wait(req: MPI.Request, timeout: float = 60.0) -> None:
    """Complete ``req`` the runtime's way: Test with the sleep backoff (a spinning rank
    would steal a core from another); bounded."""
    backoff = Backoff()
    t_end = time.perf_counter() + timeout
    while not req.Test():
        if time.perf_counter() > t_end:
            raise RuntimeError(f"no message for {timeout:.0f} s")
        backoff.sleep()


def barrier(comm: MPI.Comm) -> None:
    wait(comm.Ibarrier())


def pingpong(comm: MPI.Comm, sizes, reps: int, peer: int = 1) -> list[float] | None:
    """One-way seconds (median round trip / 2) of a float64 message of each size in
    ``sizes`` (bytes) between rank 0 and ``peer``, received as the runtime receives (polled
    with the backoff); rank 0 gets the list, others None. The other ranks sleep in a
    barrier."""
    out = []
    for nbytes in sizes:
        buf = np.ones(max(1, int(nbytes) // 8))
        ts = []
        barrier(comm)
        for _ in range(reps):
            if comm.rank == 0:
                t0 = time.perf_counter()
                comm.Isend(buf, dest=peer, tag=11).Wait()  # (eager or rendezvous: short)
                wait(comm.Irecv(buf, source=peer, tag=11))
                ts.append((time.perf_counter() - t0) / 2)
            elif comm.rank == peer:
                wait(comm.Irecv(buf, source=0, tag=11))
                comm.Isend(buf, dest=0, tag=11).Wait()
        out.append(float(np.median(ts)) if ts else 0.0)
    barrier(comm)
    return out if comm.rank == 0 else None


def bcast_reduce(comm: MPI.Comm, dim: int, reps: int, warmup: int = 3,
                 polled: bool = True) -> float | None:
    """Median seconds (on rank 0) of one broadcast of a ``dim``-vector model from rank 0 and
    one sum-reduction of a ``dim``-vector gradient to rank 0 over all ranks of ``comm``: what
    an iteration's communication costs at the least. ``polled`` (default): ``Ibcast`` +
    ``Ireduce`` completed with the runtime's sleep backoff, so that on an oversubscribed
    machine a waiting rank gives its core away (blocking MPICH collectives spin and then
    measure the scheduler, not the network); else blocking ``Bcast`` + ``Reduce``. Others
    return None."""
    model = np.zeros(dim)
    grad = np.ones(dim)
    total = np.zeros(dim) if comm.rank == 0 else None
    ts = []
    for k in range(warmup + reps):
        barrier(comm)
        t0 = time.perf_counter()
        if polled:
            wait(comm.Ibcast(model, root=0))
            wait(comm.Ireduce(grad, total, op=MPI.SUM, root=0))
        else:
            comm.Bcast(model, root=0)
            comm.Reduce(grad, total, op=MPI.SUM, root=0)
        if k >= warmup:
            ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) if comm.rank == 0 else None

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

from mpicode.mpi.comm import Backoff, SendPool


def wait(req: MPI.Request, timeout: float = 60.0) -> None:
    """Complete ``req`` the runtime's way: Test with the sleep backoff (a spinning rank
    would steal a core from another); bounded."""
    backoff = Backoff()
    t_end = time.perf_counter() + timeout
    while not req.Test():
        if time.perf_counter() > t_end:
            raise RuntimeError(f"no message for {timeout:.0f} s")
        backoff.sleep()


def barrier(comm: MPI.Comm, timeout: float = 60.0) -> None:
    wait(comm.Ibarrier(), timeout)


def rank0_messages(comm: MPI.Comm, reps: int = 200) -> tuple[float, float] | None:
    """Rank 0's own cost of one small message (seconds, median): an ``Isend`` through the
    runtime's send pool, and a matched probe plus ``Recv`` of a message already there (so
    no waiting is counted). Rank 0 gets (send_s, recv_s), others None. The coordinator
    pays these for every TASK, CANCEL, GRANT and MODEL it sends and every message it
    receives; the cost model charges them (docs/design.md §2.6)."""
    buf = np.zeros(8)
    N = comm.size - 1
    sends, recvs = [], []
    barrier(comm)
    if comm.rank == 0:
        pool = SendPool()
        for k in range(reps):
            t0 = time.perf_counter()
            pool.isend(comm, buf.copy(), 1 + k % N, 21)
            sends.append(time.perf_counter() - t0)
        pool.waitall()
    elif comm.rank <= reps:
        n = len(range(comm.rank - 1, reps, N))
        for _ in range(n):
            wait(comm.Irecv(np.empty(8), source=0, tag=21))
        reqs = [comm.Isend(buf, dest=0, tag=22) for _ in range(n)]
        for r in reqs:
            wait(r)
    barrier(comm)  # every reply is on its way
    if comm.rank == 0:
        st, got, out = MPI.Status(), 0, np.empty(8)
        t_end = time.perf_counter() + 60.0
        while got < reps and time.perf_counter() < t_end:
            t0 = time.perf_counter()
            msg = comm.Improbe(source=MPI.ANY_SOURCE, tag=22, status=st)
            if msg is None:
                time.sleep(1e-5)
                continue
            msg.Recv(out)
            recvs.append(time.perf_counter() - t0)
            got += 1
    barrier(comm)
    if comm.rank != 0:
        return None
    return float(np.median(sends)), float(np.median(recvs)) if recvs else 0.0


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

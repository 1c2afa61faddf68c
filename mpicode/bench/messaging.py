"""``mpicode bench messaging``: gradient delivery bandwidth inside the runtime against an
mpi4py buffer ping-pong of the same size, at 2 ranks.

    mpiexec -n 2 python -m mpi4py -m mpicode bench messaging [--json]
    mpicode bench messaging          # launches the line above itself

Ping-pong: rank 0 ``Send``s a float64 array, rank 1 ``Recv``s and sends it back; one-way
bandwidth = bytes / (round trip / 2). Runtime: rank 1 runs the worker's send path (a RESULT
buffer per task, ``Isend`` through its send pool) for a stream of results; rank 0 runs the
coordinator's receive path (``Improbe`` with the backoff, ``Recv`` into its buffer, the copy
it keeps for the decode, the stale check); bandwidth = bytes delivered / time. Target:
>= 50% of the ping-pong bandwidth. Median of repeats.
"""

from __future__ import annotations

import json
import sys
import time
from types import SimpleNamespace

import numpy as np

from mpicode.bench import launch_inner
from mpicode.engine.clock import WallClock
from mpicode.engine.events import Inbox
from mpicode.engine.rows import IterationInfo
from mpicode.schemes.base import Task
from mpicode.wire import RESULT_HEADER, result_header

SIZES = (1_000, 100_000, 1_000_000, 4_000_000)  # float64 elements of a gradient


def _pingpong(comm, n: int, reps: int) -> float:
    buf = np.ones(n)
    other = 1 - comm.rank
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(reps):
        if comm.rank == 0:
            comm.Send(buf, dest=other, tag=1)
            comm.Recv(buf, source=other, tag=1)
        else:
            comm.Recv(buf, source=other, tag=1)
            comm.Send(buf, dest=other, tag=1)
    dt = (time.perf_counter() - t0) / reps / 2  # one way
    return 8 * n / dt


def _runtime(comm, n: int, reps: int) -> float:
    from mpicode import mpi as runtime  # lazy: importing mpi4py initialises MPI

    dim = n - RESULT_HEADER
    if comm.rank == 1:
        # results as a worker holds them when its compute is done (filled before timing)
        outs = [np.ones(RESULT_HEADER + dim) for _ in range(reps)]
        for k, out in enumerate(outs):
            result_header(out, 0, k, 0.0, 0.0, 0.0, 0.0)
        comm.Barrier()
        pool = runtime.SendPool()
        for out in outs:
            pool.isend(comm, out, 0, runtime.TAG_RESULT)
        pool.waitall()
        comm.Barrier()
        return 0.0
    comm.Barrier()
    # the reps results are tasks of one iteration, as the coordinator would have planned them
    # (worker 0 is rank 1)
    scheme = SimpleNamespace(tasks={k: Task(k, 0, 1, np.zeros(1, np.int64))
                                    for k in range(reps)})
    clock = WallClock(time.perf_counter)
    coord = runtime.Coordinator(comm, dim, scheme, events_clock=clock, inbox=Inbox())
    info = IterationInfo(1)
    coord.expect(0, info)
    backoff = runtime.Backoff()
    t0 = time.perf_counter()
    got = 0
    while got < reps:
        if coord.receive():
            backoff.reset()
            got += 1
            for tid in list(info.msgs):  # decoded: its buffer is free again
                coord.release(info.msgs.pop(tid)[0])
        else:
            backoff.sleep()
    dt = time.perf_counter() - t0
    comm.Barrier()
    return 8 * n * reps / dt


def _inner(argv) -> int:
    from mpicode import mpi as runtime  # lazy: importing mpi4py initialises MPI
    comm = runtime.world()
    if comm.size != 2:
        if comm.rank == 0:
            print("mpicode: error: bench messaging needs exactly 2 ranks", file=sys.stderr)
        return 2
    rows = []
    for n in SIZES:
        reps = max(8, min(2000, int(1e8 / (8 * n))))
        pp = float(np.median([_pingpong(comm, n, reps) for _ in range(3)]))
        rt = float(np.median([_runtime(comm, n, reps) for _ in range(3)]))
        rows.append({"elements": n, "bytes": 8 * n, "pingpong_GBs": pp / 1e9,
                     "runtime_GBs": rt / 1e9, "ratio": rt / pp})
    if comm.rank == 0:
        if "--json" in argv:
            print(json.dumps({"rows": rows, "target_ratio": 0.5}))
        else:
            print("bench messaging: 2 ranks, one-way bandwidth, median of 3")
            print(f"  {'bytes':>12}{'ping-pong GB/s':>16}{'runtime GB/s':>14}{'ratio':>8}")
            for r in rows:
                print(f"  {r['bytes']:>12}{r['pingpong_GBs']:>16.3f}{r['runtime_GBs']:>14.3f}"
                      f"{r['ratio']:>8.2f}")
            big = [r["ratio"] for r in rows if r["bytes"] >= 800_000]
            print(f"  target >= 0.50 of ping-pong for gradients >= 800 kB: "
                  f"{'MET' if min(big) >= 0.5 else 'NOT MET'} (min {min(big):.2f})")
    return 0


def run(as_json: bool = False, quick: bool = False) -> None:
    import os
    if any(os.environ.get(v) for v in ("PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")):
        code = _inner(["--json"] if as_json else [])  # already launched by mpiexec
        if code:
            raise SystemExit(code)
        return
    launch_inner("mpicode.bench.messaging", 2, ["--json"] if as_json else [])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        sys.exit(_inner(sys.argv[2:]))
    run(as_json="--json" in sys.argv)

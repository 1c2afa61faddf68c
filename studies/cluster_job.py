"""The MPI job of the real-link study (:mod:`studies.cluster_links`): its cells in
ONE job on the virtual cluster, each cell's links set by the study between cells. Launched by
the study on the cluster's login node as::

    mpiexec -launcher ssh -launcher-exec DIR/ssh -f HOSTFILE -n 5 \\
        python -m mpi4py -m studies.cluster_job CELLS.json

``CELLS.json``: ``{name: {"opts": {...train options...}, "throttle_at": IT or null}}``. The
protocol with the study, over rank 0's stdout and stdin (Hydra forwards stdin to rank 0):

* ``READY <name>``: rank 0 waits for one line on stdin while the study sets the cell's links
  (the other ranks wait in a barrier), so every cell starts on the links it asked for;
* ``THROTTLE <name>``: printed after iteration ``throttle_at - 1``; the study throttles a link
  at once, while the run goes on (no wait: the run's clock keeps running);
* ``CELL {json}``: the cell's per-iteration series (:func:`comm_mpi.run_series`) and status.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mpicode import mpi as runtime  # an MPI program: importing mpi4py initialises MPI
from mpicode.numerics import kernels
from studies.comm_mpi import run_series


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mpi4py -m studies.cluster_job CELLS.json",
              file=sys.stderr)
        return 2
    comm = runtime.world()
    cells = json.loads(Path(argv[0]).read_text())
    if comm.rank == 0:
        kernels.warmup()
    comm.Barrier()  # rank 0 compiled into the cache; the others load it
    if comm.rank != 0:
        kernels.warmup()
    cache: dict = {}
    go = np.zeros(1, dtype=np.int64)  # every rank read the same cells: rank 0 says go or stop
    for name, spec in cells.items():
        if comm.rank == 0:
            print(f"READY {name}", flush=True)
            go[0] = 1 if sys.stdin.readline() else 0  # EOF: the study is gone, stop here
        comm.Bcast(go, root=0)  # a buffer, no pickle (tests/unit/test_audit.py)
        if not go[0]:
            break
        at = spec.get("throttle_at")

        def after(it, name=name, at=at):
            if at is not None and it == at - 1:
                print(f"THROTTLE {name}", flush=True)

        out = run_series(spec["opts"], comm, cache, after)
        if out is not None:
            trainer, per = out
            print("CELL " + json.dumps({"name": name, "status": trainer.status, **per}),
                  flush=True)
    comm.Barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

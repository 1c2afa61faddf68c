"""The MPI part of the suite: every cell in ONE job, one after the other, on one communicator.

Launched by ``python -m studies`` as::

    mpiexec -n 9 python -m mpi4py -m studies.mpirun --inner --out results \\
        --data-dir results/datasets [--quick]

Rank 0 coordinates every cell and writes its HDF5 run (``OUT/<cell>.h5``, the same layout as
``mpicode train``); ranks 1..N are the workers. Injected delays are real sleeps. A trace cell
is written (and renamed from ``.part``) before any cell that replays it starts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mpicode import mpi as runtime  # lazy: importing mpi4py initialises MPI
from mpicode.config import Config, defaults, validate_for_size
from mpicode.mpi.runs import logged_run  # lazy: importing mpi4py initialises MPI
from mpicode.numerics import kernels  # lazy: numba (~1 s), on the MPI ranks only
from studies.suite import Cell, Suite


def make_config(suite: Suite, cell: Cell, out_dir: str, data_dir: str):
    """The validated configuration of a cell: package defaults < suite < cell."""
    v = dict(defaults().values)
    v.update(seed=7, quiet=True, force=True, delay_mode="sleep")
    v.update(cell.options)
    if v["dataset"] != "synthetic":
        v["dataset"] = str(Path(data_dir) / f"{v['dataset']}.h5")
    if cell.trace is not None:
        v["stragglers"] = "trace:" + str(Path(out_dir) / f"{cell.trace}.h5")
    v["out"] = str(Path(out_dir) / f"{cell.name}.h5")
    return validate_for_size(Config(v), suite.workers)


def run_cell(suite: Suite, cell: Cell, comm, out_dir: str, data_dir: str, cache: dict):
    """Run one cell on ``comm``; rank 0 writes its run log and returns (iterations, seconds,
    exit code)."""

    cfg = make_config(suite, cell, out_dir, data_dir)
    t0 = time.perf_counter()
    out = logged_run(cfg, comm, cache, {"experiment_group": cell.group,
                                        "experiment_labels": cell.labels,
                                        "experiment_cell": cell.name})
    if out is None:
        return None
    code, trainer = out
    return len(trainer.history), time.perf_counter() - t0, code


def _inner(argv) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default=None, choices=["rivals"])
    a = p.parse_args(argv)

    suite = Suite.make(a.quick)
    kernels.warmup()
    comm = runtime.world().Dup()
    if comm.size != suite.ranks:
        if comm.rank == 0:
            print(f"experiments: need {suite.ranks} ranks, got {comm.size}", file=sys.stderr)
        comm.Free()
        runtime.finalize()  # every rank sees the same size: exit 2, no MPI_Abort
        return 2
    cells = suite.cells_for(a.only)
    cache: dict = {}
    t_all = time.perf_counter()
    for k, cell in enumerate(cells):
        out = run_cell(suite, cell, comm, a.out, a.data_dir, cache)
        if out is not None:
            n, dt, code = out
            bad = "" if code == 0 else f" (exit code {code}: see the cell's run log)"
            print(f"  [{k + 1:>3}/{len(cells)}] {cell.name}: {n} iterations, {dt:.1f} s "
                  f"(total {time.perf_counter() - t_all:.0f} s){bad}", flush=True)
    comm.Barrier()
    comm.Free()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        sys.exit(_inner(sys.argv[2:]))
    sys.exit("run through python -m studies")

"""Several runs in ONE MPI job, one after the other on one communicator.

For the cluster tests and the real-link study, where starting a job (every rank importing
numpy, numba and mpicode) costs more than a short run::

    mpiexec -n 5 python -m mpi4py -m studies.batch CELLS.json OUT_DIR

``CELLS.json`` maps a cell name to its ``mpicode train`` options (underscores, over the package
defaults): ``{"uncoded": {"scheme": "uncoded", "iterations": 12}, ...}``. Rank 0 writes each
cell's run to ``OUT_DIR/<name>.h5`` (the layout of ``mpicode train``, renamed from ``.part``
when complete, so a watcher can tell which cell runs) and prints ``CELL <name> <iterations>
<seconds> <exit code>``. A cell's bad options stop the job before any run, with one line and
exit code 2 on every rank (every rank validates the same file).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mpicode import mpi as runtime  # an MPI program: importing mpi4py initialises MPI
from mpicode.config import Config, UsageError, defaults, validate_for_size
from mpicode.mpi.runs import logged_run
from mpicode.numerics import kernels


def load_cells(path: str, n_workers: int, out_dir: str) -> list:
    """The validated configurations, in the file's order (``UsageError`` on a bad one)."""
    try:
        cells = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: {e}") from None
    if not isinstance(cells, dict) or not cells:
        raise UsageError(f"{path}: expected a non-empty JSON object of cells")
    out = []
    for name, opts in cells.items():
        if not isinstance(opts, dict) or "/" in name or not name:
            raise UsageError(f"{path}: cell {name!r}: expected a name and an object of options")
        v = dict(defaults().values)
        v.update(quiet=True, force=True)
        unknown = sorted(set(opts) - set(v))
        if unknown:
            raise UsageError(f"{path}: cell {name!r}: unknown options {unknown}")
        v.update(opts)
        v["out"] = str(Path(out_dir) / f"{name}.h5")
        out.append((name, validate_for_size(Config(v), n_workers)))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m mpi4py -m studies.batch CELLS.json OUT_DIR",
              file=sys.stderr)
        return 2
    comm = runtime.world()
    try:
        cells = load_cells(argv[0], comm.size - 1, argv[1])
    except (UsageError, ValueError) as e:
        if comm.rank == 0:
            print(f"mpicode: error: {e}", file=sys.stderr, flush=True)
        runtime.finalize()
        return 2
    if comm.rank == 0:
        Path(argv[1]).mkdir(parents=True, exist_ok=True)
        kernels.warmup()
    comm.Barrier()  # rank 0 compiled into the cache first; the others load it
    if comm.rank != 0:
        kernels.warmup()
    cache: dict = {}
    worst = 0
    for name, cfg in cells:
        t0 = time.perf_counter()
        out = logged_run(cfg, comm, cache, {"batch_cell": name})
        if out is not None:
            code, trainer = out
            worst = max(worst, code)
            print(f"CELL {name} {len(trainer.history)} {time.perf_counter() - t0:.2f} {code}",
                  flush=True)
    comm.Barrier()
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

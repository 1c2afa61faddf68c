"""Memory a run needs, estimated before anything is allocated (the refusal itself:
:mod:`mpicode.memory`), so that ``mpicode simulate --workers 10000000`` or a dataset header
claiming 10^12 rows is one line and exit code 2, not a machine swapping itself to death::

    mpicode simulate --workers 10000000      # mpicode: error: ... needs about 24.2 GiB ...

The constants are measured upper bounds, not exact figures: ``simulate --compute none`` at
N = 2 x 10^5 peaks at about 2 KB per worker (scheme state, task objects and their rows, the
run log's per-worker rows); the estimate takes 2.5 KB with the default K = 4N. Data: the
arrays as read (float64), the partitions' contiguous copies and a cast or temporaries.
"""

from __future__ import annotations

import os

from mpicode.io.datasets import dataset_shape
from mpicode.memory import DATA_COPIES, check, data_bytes, gib, mem_available  # noqa: F401

PER_WORKER = 2048      # bytes per (virtual) worker on the coordinator (K = 4N: +512)
PER_PARTITION = 128    # bytes per micro-partition (row lists, scheme tables)
MESSAGES_PER_WORKER = 1  # gradient messages that can be held at once, per worker
SPARE_MESSAGES = 8     # plus the model, the decoded sum, the update ...


def model_dim(cols: int, model: str, n_classes: int) -> int:
    return int(cols) * max(int(n_classes), 2) if model == "softmax" else int(cols)


def run_bytes(*, n_workers: int, n_partitions: int, rows: int, cols: int, n_test: int = 0,
              dim: int | None = None, ranks_here: int = 1, compute: bool = True) -> int:
    """Estimated peak bytes of one run on this node: the coordinator's per-worker and
    per-partition state, the gradient messages it may hold (``dim`` doubles each), and the
    data on each of the ``ranks_here`` ranks that share this node (each loads its copy)."""
    dim = cols if dim is None else dim
    need = PER_WORKER * int(n_workers) + PER_PARTITION * int(n_partitions)
    if compute:
        msgs = MESSAGES_PER_WORKER * int(n_workers) + SPARE_MESSAGES
        need += 8 * int(dim) * msgs + max(1, ranks_here) * (
            data_bytes(rows, cols, n_test) + 8 * int(dim) * SPARE_MESSAGES)
    return need


def local_ranks(default: int) -> int:
    """Ranks on this node, as MPICH's launcher tells each process (else ``default``)."""
    v = os.environ.get("MPI_LOCALNRANKS", "")
    return int(v) if v.isdigit() else default


def check_run(cfg, n_workers: int, ranks_here: int = 1, available: int | None = None) -> None:
    """Refuse a run whose estimate does not fit, before its data or workers exist. The
    dataset's shape comes from the file's header (nothing is read) or the synthetic sizes."""
    K = cfg.partitions if cfg.partitions is not None else 4 * n_workers
    compute = getattr(cfg, "compute", "real") == "real"
    if cfg.dataset == "synthetic":
        n_test = max(1, int(round(cfg.samples * 0.2)))
        rows, cols, n_classes = cfg.samples, cfg.features, 4
    else:
        shape = dataset_shape(cfg.dataset) if compute else None
        if shape is None:  # unreadable: the loader says why
            rows, cols, n_test, n_classes = 0, cfg.features, 0, 2
        else:
            rows, cols, n_test, n_classes = shape
    dim = model_dim(cols, cfg.model, n_classes)
    need = run_bytes(n_workers=n_workers, n_partitions=K, rows=rows, cols=cols, n_test=n_test,
                     dim=dim, ranks_here=ranks_here, compute=compute)
    what = (f"this run (N={n_workers} workers, K={K} partitions"
            + (f", {rows} x {cols} data, model dimension {dim}" if compute else "") + ")")
    check(need, what, available)

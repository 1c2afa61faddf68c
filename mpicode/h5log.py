"""The HDF5 run log (DESIGN section 7). Only rank 0 (or the simulator) writes.

The whole structure is created up front: one resizable, chunked 1-D dataset per
per-iteration field under ``/iterations``, one 2-D (iteration x worker) dataset per field
under ``/workers``, one 1-D dataset per field under ``/tasks`` (one row per task). Every
iteration appends a row to each, then bumps the root attribute ``n_done`` and flushes, so a
killed run leaves a file whose rows below ``n_done`` are valid. The file is written as
``PATH.part`` and renamed to ``PATH`` when it is closed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from pathlib import Path

import h5py
import numpy as np

from mpicode import FORMAT_VERSION, __version__
from mpicode.config import UsageError

# name -> dtype. Later features add fields here; readers must tolerate missing ones.
ITERATION_FIELDS: dict[str, str] = {
    "iteration": "i8", "t_start": "f8", "t_end": "f8", "loss": "f8", "test_loss": "f8",
    "accuracy": "f8", "train_accuracy": "f8", "coverage": "f8", "load": "f8", "stage2": "i1",
    "n_stage2": "i4", "wait_s": "f8", "decode_s": "f8", "bytes_up": "i8", "n_cancelled": "i4",
    "n_stale": "i4", "grad_norm": "f8", "comm_s": "f8",
}
WORKER_FIELDS: dict[str, str] = {
    "stage": "i1", "partitions": "i4", "compute_s": "f8", "delay_s": "f8", "finish_s": "f8",
    "used": "i1",
    # communication phase (channel not ideal): bytes of this iteration; Q, Z and the long-run
    # participation as they stand at the iteration's end
    "offered": "i8", "admitted": "i8", "delivered": "i8", "deferred": "i8", "dropped": "i8",
    "Q": "f8", "Z": "f8", "participation": "f8",
}
TASK_FIELDS: dict[str, str] = {
    "iteration": "i8", "worker": "i4", "stage": "i1", "n_partitions": "i4",
    "first_partition": "i4", "t_dispatch": "f8", "t_done": "f8", "used": "i1",
    "cancelled": "i1", "compute_s": "f8", "delay_s": "f8", "t_ready": "f8",
}
CHUNK = 256


def _fill(dtype: str):
    return np.nan if dtype.startswith("f") else (-1 if dtype.startswith("i") else 0)


def check_output(path: str, force: bool) -> None:
    """Fail early (before any training) if ``path`` cannot be written."""
    p = Path(path)
    if p.exists() and not force:
        raise UsageError(f"output exists: {path} (use --force to overwrite)")
    if p.is_dir():
        raise UsageError(f"output is a directory: {path}")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output directory {parent}: {e.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output directory not writable: {parent}")


class RunLog:
    """Append-only, crash-safe writer of one run."""

    def __init__(self, path: str, *, config_json: str, n_workers: int, n_partitions: int,
                 mode: str = "mpi", attrs: dict | None = None, force: bool = False):
        check_output(path, force)
        self.path = str(path)
        self.part = self.path + ".part"
        self.N = n_workers
        self.n_done = 0
        self.n_tasks = 0
        # default libver: no superblock "open for write" flag, so a killed run stays readable
        self.f = h5py.File(self.part, "w")
        a = self.f.attrs
        a["format_version"] = FORMAT_VERSION
        a["mpicode_version"] = __version__
        a["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
        a["config"] = config_json
        a["n_workers"] = n_workers
        a["n_partitions"] = n_partitions
        a["host"] = socket.gethostname()
        a["mode"] = mode
        a["status"] = "running"
        a["n_done"] = 0
        for k, v in (attrs or {}).items():
            a[k] = v if not isinstance(v, (dict, list)) else json.dumps(v)
        gi = self.f.create_group("iterations")
        for k, dt in ITERATION_FIELDS.items():
            gi.create_dataset(k, shape=(0,), maxshape=(None,), dtype=dt, chunks=(CHUNK,),
                              fillvalue=_fill(dt))
        gw = self.f.create_group("workers")
        for k, dt in WORKER_FIELDS.items():
            gw.create_dataset(k, shape=(0, n_workers), maxshape=(None, n_workers), dtype=dt,
                              chunks=(max(1, min(CHUNK, 65536 // max(1, n_workers))), n_workers),
                              fillvalue=_fill(dt))
        gt = self.f.create_group("tasks")
        for k, dt in TASK_FIELDS.items():
            gt.create_dataset(k, shape=(0,), maxshape=(None,), dtype=dt, chunks=(4 * CHUNK,),
                              fillvalue=_fill(dt))
        self.f.flush()

    def append(self, row: dict, workers: dict[str, np.ndarray], tasks: dict[str, np.ndarray]):
        """Append one iteration (its row, its worker rows, its task rows), then flush."""
        n = self.n_done
        unknown = set(row) - set(ITERATION_FIELDS) | set(workers) - set(WORKER_FIELDS) \
            | set(tasks) - set(TASK_FIELDS)
        if unknown:
            raise KeyError(f"fields not in the log schema: {sorted(unknown)}")
        for k, dt in ITERATION_FIELDS.items():
            d = self.f["iterations"][k]
            d.resize((n + 1,))
            d[n] = row.get(k, _fill(dt))
        for k, dt in WORKER_FIELDS.items():
            d = self.f["workers"][k]
            d.resize((n + 1, self.N))
            d[n] = workers[k] if k in workers else _fill(dt)
        m = len(next(iter(tasks.values()))) if tasks else 0
        if m:
            for k, dt in TASK_FIELDS.items():
                d = self.f["tasks"][k]
                d.resize((self.n_tasks + m,))
                d[self.n_tasks:] = tasks[k] if k in tasks else _fill(dt)
            self.n_tasks += m
        self.n_done = n + 1
        self.f.attrs["n_done"] = self.n_done
        self.f.attrs["n_tasks"] = self.n_tasks
        self.f.flush()

    def set_attrs(self, **kw):
        for k, v in kw.items():
            self.f.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v)

    def write_group(self, name: str, arrays: dict[str, np.ndarray], compress: bool = False):
        g = self.f.require_group(name)
        for k, v in arrays.items():
            if k in g:
                del g[k]
            v = np.asarray(v)
            big = compress and v.size > 0
            g.create_dataset(k, data=v, compression="gzip" if big else None,
                             shuffle=big, chunks=True if big else None)

    def close(self, status: str = "complete") -> str:
        """Mark ``status``, close, and rename ``.part`` to the final name."""
        if self.f is None:
            return self.path
        self.f.attrs["status"] = status
        self.f.attrs["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
        self.f.close()
        self.f = None
        os.replace(self.part, self.path)
        return self.path

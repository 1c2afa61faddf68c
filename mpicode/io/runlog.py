"""The HDF5 run log (docs/design.md §7). Only rank 0 (or the simulator) writes.

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
    # the phases of a row on the wall clock (0 in virtual time): they tile t_start..t_end
    "log_s": "f8", "update_s": "f8", "eval_s": "f8",
}
WORKER_FIELDS: dict[str, str] = {
    "stage": "i1", "partitions": "i4", "compute_s": "f8", "delay_s": "f8", "finish_s": "f8",
    "used": "i1",
    # communication phase (channel not ideal): bytes of this iteration; Q, Z and the long-run
    # participation as they stand at the iteration's end
    "offered": "i8", "admitted": "i8", "delivered": "i8", "deferred": "i8", "dropped": "i8",
    "Q": "f8", "Z": "f8", "participation": "f8",
    "active": "i1",  # 0 once the worker was left out of planning (--dead-after)
}
TASK_FIELDS: dict[str, str] = {
    "iteration": "i8", "worker": "i4", "stage": "i1", "n_partitions": "i4",
    "first_partition": "i4", "t_dispatch": "f8", "t_done": "f8", "used": "i1",
    "cancelled": "i1", "compute_s": "f8", "delay_s": "f8", "t_ready": "f8",
}
CHUNK = 256


def _fill(dtype: str):
    if dtype.startswith("S"):
        return b""
    return np.nan if dtype.startswith("f") else (-1 if dtype.startswith("i") else 0)


def scheme_log_fields(config_json: str) -> dict[str, str]:
    """The extra ``/iterations`` fields (``log_fields``) of the scheme a run's configuration
    names; {} if it names none or an unknown one."""
    try:
        name = json.loads(config_json).get("scheme") if config_json else None
    except (ValueError, AttributeError):
        return {}
    if not name:
        return {}
    from mpicode import registry
    cls = registry.schemes().get(name)
    return dict(getattr(cls, "log_fields", {})) if cls is not None else {}


def _iteration_fields(extra: dict[str, str]) -> dict[str, str]:
    clash = sorted(set(extra) & set(ITERATION_FIELDS))
    if clash:
        raise ValueError(f"scheme log fields {clash} clash with core /iterations fields")
    for k, dt in extra.items():
        if np.dtype(dt).kind not in "biufS":
            raise ValueError(f"scheme log field {k!r}: dtype {dt!r} is not a number or bytes")
    return {**ITERATION_FIELDS, **extra}


NOTES_CHUNK = 64


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
    if room_for(str(p)) < MIN_ROOM:
        raise UsageError(f"no room for the run log in {parent}: "
                         f"{room_for(str(p))} bytes left")


def read_checkpoint(path: str) -> tuple[dict, dict]:
    """(stored configuration, checkpoint) of a run to resume (``RUN.h5`` or its ``.part``)."""
    from mpicode.io import checkpoint
    p = Path(path)
    if not p.exists() and Path(str(p) + ".part").exists():
        p = Path(str(p) + ".part")
    try:
        with h5py.File(p, "r", locking=False) as f:
            cfg = json.loads(f.attrs["config"])
            snap = checkpoint.read(f)
            n_done = int(f.attrs["n_done"])
    except (OSError, KeyError, ValueError) as e:
        raise UsageError(f"--resume {path}: not a readable mpicode run "
                         f"({e.__class__.__name__})") from None
    if snap is None:
        raise UsageError(f"--resume {path}: the run has no checkpoint (use --checkpoint-every)")
    if int(snap["iteration"]) > n_done:
        raise UsageError(f"--resume {path}: checkpoint at iteration {int(snap['iteration'])} "
                         f"is past the {n_done} logged rows")
    return cfg, snap


class DiskFull(OSError):
    """Not enough room left for the next rows: the run stops before writing them."""


MIN_ROOM = 1 << 20  # bytes a run needs before it starts, and the slack it keeps


def room_for(path: str) -> int:
    """Bytes that can still be written to ``path``: free space on its file system, and
    the process's file-size limit (RLIMIT_FSIZE) minus the file's size."""
    import resource
    import shutil
    p = Path(path)
    d = p.parent if str(p.parent) else Path(".")
    free = shutil.disk_usage(d).free
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        free = min(free, soft - (p.stat().st_size if p.exists() else 0))
    return int(free)


class RunLog:
    """Append-only, crash-safe writer of one run."""

    def __init__(self, path: str, *, config_json: str, n_workers: int, n_partitions: int,
                 mode: str = "mpi", attrs: dict | None = None, force: bool = False,
                 extra_fields: dict[str, str] | None = None,
                 _resume: tuple[int, int] | None = None):
        """``extra_fields``: the scheme's ``log_fields`` (name -> dtype), more
        ``/iterations`` columns; default: those of the scheme ``config_json`` names."""
        if _resume is not None:
            self._reopen(path, *_resume)
            return
        self.iteration_fields = _iteration_fields(
            scheme_log_fields(config_json) if extra_fields is None else extra_fields)
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
        for k, dt in self.iteration_fields.items():
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
        self._create_notes()
        self.f.flush()

    def _create_notes(self) -> None:
        """``/notes``: the scheme's notes (``log_notes``), one row per note: ``iteration``
        and ``text``."""
        g = self.f.require_group("notes")
        for k, dt in (("iteration", "i8"), ("text", h5py.string_dtype())):
            if k not in g:
                g.create_dataset(k, shape=(0,), maxshape=(None,), dtype=dt,
                                 chunks=(NOTES_CHUNK,))

    @classmethod
    def resume(cls, path: str, n_rows: int, n_tasks: int) -> RunLog:
        """Reopen a run (``RUN.h5`` or ``RUN.h5.part``) to continue it: rows past the
        checkpoint (``n_rows`` iterations, ``n_tasks`` task rows) are cut, status is
        ``running`` again, and the file is ``.part`` until closed."""
        return cls(path, config_json="", n_workers=0, n_partitions=0,
                   _resume=(n_rows, n_tasks))

    def _reopen(self, path: str, n_rows: int, n_tasks: int) -> None:
        path = str(path)
        self.path = path[:-5] if path.endswith(".part") else path
        self.part = self.path + ".part"
        if not os.path.exists(self.part):
            os.replace(self.path, self.part)
        self.f = h5py.File(self.part, "r+")
        self.N = int(self.f.attrs["n_workers"])
        gi = self.f["iterations"]
        self.iteration_fields = {k: gi[k].dtype.kind + str(gi[k].dtype.itemsize) for k in gi}
        self._create_notes()  # (runs logged before /notes existed)
        keep = int(np.searchsorted(self.f["notes/iteration"][:], n_rows))  # notes are sorted
        for k in ("iteration", "text"):
            self.f["notes"][k].resize((keep,))
        for k in self.f["iterations"]:
            self.f["iterations"][k].resize((n_rows,))
        for k in self.f["workers"]:
            self.f["workers"][k].resize((n_rows, self.N))
        for k in self.f["tasks"]:
            self.f["tasks"][k].resize((n_tasks,))
        self.n_done, self.n_tasks = n_rows, n_tasks
        a = self.f.attrs
        a["n_done"], a["n_tasks"], a["status"] = n_rows, n_tasks, "running"
        a["resumed"] = json.dumps(json.loads(a.get("resumed", "[]")) + [
            {"at": _dt.datetime.now(_dt.timezone.utc).isoformat(), "iteration": n_rows}])
        self.f.flush()

    def ensure_room(self, extra: int = 0) -> None:
        """Raise DiskFull unless the next write (as large as the largest so far, plus
        ``extra``) fits with a margin. HDF5 does not survive a failed write (a half-written
        file, even a crash at exit), so the run stops cleanly *before* the disk is full."""
        size = os.path.getsize(self.part)
        self._growth = max(getattr(self, "_growth", 0), size - getattr(self, "_size", size))
        self._size = size
        need = self._growth + extra + MIN_ROOM // 4
        left = room_for(self.part)
        if left < need:
            raise DiskFull(f"only {left} bytes left for the run log, the next rows need "
                           f"about {need}")

    def checkpoint(self, snap: dict) -> None:
        from mpicode.io import checkpoint
        nbytes = sum(np.asarray(v).nbytes for v in snap.values() if not isinstance(v, dict))
        self.ensure_room(2 * nbytes)
        checkpoint.write(self.f, snap)

    def start_watchdog(self) -> None:
        """A process of its own session that marks the run ``failed`` if this process dies
        without closing it (see :mod:`mpicode.io.watchdog`)."""
        import subprocess
        import sys
        subprocess.Popen([sys.executable, "-m", "mpicode.io.watchdog", str(os.getpid()),
                          self.part], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def append(self, row: dict, workers: dict[str, np.ndarray], tasks: dict[str, np.ndarray]):
        """Append one iteration (its row, its worker rows, its task rows), then flush."""
        n = self.n_done
        self.ensure_room()
        unknown = set(row) - set(self.iteration_fields) | set(workers) - set(WORKER_FIELDS) \
            | set(tasks) - set(TASK_FIELDS)
        if unknown:
            raise KeyError(f"fields not in the log schema: {sorted(unknown)}")
        for k, dt in self.iteration_fields.items():
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

    def add_notes(self, iteration: int, texts) -> None:
        """The scheme's notes of ``iteration``, appended to ``/notes`` (written before the
        iteration's row, so every note below ``n_done`` is there when a reader sees it)."""
        texts = list(texts)
        if not texts:
            return
        g = self.f["notes"]
        n = len(g["iteration"])
        for k, v in (("iteration", [int(iteration)] * len(texts)), ("text", texts)):
            g[k].resize((n + len(texts),))
            g[k][n:] = v

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
        try:
            self.f.attrs["status"] = status
            self.f.attrs["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
            self.f.close()
        except (OSError, RuntimeError):  # disk full: the rows below n_done stay valid
            try:
                self.f.close()
            except Exception:
                pass
        self.f = None
        os.replace(self.part, self.path)
        return self.path

    def __del__(self):  # an abandoned log is closed as it stands (its rows stay valid)
        if getattr(self, "f", None) is not None:
            try:
                self.f.close()
            except Exception:
                pass

"""The HDF5 run log (docs/design.md §7). Only rank 0 (or the simulator) writes.

The whole structure is created up front: one resizable, chunked 1-D dataset per
per-iteration field under ``/iterations``, one 2-D (iteration x worker) dataset per field
under ``/workers``, one 1-D dataset per field under ``/tasks`` (one row per task).

Rows are kept in memory (:mod:`mpicode.io.rowbuffer`) and written as one block (one resize and
one slice write per dataset) at the first iteration end that comes ``flush_every`` seconds
(``--flush-every``, default 1) after the previous write, before every checkpoint, at the end
and when the run is interrupted. Only after the block is written and flushed are the root
attributes ``n_done`` / ``n_tasks`` raised (and flushed again), so a killed run leaves a file
whose rows below ``n_done`` are valid and loses at most the rows of one ``flush_every``
window. The file is written as ``PATH.part`` (created exclusively, never through a symlink,
locked while written: :mod:`mpicode.io.safefile`) and renamed to ``PATH`` when it is closed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import time
from pathlib import Path

import h5py
import numpy as np

from mpicode import FORMAT_VERSION, __version__
from mpicode.errors import UsageError
from mpicode.io import checkpoint, safefile, schemelog
from mpicode.io.integrity import check_objects
from mpicode.io.rowbuffer import Columns, fill_value
from mpicode.io.runfile import check_layout, check_snapshot, resume_target, stored_int
from mpicode.io.safefile import MIN_ROOM, DiskFull, room_for  # noqa: F401 (re-exported)
from mpicode.io.schema import ITERATION_FIELDS, TASK_FIELDS, WORKER_FIELDS  # noqa: E402,F401

LAYOUT = {"iterations": ITERATION_FIELDS, "workers": WORKER_FIELDS, "tasks": TASK_FIELDS}
CHUNK = 256
BLOCK_BYTES = 8 << 20  # rows buffered before a write regardless of the clock
_fill = fill_value


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


def check_output(path: str, force: bool) -> None:
    """Fail early (before any training) if ``path`` cannot be written. ``PATH`` or
    ``PATH.part`` existing (whatever its status) is "output exists" without ``force``; a
    ``PATH.part`` that is a symlink or that a live run holds is refused even with it."""
    p = Path(path)
    part = str(p) + ".part"
    limit = safefile.name_max(str(p.parent))
    if len(p.name) + len(".part") > limit:
        raise UsageError(f"output name too long: {p.name[:40]}... has {len(p.name)} characters; "
                         f"with .part (the run in progress) it must fit in {limit}: at most "
                         f"{limit - 5}")
    if os.path.islink(part):
        raise UsageError(f"output {part} is a symbolic link: refusing to write through it")
    for name in (str(p), part):
        if os.path.lexists(name) and safefile.is_held(name):
            raise UsageError(f"output {name} is in use by a running mpicode run")
    if os.path.lexists(p) and not force:
        raise UsageError(f"output exists: {path} (use --force to overwrite)")
    if os.path.lexists(part) and not force:
        raise UsageError(f"output exists: {part}, an unfinished run (continue it with "
                         f"--resume {path}, or use --force to overwrite)")
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


def read_checkpoint(path: str, *, n_workers: int | None = None, mode: str | None = None
                    ) -> tuple[dict, dict]:
    """(stored configuration, checkpoint) of a run to resume (``RUN.h5`` or its ``.part``),
    checked without changing a byte: the file (:func:`resume_target`), its ``config``, the
    row datasets, the checkpoint's iteration and shapes, and (when given) the number of
    workers and the writer's ``mode`` (``mpi`` / ``simulated``)."""
    p = resume_target(path)
    check_objects(str(p), f"--resume {path}")  # corrupt internals: refused, file untouched
    try:
        with h5py.File(p, "r", locking=False) as f:
            cfg = json.loads(f.attrs["config"])
            if not isinstance(cfg, dict):
                raise ValueError("config is not a JSON object")
            n_done, N = stored_int(f.attrs, "n_done"), stored_int(f.attrs, "n_workers", 1)
            n_tasks = stored_int(f.attrs, "n_tasks") if "n_tasks" in f.attrs else 0
            stored_mode, dim = f.attrs.get("mode"), f.attrs.get("dim")
            check_layout(f, LAYOUT, n_done, n_tasks, N)
            snap = checkpoint.read(f)
    except UsageError:
        raise
    except Exception as e:  # any corrupt or hand-made file: one line, never a traceback
        why = str(e).splitlines()[0][:120] if str(e) else e.__class__.__name__
        raise UsageError(f"--resume {path}: not a readable mpicode run ({why})") from None
    if snap is None:
        raise UsageError(f"--resume {path}: the run has no checkpoint (use --checkpoint-every)")
    bad = check_snapshot(snap, n_done, n_tasks, dim)
    if bad:
        raise UsageError(f"--resume {path}: {bad}")
    if mode is not None and stored_mode != mode:
        raise UsageError(f"--resume {path}: the run was written in mode {stored_mode!r}; "
                         f"this command runs in mode {mode!r}")
    if n_workers is not None and n_workers != N:
        raise UsageError(f"--resume {path}: the run has {N} workers, this job has {n_workers} "
                         f"(launch with mpiexec -n {N + 1})")
    return cfg, snap


def _create_layout(f, n_workers: int, rows: int = 0, tasks: int = 0, layout=None) -> None:
    """Every group and dataset of ``layout`` (LAYOUT + a scheme's fields) and ``/notes`` that
    ``f`` lacks, ``rows`` (``tasks``) long and filled (missing for a resumed run's old rows)."""
    schemelog.create_notes(f)
    for g, fields in (layout or LAYOUT).items():
        grp = f.require_group(g)
        for k, dt in fields.items():
            if k in grp:
                continue
            if g == "workers":
                grp.create_dataset(k, shape=(rows, n_workers), maxshape=(None, n_workers),
                                   dtype=dt, fillvalue=_fill(dt), chunks=(
                                       max(1, min(CHUNK, 65536 // max(1, n_workers))), n_workers))
            else:
                n, chunk = (tasks, 4 * CHUNK) if g == "tasks" else (rows, CHUNK)
                grp.create_dataset(k, shape=(n,), maxshape=(None,), dtype=dt, chunks=(chunk,),
                                   fillvalue=_fill(dt))


class RunLog:
    """Append-only, crash-safe writer of one run. ``n_done`` / ``n_tasks`` count the rows
    appended (a checkpoint taken now matches them); the file's attributes of the same names
    count the rows written, which every checkpoint, the end and ``flush()`` bring level."""

    def __init__(self, path: str, *, config_json: str, n_workers: int, n_partitions: int,
                 mode: str = "mpi", attrs: dict | None = None, force: bool = False,
                 flush_every: float = 1.0, extra_fields: dict[str, str] | None = None,
                 _resume: tuple[int, int] | None = None):
        self.flush_every = float(flush_every)
        self.layout = schemelog.layout_for(LAYOUT, config_json, extra_fields)
        self.f = None
        self._lock = None
        self._broken = False
        self._full = ""  # why the disk was found full: no more rows after that
        self.checkpoint_at: int | None = None  # the iteration of the last checkpoint written
        if _resume is not None:
            self._reopen(path, *_resume, config_json=config_json)
        else:
            check_output(path, force)
            self.path = str(path)
            self.part = self.path + ".part"
            self.N = n_workers
            self.n_done = self.n_tasks = 0
            self._create(force, {"config": config_json, "n_workers": n_workers,
                                 "n_partitions": n_partitions, "mode": mode}, attrs or {})
        self._start_buffers()

    def _create(self, force: bool, base: dict, attrs: dict) -> None:
        """Build the file under a temporary name, lock it, then link it to ``PATH.part``."""
        tmp = safefile.temp_name(self.part)
        # default libver: no superblock "open for write" flag, so a killed run stays readable
        f = h5py.File(tmp, "x", locking=False)
        try:
            a = f.attrs
            a["format_version"] = FORMAT_VERSION
            a["mpicode_version"] = __version__
            a["created"] = _now()
            for k, v in base.items():
                a[k] = v
            a["host"] = socket.gethostname()
            a["status"] = "running"
            a["n_done"] = 0
            for k, v in attrs.items():
                a[k] = v if not isinstance(v, (dict, list)) else json.dumps(v)
            _create_layout(f, self.N, layout=self.layout)
            f.flush()
            self._lock = safefile.hold(tmp)
            safefile.link_into_place(tmp, self.part, replace=force)
        except BaseException as e:
            f.close()
            safefile.release(self._lock)
            self._lock = None
            if os.path.lexists(tmp):
                os.unlink(tmp)
            if isinstance(e, (FileExistsError, safefile.InUse)):
                raise UsageError(f"output {self.part} appeared while this run started "
                                 "(another run?)") from None
            raise
        self.f = f

    @classmethod
    def resume(cls, path: str, n_rows: int, n_tasks: int, *, config_json: str = "",
               flush_every: float = 1.0) -> RunLog:
        """Reopen a run (``RUN.h5`` or ``RUN.h5.part``, the one :func:`resume_target` finds)
        to continue it: rows past the checkpoint (``n_rows`` iterations, ``n_tasks`` task
        rows) are cut, status is ``running`` again, ``config`` becomes ``config_json`` (if
        given: the resumed configuration), and the file is ``.part`` until closed."""
        return cls(path, config_json=config_json, n_workers=0, n_partitions=0,
                   flush_every=flush_every, _resume=(n_rows, n_tasks))

    def _reopen(self, path: str, n_rows: int, n_tasks: int, config_json: str) -> None:
        found = resume_target(str(path))
        self.path = found[:-5] if found.endswith(".part") else found
        self.part = self.path + ".part"
        self._lock = safefile.hold(found)
        try:
            if found != self.part:
                safefile.rename_noreplace(found, self.part)
            self.f = h5py.File(self.part, "r+", locking=False)
        except BaseException:
            safefile.release(self._lock)
            raise
        self.N = int(self.f.attrs["n_workers"])
        self.layout = schemelog.reopen(self.f, LAYOUT, n_rows)
        _create_layout(self.f, self.N, n_rows, n_tasks, self.layout)
        for g, shape in (("iterations", (n_rows,)), ("workers", (n_rows, self.N)),
                         ("tasks", (n_tasks,))):
            for d in self.f[g].values():
                d.resize(shape)
        self.n_done, self.n_tasks = n_rows, n_tasks
        self.checkpoint_at = n_rows  # resumed from it; it stays in the file until replaced
        a = self.f.attrs
        a["n_done"], a["n_tasks"], a["status"] = n_rows, n_tasks, "running"
        if config_json:
            a["config"] = config_json
        entry = {"at": _now(), "iteration": n_rows}
        for stale in ("failure", "finished"):  # said of the run that stopped, not this one
            if stale in a:
                v = a[stale]
                entry[f"previous_{stale}"] = v.decode() if isinstance(v, bytes) else str(v)
                del a[stale]
        a["resumed"] = json.dumps(json.loads(a.get("resumed", "[]")) + [entry])
        self.f.flush()

    def _start_buffers(self) -> None:
        self._written, self._tasks_written = self.n_done, self.n_tasks
        fields_i = self.layout["iterations"]
        self._dsets = {g: {k: self.f[g][k] for k in fields} for g, fields in self.layout.items()}
        per_row = 8 * len(fields_i) + 8 * len(WORKER_FIELDS) * self.N
        cap = int(min(1024, max(8, BLOCK_BYTES // per_row)))
        self._rows = Columns(fields_i, None, cap)
        self._notes = schemelog.Notes()
        self.add_notes = self._notes.add  # (iteration, texts): the scheme's notes
        self._workers = Columns(WORKER_FIELDS, self.N, cap)
        self._tasks = Columns(TASK_FIELDS, None, 4 * cap)
        self._limit = BLOCK_BYTES
        self._t_written = time.monotonic()
        self._fields = (set(fields_i), set(WORKER_FIELDS), set(TASK_FIELDS))

    def ensure_room(self, extra: int = 0) -> None:
        """Raise DiskFull unless the next write (as large as the largest so far, plus
        ``extra``) fits with a margin. HDF5 does not survive a failed write (a half-written
        file, even a crash at exit), so the run stops cleanly *before* the disk is full."""
        if self._full:
            raise DiskFull(self._full)
        size = os.path.getsize(self.part)
        self._growth = max(getattr(self, "_growth", 0), size - getattr(self, "_size", size))
        self._size = size
        need = self._growth + extra + MIN_ROOM // 4
        left = room_for(self.part)
        # the next block may not outgrow a fraction of the room left
        self._limit = max(1, min(BLOCK_BYTES, (left - need) // 8))
        if left < need:
            self._full = (f"only {left} bytes left for the run log, the next rows need "
                          f"about {need}")
            raise DiskFull(self._full)

    def _pending_bytes(self) -> int:
        return ((self._rows.row_bytes + self._workers.row_bytes) * self._rows.n
                + self._tasks.n * self._tasks.row_bytes)

    def flush(self) -> None:
        """Write the buffered rows as one block, flush, then raise ``n_done``/``n_tasks`` in
        the file and flush again. On DiskFull the buffered rows are dropped (``n_done`` falls
        back to the rows in the file) and nothing is written."""
        self._t_written = time.monotonic()
        if self.f is None or self._broken or (self._written == self.n_done
                                              and self._tasks_written == self.n_tasks):
            return
        try:
            self.ensure_room(2 * self._pending_bytes() + self._chunk_bytes())
        except DiskFull:
            self._drop_pending()
            raise
        self._broken = True  # until the block is complete: a failed write is not retried
        self._notes.write(self.f)
        self._rows.write(self._dsets["iterations"], self._written)
        self._workers.write(self._dsets["workers"], self._written)
        self._tasks.write(self._dsets["tasks"], self._tasks_written)
        self.f.flush()  # the rows are on disk before n_done says so
        self.f.attrs["n_done"] = self.n_done
        self.f.attrs["n_tasks"] = self.n_tasks
        self.f.flush()
        self._broken = False
        self._written, self._tasks_written = self.n_done, self.n_tasks
        for c in (self._rows, self._workers, self._tasks):
            c.clear()

    def _chunk_bytes(self) -> int:
        """Bytes of the chunks the pending block allocates (those its rows reach past the
        rows written): the first blocks grow the file by whole chunks."""
        total = 0
        for g, dsets in self._dsets.items():
            w, r = ((self._tasks_written, self._tasks.n) if g == "tasks"
                    else (self._written, self._rows.n))
            for d in dsets.values():
                c = d.chunks
                new = -(-(w + r) // c[0]) - -(-w // c[0])  # ceil((w+r)/c) - ceil(w/c)
                total += new * int(np.prod(c)) * d.dtype.itemsize
        return total

    def _drop_pending(self) -> None:
        """Forget the buffered rows: ``n_done`` falls back to the rows the file announces."""
        self.n_done, self.n_tasks = self._written, self._tasks_written
        for c in (self._rows, self._workers, self._tasks, self._notes):
            c.clear()

    def checkpoint(self, snap: dict) -> None:
        """Write the rows, then ``snap`` as ``/checkpoint`` (it must match the rows)."""
        self.flush()
        if int(snap["iteration"]) != self.n_done or int(snap["n_tasks"]) != self.n_tasks:
            raise DiskFull(f"checkpoint of iteration {int(snap['iteration'])} not written: "
                           f"only {self.n_done} rows are in the run log")
        nbytes = sum(np.asarray(v).nbytes for v in snap.values() if not isinstance(v, dict))
        self.ensure_room(2 * nbytes)
        self._broken = True  # a checkpoint half written is a failed write like any other
        checkpoint.write(self.f, snap)
        self._broken = False
        self.checkpoint_at = int(snap["iteration"])

    def kept(self) -> str:
        """What a stopped run left readable, for its last line: the iterations the file
        announces (``n_done`` as written, not as counted in memory) and whether a checkpoint
        lets ``--resume`` continue (it cuts the rows past the checkpoint)."""
        n = self._written
        if self.checkpoint_at is None:
            return f"{n} iterations readable, no checkpoint (it cannot be resumed)"
        return (f"{n} iterations readable and a checkpoint at iteration {self.checkpoint_at} "
                f"(--resume continues from there)")

    def start_watchdog(self) -> None:
        """A process of its own session that marks the run ``failed`` if this process dies
        without closing it (see :mod:`mpicode.io.watchdog`)."""
        import subprocess
        import sys
        subprocess.Popen([sys.executable, "-m", "mpicode.io.watchdog", str(os.getpid()),
                          self.part], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def append(self, row: dict, workers: dict[str, np.ndarray], tasks: dict[str, np.ndarray]):
        """Append one iteration (its row, its worker rows, its task rows) to the buffer;
        write the buffer when ``flush_every`` seconds passed since the last write."""
        fi, fw, ft = self._fields
        if not (fi.issuperset(row) and fw.issuperset(workers) and ft.issuperset(tasks)):
            unknown = set(row) - fi | set(workers) - fw | set(tasks) - ft
            raise KeyError(f"fields not in the log schema: {sorted(unknown)}")
        if self._full:  # rows after a full disk would not follow the ones in the file
            raise DiskFull(self._full)
        m = len(next(iter(tasks.values()))) if tasks else 0
        self._rows.put(row)
        self._workers.put(workers)
        self._tasks.put_many(tasks, m)
        self.n_done += 1
        self.n_tasks += m
        if (self.flush_every <= 0 or time.monotonic() - self._t_written >= self.flush_every
                or self._pending_bytes() >= self._limit):
            self.flush()

    def set_attrs(self, **kw):
        for k, v in kw.items():
            self.f.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v)

    def write_group(self, name: str, arrays: dict[str, np.ndarray], compress: bool = False):
        self.ensure_room(2 * sum(np.asarray(v).nbytes for v in arrays.values()))
        g = self.f.require_group(name)
        for k, v in arrays.items():
            if k in g:
                del g[k]
            v = np.asarray(v)
            big = compress and v.size > 0
            g.create_dataset(k, data=v, compression="gzip" if big else None,
                             shuffle=big, chunks=True if big else None)

    def close(self, status: str = "complete") -> str:
        """Write the buffered rows, mark ``status``, close, and rename ``.part`` to the final
        name."""
        if self.f is None:
            return self.path
        try:
            self.flush()
        except (OSError, RuntimeError):  # disk full: the rows below n_done stay valid
            pass
        try:
            if self._broken:  # a write failed halfway: writing more could only make it worse
                raise DiskFull("the run log's last write failed")
            self.f.attrs["status"] = status
            self.f.attrs["finished"] = _now()
            self.f.close()
        except (OSError, RuntimeError):  # no room even for the status: the file as it stands
            try:
                self.f.close()
            except Exception:
                pass
        self.f = None
        os.replace(self.part, self.path)
        safefile.release(self._lock)
        self._lock = None
        return self.path

    def __del__(self):  # an abandoned log is closed as it stands (its rows stay valid)
        if getattr(self, "f", None) is not None:
            try:
                self.f.close()
            except Exception:
                pass
        safefile.release(getattr(self, "_lock", None))
        self._lock = None

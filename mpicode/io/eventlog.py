"""``/events``: the run's membership changes, one row per failure (pure h5py; see
docs/hdf5-schema.md). Written with the block of rows of the iteration they happened in, like
``/notes``, so only events of iterations below ``n_done`` belong to valid rows and a resumed
run cuts the others. Created with the first failure: a run without one has no ``/events``
(so its file is laid out exactly as before the group existed)."""

from __future__ import annotations

import h5py
import numpy as np

CHUNK = 64
# name -> dtype; "cause" is text: failed (MPI error), simulated (failure model), silent
# (--dead-after)
EVENT_FIELDS: dict[str, object] = {
    "iteration": "i8", "worker": "i4", "rank": "i4", "t_fail": "f8", "t_detect": "f8",
    "detect_s": "f8", "n_alive": "i4", "cause": h5py.string_dtype(),
}


def create_events(f) -> None:
    g = f.require_group("events")
    for k, dt in EVENT_FIELDS.items():
        if k not in g:
            g.create_dataset(k, shape=(0,), maxshape=(None,), dtype=dt, chunks=(CHUNK,))


def cut_events(f, n_rows: int) -> None:
    """Drop the events of iterations >= ``n_rows`` (a resumed run cuts its rows there)."""
    if "events" not in f:
        return
    g = f["events"]
    keep = int(np.searchsorted(g["iteration"][:], n_rows))
    for k in EVENT_FIELDS:
        if k in g:
            g[k].resize((keep,))


def read_events(f) -> list[dict]:
    """The ``/events`` rows of iterations below ``n_done`` (older files: none)."""
    if "events" not in f:
        return []
    g = f["events"]
    n_done = int(f.attrs.get("n_done", 0))
    cols = {k: g[k][:] for k in EVENT_FIELDS if k in g}
    n = len(cols.get("iteration", ()))
    out = []
    for i in range(n):
        if int(cols["iteration"][i]) >= n_done:
            break
        row = {}
        for k, v in cols.items():
            x = v[i]
            row[k] = x.decode() if isinstance(x, bytes) else (
                x.item() if hasattr(x, "item") else x)
        out.append(row)
    return out


class Events:
    """The events of the iterations not yet written (see ``Notes`` in
    :mod:`mpicode.io.schemelog`)."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, records) -> None:
        self.rows += [dict(r) for r in records]

    def write(self, f) -> None:
        if not self.rows:
            return
        create_events(f)
        g = f["events"]
        n, m = len(g["iteration"]), len(self.rows)
        for k in EVENT_FIELDS:
            vals = [r.get(k, "" if k == "cause" else np.nan) for r in self.rows]
            g[k].resize((n + m,))
            g[k][n:] = vals if k == "cause" else np.asarray(vals).astype(g[k].dtype)
        self.rows = []

    def clear(self) -> None:
        self.rows = []

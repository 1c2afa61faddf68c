"""What a scheme adds to the run log (pure h5py): its ``log_fields`` as more ``/iterations``
columns, and its ``log_notes`` as ``/notes`` (``iteration``, ``text``: one row per note,
in iteration order, written with their rows; only notes of iterations below ``n_done`` belong
to valid rows, and a resumed run cuts the others). See docs/hdf5-schema.md."""

from __future__ import annotations

import json

import h5py
import numpy as np

from mpicode import registry

NOTES_CHUNK = 64


def scheme_log_fields(config_json: str) -> dict[str, str]:
    """The ``log_fields`` of the scheme a run's configuration names; {} if it names none or
    an unknown one."""
    try:
        name = json.loads(config_json).get("scheme") if config_json else None
    except (ValueError, AttributeError):
        return {}
    cls = registry.find("scheme", name) if isinstance(name, str) else None
    return dict(getattr(cls, "log_fields", {})) if cls is not None else {}


def with_fields(layout: dict, extra: dict[str, str]) -> dict:
    """``layout`` (group -> fields) with a scheme's fields added to ``/iterations``."""
    clash = sorted(set(extra) & set(layout["iterations"]))
    if clash:
        raise ValueError(f"scheme log fields {clash} clash with core /iterations fields")
    for k, dt in extra.items():
        if np.dtype(dt).kind not in "biufS":
            raise ValueError(f"scheme log field {k!r}: dtype {dt!r} is not a number or bytes")
    return {**layout, "iterations": {**layout["iterations"], **extra}}


def layout_for(layout: dict, config_json: str, extra: dict[str, str] | None) -> dict:
    """A new run's layout: ``extra`` (a scheme's ``log_fields``), by default the fields of
    the scheme ``config_json`` names."""
    return with_fields(layout, scheme_log_fields(config_json) if extra is None else extra)


def reopen(f, layout: dict, n_rows: int) -> dict:
    """A run file reopened to continue after ``n_rows`` iterations: its layout (``layout``
    with the scheme fields the file has and those of the scheme its configuration names);
    its notes past ``n_rows`` cut (``/notes`` created if the file predates it)."""
    gi, core = f["iterations"], layout["iterations"]
    extra = scheme_log_fields(str(f.attrs.get("config", "")))
    extra.update({k: gi[k].dtype.kind + str(gi[k].dtype.itemsize) for k in gi if k not in core})
    create_notes(f)
    cut_notes(f, n_rows)
    return with_fields(layout, extra)


def create_notes(f) -> None:
    g = f.require_group("notes")
    for k, dt in (("iteration", "i8"), ("text", h5py.string_dtype())):
        if k not in g:
            g.create_dataset(k, shape=(0,), maxshape=(None,), dtype=dt, chunks=(NOTES_CHUNK,))


def cut_notes(f, n_rows: int) -> None:
    """Drop the notes of iterations >= ``n_rows`` (a resumed run cuts its rows there)."""
    g = f["notes"]
    keep = int(np.searchsorted(g["iteration"][:], n_rows))
    for k in ("iteration", "text"):
        g[k].resize((keep,))


def write_notes(f, notes: list[tuple[int, str]]) -> None:
    """Append (iteration, text) rows to ``/notes``."""
    if not notes:
        return
    g, m = f["notes"], len(notes)
    n = len(g["iteration"])
    its, texts = zip(*notes, strict=True)
    for k, v in (("iteration", np.asarray(its, np.int64)), ("text", list(texts))):
        g[k].resize((n + m,))
        g[k][n:] = v


class Notes:
    """The notes of the iterations not yet written: ``add`` buffers them, ``write`` appends
    them to ``/notes`` with the block of rows they belong to (nothing touches the file
    between two blocks, so a killed run leaves it consistent), ``clear`` drops them with
    rows that could not be written."""

    def __init__(self):
        self.rows: list[tuple[int, str]] = []

    def add(self, iteration: int, texts) -> None:
        self.rows += [(int(iteration), str(t)) for t in texts]

    def write(self, f) -> None:
        write_notes(f, self.rows)
        self.rows = []

    def clear(self) -> None:
        self.rows = []

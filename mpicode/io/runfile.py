"""Checks of a stored run file before it is resumed: which file, its attributes, its row
datasets and its checkpoint. Read-only: nothing here opens a file for writing."""

from __future__ import annotations

import os

import h5py
import numpy as np

from mpicode.config import RESUME_MAY_CHANGE  # noqa: F401  (old name, here)
from mpicode.config import merge_resumed as merge_config  # noqa: F401  (old name)
from mpicode.errors import UsageError
from mpicode.io import safefile


def resume_target(path: str) -> str:
    """The one file ``--resume PATH`` reads and writes: ``PATH`` or ``PATH.part`` (``PATH``
    may name either), refused if both exist, if neither does, or if it is a symlink."""
    base = path[:-5] if path.endswith(".part") else path
    have = [n for n in (base, base + ".part") if os.path.lexists(n)]
    if len(have) == 2:
        raise UsageError(f"--resume {path}: both {have[0]} and {have[1]} exist; keep the one "
                         "to continue and move the other away")
    if not have:
        raise UsageError(f"--resume {path}: not a readable mpicode run (no such file)")
    if os.path.islink(have[0]):
        raise UsageError(f"--resume {path}: {have[0]} is a symbolic link")
    if not os.path.isfile(have[0]):
        raise UsageError(f"--resume {path}: not a readable mpicode run (not a file)")
    if safefile.is_held(have[0]):
        raise UsageError(f"--resume {path}: {have[0]} is in use by a running mpicode run")
    return have[0]


def stored_int(attrs, key: str, low: int = 0) -> int:
    v = attrs[key]
    if np.ndim(v) != 0 or not np.issubdtype(np.asarray(v).dtype, np.integer) or int(v) < low:
        raise ValueError(f"attribute {key} = {v!r}")
    return int(v)


def check_layout(f, layout: dict, n_done: int, n_tasks: int, N: int) -> None:
    """The row groups exist and their datasets hold the rows the attributes promise (a field
    the file lacks is added, filled, when it is resumed)."""
    for g in layout:
        if not isinstance(f.get(g), h5py.Group):
            raise ValueError(f"missing /{g}")
    for g, fields in layout.items():
        rows = n_tasks if g == "tasks" else n_done
        for k in fields:
            d = f[g].get(k)
            if d is None:
                continue
            if not isinstance(d, h5py.Dataset) or d.shape[0] < rows or (
                    g == "workers" and d.shape[1:] != (N,)) or (g != "workers" and d.ndim != 1):
                raise ValueError(f"/{g}/{k} has the wrong shape or too few rows")


def check_snapshot(snap: dict, n_done: int, n_tasks: int, dim) -> str | None:
    try:
        it, nt = int(snap["iteration"]), int(snap["n_tasks"])
        w = np.asarray(snap["w"])
        float(snap["vt"]), float(snap["t_offset"])
    except (KeyError, TypeError, ValueError):
        return "the checkpoint is incomplete"
    if it < 0 or nt < 0:
        return f"checkpoint at iteration {it} with {nt} task rows is invalid"
    if it > n_done:
        return f"checkpoint at iteration {it} is past the {n_done} logged rows"
    if nt > n_tasks:
        return f"checkpoint with {nt} task rows is past the {n_tasks} logged task rows"
    if w.ndim != 1 or (dim is not None and w.shape != (int(dim),)):
        return f"checkpoint model w has shape {w.shape}, the run's model has {dim} parameters"
    return None

"""Checks of a stored run file before it is resumed: which file, its attributes, its row
datasets and its checkpoint. Read-only: nothing here opens a file for writing."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from mpicode.config import Config, UsageError, by_name
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


# options a resumed run may change: nothing its attributes and rows say depends on them
RESUME_MAY_CHANGE = ("iterations", "checkpoint_every", "flush_every", "progress", "quiet",
                     "verbose", "resume", "out", "force")


def merge_config(cfg: Config, stored: dict) -> Config:
    """The configuration of a resumed run: the stored one, with what this command line (or
    its --config file) gives on top. Only RESUME_MAY_CHANGE may differ (e.g. a larger
    ``--iterations``); other changed options are refused by name, and so is ``--out``."""
    out = cfg.resume[:-5] if cfg.resume.endswith(".part") else cfg.resume
    known = by_name()  # core options and those of every registered scheme and scheduler
    values = {o.name: o.default for o in known.values()}
    values.update({k: v for k, v in stored.items() if k in known})
    values["workers"] = values["workers"] or stored.get("n_workers")  # simulate's default N
    given = [n for n, src in cfg.source.items() if src != "default" and n in known]
    if "out" in given and Path(cfg.out.removesuffix(".part")).absolute() != Path(out).absolute():
        raise UsageError(f"--out cannot be used with --resume (the run is written back to {out})")
    changed = [f"{known[n].flag} (stored {values[n]!r}, given {cfg.values[n]!r})"
               for n in given if n not in RESUME_MAY_CHANGE and cfg.values[n] != values[n]]
    if changed:
        raise UsageError(f"--resume {cfg.resume}: cannot change {', '.join(changed)}; only "
                         f"{', '.join('--' + n.replace('_', '-') for n in RESUME_MAY_CHANGE[:6])}"
                         " may change")
    source = {k: "resumed" for k in values}
    for name in given:
        if name not in ("resume", "out", "force"):
            values[name], source[name] = cfg.values[name], cfg.source[name]
    values.update(resume=cfg.resume, out=out, force=True)
    return Config(values, source)

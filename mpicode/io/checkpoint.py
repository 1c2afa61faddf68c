"""Checkpoints: everything a run needs to continue exactly where it stopped (pure, no MPI).

A checkpoint is taken *between* iterations, as a snapshot in memory after every iteration
(cheap: the model and a few per-worker arrays), and written to the run file's
``/checkpoint`` group every ``--checkpoint-every`` iterations, at the end, and when the run
is interrupted (SIGTERM/SIGUSR1). It holds:

* ``w`` (the model; the optimizer is plain gradient descent, which has no other state),
* ``iteration`` (the next one to run), ``n_tasks`` (task rows written), ``vt`` (virtual
  clock), ``t_offset`` (wall time already spent, so a resumed run's times continue),
* ``scheme/*``: the scheme's numeric state (speed estimates ``tau``, ``active`` workers, ...),
* ``scheduler/*``, ``uplink/*``: the scheduler's queues (``Q``, ``Z``, ``P``, counters, the
  round-robin pointer, ...) and the slot clock,
* ``runtime/*``: the dead-worker counters.

Random numbers need no state: every draw (delays, channel samples, codes) is a function of
(seed, iteration, worker, task index) or (seed, slot). Values are plain arrays and scalars:
no pickle anywhere, so a checkpoint can be read with h5py alone.
"""

from __future__ import annotations

import numpy as np

SCALARS = (bool, int, float, np.integer, np.floating, np.bool_)


def numeric_state(obj, skip: tuple[str, ...] = ()) -> dict:
    """The attributes of ``obj`` that are numbers or numeric arrays."""
    out = {}
    for k, v in vars(obj).items():
        if k in skip:
            continue
        if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
            out[k] = v.copy()
        elif isinstance(v, SCALARS):
            out[k] = v
    return out


def set_numeric_state(obj, state: dict) -> None:
    for k, v in state.items():
        cur = getattr(obj, k, None)
        if isinstance(cur, np.ndarray):
            setattr(obj, k, np.array(v, dtype=cur.dtype).reshape(cur.shape))
        elif isinstance(cur, bool) or isinstance(cur, np.bool_):
            setattr(obj, k, bool(v))
        elif isinstance(cur, (int, np.integer)):
            setattr(obj, k, int(v))
        elif isinstance(cur, (float, np.floating)) or cur is None:
            setattr(obj, k, float(v) if np.ndim(v) == 0 else np.asarray(v))


def snapshot(*, w, iteration: int, n_tasks: int, vt: float, t_offset: float, scheme,
             uplink=None, runtime: dict | None = None) -> dict:
    snap = {"w": np.array(w, copy=True), "iteration": int(iteration), "n_tasks": int(n_tasks),
            "vt": float(vt), "t_offset": float(t_offset),
            "scheme": numeric_state(scheme, skip=("_next_id",))}
    if uplink is not None:
        snap["uplink"] = {"next_slot": uplink.next_slot,
                          **{f"last_{k}": v.copy() for k, v in uplink._last.items()}}
        snap["scheduler"] = numeric_state(uplink.sched)
        rows = uplink.sched._rows
        snap["slot_rows"] = np.asarray(rows, float).reshape(len(rows), 6)
    if runtime:
        snap["runtime"] = {k: np.array(v, copy=True) for k, v in runtime.items()}
    return snap


def restore(snap: dict, *, scheme, uplink=None) -> None:
    set_numeric_state(scheme, snap.get("scheme", {}))
    if uplink is not None and "uplink" in snap:
        u = snap["uplink"]
        uplink.next_slot = int(u["next_slot"])
        for k, cur in uplink._last.items():
            v = np.asarray(u[f"last_{k}"], np.int64)
            if v.shape != np.shape(cur):
                raise ValueError(f"uplink/last_{k} has shape {v.shape}, not {np.shape(cur)}")
            uplink._last[k] = v
        set_numeric_state(uplink.sched, snap.get("scheduler", {}))
        rows = snap.get("slot_rows")
        if rows is not None and len(rows):
            uplink.sched._rows = [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4], r[5])
                                  for r in np.asarray(rows)]


def check(snap: dict, *, dim: int | None, scheme, uplink=None) -> str | None:
    """Why ``snap`` cannot continue a run whose model has ``dim`` parameters and whose policies
    are ``scheme`` / ``uplink`` (fresh objects, restored here as a dry run), or None."""
    w = np.asarray(snap.get("w"))
    if dim is not None and w.shape != (dim,):
        return f"the checkpoint's model w has shape {w.shape}, this run's model has {dim} " \
            "parameters"
    try:
        restore(snap, scheme=scheme, uplink=uplink)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        return f"the checkpoint does not fit this run's scheme or scheduler ({e})"
    return None


def write(f, snap: dict) -> None:
    """Write ``snap`` into the open h5py file ``f`` as ``/checkpoint``, replacing the old one
    only once the new one is complete (written as ``/checkpoint.new``, then moved)."""
    if "checkpoint.new" in f:
        del f["checkpoint.new"]
    g = f.create_group("checkpoint.new")
    for k, v in snap.items():
        if isinstance(v, dict):
            sub = g.create_group(k)
            for k2, v2 in v.items():
                sub.create_dataset(k2, data=v2)
        else:
            g.create_dataset(k, data=v)
    if "checkpoint" in f:
        del f["checkpoint"]
    f.move("checkpoint.new", "checkpoint")
    f.flush()


def read(f) -> dict | None:
    """The checkpoint of an open h5py file, or None."""
    if "checkpoint" not in f:
        return None
    out = {}
    for k, v in f["checkpoint"].items():
        if hasattr(v, "keys"):
            out[k] = {k2: v2[()] for k2, v2 in v.items()}
        else:
            out[k] = v[()]
    return out

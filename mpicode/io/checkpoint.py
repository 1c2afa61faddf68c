"""Checkpoints: everything a run needs to continue exactly where it stopped (pure, no MPI).

A checkpoint is taken *between* iterations, as a snapshot in memory after every iteration
(cheap: the model and a few per-worker arrays), and written to the run file's
``/checkpoint`` group every ``--checkpoint-every`` iterations, at the end, and when the run
is interrupted (SIGTERM/SIGUSR1). It holds:

* ``w`` (the model) and ``optimizer/*`` (its ``state_dict()``: momentum ``v``, Adam's
  ``m``, ``s``, ``t``; empty for plain gradient descent),
* ``iteration`` (the next one to run), ``n_tasks`` (task rows written), ``vt`` (virtual
  clock), ``t_offset`` (wall time already spent, so a resumed run's times continue),
* ``scheme/*``: ``scheme.state_dict()`` (speed estimates ``tau``, ``active`` workers, ...),
* ``scheduler/*``, ``uplink/*``: ``state_dict()`` of the scheduler (queues ``Q``, ``Z``,
  ``P``, counters, the round-robin pointer, the per-slot rows ``slot_rows``, ...) and of the
  uplink (the slot clock),
* ``runtime/*``: the dead-worker counters, ``--eval-every auto``'s chosen interval.

Random numbers need no state: every draw (delays, channel samples, codes) is a function of
(seed, iteration, worker, task index) or (seed, slot). Values are plain arrays and scalars:
no pickle anywhere, so a checkpoint can be read with h5py alone.
"""

from __future__ import annotations

import numpy as np


def snapshot(*, w, iteration: int, n_tasks: int, vt: float, t_offset: float, scheme,
             uplink=None, runtime: dict | None = None, optimizer=None,
             copy_w: bool = True) -> dict:
    """The checkpoint as a dict of arrays, from the objects' own ``state_dict()``
    (``copy_w=False``: ``w`` is the caller's own copy, kept as is)."""
    snap = {"w": np.array(w, copy=True) if copy_w else w, "iteration": int(iteration),
            "n_tasks": int(n_tasks), "vt": float(vt), "t_offset": float(t_offset),
            "scheme": scheme.state_dict()}
    if uplink is not None:
        snap["uplink"] = uplink.state_dict()
        snap["scheduler"] = uplink.sched.state_dict()
    if optimizer is not None and optimizer.state_dict():
        snap["optimizer"] = optimizer.state_dict()
    if runtime:
        snap["runtime"] = {k: np.array(v, copy=True) for k, v in runtime.items()}
    return snap


def restore(snap: dict, *, scheme, uplink=None, optimizer=None) -> None:
    """Hand each object its part of ``snap`` (``load_state_dict``)."""
    scheme.load_state_dict(snap.get("scheme", {}))
    if optimizer is not None:
        optimizer.load_state_dict(snap.get("optimizer", {}))
    if uplink is not None and "uplink" in snap:
        uplink.load_state_dict(snap["uplink"])
        state = dict(snap.get("scheduler", {}))
        if "slot_rows" in snap:  # checkpoints before state_dict() kept the rows at the top
            state.setdefault("slot_rows", snap["slot_rows"])
        uplink.sched.load_state_dict(state)


def check(snap: dict, *, dim: int | None, scheme, uplink=None) -> str | None:
    """Why ``snap`` cannot continue a run whose model has ``dim`` parameters and whose policies
    are ``scheme`` / ``uplink`` (fresh objects, restored here as a dry run), or None."""
    w = np.asarray(snap.get("w"))
    if dim is not None and w.shape != (dim,):
        return f"the checkpoint's model w has shape {w.shape}, this run's model has {dim} " \
            "parameters"
    if w.dtype.kind in "fc" and not np.all(np.isfinite(w)):
        bad = int(np.size(w) - np.count_nonzero(np.isfinite(w)))
        return (f"the checkpoint's model w has {bad} of {np.size(w)} values that are not finite "
                "(NaN or inf): a diverged or damaged checkpoint cannot be continued (the file "
                "is left as it is)")
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

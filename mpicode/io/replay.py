"""The built-ins that replay a file: ``--stragglers trace:FILE`` and ``--channel trace``.

Reading files is io's part; the models stay pure. The straggler entry ``trace`` reads a run
file's ``/tasks`` (:func:`read_run_tasks`) or an imported trace
(:func:`mpicode.io.traces.read_trace`) and hands the arrays to
:class:`~mpicode.models.stragglers.Trace` or :class:`~mpicode.models.trace_replay.
ImportedTrace`; the channel ``trace`` reads a table of per-slot rates (:func:`load_trace`)
for :class:`~mpicode.models.channels.Trace`. Both are registered here, like any plugin::

    mpicode simulate --workers 8 --stragglers trace:runs/recorded.h5
    mpicode simulate --workers 2 --channel trace --channel-trace rates.csv
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mpicode import registry
from mpicode.core_options import OPTIONS as CORE_OPTIONS
from mpicode.errors import UsageError
from mpicode.io.traces import is_trace_file, read_trace
from mpicode.models import channels
from mpicode.models.stragglers import RecordedTasks, StragglerModel, Trace, common_params
from mpicode.models.trace_replay import TRACE_MAPS, ImportedTrace
from mpicode.options import Option, option_values

TRACE_MAP = Option("trace_map", str, "refuse",
                   "trace:TRACE.h5 with more workers or iterations than the trace: refuse, "
                   "cycle (iterations wrap) or tile (workers and iterations wrap)",
                   choices=TRACE_MAPS, group="stragglers")
CHANNEL_TRACE = Option("channel_trace", str, "",
                       "trace channel: file of per-slot rates (bytes/slot)", group="comm")


@registry.register_straggler_model
class TraceReplay:
    """``--stragglers trace:FILE``: replay an imported trace (``mpicode traces import``) or
    the ``/tasks`` of a recorded run. Builds the pure model from the file's arrays."""

    name = "trace"
    argument = "RUN.h5"
    options = (TRACE_MAP,)

    @classmethod
    def option_values(cls, cfg) -> dict:
        return option_values(cls.options, cfg)

    @classmethod
    def from_config(cls, cfg, n_workers: int, n_partitions: int) -> StragglerModel:
        path = cfg.stragglers.split(":", 1)[1]
        where = f"trace {path}"
        if is_trace_file(path):
            rel, _ = read_trace(path)
            return ImportedTrace(n_workers, n_partitions, cfg.seed, relative=rel,
                                 iterations=cfg.iterations, unit=cfg.delay_unit,
                                 trace_map=getattr(cfg, "trace_map", "refuse"), where=where)
        tasks = read_run_tasks(path, n_partitions)
        recorded, note = recorded_model(tasks, path)
        return Trace(n_workers, n_partitions, cfg.seed, tasks=tasks, iterations=cfg.iterations,
                     recorded=recorded, note=note, where=where, **common_params(cfg))


def recorded_model(tasks: RecordedTasks, path: str) -> tuple[StragglerModel | None, str]:
    """(the recording's straggler model rebuilt from its stored configuration, or None;
    a note when it could not be)."""
    try:
        stored = json.loads(tasks.config) if tasks.config else {}
    except ValueError:
        stored = {}
    if not isinstance(stored, dict) or not stored.get("stragglers"):
        return None, f"trace {path}: no recorded configuration; every delay replayed as a rate"
    values = {o.name: o.default for o in CORE_OPTIONS}
    values.update(stored)
    cfg = SimpleNamespace(**values)  # the class's own options: stored, else their defaults
    try:
        model = registry.straggler_model(cfg.stragglers).from_config(
            cfg, tasks.n_workers, tasks.n_partitions)
        return model, ""
    except (UsageError, KeyError, TypeError, ValueError, AttributeError) as e:
        return None, f"trace {path}: recorded model not rebuilt ({e}); replayed as a rate"


TRACE_FIELDS = ("iteration", "worker", "n_partitions", "delay_s")


def read_run_tasks(path: str, n_partitions: int) -> RecordedTasks:
    """The recorded tasks of a run file, checked. Any problem is a one-line UsageError naming
    the file."""
    import h5py  # start-up: only a run that replays a file pays for h5py here

    where = f"trace {path}"
    if not os.path.isfile(path):
        raise UsageError(f"{where}: file not found" if not os.path.exists(path)
                         else f"{where}: not a file")
    try:
        f = h5py.File(path, "r", locking=False)
    except (OSError, ValueError) as e:
        raise UsageError(f"{where}: not a readable HDF5 file ({' '.join(str(e).split())})"
                         ) from None
    with f:
        try:
            attrs = {k: f.attrs[k] for k in ("n_workers", "n_done") if k in f.attrs}
            cfg = f.attrs.get("config", "")
            cfg = cfg.decode() if isinstance(cfg, bytes) else str(cfg)
            have = [k for k in TRACE_FIELDS if isinstance(f.get(f"tasks/{k}"), h5py.Dataset)]
        except Exception as e:  # a corrupt object header: h5py raises several kinds
            raise UsageError(f"{where}: cannot read ({' '.join(str(e).split())})") from None
        lacking = [k for k in ("n_workers", "n_done") if k not in attrs] + \
            [f"/tasks/{k}" for k in TRACE_FIELDS if k not in have]
        if lacking:
            raise UsageError(f"{where}: not an mpicode run (no {', '.join(lacking)}); record "
                             "one with mpicode train or simulate")
        try:
            n_rec = _attr_int(attrs["n_workers"])
            n_done = _attr_int(attrs["n_done"])
            k_rec = _attr_int(f.attrs.get("n_partitions", n_partitions))
            n_rows = min(f[f"tasks/{k}"].shape[0] if f[f"tasks/{k}"].ndim == 1 else -1
                         for k in TRACE_FIELDS)
            nt = _attr_int(f.attrs.get("n_tasks", n_rows))
            if n_rows < 0:
                raise ValueError("/tasks columns must be 1-D")
            if not 0 <= nt <= n_rows:
                raise ValueError(f"n_tasks {nt} but /tasks holds {n_rows} rows")
            cols = [np.asarray(f[f"tasks/{k}"][:nt]) for k in TRACE_FIELDS]
            # integer columns stay integers; a float or string column is not a run's
            it, wk = (c.astype(np.int64, casting="same_kind") for c in cols[:2])
            npart, dl = (c.astype(float, casting="same_kind") for c in cols[2:])
        except Exception as e:  # wrong kinds, or corrupt chunks (h5py raises several kinds)
            raise UsageError(f"{where}: not a valid mpicode run (bad /tasks or attributes: "
                             f"{' '.join(str(e).split()) or e.__class__.__name__})") from None
    if n_rec < 1 or k_rec < 1 or n_done < 0:
        raise UsageError(f"{where}: not a valid mpicode run (n_workers={n_rec}, "
                         f"n_partitions={k_rec}, n_done={n_done})")
    if np.any((wk < 0) | (wk >= n_rec)) or np.any(it < 0) or np.any(npart < 0):
        raise UsageError(f"{where}: not a valid mpicode run (task rows out of range)")
    if not np.all(np.isfinite(dl) & (dl >= 0)):
        raise UsageError(f"{where}: recorded delays must be finite and >= 0")
    return RecordedTasks(n_rec, n_done, k_rec, it, wk, npart, dl, cfg)


def _attr_int(v) -> int:
    a = np.asarray(v)
    if a.shape != () or not (np.issubdtype(a.dtype, np.integer)
                             or (np.issubdtype(a.dtype, np.floating) and float(a) == int(a))):
        raise ValueError(f"not an integer: {v!r}")
    return int(a)


@registry.register_channel
class TraceChannel(channels.Trace):
    """``--channel trace --channel-trace FILE``: the rates of :func:`load_trace`."""

    name = "trace"
    options = (CHANNEL_TRACE,)

    @classmethod
    def from_config(cls, cfg, n_workers: int) -> channels.Channel:
        return cls(n_workers, load_trace(cfg.channel_trace, n_workers), seed=cfg.seed,
                   slot_s=cfg.slot_ms / 1000.0, path=cfg.channel_trace)


def load_trace(path, n_workers: int) -> np.ndarray:
    """Read a rate trace (slots x workers, bytes/slot): .npy or CSV/whitespace text."""
    p = Path(path)
    if not str(path):
        raise ValueError("trace channel needs --channel-trace FILE (.npy or .csv)")
    if not p.is_file():
        raise ValueError(f"channel trace not found: {path}")
    try:
        if p.suffix == ".npy":
            data = np.load(p, allow_pickle=False)
        else:
            text = p.read_text()
            delim = "," if "," in text else None
            data = np.loadtxt(p, delimiter=delim, comments="#", ndmin=2)
    except (ValueError, OSError) as e:
        raise ValueError(f"channel trace {path}: unreadable ({e})") from None
    return channels.rate_table(data, n_workers, f"channel trace {path}")

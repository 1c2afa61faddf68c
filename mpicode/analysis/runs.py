"""Read mpicode run logs as tables: the Python API behind ``mpicode report``, for notebooks.

::

    import mpicode.analysis as analysis
    run = analysis.read_run("runs/demo.h5")        # also reads runs/demo.h5.part (in progress)
    it = analysis.iterations(run)                  # numpy structured array, one row per iteration
    wk = analysis.workers(run)                     # long format: iteration, worker, field, ...
    tk = analysis.tasks(run, as_frame=True)        # pandas DataFrame (needs pandas)
    analysis.summary(run, target_loss=0.4)         # the row that ``mpicode report`` prints

Every table holds only the valid rows: iterations and worker rows below the root attribute
``n_done``, tasks below ``n_tasks``. Fields are read as they are found, so files written
before or after a field was added to the log read alike (a missing field is a missing column).
The layout is documented in ``docs/hdf5-schema.md``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import h5py
import numpy as np

from mpicode.analysis.series import iteration_seconds, loss_after_step
from mpicode.errors import UsageError
from mpicode.io.runlog import ITERATION_FIELDS, TASK_FIELDS, WORKER_FIELDS
from mpicode.options import file_kind
from mpicode.stats import jain

__all__ = ["read_run", "iterations", "workers", "tasks", "slots", "summary", "jain",
           "fairness", "time_to_loss", "loss_after_step", "iteration_seconds",
           "resolve_path", "per_worker_total",
           "participation_jain", "config"]


# -- reading ---------------------------------------------------------------------------------
def resolve_path(path: str) -> Path:
    """The file to read for ``path``: itself, or ``path.part`` while that run is in progress."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"cannot read run {path}: is a directory")
    kind = file_kind(str(p))
    if kind is not None:  # a FIFO would block the read for ever
        raise UsageError(f"cannot read run {path}: is {kind}, not a run file")
    if p.exists():
        return p
    part = Path(str(p) + ".part")
    if part.exists():
        return part
    raise UsageError(f"cannot read run {path}: no such file (nor {part.name})")


def _attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _read_group(g, n: int | None) -> dict[str, np.ndarray]:
    """Every dataset of group ``g``, rows below ``n`` (all rows when n is None)."""
    out = {}
    for k, d in g.items():
        if not isinstance(d, h5py.Dataset):
            continue
        out[k] = d[()] if d.ndim == 0 else (d[:n] if n is not None else d[:])
    return out


def _count(attrs: dict, key: str, path: str) -> int:
    """A row count attribute (``n_done``, ``n_tasks``): a whole number >= 0, else refused."""
    v = attrs.get(key, 0)
    try:
        ok = not isinstance(v, (str, bytes, bool)) and float(v) == int(v) and int(v) >= 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise UsageError(f"{path}: not a valid mpicode run ({key} = {v!r}: must be a whole "
                         "number >= 0)")
    return int(v)


def _load(f, path: str, file: Path) -> dict:
    if "iterations" not in f:
        raise UsageError(f"{path}: not an mpicode run (no /iterations group)")
    attrs = {k: _attr(v) for k, v in f.attrs.items()}
    n = _count(attrs, "n_done", path)
    it = _read_group(f["iterations"], n)
    rows = min((len(v) for v in it.values()), default=n)
    if n > rows and attrs.get("status") != "running":
        raise UsageError(f"{path}: not a valid mpicode run (n_done {n} but /iterations holds "
                         f"{rows} rows)")
    # a reader racing the writer can see a row count below n_done for a field already
    # resized but not yet flushed: trust the shortest
    n = min(n, rows)
    it = {k: v[:n] for k, v in it.items()}
    wk = _read_group(f["workers"], n) if "workers" in f else {}
    cumulative = {k: bool(d.attrs.get("cumulative", False))
                  for k, d in f["workers"].items()} if "workers" in f else {}
    nt = _count(attrs, "n_tasks", path)
    tk = _read_group(f["tasks"], nt) if "tasks" in f else {}
    if tk:
        nt = min([nt] + [len(v) for v in tk.values()])
        tk = {k: v[:nt] for k, v in tk.items()}
    sl = {}
    if "slots" in f:
        g = f["slots"]
        ns = g.attrs.get("n_slots", attrs.get("n_slots"))
        sl = _read_group(g, None if ns is None else int(ns))
    return {"path": str(path), "file": str(file), "attrs": attrs, "n": n, "iterations": it,
            "workers": wk, "tasks": tk, "n_tasks": nt, "slots": sl,
            "cumulative": cumulative,
            "status": str(attrs.get("status", "?")),
            "in_progress": str(attrs.get("status", "")) == "running"}


def read_run(path: str | dict, retries: int = 3) -> dict:
    """Attributes and valid rows of one run, as a dict of numpy arrays.

    Parameters
    ----------
    path : str
        The run file. When it does not exist but ``path.part`` does (a run still in progress,
        or killed), that file is read. A dict (an already read run) is returned as is.
    retries : int
        A file being written may be caught mid-flush; reading it is retried this often.

    Returns
    -------
    dict
        ``path``, ``file`` (the file actually read), ``attrs``, ``n`` (valid iterations),
        ``iterations`` / ``workers`` / ``tasks`` / ``slots`` (field -> array; ``workers``
        fields are 2-D iteration x worker), ``n_tasks``, ``status``, ``in_progress``.

    Raises
    ------
    UsageError
        Missing, unreadable or non-mpicode file.
    """
    if isinstance(path, dict):
        return path
    file = resolve_path(path)
    for attempt in range(retries):
        try:
            # locking=False: the writer of a running job holds the file open
            with h5py.File(file, "r", locking=False) as f:
                return _load(f, path, file)
        except UsageError:
            raise
        except Exception as e:  # noqa: BLE001 - h5py raises many kinds on corrupt files
            if attempt + 1 < retries and file.suffix == ".part":
                time.sleep(0.2)
                continue
            reason = (str(e).splitlines() or [""])[0].split("(")[0].strip() \
                or e.__class__.__name__
            raise UsageError(f"cannot read run {path}: {reason}") from None
    raise AssertionError("unreachable")


# -- tables ----------------------------------------------------------------------------------
def _ordered(names, known) -> list[str]:
    return [k for k in known if k in names] + sorted(set(names) - set(known))


def _structured(cols: dict[str, np.ndarray]) -> np.ndarray:
    n = len(next(iter(cols.values()))) if cols else 0
    out = np.empty(n, dtype=[(k, v.dtype) for k, v in cols.items()])
    for k, v in cols.items():
        out[k] = v
    return out


def _frame(table: np.ndarray, as_frame: bool):
    if not as_frame:
        return table
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("as_frame=True needs pandas, which is not installed: "
                          "pip install 'mpicode[pandas]' (or use the numpy structured array, "
                          "as_frame=False)") from None
    return pd.DataFrame.from_records(table)


def iterations(run, as_frame: bool = False):
    """One row per valid iteration, a column per ``/iterations`` field.

    Returns a numpy structured array (pandas DataFrame with ``as_frame=True``)."""
    run = read_run(run)
    it = run["iterations"]
    cols = {k: it[k] for k in _ordered(it, ITERATION_FIELDS) if it[k].ndim == 1}
    return _frame(_structured(cols), as_frame)


def _long(index_name: str, index: np.ndarray, one_d: dict, two_d: dict, n_workers: int):
    """Long format: a row per (index, worker): index, worker, the 1-D fields repeated, the
    2-D fields flattened row-major."""
    n = len(index)
    cols = {index_name: np.repeat(index, n_workers),
            "worker": np.tile(np.arange(n_workers, dtype=np.int32), n)}
    for k, v in one_d.items():
        if k not in cols:
            cols[k] = np.repeat(v[:n], n_workers)
    for k, v in two_d.items():
        cols[k] = v[:n].reshape(-1)
    return cols


def workers(run, as_frame: bool = False):
    """Per-iteration, per-worker rows in long format: ``iteration``, ``worker`` (0-based; rank
    worker + 1), then one column per ``/workers`` field (stage, partitions, compute_s, ...,
    and offered/admitted/delivered/Q/Z when the log has them)."""
    run = read_run(run)
    N = int(run["attrs"].get("n_workers", 0))
    wk = {k: v for k, v in run["workers"].items() if v.ndim == 2 and v.shape[1] == N}
    index = run["iterations"].get("iteration", np.arange(run["n"], dtype=np.int64))
    cols = _long("iteration", index, {}, {k: wk[k] for k in _ordered(wk, WORKER_FIELDS)}, N)
    return _frame(_structured(cols), as_frame)


def tasks(run, as_frame: bool = False):
    """One row per task (``n_tasks`` valid): iteration, worker, stage, t_dispatch, t_done (both
    seconds since the start of the task's iteration), used, cancelled, ..."""
    run = read_run(run)
    tk = run["tasks"]
    cols = {k: tk[k] for k in _ordered(tk, TASK_FIELDS) if tk[k].ndim == 1}
    return _frame(_structured(cols), as_frame)


def slots(run, as_frame: bool = False):
    """Per-slot scheduler rows of ``/slots`` (present only with ``--log-slots``); 2-D (slot x
    worker) fields, if any, give long format with a ``worker`` column. Empty when absent."""
    run = read_run(run)
    sl = run["slots"]
    one = {k: v for k, v in sl.items() if v.ndim == 1}
    N = int(run["attrs"].get("n_workers", 0))
    two = {k: v for k, v in sl.items() if v.ndim == 2 and v.shape[1] == N}
    if not one and not two:
        return _frame(np.empty(0, dtype=[("slot", "i8")]), as_frame)
    n = min(len(v) for v in list(one.values()) + list(two.values()))
    one = {k: v[:n] for k, v in one.items()}
    if two:
        index = one.pop("slot", np.arange(n, dtype=np.int64))
        cols = _long("slot", index, one, two, N)
    else:
        cols = {k: one[k] for k in (["slot"] if "slot" in one else []) + sorted(one)
                if k in one}
    return _frame(_structured(cols), as_frame)


# -- summaries -------------------------------------------------------------------------------
def per_worker_total(run, field: str) -> np.ndarray | None:
    """Total of a ``/workers`` field per worker over the valid iterations, or None if the log
    has no such field. Counters are per-iteration amounts, except in a dataset that carries
    the attribute ``cumulative`` (true): then its last valid row is the total."""
    run = read_run(run)
    v = run["workers"].get(field)
    if v is None or v.ndim != 2:
        return None
    if not len(v):
        return np.zeros(v.shape[1])
    if v.dtype.kind == "i" and np.all(v < 0):
        return None  # only the writer's fill value (-1): not recorded in this run (ideal)
    if run.get("cumulative", {}).get(field):
        return np.asarray(v[-1], float)
    return np.nansum(np.asarray(v, float), axis=0)


def fairness(run) -> tuple[float, str]:
    """(Jain index, basis): of per-worker delivered bytes when the log has
    ``/workers/delivered``, else of per-worker counts of results used in a decode."""
    run = read_run(run)
    d = per_worker_total(run, "delivered")
    if d is not None:
        return jain(d), "delivered"
    u = per_worker_total(run, "used")
    if u is not None:
        return jain(u), "used"
    return math.nan, "none"


def time_to_loss(run, target: float | None) -> float:
    """Seconds (``t_end``) at the end of the first iteration whose model's loss is <=
    target (:func:`loss_after_step`: rank 0's evaluation, else the workers' training loss of
    that model, so the answer does not depend on ``--eval-every``); inf if never reached,
    NaN without a target or a loss field."""
    run = read_run(run)
    if target is None:
        return math.nan
    if "loss" not in run["iterations"] or "t_end" not in run["iterations"]:
        return math.nan
    hit = np.flatnonzero(loss_after_step(run) <= target)
    return float(run["iterations"]["t_end"][hit[0]]) if hit.size else math.inf


def _last_finite(x) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(x[-1]) if len(x) else math.nan


def _mean(x) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else math.nan


def participation_jain(run) -> float:
    """Jain index of the workers' long-run participation (fraction of their offered messages
    that were admitted) at the end of the run, when a scheduler logged it."""
    p = run["workers"].get("participation")
    if p is None or not len(p) or not np.isfinite(p[-1]).all():
        return math.nan
    return float(jain(np.asarray(p[-1], float)))


# vs_oracle is left out (NaN, shown ``-``) when the oracle's mean time is below this
# fraction of the mean iteration time: the work the oracle splits is then a sliver of the
# iteration (no stragglers, tiny partitions), and the ratio measures rank 0's fixed costs,
# not the scheme (a no-straggler run printed vs_oracle 64.64)
ORACLE_MIN_SHARE = 0.05


def _ratio(durations: np.ndarray, oracle: np.ndarray) -> float:
    """mean iteration time / mean oracle time (NaN without an oracle, e.g. older runs, or
    when the oracle's time is under :data:`ORACLE_MIN_SHARE` of the iteration's)."""
    o = np.asarray(oracle, float)
    o = o[np.isfinite(o)]
    if not durations.size or not o.size or o.mean() <= 0:
        return math.nan
    if o.mean() < ORACLE_MIN_SHARE * durations.mean():
        return math.nan
    return float(durations.mean() / o.mean())


def summary(run, target_loss: float | None = None) -> dict:
    """One comparison row of a run (the keys of ``mpicode report --format json``)."""
    run = read_run(run)
    a, it, n = run["attrs"], run["iterations"], run["n"]
    nan = np.full(n, np.nan)
    t1 = it.get("t_end", nan)
    dur = iteration_seconds(run)  # rank 0's evaluation left out (total_s keeps it)
    fin = dur[np.isfinite(dur)]
    jf, basis = fairness(run)
    delivered = per_worker_total(run, "delivered")
    row = {
        "run": run["path"], "status": run["status"],
        "scheme": str(a.get("scheme", "?")), "stragglers": str(a.get("stragglers", "?")),
        "N": int(a.get("n_workers", 0)), "iterations": n,
        "final_loss": _last_finite(loss_after_step(run)) if n else math.nan,
        "test_accuracy": _last_finite(it.get("accuracy", nan)),
        "mean_iter_s": float(fin.mean()) if fin.size else math.nan,
        "p95_iter_s": float(np.percentile(fin, 95)) if fin.size else math.nan,
        "total_s": _last_finite(t1),
        "mean_load": _mean(it.get("load", nan)),
        "stage2_frac": float(np.mean(it["stage2"] > 0)) if n and "stage2" in it else math.nan,
        "mean_coverage": _mean(it.get("coverage", nan)),
        "time_to_target_s": time_to_loss(run, target_loss),
        # added after the first release: new keys only, none renamed
        "scheduler": str(a.get("scheduler", "?")), "channel": str(a.get("channel", "?")),
        "final_test_loss": _last_finite(it.get("test_loss", nan)),
        "bytes_up": int(np.sum(it["bytes_up"][it["bytes_up"] >= 0])) if "bytes_up" in it
        else 0,
        "bytes_delivered": int(np.sum(delivered)) if delivered is not None else None,
        "jain": jf, "jain_of": basis,
        "file": run["file"],
        # communication phase (runs with a scheduler): delivered bytes per second of
        # training, communication time per iteration, Jain index of participation
        "throughput_Bps": (float(np.sum(delivered)) / _last_finite(t1)
                           if delivered is not None and _last_finite(t1) > 0 else math.nan),
        "mean_comm_s": _mean(it.get("comm_s", nan)) if delivered is not None else math.nan,
        "p95_comm_s": (float(np.nanpercentile(it["comm_s"], 95))
                       if delivered is not None and "comm_s" in it
                       and np.isfinite(it["comm_s"]).any() else math.nan),
        "participation_jain": participation_jain(run),
        # clairvoyant oracle: mean iteration time over the mean perfect-split time
        "mean_oracle_s": _mean(it.get("oracle_s", nan)),
        "vs_oracle": _ratio(fin, it.get("oracle_s", nan)),
        "vs_oracle_part": _ratio(fin, it.get("oracle_part_s", nan)),
        # rank 0 as a server (docs/design.md §2.6): the mean fraction of an iteration it was
        # busy, and its mean time in scheme and scheduler calls per iteration
        "coord_busy": _mean(it.get("coord_busy", nan)),
        "mean_policy_s": _mean(it.get("policy_s", nan)),
        # slowdown versus the straggler-free replay (/iterations/ideal_s): S = T / T_ideal;
        # `removed` (against uncoded's S) needs the other runs: mpicode.analysis.slowdown
        "S": ideal_slowdown(run),
    }
    row["mode"] = run_mode(run)
    if target_loss is not None:
        row["target_loss"] = float(target_loss)
        row["target_reached"] = bool(math.isfinite(row["time_to_target_s"]))
    return row


def run_mode(run) -> str:
    """How the run's times were made: ``mpi`` (wall clock of real ranks), ``virtual-delay``
    (real ranks, injected delays in virtual time: ``--delay-mode virtual``) or ``simulate``
    (the discrete-event simulator's virtual time). Runs of different modes measure different
    things and are never averaged together silently (``report --group-by``)."""
    run = read_run(run)
    mode = str(run["attrs"].get("mode", "mpi"))
    if mode in ("simulated", "simulate"):
        return "simulate"
    return "virtual-delay" if config(run).get("delay_mode") == "virtual" else "mpi"


def ideal_rows(run) -> tuple[np.ndarray, np.ndarray]:
    """(duration, ideal duration) of every row that has both: the ideal duration is the row's
    with ``wait_s`` replaced by ``ideal_s`` (:mod:`mpicode.analysis.slowdown`)."""
    run = read_run(run)
    it, n = run["iterations"], run["n"]
    nan = np.full(n, np.nan)
    dur = np.asarray(it.get("t_end", nan), float) - np.asarray(it.get("t_start", nan), float)
    ideal = dur - np.asarray(it.get("wait_s", nan), float) + \
        np.asarray(it.get("ideal_s", nan), float)
    ok = np.isfinite(dur) & np.isfinite(ideal) & (ideal > 0)
    return dur[ok], ideal[ok]


def ideal_totals(run) -> tuple[float, float]:
    """(T, T_ideal) of a run, seconds (NaN without ``ideal_s``)."""
    dur, ideal = ideal_rows(run)
    if not dur.size:
        return math.nan, math.nan
    return float(dur.sum()), float(ideal.sum())


def ideal_slowdown(run) -> float:
    """``S = T / T_ideal`` (NaN when the log has no ``ideal_s``)."""
    t, ti = ideal_totals(run)
    return t / ti if ti > 0 else math.nan


def config(run) -> dict:
    """The run's effective configuration (root attribute ``config``, JSON)."""
    run = read_run(run)
    try:
        return json.loads(run["attrs"].get("config", "{}"))
    except json.JSONDecodeError:
        return {}

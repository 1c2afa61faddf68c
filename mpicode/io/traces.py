"""Imported straggler traces: per-iteration, per-worker compute durations from other systems.

``mpicode traces import FILE --out TRACE.h5`` reads

* a **long** CSV: one row per (iteration, worker), columns named by ``--iteration-col``,
  ``--worker-col``, ``--duration-col`` (other columns are ignored). Rows that repeat an
  (iteration, worker) pair are combined by ``--combine`` (default ``sum``: the pieces of one
  step's work, e.g. several ops, add up; ``max``, ``mean``, or ``error`` to refuse them);
* a **wide** CSV: one row per iteration, one column per worker (a header line is optional;
  with a header, ``--iteration-col`` names an index column to check and drop, if present);
* **Parquet** (long or wide, the same rules), when pyarrow is installed
  (``pip install 'mpicode[parquet]'``).

Iterations and workers must be consecutive integers (any first value: it is subtracted and
recorded) and every (iteration, worker) cell present; durations finite, >= 0 and bounded
(at most ``MAX_DURATION_S`` seconds and ``MAX_RELATIVE`` times the median: a replay of 1e12 s
would keep a run busy forever), the offending cells named. Anything else is a one-line
:class:`~mpicode.config.UsageError` (exit 2). Real traces are sampled and gappy:

* ``--renumber``: the iterations present, in order, become 0, 1, 2, ... (a trace sampled
  every 10th step); ``--iteration-stride K``: iterations are ``first + K * j`` and become
  ``j`` (a multiple missing is an iteration without rows, for ``--fill``);
* ``--fill median|previous|drop-iteration|error`` for missing (iteration, worker) cells:
  the median of that iteration's present workers (the trace's median for an iteration with
  none), the same worker's previous duration (its next one for the first iteration), the
  iteration dropped, or (the default) a one-line error suggesting both options.

Both are recorded in the trace's attributes (``iterations``, ``fill``, ``filled_cells``,
``dropped_iterations``).

Trace file (HDF5), ``format = "mpicode-trace"``:

* ``/durations`` (T x N) float64, seconds, as imported (after ``--units`` and ``--combine``);
* ``/relative`` (T x N) float64 = durations / median of all T x N entries (the *global*
  median: a step that is slow for everyone stays slow, and which worker is slow in which
  step is kept). ``--stragglers trace:TRACE.h5`` replays ``relative`` times ``--delay-unit``;
* attributes ``source``, ``license``, ``units`` ("s"), ``source_units``, ``layout``,
  ``combine``, ``normalisation``, ``median_s``, ``first_iteration``, ``first_worker``,
  ``n_iterations``, ``n_workers``, ``created``, ``source_format``, plus ``description`` and
  (``--license-file``) ``license_file`` and ``license_text`` if given.

Serial, no MPI::

    mpicode traces import data/traces/bytedance-AR.csv --out data/trace-AR.h5 \\
        --duration-col compute --license Apache-2.0 \\
        --license-file data/traces/LICENSE-StragglerAnalysis.txt
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
from pathlib import Path

import numpy as np

from mpicode.errors import UsageError
from mpicode.io import safefile
from mpicode.io.textformats import _is_number, _number
from mpicode.options import file_kind

TRACE_FORMAT = "mpicode-trace"
FORMATS = ("auto", "csv", "parquet")
LAYOUTS = ("auto", "long", "wide")
COMBINE = ("sum", "max", "mean", "error")
FILL = ("error", "median", "previous", "drop-iteration")
MAX_DURATION_S = 86400.0  # a day per (iteration, worker): longer is a unit mistake
MAX_RELATIVE = 1e4  # a cell 10^4 times the trace's median: replaying it stalls a run
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
NORMALISATION = "relative = durations / median of all entries (global median)"


# --- reading the sources -------------------------------------------------------------------

def _read_csv_table(path: str) -> tuple[list[str] | None, list[list[str]], list[int]]:
    """(header or None, rows of string cells, their line numbers). The delimiter is sniffed
    among , ; and tab; blank lines and ``#`` comments are skipped."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror})") from None
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise UsageError(f"{path}: empty (no rows)")
    first = lines[0][1]
    delim = next((c for c in (",", ";", "\t") if c in first), ",")
    rows = list(csv.reader([ln for _, ln in lines], delimiter=delim))
    nums = [i for i, _ in lines]
    header = None
    if not all(_is_number(c) for c in rows[0]):
        header, rows, nums = [c.strip() for c in rows[0]], rows[1:], nums[1:]
    if not rows:
        raise UsageError(f"{path}: no data rows (only a header)")
    width = len(header) if header else len(rows[0])
    for r, n in zip(rows, nums, strict=True):
        if len(r) != width:
            raise UsageError(f"{path}:{n}: ragged CSV: {len(r)} columns, expected {width}")
    return header, rows, nums


def _read_parquet_table(path: str) -> tuple[list[str], list[list[str]], list[int]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"{path}: reading Parquet needs pyarrow, which is not installed: "
                         "pip install 'mpicode[parquet]' (or pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several kinds for a bad file
        raise UsageError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())})"
                         ) from None
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    if table.num_rows == 0:
        raise UsageError(f"{path}: empty (no rows)")
    rows = [["" if c[r] is None else str(c[r]) for c in cols] for r in range(table.num_rows)]
    return list(table.column_names), rows, list(range(1, table.num_rows + 1))


def _cell_float(path, line, col, t: str) -> float:
    t = t.strip()
    if not t:
        raise UsageError(f"{path}:{line}: column {col!r}: missing value")
    v = _number(t, f"{path}:{line}: column {col!r}")
    if v < 0:
        raise UsageError(f"{path}:{line}: column {col!r}: negative duration {v!r}")
    return v


def _cell_int(path, line, col, t: str) -> int:
    try:
        v = float(t.strip())
        if v != int(v):
            raise ValueError
    except (ValueError, OverflowError):
        raise UsageError(f"{path}:{line}: column {col!r}: not an integer index: {t!r}"
                         ) from None
    return int(v)


def _consecutive(path: str, what: str, ids: np.ndarray) -> int:
    """First id of ``ids`` (sorted unique), refusing gaps."""
    gaps = np.flatnonzero(np.diff(ids) != 1)
    if gaps.size:
        hint = ("; a sampled trace: --renumber or --iteration-stride K, and --fill for "
                "missing rows" if what == "iteration" else "")
        raise UsageError(f"{path}: gap in {what}s: {ids[gaps[0]]} is followed by "
                         f"{ids[gaps[0] + 1]} (they must be consecutive integers{hint})")
    return int(ids[0])


def _rows_of(path: str, its: np.ndarray, renumber: bool, stride: int) -> tuple[np.ndarray, int]:
    """(source iteration of each matrix row, first iteration) for the sorted unique source
    iterations ``its``: consecutive (default), renumbered, or on a stride."""
    if renumber:
        return its, int(its[0])
    if stride > 1:
        off = (its - its[0]) % stride
        if np.any(off):
            bad = int(its[np.flatnonzero(off)[0]])
            raise UsageError(f"{path}: iteration {bad} is not on --iteration-stride {stride} "
                             f"from {int(its[0])} (--renumber takes any iterations in order)")
        return np.arange(int(its[0]), int(its[-1]) + 1, stride), int(its[0])
    i0 = _consecutive(path, "iteration", its)
    return its, i0


def fill_missing(path: str, m: np.ndarray, missing: np.ndarray, how: str, iters: np.ndarray,
                 w0: int) -> tuple[np.ndarray, np.ndarray, int, list[int]]:
    """Fill the cells ``missing`` (T x N bool) of ``m`` by ``how`` (see the module doc).
    Returns (matrix, source iterations of its rows, cells filled, iterations dropped)."""
    if not missing.any():
        return m, iters, 0, []
    if how == "error":
        t, w = map(int, np.argwhere(missing)[0])
        raise UsageError(f"{path}: no row for iteration {int(iters[t])}, worker {w + w0} "
                         f"({int(missing.sum())} cells missing: --fill median|previous|"
                         "drop-iteration fills them; --renumber or --iteration-stride K for a "
                         "sampled trace)")
    if how == "drop-iteration":
        keep = ~missing.any(axis=1)
        if not keep.any():
            raise UsageError(f"{path}: --fill drop-iteration drops every iteration (each "
                             "misses a worker)")
        return m[keep], iters[keep], 0, [int(i) for i in iters[~keep]]
    m = m.copy()
    if how == "median":
        glob = float(np.median(m[~missing]))
        for t in np.flatnonzero(missing.any(axis=1)):
            have = m[t][~missing[t]]
            m[t][missing[t]] = float(np.median(have)) if have.size else glob
    else:  # previous: the same worker's last duration (its next one before the first)
        for w in np.flatnonzero(missing.any(axis=0)):
            col, gone = m[:, w], missing[:, w]
            if gone.all():
                raise UsageError(f"{path}: --fill previous: worker {w + w0} has no duration "
                                 "at all")
            seen = np.flatnonzero(~gone)
            prev = np.maximum.accumulate(np.where(~gone, np.arange(len(col)), -1))
            src = np.where(prev >= 0, prev, seen[0])
            col[gone] = col[src[gone]]
    return m, iters, int(missing.sum()), []


def check_bounds(where: str, durations: np.ndarray | None, relative: np.ndarray,
                 iters: np.ndarray | None = None, w0: int = 0) -> None:
    """Durations finite, at most MAX_DURATION_S, and at most MAX_RELATIVE x the median: a
    trace that would keep a replay busy for ever is refused, its first cells named."""
    bad = ~np.isfinite(relative) | (relative > MAX_RELATIVE) | (relative < 0)
    what = f"more than {MAX_RELATIVE:g} x the median or not finite"
    if durations is not None:
        long_ = ~np.isfinite(durations) | (durations > MAX_DURATION_S)
        if long_.any() and not bad.any():
            what = f"longer than {MAX_DURATION_S:g} s or not finite"
        bad |= long_
    if not bad.any():
        return
    cells = np.argwhere(bad)
    it = (lambda t: int(iters[t])) if iters is not None else (lambda t: int(t))
    vals = durations if durations is not None else relative
    named = ", ".join(f"iteration {it(t)} worker {w + w0} ({vals[t, w]:.3g})"
                      for t, w in cells[:3])
    more = f" and {len(cells) - 3} more" if len(cells) > 3 else ""
    raise UsageError(f"{where}: {len(cells)} durations {what}: {named}{more} (a unit "
                     "mistake? --units ms|us|ns)")


def _column(path: str, header: list[str] | None, name: str, flag: str) -> int:
    if header is None or name not in header:
        raise UsageError(f"{path}: no column {name!r} ({flag}; columns: "
                         f"{', '.join(header) if header else 'none, no header line'})")
    return header.index(name)


def _long_matrix(path, header, rows, nums, cols, combine: str, renumber: bool = False,
                 stride: int = 1, fill: str = "error"):
    """T x N matrix of a long table; (matrix, source iteration of each row, first worker,
    cells filled, iterations dropped)."""
    ci = _column(path, header, cols[0], "--iteration-col")
    cw = _column(path, header, cols[1], "--worker-col")
    cd = _column(path, header, cols[2], "--duration-col")
    it = np.array([_cell_int(path, n, cols[0], r[ci]) for r, n in zip(rows, nums, strict=True)])
    wk = np.array([_cell_int(path, n, cols[1], r[cw]) for r, n in zip(rows, nums, strict=True)])
    du = np.array([_cell_float(path, n, cols[2], r[cd]) for r, n in zip(rows, nums, strict=True)])
    its, wks = np.unique(it), np.unique(wk)
    iters, _ = _rows_of(path, its, renumber, stride)
    w0 = _consecutive(path, "worker", wks)
    T, N = iters.size, wks.size
    flat = np.searchsorted(iters, it) * N + (wk - w0)
    count = np.bincount(flat, minlength=T * N)
    if combine == "error" and np.any(count > 1):
        k = int(np.flatnonzero(count > 1)[0])
        raise UsageError(f"{path}: iteration {int(iters[k // N])}, worker {k % N + w0} "
                         f"appears {count[k]} times (--combine sum|max|mean to combine repeats)")
    if combine == "max":
        m = np.full(T * N, -np.inf)
        np.maximum.at(m, flat, du)
    else:
        m = np.bincount(flat, weights=du, minlength=T * N)
        if combine == "mean":
            with np.errstate(invalid="ignore"):
                m = m / count
    m, iters, filled, dropped = fill_missing(path, m.reshape(T, N),
                                             (count == 0).reshape(T, N), fill, iters, w0)
    return m, iters, w0, filled, dropped


def _wide_matrix(path, header, rows, nums, iteration_col: str, renumber: bool = False,
                 stride: int = 1, fill: str = "error"):
    """T x N matrix of a wide table (rows = iterations, columns = workers); (matrix, source
    iteration of each row, first worker, cells filled, iterations dropped). An empty cell is
    a missing one."""
    its = np.arange(len(rows))
    if header is not None and iteration_col in header:
        ci = header.index(iteration_col)
        its = np.array([_cell_int(path, n, iteration_col, r[ci])
                        for r, n in zip(rows, nums, strict=True)])
        if (renumber or stride > 1) and np.any(np.diff(its) <= 0):
            k = int(np.flatnonzero(np.diff(its) <= 0)[0])
            raise UsageError(f"{path}: column {iteration_col!r}: iteration {its[k]} is "
                             f"followed by {its[k + 1]} (one row per iteration, increasing)")
        if not (renumber or stride > 1) and np.any(np.diff(its) != 1):
            k = int(np.flatnonzero(np.diff(its) != 1)[0])
            raise UsageError(f"{path}: column {iteration_col!r}: iteration {its[k]} is "
                             f"followed by {its[k + 1]} (one row per iteration, consecutive; "
                             "a sampled trace: --renumber or --iteration-stride K)")
        rows = [r[:ci] + r[ci + 1:] for r in rows]
        header = header[:ci] + header[ci + 1:]
    if not rows[0]:
        raise UsageError(f"{path}: no worker columns")
    names = header or [str(c) for c in range(len(rows[0]))]
    missing_ok = fill != "error"
    m = np.array([[math.nan if missing_ok and not t.strip() else
                   _cell_float(path, n, names[c], t) for c, t in enumerate(r)]
                  for r, n in zip(rows, nums, strict=True)])
    iters, _ = _rows_of(path, its, renumber, stride)
    full = np.full((iters.size, m.shape[1]), np.nan)
    full[np.searchsorted(iters, its)] = m
    m, iters, filled, dropped = fill_missing(path, full, np.isnan(full), fill, iters, 0)
    return m, iters, 0, filled, dropped


# --- the trace format ----------------------------------------------------------------------

def import_trace(source: str, out: str, *, fmt: str = "auto", layout: str = "auto",
                 cols=("iteration", "worker", "duration"), combine: str = "sum",
                 units: str = "s", license: str = "", license_file: str = "",
                 description: str = "", force: bool = False, renumber: bool = False,
                 iteration_stride: int = 1, fill: str = "error") -> dict:
    """Read ``source``, write the trace file ``out``; returns its attributes."""
    if not Path(source).is_file():
        raise UsageError(f"trace source not found: {source}")
    if os.path.lexists(out) and not force:
        raise UsageError(f"output exists: {out} (--force to overwrite)")
    license_text = _read_license(license_file) if license_file else ""
    if units not in UNITS:
        raise UsageError(f"--units {units!r}: choose from {', '.join(UNITS)}")
    if fill not in FILL:
        raise UsageError(f"--fill {fill!r}: choose from {', '.join(FILL)}")
    if iteration_stride < 1:
        raise UsageError(f"--iteration-stride {iteration_stride}: must be >= 1")
    if renumber and iteration_stride > 1:
        raise UsageError("--renumber and --iteration-stride: choose one")
    if fmt == "auto":
        fmt = "parquet" if Path(source).suffix.lower() in (".parquet", ".pq") else "csv"
    if fmt == "parquet":
        header, rows, nums = _read_parquet_table(source)
    else:
        header, rows, nums = _read_csv_table(source)
    # auto: long when the header names the worker or the duration column, else wide
    long = layout == "long" or (layout == "auto" and header is not None
                                and (cols[1] in header or cols[2] in header))
    how = {"renumber": renumber, "stride": iteration_stride, "fill": fill}
    if long:
        m, iters, w0, filled, dropped = _long_matrix(source, header, rows, nums, cols, combine,
                                                     **how)
    else:
        m, iters, w0, filled, dropped = _wide_matrix(source, header, rows, nums, cols[0], **how)
    i0 = int(iters[0])
    m = m * UNITS[units]
    med = float(np.median(m))
    if not med > 0:
        raise UsageError(f"{source}: the median duration is 0: nothing to normalise by")
    check_bounds(str(source), m, m / med, iters, w0)
    attrs = {"format": TRACE_FORMAT, "source": str(source), "license": license or "unknown",
             "units": "s", "source_units": units, "source_format": fmt,
             "layout": "long" if long else "wide",
             "combine": combine if long else "none (one value per cell)",
             "normalisation": NORMALISATION, "median_s": med, "first_iteration": i0,
             "first_worker": w0, "n_iterations": m.shape[0], "n_workers": m.shape[1],
             "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
             "iterations": _iterations_note(iters, renumber, iteration_stride),
             "fill": fill, "filled_cells": filled,
             "dropped_iterations": ",".join(map(str, dropped[:1000]))}
    if description:
        attrs["description"] = description
    if license_file:  # the license travels inside the trace file
        attrs.update(license_file=Path(license_file).name, license_text=license_text)
    write_trace(out, m, m / med, attrs, force)
    return attrs


def _iterations_note(iters: np.ndarray, renumber: bool, stride: int) -> str:
    """Provenance of the row numbers: how source iterations became rows 0..T-1."""
    span = f"source iterations {int(iters[0])}..{int(iters[-1])}"
    if renumber:
        return f"renumbered: the {len(iters)} {span} present, in order, as 0..{len(iters) - 1}"
    if stride > 1:
        return f"stride {stride}: {span}, iteration first + {stride} j as j"
    return f"consecutive: {span} as 0..{len(iters) - 1}"


def _read_license(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--license-file {path}: cannot read "
                         f"({getattr(e, 'strerror', None) or e})") from None


def write_trace(out: str, durations: np.ndarray, relative: np.ndarray, attrs: dict,
                force: bool = True) -> None:
    """Write a trace file ``out`` (HDF5, docs/hdf5-schema.md): ``durations`` and ``relative``
    (T x N seconds, and relative to the median) with ``attrs`` (``format`` among them),
    atomically (:mod:`mpicode.io.safefile`); ``force``: replace an existing file."""
    import h5py

    with safefile.output(out, force=force) as tmp:  # never half a file, never via a link
        with h5py.File(tmp, "x") as f:
            f.create_dataset("durations", data=durations.astype(np.float64))
            f.create_dataset("relative", data=relative.astype(np.float64))
            f.attrs.update(attrs)


def is_trace_file(path: str) -> bool:
    """True if ``path`` is an imported trace (not a run file)."""
    import h5py
    if file_kind(path) is not None:  # a FIFO would block h5py's open for ever
        return False
    try:
        with h5py.File(path, "r", locking=False) as f:
            return f.attrs.get("format") in (TRACE_FORMAT, TRACE_FORMAT.encode())
    except Exception:  # unreadable: the run-file reader gives the one-line error
        return False


def read_trace(path: str) -> tuple[np.ndarray, dict]:
    """(relative speeds T x N, attributes) of an imported trace, checked."""
    import h5py
    where = f"trace {path}"
    kind = file_kind(path)
    if kind is not None:
        raise UsageError(f"{where}: is {kind}, not a trace file")
    try:
        with h5py.File(path, "r", locking=False) as f:
            rel = np.asarray(f["relative"][()], dtype=np.float64)
            attrs = {k: f.attrs[k] for k in f.attrs}
    except KeyError:
        raise UsageError(f"{where}: no /relative dataset (re-import it with mpicode traces "
                         "import)") from None
    except Exception as e:  # corrupt file: h5py raises several kinds
        raise UsageError(f"{where}: cannot read ({' '.join(str(e).split())})") from None
    if rel.ndim != 2 or 0 in rel.shape:
        raise UsageError(f"{where}: /relative must be a non-empty iterations x workers matrix, "
                         f"got shape {rel.shape}")
    if not np.all(np.isfinite(rel) & (rel >= 0)):
        raise UsageError(f"{where}: /relative must be finite and >= 0")
    check_bounds(where, None, rel)
    return rel, attrs


# --- command line: mpicode traces import -----------------------------------------------------

def add_import_arguments(p) -> None:
    """Arguments of ``mpicode traces import`` (for the CLI's subparser)."""
    p.add_argument("source", metavar="FILE", help="long or wide CSV, or Parquet (needs pyarrow)")
    p.add_argument("--out", required=True, metavar="TRACE.h5", help="trace file to write")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="auto",
                   help="input format (default auto: .parquet/.pq is Parquet, else CSV)")
    p.add_argument("--layout", choices=LAYOUTS, default="auto",
                   help="long (a row per iteration and worker) or wide (a row per iteration, "
                        "a column per worker); default auto: long when the header names "
                        "--worker-col or --duration-col")
    p.add_argument("--iteration-col", default="iteration", metavar="NAME",
                   help="long: iteration column; wide: optional index column (default "
                        "iteration)")
    p.add_argument("--worker-col", default="worker", metavar="NAME",
                   help="long: worker column (default worker)")
    p.add_argument("--duration-col", default="duration", metavar="NAME",
                   help="long: duration column (default duration)")
    p.add_argument("--combine", choices=COMBINE, default="sum",
                   help="long: how rows repeating an (iteration, worker) pair combine "
                        "(default sum; error refuses repeats)")
    p.add_argument("--units", choices=tuple(UNITS), default="s",
                   help="unit of the durations in FILE (default s); stored in seconds")
    p.add_argument("--license", default="", help="license of the source data (recorded)")
    p.add_argument("--license-file", default="", metavar="PATH",
                   help="license text of the source data, stored in the trace file")
    p.add_argument("--description", default="", help="free text recorded with the trace")
    p.add_argument("--renumber", action="store_true",
                   help="the iterations present, in order, become 0, 1, 2, ... (a sampled "
                        "trace; recorded)")
    p.add_argument("--iteration-stride", type=int, default=1, metavar="K",
                   help="iterations are first + K j and become j; a missing multiple is an "
                        "iteration without rows (for --fill)")
    p.add_argument("--fill", choices=FILL, default="error",
                   help="missing (iteration, worker) rows: the iteration's median, the "
                        "worker's previous duration, drop the iteration, or error (default)")
    p.add_argument("--force", action="store_true", help="overwrite --out")


def run_import(args) -> int:
    """``mpicode traces import``: one summary line."""
    a = import_trace(args.source, args.out, fmt=args.fmt, layout=args.layout,
                     cols=(args.iteration_col, args.worker_col, args.duration_col),
                     combine=args.combine, units=args.units, license=args.license,
                     license_file=args.license_file, description=args.description,
                     force=args.force, renumber=args.renumber,
                     iteration_stride=args.iteration_stride, fill=args.fill)
    print(f"wrote {args.out}: {a['n_iterations']} iterations x {a['n_workers']} workers "
          f"({a['layout']} {a['source_format']}), median {a['median_s']:.4g} s"
          + (f", {a['filled_cells']} cells filled ({a['fill']})" if a["filled_cells"] else "")
          + (f", iterations {a['dropped_iterations']} dropped" if a["dropped_iterations"]
             else "")
          + f"; replay with --stragglers trace:{args.out}")
    return 0

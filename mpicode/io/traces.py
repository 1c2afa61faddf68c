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
recorded) and every (iteration, worker) cell present; durations finite and >= 0. Anything
else is a one-line :class:`~mpicode.config.UsageError` (exit 2).

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
import os
from pathlib import Path

import numpy as np

from mpicode.errors import UsageError
from mpicode.io.textformats import _is_number, _number

TRACE_FORMAT = "mpicode-trace"
FORMATS = ("auto", "csv", "parquet")
LAYOUTS = ("auto", "long", "wide")
COMBINE = ("sum", "max", "mean", "error")
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
        raise UsageError(f"{path}: gap in {what}s: {ids[gaps[0]]} is followed by "
                         f"{ids[gaps[0] + 1]} (they must be consecutive integers)")
    return int(ids[0])


def _column(path: str, header: list[str] | None, name: str, flag: str) -> int:
    if header is None or name not in header:
        raise UsageError(f"{path}: no column {name!r} ({flag}; columns: "
                         f"{', '.join(header) if header else 'none, no header line'})")
    return header.index(name)


def _long_matrix(path, header, rows, nums, cols, combine: str):
    """T x N matrix of a long table; (matrix, first iteration, first worker)."""
    ci = _column(path, header, cols[0], "--iteration-col")
    cw = _column(path, header, cols[1], "--worker-col")
    cd = _column(path, header, cols[2], "--duration-col")
    it = np.array([_cell_int(path, n, cols[0], r[ci]) for r, n in zip(rows, nums, strict=True)])
    wk = np.array([_cell_int(path, n, cols[1], r[cw]) for r, n in zip(rows, nums, strict=True)])
    du = np.array([_cell_float(path, n, cols[2], r[cd]) for r, n in zip(rows, nums, strict=True)])
    its, wks = np.unique(it), np.unique(wk)
    i0, w0 = _consecutive(path, "iteration", its), _consecutive(path, "worker", wks)
    T, N = its.size, wks.size
    flat = (it - i0) * N + (wk - w0)
    count = np.bincount(flat, minlength=T * N)
    if np.any(count == 0):
        k = int(np.flatnonzero(count == 0)[0])
        raise UsageError(f"{path}: no row for iteration {k // N + i0}, worker {k % N + w0} "
                         "(every (iteration, worker) pair needs a duration)")
    if combine == "error" and np.any(count > 1):
        k = int(np.flatnonzero(count > 1)[0])
        raise UsageError(f"{path}: iteration {k // N + i0}, worker {k % N + w0} appears "
                         f"{count[k]} times (--combine sum|max|mean to combine repeats)")
    if combine == "max":
        m = np.full(T * N, -np.inf)
        np.maximum.at(m, flat, du)
    else:
        m = np.bincount(flat, weights=du, minlength=T * N)
        if combine == "mean":
            m = m / count
    return m.reshape(T, N), i0, w0


def _wide_matrix(path, header, rows, nums, iteration_col: str):
    """T x N matrix of a wide table (rows = iterations, columns = workers)."""
    i0 = 0
    if header is not None and iteration_col in header:
        ci = header.index(iteration_col)
        its = np.array([_cell_int(path, n, iteration_col, r[ci])
                        for r, n in zip(rows, nums, strict=True)])
        if np.any(np.diff(its) != 1):
            k = int(np.flatnonzero(np.diff(its) != 1)[0])
            raise UsageError(f"{path}: column {iteration_col!r}: iteration {its[k]} is "
                             f"followed by {its[k + 1]} (one row per iteration, consecutive)")
        i0 = int(its[0])
        rows = [r[:ci] + r[ci + 1:] for r in rows]
        header = header[:ci] + header[ci + 1:]
    if not rows[0]:
        raise UsageError(f"{path}: no worker columns")
    names = header or [str(c) for c in range(len(rows[0]))]
    m = np.array([[_cell_float(path, n, names[c], t) for c, t in enumerate(r)]
                  for r, n in zip(rows, nums, strict=True)])
    return m, i0, 0


# --- the trace format ----------------------------------------------------------------------

def import_trace(source: str, out: str, *, fmt: str = "auto", layout: str = "auto",
                 cols=("iteration", "worker", "duration"), combine: str = "sum",
                 units: str = "s", license: str = "", license_file: str = "",
                 description: str = "", force: bool = False) -> dict:
    """Read ``source``, write the trace file ``out``; returns its attributes."""
    if not Path(source).is_file():
        raise UsageError(f"trace source not found: {source}")
    if os.path.lexists(out) and not force:
        raise UsageError(f"output exists: {out} (--force to overwrite)")
    license_text = _read_license(license_file) if license_file else ""
    if units not in UNITS:
        raise UsageError(f"--units {units!r}: choose from {', '.join(UNITS)}")
    if fmt == "auto":
        fmt = "parquet" if Path(source).suffix.lower() in (".parquet", ".pq") else "csv"
    if fmt == "parquet":
        header, rows, nums = _read_parquet_table(source)
    else:
        header, rows, nums = _read_csv_table(source)
    # auto: long when the header names the worker or the duration column, else wide
    long = layout == "long" or (layout == "auto" and header is not None
                                and (cols[1] in header or cols[2] in header))
    if long:
        m, i0, w0 = _long_matrix(source, header, rows, nums, cols, combine)
    else:
        m, i0, w0 = _wide_matrix(source, header, rows, nums, cols[0])
    m = m * UNITS[units]
    med = float(np.median(m))
    if not med > 0:
        raise UsageError(f"{source}: the median duration is 0: nothing to normalise by")
    attrs = {"format": TRACE_FORMAT, "source": str(source), "license": license or "unknown",
             "units": "s", "source_units": units, "source_format": fmt,
             "layout": "long" if long else "wide",
             "combine": combine if long else "none (one value per cell)",
             "normalisation": NORMALISATION, "median_s": med, "first_iteration": i0,
             "first_worker": w0, "n_iterations": m.shape[0], "n_workers": m.shape[1],
             "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    if description:
        attrs["description"] = description
    if license_file:  # the license travels inside the trace file
        attrs.update(license_file=Path(license_file).name, license_text=license_text)
    _write(out, m, m / med, attrs)
    return attrs


def _read_license(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--license-file {path}: cannot read "
                         f"({getattr(e, 'strerror', None) or e})") from None


def _write(out: str, durations: np.ndarray, relative: np.ndarray, attrs: dict) -> None:
    import h5py
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{out}.{os.getpid()}.tmp"  # a temporary name, then rename: never half a file
    try:
        with h5py.File(tmp, "x") as f:
            f.create_dataset("durations", data=durations.astype(np.float64))
            f.create_dataset("relative", data=relative.astype(np.float64))
            f.attrs.update(attrs)
        os.replace(tmp, out)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise UsageError(f"cannot write {out} ({' '.join(str(e).split())})") from None


def is_trace_file(path: str) -> bool:
    """True if ``path`` is an imported trace (not a run file)."""
    import h5py
    try:
        with h5py.File(path, "r", locking=False) as f:
            return f.attrs.get("format") in (TRACE_FORMAT, TRACE_FORMAT.encode())
    except Exception:  # unreadable: the run-file reader gives the one-line error
        return False


def read_trace(path: str) -> tuple[np.ndarray, dict]:
    """(relative speeds T x N, attributes) of an imported trace, checked."""
    import h5py
    where = f"trace {path}"
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
    p.add_argument("--force", action="store_true", help="overwrite --out")


def run_import(args) -> int:
    """``mpicode traces import``: one summary line."""
    a = import_trace(args.source, args.out, fmt=args.fmt, layout=args.layout,
                     cols=(args.iteration_col, args.worker_col, args.duration_col),
                     combine=args.combine, units=args.units, license=args.license,
                     license_file=args.license_file, description=args.description,
                     force=args.force)
    print(f"wrote {args.out}: {a['n_iterations']} iterations x {a['n_workers']} workers "
          f"({a['layout']} {a['source_format']}), median {a['median_s']:.4g} s; replay with "
          f"--stragglers trace:{args.out}")
    return 0

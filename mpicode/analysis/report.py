"""``mpicode report RUN.h5 [RUN.h5 ...]``: one comparison row per run, and plots.

::

    mpicode report runs/*.h5 --target-loss 0.45 --plots plots/ --gantt-iterations 10:15

Reads only rows below ``n_done`` (through :mod:`mpicode.analysis.runs`), so a run still in progress
(``RUN.h5.part``) or killed can be read; the table says so. Plots need matplotlib.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import mpicode.analysis as analysis
from mpicode.config import UsageError

# the readers live in mpicode.analysis.runs; these names stay importable from here
read_run = analysis.read_run
time_to_loss = analysis.time_to_loss


def summarize(run: dict, target_loss: float | None = None) -> dict:
    return analysis.summary(run, target_loss)


def _bytes(v) -> str:
    if v is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(v) < 1000 or unit == "GB":
            return f"{v:.0f}{unit}" if unit == "B" else f"{v:.1f}{unit}"
        v /= 1000
    return str(v)


# (key, table format). The first 15 are the original columns; new ones are only appended.
COLUMNS = [("run", "{}"), ("status", "{}"), ("scheme", "{}"), ("stragglers", "{}"), ("N", "{}"),
           ("iterations", "{}"), ("final_loss", "{:.6g}"), ("test_accuracy", "{:.4f}"),
           ("mean_iter_s", "{:.4f}"), ("p95_iter_s", "{:.4f}"), ("total_s", "{:.3f}"),
           ("mean_load", "{:.3f}"), ("stage2_frac", "{:.2f}"), ("mean_coverage", "{:.3f}"),
           ("time_to_target_s", "{:.3f}"),
           ("scheduler", "{}"), ("channel", "{}"), ("bytes_up", _bytes),
           ("bytes_delivered", _bytes), ("jain", "{:.3f}"), ("jain_of", "{}"),
           ("throughput_Bps", "{:.4g}"), ("mean_comm_s", "{:.4f}"), ("p95_comm_s", "{:.4f}"),
           ("participation_jain", "{:.3f}"), ("vs_oracle", "{:.2f}")]
LEFT = {"run", "status", "scheme", "stragglers", "scheduler", "channel", "jain_of"}


def _cell(fmt, v) -> str:
    if callable(fmt):
        return fmt(v)
    if isinstance(v, float) and math.isinf(v):
        return "never"
    return fmt.format(v)


def _json_value(v):
    # strict JSON: NaN and inf become null (target_reached tells "never" from "no target")
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def build(paths: list, target_loss: float | None = None) -> tuple[list[dict], list[str]]:
    """Summary rows of the runs (paths, or runs already read) and the notes that go with
    them."""
    runs = [read_run(p) for p in paths]
    rows = [analysis.summary(r, target_loss) for r in runs]
    notes = []
    for r in runs:
        if r["in_progress"]:
            notes.append(f"note: {r['file']} is running (in progress, or killed before it "
                         f"finished): showing its {r['n']} completed iterations")
        elif r["status"] != "complete":
            notes.append(f"note: {r['file']} is {r['status']}: showing its {r['n']} completed "
                         "iterations")
    bases = {row["jain_of"] for row in rows}
    what = {"delivered": "per-worker delivered bytes (/workers/delivered)",
            "used": "per-worker counts of results used in a decode (/workers/used; the log has "
                    "no /workers/delivered)",
            "none": "nothing (the log has neither /workers/delivered nor /workers/used)"}
    for b in sorted(bases):
        notes.append(f"note: jain{' (jain_of=' + b + ')' if len(bases) > 1 else ''} is Jain's "
                     f"fairness index of {what[b]}")
    return rows, notes


def render(paths: list, fmt: str = "table", target_loss: float | None = None,
           notes: list[str] | None = None) -> str:
    """The comparison of ``paths`` as a text table (notes below it), CSV or JSON.

    ``notes``, when a list, receives the notes instead of the table (for csv/json, whose
    output stays machine-readable)."""
    rows, run_notes = build(paths, target_loss)
    cols = [c for c in COLUMNS if c[0] != "time_to_target_s" or target_loss is not None]
    if notes is not None:
        notes.extend(run_notes)
    if fmt == "json":
        return json.dumps([{k: _json_value(v) for k, v in r.items()} for r in rows], indent=2)
    if fmt == "csv":
        known = {c for c, _ in COLUMNS}
        keys = [c for c, _ in cols] + [k for k in (rows[0] if rows else {}) if k not in known]
        buf = io.StringIO()
        w = csv.DictWriter(buf, keys, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().rstrip()
    shown = [dict(r) for r in rows]
    dirs = {str(Path(r["run"]).parent) for r in rows}
    where = []
    if len(dirs) == 1 and len(rows) > 1:  # a sweep: the names say enough, the notes say where
        where = [f"note: runs in {dirs.pop()}/"]
        for r in shown:
            r["run"] = Path(r["run"]).name
    cells = [[c for c, _ in cols]] + [[_cell(f, r[c]) for c, f in cols]
                                      for r in shown]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    lines = ["  ".join(v.ljust(widths[j]) if cols[j][0] in LEFT else v.rjust(widths[j])
                       for j, v in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + where + ([] if notes is not None else run_notes))


def parse_range(text: str | None, n: int, default: int = 5) -> tuple[int, int]:
    """``A:B`` (iterations A..B-1, as a Python slice; ``A:``, ``:B`` and ``A`` too) to a
    range clipped to the ``n`` valid iterations."""
    if text is None:
        return 0, min(n, default)
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            lo = int(a) if a.strip() else 0
            hi = int(b) if b.strip() else n
        else:
            lo = int(text)
            hi = lo + 1
    except ValueError:
        raise UsageError(f"--gantt-iterations {text!r}: expected A:B (iterations A..B-1)") \
            from None
    if lo < 0 or hi <= lo:
        raise UsageError(f"--gantt-iterations {text!r}: need 0 <= A < B")
    if lo >= n:
        raise UsageError(f"--gantt-iterations {text!r}: the run has only {n} valid iterations")
    return lo, min(hi, n)


def pick_run(spec: str | None, paths: list[str]) -> str:
    """``--gantt-run``: one of the runs given, by path or by 0-based position."""
    if spec is None:
        return paths[0]
    if spec in paths:
        return spec
    if spec.isdigit():
        if int(spec) >= len(paths):
            raise UsageError(f"--gantt-run {spec}: only {len(paths)} runs given (0-based)")
        return paths[int(spec)]
    same = [p for p in paths if Path(p).resolve() == Path(spec).resolve()]
    if same:
        return same[0]
    raise UsageError(f"--gantt-run {spec}: not one of the runs given (a path or 0-based index)")


def main(args) -> int:
    """The ``report`` command (args from the CLI parser)."""
    notes: list[str] = []
    out_dir = getattr(args, "plots", None)
    gantt_run = pick_run(getattr(args, "gantt_run", None), args.runs)
    if out_dir is None and (getattr(args, "gantt_run", None) or
                            getattr(args, "gantt_iterations", None)):
        raise UsageError("--gantt-run and --gantt-iterations need --plots DIR")
    runs = [read_run(p) for p in args.runs]
    text = render(runs, fmt=args.format, target_loss=args.target_loss,
                  notes=None if args.format == "table" else notes)
    written = []
    if out_dir is not None:
        from mpicode.analysis import plots
        g = runs[args.runs.index(gantt_run)]
        span = parse_range(getattr(args, "gantt_iterations", None), g["n"]) if g["n"] else None
        written, plot_notes = plots.write_all(runs, out_dir, gantt_run=g, gantt_span=span,
                                              target_loss=args.target_loss)
        notes.extend(plot_notes)
    print(text)
    for line in notes:
        print(line, file=sys.stderr)
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return 0

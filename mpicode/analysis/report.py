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
import os
import sys
from pathlib import Path

import mpicode.analysis as analysis
from mpicode.analysis import groups, plots, slowdown, table, whatif
from mpicode.errors import UsageError

# the readers live in mpicode.analysis.runs; these names stay importable from here
read_run = analysis.read_run
time_to_loss = analysis.time_to_loss


def summarize(run: dict, target_loss: float | None = None) -> dict:
    return analysis.summary(run, target_loss)


# the table layout lives in mpicode.analysis.table; these names stay importable from here
COLUMNS, LEFT, _bytes = table.COLUMNS, table.LEFT, table._bytes


def _json_value(v):
    # strict JSON: NaN and inf become null (target_reached tells "never" from "no target")
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    return v


def build(paths: list, target_loss: float | None = None) -> tuple[list[dict], list[str]]:
    """Summary rows of the runs (paths, or runs already read) and the notes that go with
    them."""
    runs = [read_run(p) for p in paths]
    rows = [analysis.summary(r, target_loss) for r in runs]
    for run, row in zip(runs, rows, strict=True):
        if "vs_oracle" not in row:  # summary() gives it once the log has /iterations/oracle_s
            row["vs_oracle"] = whatif.vs_oracle(run)
    slowdown.add_removed(runs, rows)  # against the uncoded run of the same scenario
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


def _csv(rows: list[dict], keys: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows([{k: ";".join(v) if isinstance(v, list) else v for k, v in r.items()}
                 for r in rows])
    return buf.getvalue().rstrip()


def _machine(rows: list[dict], keys: list[str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{k: _json_value(r.get(k)) for k in keys} for r in rows], indent=2)
    return _csv(rows, keys)


def _all_keys(rows: list[dict], first: list[str]) -> list[str]:
    keys = list(first)
    for r in rows:
        keys += [k for k in r if k not in keys]
    return keys


def _short_names(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """Runs in one directory (a sweep): the file names say enough, a note says where."""
    dirs = {str(Path(r["run"]).parent) for r in rows}
    if len(dirs) != 1 or not rows:
        return rows, []
    where = [f"note: runs in {dirs.pop()}/"]
    return [{**r, "run": Path(r["run"]).name} for r in rows], where


def _workers(runs: list[dict], fmt: str, columns) -> tuple[str, list[str]]:
    rows = []
    for r in runs:
        share = {a["worker"]: a for a in slowdown.attribution(r)}
        for w in whatif.straggler_scores(r):
            a = share.get(w["worker"], {})
            rows.append({**w, "excess_s": a.get("excess_s", math.nan),
                         "slowdown_share": a.get("slowdown_share", math.nan)})
    keys = ["run", "worker", "rank", "score", "p95_slowdown", "slow_frac", "iterations",
            "censored", "excess_s", "slowdown_share"]
    if columns:
        keys = table.parse_columns(columns, keys)
    notes = ["note: score: the worker's mean time per partition relative to the median of its "
             "iteration's workers (1 = typical); slow_frac: iterations at >= 1.5x the median; "
             "censored: iterations whose time is a lower bound (a result that never arrived)",
             "note: excess_s: the worker's time past its iterations' straggler-free ideal "
             "(ideal_s), summed; slowdown_share: its part of every worker's excess (the "
             "shares of a run add to 1)"]
    if fmt != "table":
        return _machine(rows, keys, fmt), notes
    shown, where = _short_names(rows)
    f = {"score": "{:.2f}", "p95_slowdown": "{:.2f}", "slow_frac": "{:.2f}",
         "excess_s": "{:.4g}", "slowdown_share": "{:.3f}"}
    shown = [{**r, "run": r["run"].removesuffix(".h5")} for r in shown]  # as the main table
    body = [[table.cell(f.get(k, "{}"), r[k]) for k in keys] for r in shown]
    return "\n".join(table.lay_out(keys, body, [k == "run" for k in keys])), where + notes


def _grouped(runs, rows, fmt, group_by, columns, wide, target,
             allow_mixed=False) -> tuple[str, list[str]]:
    keys = groups.parse_keys(group_by)
    agg = groups.aggregate(runs, rows, keys, allow_mixed)
    valid = _all_keys(agg, keys + ["n"])
    cols = table.parse_columns(columns, valid) if columns else None
    if fmt != "table":
        return _machine(agg, cols or valid, fmt), []
    lines, notes = groups.render(agg, keys, cols, wide, target)
    return "\n".join(lines), notes


def render(paths: list, fmt: str = "table", target_loss: float | None = None,
           notes: list[str] | None = None, columns: str | None = None, wide: bool = False,
           group_by: str | None = None, workers: bool = False,
           allow_mixed: bool = False) -> str:
    """The comparison of ``paths`` as a text table (notes below it), CSV or JSON.

    ``columns`` ("a,b,c") picks the columns, ``wide`` shows all of them in the table (CSV and
    JSON always have all of them unless ``columns`` is given); ``group_by`` ("k1,k2")
    aggregates across runs (mean and 95% CI; groups whose runs differ in more than the seed
    are refused unless ``allow_mixed``); ``workers`` gives per-worker straggler scores.
    ``notes``, when a list, receives the notes instead of the table (for csv/json, whose
    output stays machine-readable)."""
    runs = [read_run(p) for p in paths]
    rows, run_notes = build(runs, target_loss)
    target = target_loss is not None
    if workers:
        text, extra = _workers(runs, fmt, columns)
    elif group_by:
        text, extra = _grouped(runs, rows, fmt, group_by, columns, wide, target, allow_mixed)
    else:
        valid = [k for k in table.valid_columns(rows) if k != "time_to_target_s" or target]
        cols = table.parse_columns(columns, valid) if columns else None
        if fmt != "table":
            text, extra = _machine(rows, cols or _all_keys(rows, valid), fmt), []
        else:
            shown, where = _short_names(rows)
            lines, extra = table.render_rows(shown, cols, wide, target)
            text, extra = "\n".join(lines), where + extra
    shows_jain = fmt != "table" or wide or "jain" in (columns or "").split(",")
    all_notes = extra + [n for n in run_notes if shows_jain or not n.startswith("note: jain")]
    if notes is not None:
        notes.extend(all_notes)
        return text
    return "\n".join([text] + (all_notes if fmt == "table" else []))


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
    if out_dir is None and getattr(args, "log_loss", False):
        raise UsageError("--log-loss needs --plots DIR")
    if getattr(args, "workers", False) and getattr(args, "group_by", None):
        raise UsageError("--workers and --group-by cannot be combined")
    runs = [read_run(p) for p in args.runs]
    group_by = getattr(args, "group_by", None)
    text = render(runs, fmt=args.format, target_loss=args.target_loss,
                  notes=None if args.format == "table" else notes,
                  columns=getattr(args, "columns", None), wide=getattr(args, "wide", False),
                  group_by=group_by, workers=getattr(args, "workers", False),
                  allow_mixed=getattr(args, "allow_mixed", False))
    written = []
    if out_dir is not None:
        g = runs[args.runs.index(gantt_run)]
        span = parse_range(getattr(args, "gantt_iterations", None), g["n"]) if g["n"] else None
        sets = None
        if group_by:
            keys = groups.parse_keys(group_by)
            rows, _ = build(runs, args.target_loss)
            sets = [(plots.group_label(keys, v), [runs[i] for i in idx])
                    for v, idx in groups.partition(runs, rows, keys).items()]
        written, plot_notes = plots.write_all(runs, out_dir, gantt_run=g, gantt_span=span,
                                              target_loss=args.target_loss, groups=sets,
                                              log_loss=getattr(args, "log_loss", False))
        notes.extend(plot_notes)
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `mpicode report ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    for line in notes:
        print(line, file=sys.stderr)
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return 0

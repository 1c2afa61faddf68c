"""``mpicode report RUN.h5 [RUN.h5 ...]``: one comparison row per run.

Reads only rows below ``n_done``, so a run still in progress (or killed) can be read; its
status is shown.
"""

from __future__ import annotations

import csv
import io
import json
import math

import h5py
import numpy as np

from mpicode.config import UsageError


def read_run(path: str) -> dict:
    """Attributes and the valid rows (below n_done) of one run file."""
    try:
        f = h5py.File(path, "r", locking=False)  # the writer may still hold it
    except (OSError, FileNotFoundError) as e:
        raise UsageError(f"cannot read run {path}: {e.__class__.__name__}") from None
    with f:
        if "iterations" not in f:
            raise UsageError(f"{path}: not an mpicode run (no /iterations)")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        n = int(attrs.get("n_done", 0))
        it = {k: f["iterations"][k][:n] for k in f["iterations"]}
        wk = {k: f["workers"][k][:n] for k in f["workers"]} if "workers" in f else {}
        nt = int(attrs.get("n_tasks", 0))
        tasks = {k: f["tasks"][k][:nt] for k in f["tasks"]} if "tasks" in f else {}
    return {"path": path, "attrs": attrs, "n": n, "iterations": it, "workers": wk,
            "tasks": tasks}


def time_to_loss(run: dict, target: float | None) -> float:
    if target is None:
        return math.nan
    loss = run["iterations"].get("loss")
    if loss is None:
        return math.nan
    hit = np.flatnonzero(loss <= target)
    return float(run["iterations"]["t_end"][hit[0]]) if hit.size else math.inf


def summarize(run: dict, target_loss: float | None = None) -> dict:
    a, it = run["attrs"], run["iterations"]
    n = run["n"]
    dur = it["t_end"] - it["t_start"] if n else np.array([])
    loss = it.get("loss", np.array([]))
    acc = it.get("accuracy", np.array([]))

    def last_finite(x):
        x = x[np.isfinite(x)] if len(x) else x
        return float(x[-1]) if len(x) else math.nan

    return {
        "run": run["path"], "status": str(a.get("status", "?")),
        "scheme": str(a.get("scheme", "?")), "stragglers": str(a.get("stragglers", "?")),
        "N": int(a.get("n_workers", 0)), "iterations": n,
        "final_loss": last_finite(loss), "test_accuracy": last_finite(acc),
        "mean_iter_s": float(dur.mean()) if n else math.nan,
        "p95_iter_s": float(np.percentile(dur, 95)) if n else math.nan,
        "total_s": float(it["t_end"][-1]) if n else math.nan,
        "mean_load": float(np.mean(it["load"])) if n else math.nan,
        "stage2_frac": float(np.mean(it["stage2"] > 0)) if n and "stage2" in it else math.nan,
        "mean_coverage": float(np.mean(it["coverage"])) if n else math.nan,
        "time_to_target_s": time_to_loss(run, target_loss),
    }


COLUMNS = [("run", "{}"), ("status", "{}"), ("scheme", "{}"), ("stragglers", "{}"), ("N", "{}"),
           ("iterations", "{}"), ("final_loss", "{:.6g}"), ("test_accuracy", "{:.4f}"),
           ("mean_iter_s", "{:.4f}"), ("p95_iter_s", "{:.4f}"), ("total_s", "{:.3f}"),
           ("mean_load", "{:.3f}"), ("stage2_frac", "{:.2f}"), ("mean_coverage", "{:.3f}"),
           ("time_to_target_s", "{:.3f}")]


def render(paths: list[str], fmt: str = "table", target_loss: float | None = None) -> str:
    rows = [summarize(read_run(p), target_loss) for p in paths]
    cols = [c for c in COLUMNS if c[0] != "time_to_target_s" or target_loss is not None]
    if fmt == "json":
        return json.dumps(rows, indent=2, default=float)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, [c for c, _ in cols], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().rstrip()
    cells = [[c for c, _ in cols]] + [[f.format(r[c]) for c, f in cols] for r in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    lines = ["  ".join(v.rjust(widths[j]) if j > 1 else v.ljust(widths[j])
                       for j, v in enumerate(row)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"note: {r['run']} is {r['status']}: showing its {r['iterations']} completed rows"
             for r in rows if r["status"] not in ("complete",)]
    return "\n".join(lines + notes)

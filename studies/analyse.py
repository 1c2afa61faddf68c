"""From the cells' run logs to metrics, targets and the inputs of the verdict rules.

Reads every run with :func:`mpicode.analysis.runs.read_run` (only the valid rows) and computes:

* per run: final test accuracy and training loss, mean/p95 iteration time, mean computation
  load (partitions started / K), stage-2 fraction, mean/p95 communication time per iteration,
  and for runs with an uplink the throughput (bytes per slot while data waited, from
  ``/slots``) and the long-run participation per worker;
* per (dataset, scenario) of the scheme comparison, two targets, both printed in the tables:
  **accuracy target** = 98% of the best final test accuracy any exact scheme reaches;
  **loss target** = the training loss every exact scheme has reached by 80% of the iterations
  (the largest of their losses at that iteration). Time to a target is the *training time*
  until the end of the first iteration that meets it, on the run's one clock: the rows tile
  training time (every phase, evaluation and logging included, is inside some row's
  ``t_end - t_start``), so the summed iteration times are the time since training began;
  ``inf``: never.
"""

from __future__ import annotations

import math

import numpy as np

import mpicode.analysis as analysis
from studies.suite import EXACT, NONIID, SCHEDULER_SCHEMES, SCHEDULERS, SCHEMES, slug

ACC_TARGET_FRACTION = 0.98
LOSS_TARGET_AT = 0.8
TARGET_RULE = (f"accuracy target = {ACC_TARGET_FRACTION:.0%} of the best final test accuracy "
               f"of any exact scheme; loss target = the largest training loss of the exact "
               f"schemes at {LOSS_TARGET_AT:.0%} of the iterations")


def _arr(it: dict, k: str, n: int) -> np.ndarray:
    return np.asarray(it.get(k, np.full(n, np.nan)), float)


def _last(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x[-1]) if x.size else math.nan


def run_metrics(run: dict) -> dict:
    """The numbers of one run (see the module docstring)."""
    it, n = run["iterations"], run["n"]
    t0, t1 = _arr(it, "t_start", n), _arr(it, "t_end", n)
    dur = t1 - t0
    comm = _arr(it, "comm_s", n)
    m = {"iterations": n, "final_acc": _last(_arr(it, "accuracy", n)),
         "final_loss": _last(analysis.loss_after_step(run)) if n else math.nan,
         "mean_iter_s": float(np.nanmean(dur)) if n else math.nan,
         "p95_iter_s": float(np.nanpercentile(dur, 95)) if n else math.nan,
         "total_s": _last(t1), "mean_load": float(np.nanmean(_arr(it, "load", n))),
         "stage2_frac": float(np.mean(_arr(it, "stage2", n) > 0)) if n else math.nan,
         "mean_comm_s": float(np.nanmean(comm)) if np.isfinite(comm).any() else math.nan,
         "p95_comm_s": float(np.nanpercentile(comm, 95)) if np.isfinite(comm).any()
         else math.nan,
         "status": run["status"], "wall_s": float(run["attrs"].get("wall_s", math.nan))}
    sl = run.get("slots") or {}
    if "bytes" in sl and len(sl["bytes"]):
        cfg = analysis.config(run)
        slot_s = float(cfg.get("slot_ms", 2.0)) / 1000.0
        m["bytes_per_slot"] = float(np.sum(sl["bytes"]) / len(sl["bytes"]))
        m["throughput_Bps"] = m["bytes_per_slot"] / slot_s
        m["busy_slots"] = int(len(sl["bytes"]))
    part = run["workers"].get("participation")
    if part is not None and len(part) and np.isfinite(part[-1]).all():
        m["participation"] = [float(x) for x in part[-1]]
        m["jain_participation"] = analysis.jain(part[-1])
        m["min_participation"] = float(np.min(part[-1]))
    deliv = analysis.per_worker_total(run, "delivered")
    if deliv is not None:
        m["delivered"] = [int(x) for x in deliv]
        m["jain_delivered"] = analysis.jain(deliv)
    return m


def series(run: dict) -> dict:
    """Per-iteration curves; ``t`` is the training time at the end of each iteration (the
    summed row durations: the one clock, from the start of training)."""
    it, n = run["iterations"], run["n"]
    dur = _arr(it, "t_end", n) - _arr(it, "t_start", n)
    return {"t": np.cumsum(np.nan_to_num(dur)), "acc": _arr(it, "accuracy", n),
            # the model's loss after each step, evaluated or from the workers' train_loss
            "loss": analysis.loss_after_step(run) if n else _arr(it, "loss", n),
            "load": _arr(it, "load", n),
            "comm_s": _arr(it, "comm_s", n)}


def first_time(t: np.ndarray, ok: np.ndarray) -> tuple[float, int]:
    """(t at the first True of ``ok``, its index); (inf, -1) if none."""
    hit = np.flatnonzero(ok)
    return (float(t[hit[0]]), int(hit[0])) if hit.size else (math.inf, -1)


def targets(runs: dict, exact_keys=None) -> dict:
    """Accuracy and loss targets of one (dataset, scenario) from its exact schemes' runs
    (``runs``: scheme label -> run; ``exact_keys``: which keys are exact, default
    :data:`EXACT`)."""
    exact = [runs[k] for k in (EXACT if exact_keys is None else exact_keys) if k in runs]
    best = max(run_metrics(r)["final_acc"] for r in exact)
    losses = []
    for r in exact:
        loss = series(r)["loss"]
        losses.append(loss[max(0, math.ceil(LOSS_TARGET_AT * len(loss)) - 1)])
    return {"acc": ACC_TARGET_FRACTION * best, "loss": float(np.nanmax(losses)),
            "best_exact_acc": best}


def scheme_case(runs: dict, exact_keys=None) -> tuple[dict, dict]:
    """Metrics of every scheme of one (dataset, scenario), with its times to the targets."""
    tg = targets(runs, exact_keys)
    out = {}
    for label, run in runs.items():
        m = run_metrics(run)
        s = series(run)
        m["t_acc"], m["it_acc"] = first_time(s["t"], s["acc"] >= tg["acc"] - 1e-12)
        m["t_loss"], m["it_loss"] = first_time(s["t"], s["loss"] <= tg["loss"] + 1e-12)
        out[label] = m
    return tg, out


def collect(suite, read) -> dict:
    """Every metric of the suite. ``read(cell_name)`` returns the run dict of a cell."""
    schemes: dict = {}
    tgts: dict = {}
    for ds in suite.datasets:
        for scen in suite.scenarios():
            runs = {label: read(f"schemes-{ds.key}-{scen}-{slug(label)}") for label in SCHEMES}
            tg, rows = scheme_case(runs)
            schemes[(ds.key, scen)] = rows
            tgts[(ds.key, scen)] = tg
    scheds = {scheme: {s: run_metrics(read(f"schedulers-{slug(scheme)}-{s}"))
                       for s in SCHEDULERS} for scheme in SCHEDULER_SCHEMES}
    noniid: dict = {}
    for key in suite.noniid_datasets:
        for part in ("sorted", "iid"):
            noniid[(key, part)] = {v: run_metrics(read(f"noniid-{key}-{part}-{slug(v)}"))
                                   for v in NONIID}
    traces = {c.name: run_metrics(read(c.name)) for c in suite.cells() if c.group == "traces"}
    return {"schemes": schemes, "targets": tgts, "schedulers": scheds, "noniid": noniid,
            "traces": traces}

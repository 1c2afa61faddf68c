"""What-if view of runs: the slowdown against a clairvoyant oracle, and per-worker straggler
scores (``mpicode report --workers``, ``straggler_scores.png``).

* ``vs_oracle`` of a run: its mean iteration time (rank 0's evaluation, ``eval_s``, left
  out) over the mean of ``/iterations/oracle_s`` (the time a perfect split of the
  iteration's work, knowing every worker's realised speed, would have taken). NaN (shown
  ``-``) when the log has no ``oracle_s``, or when the oracle's time is under 5% of the
  iteration's (``runs.ORACLE_MIN_SHARE``: then the ratio measures fixed costs).
* straggler score of a worker: the mean over iterations of its time per partition divided by
  the median of that iteration's workers. 1 is a typical worker, 3 one that took three times
  the median. The time of a worker in an iteration is, per task, ``compute_s + delay_s``
  (``/tasks``; ``/workers`` when the log has no task rows), over the partitions it was given;
  a task whose result never arrived counts as at least ``max(delay_s, t_done - t_dispatch)``
  (a lower bound: those iterations are counted in ``censored``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

import mpicode.analysis.runs as runs


def vs_oracle(run) -> float:
    """Mean iteration time / mean ``oracle_s``: the ``vs_oracle`` of ``analysis.summary``
    (NaN without ``/iterations/oracle_s``)."""
    run = runs.read_run(run)
    it = run["iterations"]
    if "oracle_s" not in it or "t_end" not in it or "t_start" not in it:
        return math.nan
    dur = runs.iteration_seconds(run)  # rank 0's evaluation left out
    return runs._ratio(dur[np.isfinite(dur)], it["oracle_s"])


def _from_tasks(run, n: int, N: int) -> tuple[np.ndarray, np.ndarray]:
    tk = run["tasks"]
    spent, parts = np.zeros((n, N)), np.zeros((n, N))
    censored = np.zeros((n, N), bool)
    it = np.asarray(tk["iteration"], np.int64)
    iters = np.asarray(run["iterations"].get("iteration", np.arange(n)), np.int64)[:n]
    order = np.argsort(iters, kind="stable")
    pos = np.clip(np.searchsorted(iters[order], it), 0, max(n - 1, 0))
    rows = np.where(iters[order][pos] == it, order[pos], -1) if n else \
        np.full(len(it), -1, np.int64)  # task rows of iterations past n_done: left out
    w = np.asarray(tk["worker"], np.int64)
    nan = np.full(len(it), np.nan)
    comp = np.asarray(tk.get("compute_s", nan), float)
    delay = np.nan_to_num(np.asarray(tk.get("delay_s", nan), float))
    elapsed = np.asarray(tk.get("t_done", nan), float) - np.asarray(tk.get("t_dispatch", nan),
                                                                       float)
    arrived = np.asarray(tk["cancelled"]) == 0 if "cancelled" in tk else np.isfinite(elapsed)
    # a result: the time the worker spent on it (elapsed when it reported no kernel time);
    # none (cancelled): at least its delay and the time it had run when cancelled
    t = np.where(arrived, np.where(np.isfinite(comp), np.nan_to_num(comp) + delay, elapsed),
                 np.fmax(delay, elapsed))
    p = np.asarray(tk.get("n_partitions", np.ones(len(it))), float)
    ok = (rows >= 0) & (w >= 0) & (w < N) & np.isfinite(t) & (p > 0)
    np.add.at(spent, (rows[ok], w[ok]), t[ok])
    np.add.at(parts, (rows[ok], w[ok]), p[ok])
    censored[rows[ok & ~arrived], w[ok & ~arrived]] = True
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(parts > 0, spent / parts, np.nan), censored


def _from_workers(run, n: int, N: int) -> tuple[np.ndarray, np.ndarray]:
    wk = run["workers"]
    nan = np.full((n, N), np.nan)
    t = np.asarray(wk.get("compute_s", nan), float)[:n] + \
        np.nan_to_num(np.asarray(wk.get("delay_s", nan), float)[:n])
    t = np.where(np.isfinite(t) & (t > 0), t, np.asarray(wk.get("finish_s", nan), float)[:n])
    p = np.asarray(wk.get("partitions", np.ones((n, N))), float)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(p > 0, t / np.where(p > 0, p, 1), t)
    return per, np.zeros((n, N), bool)


def worker_times(run) -> tuple[np.ndarray, np.ndarray]:
    """(time per partition, censored): iteration x worker arrays; NaN where the worker had
    no task; censored where a task's result never arrived (its time is a lower bound)."""
    run = runs.read_run(run)
    n, N = run["n"], int(run["attrs"].get("n_workers", 0))
    if run["tasks"] and "worker" in run["tasks"] and "iteration" in run["tasks"]:
        return _from_tasks(run, n, N)
    return _from_workers(run, n, N)


def straggler_scores(run) -> list[dict]:
    """One row per worker: ``worker``, ``rank``, ``score`` (mean slowdown relative to the
    iteration's median), ``p95_slowdown``, ``slow_frac`` (iterations at >= 1.5x the median),
    ``iterations`` (with a time), ``censored`` (of them, lower bounds)."""
    run = runs.read_run(run)
    t, cens = worker_times(run)
    out = []
    if not t.size:
        return out
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an iteration where nobody worked
        med = np.nanmedian(np.where(np.isfinite(t), t, np.nan), axis=1, keepdims=True)
        slow = t / np.where(med > 0, med, np.nan)
    for w in range(t.shape[1]):
        s = slow[:, w]
        ok = np.isfinite(s)
        out.append({"run": run["path"], "worker": w, "rank": w + 1,
                    "score": float(s[ok].mean()) if ok.any() else math.nan,
                    "p95_slowdown": float(np.percentile(s[ok], 95)) if ok.any() else math.nan,
                    "slow_frac": float(np.mean(s[ok] >= 1.5)) if ok.any() else math.nan,
                    "iterations": int(ok.sum()), "censored": int((cens[:, w] & ok).sum())})
    return out

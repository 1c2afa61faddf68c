"""Slowdown versus ideal, the metric of straggler what-if analysis (Lin et al., OSDI 2025),
read from run logs: ``S``, the fraction of the straggler slowdown a scheme removes, and the
share of the slowdown each worker is responsible for (``mpicode report``,
``mpicode report --workers``, ``slowdown_attribution.png``).

* ``T`` of a run: the sum of its rows' durations ``t_end - t_start``.
* ``T_ideal``: the same sum with each row's ``wait_s`` replaced by ``ideal_s``, the iteration
  replayed by the simulator without straggler delays (:mod:`mpicode.engine.ideal`); the
  coordinator's other phases are not delays and stay.
* ``S = T / T_ideal`` (1: stragglers cost nothing).
* ``removed = (S_uncoded - S) / (S_uncoded - 1)``: the fraction of the straggler slowdown of
  ``uncoded`` in the same scenario that the scheme removes (1: all of it; 0: none; negative:
  it is hurt more than uncoded). The uncoded run of the same scenario is the one among the
  runs given whose configuration equals this run's but for the scheme, its options, the
  tolerance s and the output (:func:`scenario`); without one, ``removed`` is NaN.
* per worker: its excess in an iteration is how far its finish ran past the iteration's
  ideal, ``max(0, finish - ideal_s)``, and its finish is when it would have completed every
  task it was given at the speed it showed (:func:`projected_finish`: a task cancelled at
  the decode counts with its whole drawn delay, so a straggler whose work others covered
  still carries its slowness, and a worker still busy only because the decode came is not
  blamed for it); ``excess_s`` is the sum over iterations and ``slowdown_share`` that sum
  over every worker's, so the shares of a run add to 1.

Only rows below ``n_done`` count (:mod:`mpicode.analysis.runs`); rows without a finite
``ideal_s`` (logs written before it existed) are left out of both sums.
"""

from __future__ import annotations

import math

import numpy as np

import mpicode.analysis.runs as runs
from mpicode.registry import plugin_options

# configuration keys that do not make a different scenario: the scheme and its options, the
# tolerance, where the output goes, how much is printed
NOT_SCENARIO = {"scheme", "stragglers_tolerated", "out", "force", "quiet", "verbose",
                "progress", "log_slots", "resume", "config"}


# T, T_ideal and S of a run are sums over its rows, which the run's summary (its S) computes
# (mpicode.analysis.runs); the names here are the ones the report and the studies use
totals, slowdown = runs.ideal_totals, runs.ideal_slowdown


def removed(s: float, s_uncoded: float) -> float:
    """The fraction of uncoded's straggler slowdown removed: (S_u - S) / (S_u - 1); NaN when
    uncoded was not slowed (S_u <= 1) or either is unknown."""
    if not (math.isfinite(s) and math.isfinite(s_uncoded)) or s_uncoded <= 1.0:
        return math.nan
    return (s_uncoded - s) / (s_uncoded - 1.0)


def _scheme_options() -> set[str]:
    return {o.name for o in plugin_options("scheme")}


def scenario(run) -> tuple:
    """What makes two runs the same scenario: their configuration without the scheme, its
    options, s and the output (a sorted tuple of the rest), plus N and K."""
    run = runs.read_run(run)
    skip = NOT_SCENARIO | _scheme_options()
    conf = runs.config(run)
    a = run["attrs"]
    items = tuple(sorted((k, repr(v)) for k, v in conf.items() if k not in skip))
    return items + (("N", int(a.get("n_workers", 0))), ("K", int(a.get("n_partitions", 0))))


def add_removed(runs_read: list[dict], rows: list[dict]) -> None:
    """Set ``removed`` in each summary row (``S`` must be there): against the ``uncoded`` run
    of the same scenario among ``runs_read`` (the first one, if several)."""
    base: dict[tuple, float] = {}
    keys = [scenario(r) for r in runs_read]
    for k, row in zip(keys, rows, strict=True):
        if row.get("scheme") == "uncoded":
            base.setdefault(k, row.get("S", math.nan))
    for k, row in zip(keys, rows, strict=True):
        row["removed"] = removed(row.get("S", math.nan), base.get(k, math.nan))


def _partition_cost(comp, n, done) -> float:
    """The iteration's compute seconds per partition: the median over its arrived tasks."""
    ok = done & np.isfinite(comp) & (n > 0)
    return float(np.median(comp[ok] / n[ok])) if ok.any() else 0.0


def projected_finish(tasks: dict, rows: np.ndarray, n_rows: int, N: int) -> np.ndarray:
    """iterations x workers: when each worker would have finished every task it was given,
    in dispatch order at the speed it showed: a task that arrived finished when rank 0 had
    it (``t_done``, on the same clock as ``ideal_s``); one that was cancelled would have run,
    after what came before it, its partitions at the iteration's median compute cost plus
    its whole drawn ``delay_s``. -inf: no task."""
    finish = np.full((n_rows, N), -np.inf)
    w = np.asarray(tasks["worker"], np.int64)
    nan = np.full(len(w), np.nan)
    disp = np.nan_to_num(np.asarray(tasks.get("t_dispatch", nan), float))
    tdone = np.asarray(tasks.get("t_done", nan), float)
    comp = np.asarray(tasks.get("compute_s", nan), float)
    delay = np.nan_to_num(np.asarray(tasks.get("delay_s", nan), float))
    n = np.asarray(tasks.get("n_partitions", np.ones(len(w))), float)
    done = (np.asarray(tasks["cancelled"]) == 0) if "cancelled" in tasks else np.isfinite(comp)
    ok = (rows >= 0) & (w >= 0) & (w < N)
    order = np.lexsort((np.arange(len(w)), disp, w, rows))   # by row, worker, dispatch
    cost = {}
    for r in np.unique(rows[ok]):
        sel = rows == r
        cost[int(r)] = _partition_cost(comp[sel], n[sel], done[sel])
    key, f = (-1, -1), 0.0
    for j in order:
        if not ok[j]:
            continue
        r, wk = int(rows[j]), int(w[j])
        if (r, wk) != key:
            key, f = (r, wk), 0.0
        if done[j] and np.isfinite(tdone[j]):   # it arrived: when rank 0 had it
            f = max(f, tdone[j])
        else:                                    # cancelled: as long as it would have run
            f = max(f, disp[j]) + n[j] * cost[r] + delay[j]
        finish[r, wk] = f
    return finish


def worker_excess(run) -> np.ndarray:
    """iterations x workers: how far each worker's projected finish (:func:`projected_finish`)
    ran past its iteration's ideal (seconds; NaN where the row has no ``ideal_s``, 0 where
    the worker had no task). A run without task rows uses ``/workers/finish_s``."""
    run = runs.read_run(run)
    n, N = run["n"], int(run["attrs"].get("n_workers", 0))
    it = run["iterations"]
    ideal = np.asarray(it.get("ideal_s", np.full(n, np.nan)), float)[:n]
    tk = run["tasks"]
    if tk and "worker" in tk and "iteration" in tk:
        iters = np.asarray(it.get("iteration", np.arange(n)), np.int64)[:n]
        pos = {int(x): i for i, x in enumerate(iters)}
        rows = np.array([pos.get(int(x), -1) for x in np.asarray(tk["iteration"])], np.int64)
        finish = projected_finish(tk, rows, n, N)
    elif run["workers"] and "finish_s" in run["workers"]:
        f = np.asarray(run["workers"]["finish_s"], float)[:n]
        finish = np.where(np.isfinite(f), f, -np.inf)
    else:
        finish = np.full((n, N), -np.inf)
    excess = np.maximum(finish - ideal[:, None], 0.0)
    excess[~np.isfinite(ideal)] = np.nan
    return excess


def attribution(run) -> list[dict]:
    """One row per worker: ``worker``, ``rank``, ``excess_s`` (its time past the
    iterations' ideal, summed) and ``slowdown_share`` (that over every worker's)."""
    run = runs.read_run(run)
    ex = worker_excess(run)
    N = ex.shape[1] if ex.ndim == 2 else 0
    per = np.nansum(ex, axis=0) if ex.size else np.zeros(N)
    total = float(per.sum())
    return [{"run": run["path"], "worker": w, "rank": w + 1, "excess_s": float(per[w]),
             "slowdown_share": float(per[w] / total) if total > 0 else math.nan}
            for w in range(N)]

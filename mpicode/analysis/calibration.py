"""Fitting a cost profile (:mod:`mpicode.engine.costs`) from measurements (pure: numpy only).

``mpicode calibrate`` measures, on the MPI runtime of this machine, a ping-pong over message
sizes and short no-delay runs; this module turns those into the profile's options:

* ``msg_latency_s``, ``msg_bandwidth``: a least-squares line (relative errors) through the
  ping-pong's one-way times against bytes (intercept, 1 / slope);
* ``kernel_elements_per_s``: the workers' measured compute per partition (median), less the
  model's fixed ``KERNEL_OVERHEAD_S``, against the partition's rows x features;
* ``dispatch_s``: what the runs' waits hold beyond compute and the message: the mean
  ``wait_s`` of the runs minus the model's compute of the slowest stage-1 task and the
  message cost, less the model's polling delay (``poll_s``). It takes in everything the
  model has no other term for (the model's broadcast, the TASK message, the worker noticing
  it, the spread of the workers' compute), so that a calibrated no-delay simulation waits
  as long as the real run on average;
* ``redispatch_s``: the same for the tasks decided during an iteration (two-stage's stage 2
  in the calibration runs): the median time from decision to rank 0 noticing the result,
  less the model's compute, message and polling delay. One worker is woken, not all at
  once: on 9 ranks sharing 2 cores this is ~25% below ``dispatch_s``. None when the runs had
  no such task;
* ``rank0_send_s``, ``rank0_recv_s``: rank 0's own cost of sending and of receiving one
  message (``calibrate`` measures them: :func:`mpicode.mpi.floor.rank0_messages`);
* ``rank0_table``: rank 0's in-process CPU model per policy and action
  (:mod:`mpicode.analysis.rank0_fit`), and ``rank0_factor``: the ratio of the wall time
  rank 0's actions took in the runs (each one measured) to what the table predicts for the
  same work, summed (docs/design.md §2.6);
* ``coord_log_s``, ``coord_decode_s``, ``coord_update_s``, ``coord_eval_s``: the mean of the
  rows' phases of the same names (``eval_s`` over evaluated rows only), less what the
  coordinator cost model already charges for them (the bookkeeping, the scheme's decode,
  its close and the rows), so that nothing is counted twice: what is left is the part that
  depends on the model's size (combining gradients, the step, the evaluation).

(``poll_s``, rank 0's polling interval, is measured by ``calibrate`` itself: its longest
backoff sleep plus the sleep's overshoot.) The first
``skip`` iterations of each run (warm-up) are left out.
"""

from __future__ import annotations

import numpy as np

from mpicode.engine import rank0_reference as ref
from mpicode.engine.costs import KERNEL_OVERHEAD_S, CostModel, ModelCost


def fit_message(sizes, one_way_s) -> tuple[float, float | None]:
    """(latency s, bandwidth bytes/s or None) of the line ``t = latency + bytes / bw``."""
    x = np.asarray(sizes, float)
    y = np.asarray(one_way_s, float)
    if x.size < 2 or np.ptp(x) == 0:
        return float(max(0.0, np.median(y))), None
    # relative errors (weights 1/t): the small messages set the latency, the large ones
    # the bandwidth
    slope, icpt = np.polyfit(x, y, 1, w=1.0 / np.maximum(y, 1e-9))
    bw = 1.0 / slope if slope > 0 else None
    return float(max(0.0, icpt)), (float(bw) if bw is not None else None)


def message_s(latency: float, bandwidth: float | None, nbytes: float) -> float:
    return latency + (nbytes / bandwidth if bandwidth else 0.0)


def fit_kernel(tasks: dict, rows: float, features: int, skip: int = 2) -> float:
    """Elements per second of the fused kernel from the tasks' ``compute_s`` per partition."""
    keep = (tasks["iteration"] >= skip) & (tasks["n_partitions"] > 0) & \
        np.isfinite(tasks["compute_s"])
    per = tasks["compute_s"][keep] / tasks["n_partitions"][keep]
    t = max(float(np.median(per)) - KERNEL_OVERHEAD_S, 1e-9)
    return rows * features / t


def fit_redispatch(runs_tasks: list[dict], cost: float, msg: float, poll_s: float,
                   skip: int = 2) -> float | None:
    """``redispatch_s`` from the tasks decided after their iteration began (None if none)."""
    extra, before = [], []
    for tk in runs_tasks:
        keep = ((tk["iteration"] >= skip) & (tk["t_dispatch"] > 0) & (tk["t_done"] > 0)
                & np.isfinite(tk["t_done"]))
        if "cancelled" in tk:
            keep &= tk["cancelled"] == 0
        if not keep.any():
            continue
        b = tk["n_partitions"][keep] * cost + msg
        delay = tk["delay_s"][keep] if "delay_s" in tk else 0.0
        extra.append(tk["t_done"][keep] - tk["t_dispatch"][keep] - delay - b)
        before.append(b)
    if not extra:
        return None
    return fit_dispatch(float(np.median(np.concatenate(extra))),
                        float(np.median(np.concatenate(before))), poll_s)


def fit_dispatch(extra: float, before: float, poll_s: float) -> float:
    """The dispatch latency d that makes a modelled result, landing ``d + before`` after
    the iteration began and seen at rank 0's next poll, arrive ``extra + before`` after it:
    what the wait held beyond compute and message, less the model's own polling delay."""
    cm = CostModel(poll_s=poll_s)
    d = max(0.0, extra)
    for _ in range(4):  # a fixed point: the polling delay depends (a little) on d
        t = d + before
        d = max(0.0, extra - (cm.noticed(0.0, t) - t))
    return d


def _iterations(actions: list, skip: int) -> list[list]:
    """A run's recorded actions cut into iterations (each from its ``begin`` to the next;
    the bookkeeping ``log`` that ends one belongs to it), the first ``skip`` left out."""
    its: list[list] = []
    for a in actions:
        if a[1].call == "begin" or not its:
            its.append([])
        its[-1].append(a)
    return its[skip:]


def fit_rank0(actions_per_run: list[list], table: dict, send_s: float, recv_s: float,
              skip: int = 2) -> tuple[float, dict]:
    """(``rank0_factor``, the model's mean per-iteration charges of the ``log``, ``decode``
    and ``update`` phases at that factor) from the runs' recorded actions: the factor is the
    summed wall time of every action over the summed CPU the table predicts for them."""
    m = ModelCost(table)
    wall = pred = 0.0
    its = [it for acts in actions_per_run for it in _iterations(acts, skip)]
    for it in its:
        for policy, work, _, w in it:
            wall += w
            pred += m.cpu_s(policy, work)
    factor = wall / pred if pred > 0 else 1.0
    m = ModelCost(table, factor, send_s, recv_s)
    phase = {"log": "log", "decode": "decode", "end": "update", "rows": "update"}
    sums = {"log": 0.0, "decode": 0.0, "update": 0.0}
    for it in its:
        for policy, work, _, _ in it:
            if work.call in phase:
                sums[phase[work.call]] += m.charge(policy, work)
    n = max(1, len(its))
    return factor, {k: v / n for k, v in sums.items()}


def fit_profile(runs: list[dict], pingpong: dict, *, rows: float, features: int,
                result_bytes: int, skip: int = 2, poll_s: float = 0.0,
                actions: list | None = None, rank0_messages=None,
                rank0_table: dict | None = None) -> tuple[dict, dict]:
    """(profile options, calibration record) from ``runs`` (each ``{"rows": {...},
    "tasks": {...}}``, column arrays as in the run log), ``pingpong`` (``{"bytes": [...],
    "one_way_s": [...]}``) and, for rank 0's cost model (§2.6), the runs' recorded
    ``actions``, ``rank0_messages`` (send_s, recv_s) and the fitted ``rank0_table`` (None:
    the reference one)."""
    lat, bw = fit_message(pingpong["bytes"], pingpong["one_way_s"])
    msg = message_s(lat, bw, result_bytes)
    eps = float(np.median([fit_kernel(r["tasks"], rows, features, skip) for r in runs]))
    cost = KERNEL_OVERHEAD_S + rows * features / eps
    phases = {k: [] for k in ("log_s", "decode_s", "update_s", "eval_s")}
    extra = []
    for r in runs:
        rw = {k: np.asarray(v)[skip:] for k, v in r["rows"].items()}
        first = r["tasks"]["t_dispatch"] == 0  # stage 1: its largest task
        share = float(np.max(r["tasks"]["n_partitions"][first])) if first.any() else 0.0
        extra.append(fit_dispatch(float(np.mean(rw["wait_s"])) - share * cost - msg,
                                  share * cost + msg, poll_s))
        for k in phases:
            x = rw[k][rw[k] > 0] if k == "eval_s" else rw[k]
            phases[k].append(float(np.mean(x)) if x.size else 0.0)
    redispatch = fit_redispatch([r["tasks"] for r in runs], cost, msg, poll_s, skip)
    values = {"dispatch_s": max(0.0, float(np.mean(extra))), "redispatch_s": redispatch,
              "msg_latency_s": lat,
              "poll_s": poll_s,
              "msg_bandwidth": bw, "kernel_elements_per_s": eps,
              **{f"coord_{k}": float(np.mean(v)) for k, v in phases.items()}}
    record = {"pingpong_bytes": [int(b) for b in pingpong["bytes"]],
              "pingpong_one_way_s": [float(t) for t in pingpong["one_way_s"]],
              "result_bytes": int(result_bytes), "message_s": msg, "partition_cost_s": cost,
              "dispatch_s_per_run": extra, "rows_per_partition": float(rows),
              "features": int(features)}
    if actions:
        import json

        send_s, recv_s = rank0_messages or (ref.SEND_S, ref.RECV_S)
        table = rank0_table if rank0_table is not None else ref.TABLE
        factor, charged = fit_rank0(actions, table, send_s, recv_s, skip)
        for k in ("log", "decode", "update"):  # what the model charges is not a constant
            values[f"coord_{k}_s"] = max(0.0, values[f"coord_{k}_s"] - charged[k])
        values.update(rank0_factor=factor, rank0_send_s=send_s, rank0_recv_s=recv_s)
        if rank0_table is not None:
            values["rank0_table"] = json.dumps(rank0_table, sort_keys=True,
                                               separators=(",", ":"))
        record.update({f"rank0_charged_{k}_s": v for k, v in charged.items()},
                      rank0_table_fitted=rank0_table is not None)
    return values, record

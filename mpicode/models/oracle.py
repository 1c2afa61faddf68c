"""The clairvoyant oracle: how long an iteration would take with a perfect split (pure).

It knows, for the iteration, every worker's realised seconds per partition c_i (compute plus
its delay rate, from :meth:`StragglerModel.worker_profile`) and its one-off seconds d_i (a
per-iteration delay, one task's overhead), and splits the K partitions so that everyone
finishes together:

* continuous: min T with sum_i max(0, T - d_i) / c_i >= K (work divisible at will);
* at partition granularity: min T with sum_i floor(max(0, T - d_i) / c_i) >= K, i.e. the K-th
  smallest of the times d_i + k c_i (k >= 1) at which worker i would finish its k-th partition.

Neither counts the uplink: it bounds the computing phase. Logged per iteration as
``/iterations/oracle_s`` and ``/iterations/oracle_part_s``; ``mpicode report`` shows
``vs_oracle`` = mean iteration time / mean ``oracle_s``.
"""

from __future__ import annotations

import math

import numpy as np


def _checked(c, d, active):
    c = np.asarray(c, np.float64)
    d = np.asarray(d, np.float64)
    if active is not None:
        keep = np.asarray(active, bool)
        c, d = c[keep], d[keep]
    if not len(c):
        raise ValueError("oracle: no active worker")
    if np.any(c < 0) or np.any(~np.isfinite(c)) or np.any(~np.isfinite(d)):
        raise ValueError("oracle: c must be finite and >= 0, d finite")
    return c, np.maximum(d, 0.0)


def continuous(c, d, K: int, active=None) -> float:
    """min T with sum_i max(0, T - d_i) / c_i >= K; water-filling over workers by d_i."""
    c, d = _checked(c, d, active)
    if K <= 0:
        return 0.0
    if np.any(c == 0):  # an infinitely fast worker does everything once it can start
        return float(d[c == 0].min())
    order = np.argsort(d, kind="stable")
    d, inv = d[order], 1.0 / c[order]
    T = (K + np.cumsum(d * inv)) / np.cumsum(inv)  # T if exactly the first m workers work
    nxt = np.append(d[1:], math.inf)
    m = int(np.argmax(T <= nxt))  # the first m where the next worker would start too late
    return float(T[m])


def granular(c, d, K: int, active=None) -> float:
    """min T with sum_i floor(max(0, T - d_i) / c_i) >= K: the K-th smallest d_i + k c_i."""
    c, d = _checked(c, d, active)
    if K <= 0:
        return 0.0
    if np.any(c == 0):
        return float(d[c == 0].min())
    hi = continuous(c, d, K) + float(c.max())  # every worker that works gains a partition
    while True:
        n = np.floor(np.maximum(hi - d, 0.0) / c).astype(np.int64)
        if n.sum() >= K:
            break
        hi += float(c.max())  # rounding: floor(x) may lose one right at an integer
    w = np.repeat(np.arange(len(c)), n)
    k = np.arange(len(w)) - np.repeat(np.cumsum(n) - n, n) + 1  # 1..n_i for each worker
    times = d[w] + k * c[w]
    return float(np.partition(times, K - 1)[K - 1])


SMALL = 32  # up to this many workers the oracle runs in plain Python (numpy's per-call cost
# was ~0.2 ms a row at N = 4, rank 0's largest bookkeeping item); same operations, same values


def _small(c, d, K: int, active) -> tuple[float, float]:
    """(continuous, granular) as :func:`continuous` and :func:`granular` compute them, in
    Python floats, operation for operation (a stable sort, sequential sums): bit-identical."""
    c, d = np.asarray(c, np.float64).tolist(), np.asarray(d, np.float64).tolist()
    if active is not None:
        c = [x for x, a in zip(c, active, strict=True) if a]
        d = [x for x, a in zip(d, active, strict=True) if a]
    if not c:
        raise ValueError("oracle: no active worker")
    if not all(x >= 0.0 and math.isfinite(x) for x in c) or not all(map(math.isfinite, d)):
        raise ValueError("oracle: c must be finite and >= 0, d finite")
    d = [x if x > 0.0 else 0.0 for x in d]  # (the checks of _checked, in Python)
    if K <= 0:
        return 0.0, 0.0
    if 0.0 in c:
        t = min(di for ci, di in zip(c, d, strict=True) if ci == 0.0)
        return t, t
    order = sorted(range(len(d)), key=d.__getitem__)
    s_di = s_i = 0.0
    cont = math.nan
    for j, i in enumerate(order):
        inv = 1.0 / c[i]
        s_di += d[i] * inv
        s_i += inv
        cont = (K + s_di) / s_i
        if cont <= (d[order[j + 1]] if j + 1 < len(order) else math.inf):
            break
    cmax = max(c)
    hi = cont + cmax
    while True:
        n = [int(math.floor(max(hi - di, 0.0) / ci)) for ci, di in zip(c, d, strict=True)]
        if sum(n) >= K:
            break
        hi += cmax
    times = sorted(di + k * ci for ci, di, ni in zip(c, d, n, strict=True)
                   for k in range(1, ni + 1))
    return cont, times[K - 1]


def oracle_times(stragglers, iteration: int, n_partitions: int, partition_cost: float,
                 active=None) -> tuple[float, float]:
    """(continuous, granular) oracle seconds of one iteration under a straggler model."""
    if partition_cost is None or not math.isfinite(partition_cost):
        return math.nan, math.nan
    c, d = stragglers.worker_profile(iteration, partition_cost)
    if len(c) <= SMALL:
        return _small(c, d, n_partitions, active)
    return continuous(c, d, n_partitions, active), granular(c, d, n_partitions, active)


def measured_partition_cost(scheme, info) -> float:
    """Compute seconds per partition measured by the workers in this iteration (real-time
    MPI runs, where the kernel's cost is not a model parameter); NaN if none measured."""
    comp, parts = 0.0, 0
    for tid, (c, _) in info.measured.items():
        task = scheme.tasks.get(tid)
        n = len(task.computed) if task is not None else 0  # (a time limit: those done)
        if n and math.isfinite(c):
            comp += c
            parts += n
    return comp / parts if parts else math.nan


def oracle_row(stragglers, iteration: int, scheme, partition_cost=None, info=None) -> dict:
    """``{"oracle_s", "oracle_part_s"}`` for the run log; ``partition_cost`` None: measured."""
    if partition_cost is None and info is not None:
        partition_cost = measured_partition_cost(scheme, info)
    try:
        cont, part = oracle_times(stragglers, iteration, scheme.K, partition_cost,
                                  scheme.active)
    except ValueError:  # nobody active: no oracle
        cont = part = math.nan
    return {"oracle_s": cont, "oracle_part_s": part}

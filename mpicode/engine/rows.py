"""Per-iteration bookkeeping shared by the MPI coordinator and the simulator (pure).

Both drivers fill an :class:`IterationInfo` while they run an iteration, then call
:func:`combine` to form the decoded gradient and :func:`collect_rows` to build the rows of the
run log, so an MPI run and a simulated run log exactly the same fields the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class IterationInfo:
    n_workers: int
    task_index: np.ndarray = None          # tasks dispatched so far, per worker
    delay: dict = field(default_factory=dict)      # tid -> injected delay drawn (s)
    measured: dict = field(default_factory=dict)   # tid -> (compute_s, delay_s) reported
    msgs: dict = field(default_factory=dict)       # tid -> (gradient, loss, metric sums)
    ready: dict = field(default_factory=dict)      # tid -> time its message was ready to go
    cut: dict = field(default_factory=dict)        # tid -> partitions done, if a limit cut it
    stale: int = 0
    cancelled: int = 0
    msg_bytes: int = 0
    n_msgs: int | None = None  # messages counted in virtual time (train --delay-mode virtual)

    def __post_init__(self):
        if self.task_index is None:
            self.task_index = np.zeros(self.n_workers, np.int64)

    def next_index(self, worker: int) -> int:
        k = int(self.task_index[worker])
        self.task_index[worker] += 1
        return k


def combine(dec, msgs: dict, dim: int, out: np.ndarray | None = None,
            scratch: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """Decoded gradient sum, loss sum and metric sum: sum over chosen tasks of weight *
    message, the same weights for all three (a message is ``(g, loss, metric)``; one without
    a metric, ``(g, loss)``, decodes to a NaN metric).

    ``out`` and ``scratch`` (``dim``-vectors) are reused instead of allocated: at 10^6
    parameters the temporaries' page faults cost more than the sums. The values are those of
    ``zeros(dim) + w1 g1 + w2 g2 + ...`` in that order, bit for bit (0 + x is x)."""
    gsum = np.zeros(dim) if out is None else out
    lsum = msum = 0.0
    first = True
    for tid, wgt in dec.weights.items():
        msg = msgs[tid]
        g = msg[0]
        if first:
            np.multiply(g, wgt, out=gsum)
            first = False
        elif wgt == 1:
            gsum += g
        else:
            tmp = np.empty(dim) if scratch is None else scratch
            gsum += np.multiply(g, wgt, out=tmp)
        lsum += wgt * msg[1]
        msum += wgt * (msg[2] if len(msg) > 2 else math.nan)
    if first and out is not None:
        gsum.fill(0.0)
    return gsum, lsum, msum


def _bytes_up(scheme, info: IterationInfo) -> int:
    """Uplink bytes of the iteration: one message per computed task. In virtual time the
    count is the virtual model's (``n_msgs``), not the messages that happened to arrive by
    the wall clock, so that ``train --delay-mode virtual`` logs the simulator's value."""
    if info.n_msgs is not None:
        return info.msg_bytes * info.n_msgs
    if info.msgs:
        return info.msg_bytes * len(info.msgs)
    return info.msg_bytes * sum(t.state == "done" for t in scheme.tasks.values())


TASK_KEYS = ("iteration", "worker", "stage", "n_partitions", "first_partition", "t_dispatch",
             "t_done", "used", "cancelled", "compute_s", "delay_s", "t_ready", "n_computed")


def collect_rows(scheme, it: int, info: IterationInfo, *, t_start: float, t_end: float,
                 t_wait: float, decode_s: float, dec, summary: dict, grad_norm: float,
                 oracle: dict | None = None) -> dict:
    """The iteration's rows for the run log: ``row`` (with the scheme's ``log_fields``),
    ``workers`` (N-vectors), ``tasks``, and ``notes`` (the scheme's ``log_notes``).
    ``oracle``: the ``oracle_s``/``oracle_part_s`` of :func:`mpicode.models.oracle.oracle_row`
    and the ``ideal_s`` of :class:`mpicode.engine.ideal.IdealReplay` (NaN when the driver
    gives none)."""
    N = info.n_workers
    # communication time: from the moment every used message was ready to decodability
    ready = [info.ready[t.task_id] for t in scheme.tasks.values()
             if t.used and t.task_id in info.ready]
    comm_s = t_wait - max(ready) if ready else math.nan
    row = {"comm_s": comm_s, "iteration": it, "t_start": t_start, "t_end": t_end, "wait_s": t_wait,
           "decode_s": decode_s, "coverage": dec.coverage, "load": summary["load"],
           "stage2": summary.get("stage2", 0), "n_stage2": summary.get("n_stage2", 0),
           "n_cancelled": info.cancelled, "n_stale": info.stale,
           "bytes_up": _bytes_up(scheme, info),
           "grad_norm": grad_norm,
           "oracle_s": math.nan, "oracle_part_s": math.nan, "ideal_s": math.nan,
           **(oracle or {})}
    for k in scheme.log_fields:  # the scheme's own per-iteration fields (from end())
        if k in summary:
            row[k] = summary[k]
    # one pass over the tasks into columns, then per-worker sums with numpy (10^4 tasks an
    # iteration in the simulator: no per-task dict work)
    nan2 = (math.nan, math.nan)
    cols = list(zip(*[
        (t.worker, t.stage, t.n, int(t.partitions[0]) if t.n else -1, t.t_dispatch, t.t_done,
         int(t.used), t.state == "cancelled", t.state == "done",
         *info.measured.get(t.task_id, nan2), info.delay.get(t.task_id, 0.0),
         info.ready.get(t.task_id, math.nan))
        for t in scheme.tasks.values()], strict=True)) or [()] * 13
    (w, stage, n, first, t_disp, t_done, used, canc, done, comp, dl, delay, rdy) = (
        np.asarray(c) for c in cols)
    w = w.astype(np.int64)
    done = done.astype(bool)
    workers = {"stage": np.zeros(N, np.int8), "partitions": np.zeros(N, np.int32),
               "compute_s": np.zeros(N), "delay_s": np.zeros(N),
               "finish_s": np.full(N, np.nan), "used": np.zeros(N, np.int8),
               "active": np.asarray(scheme.active, np.int8)}
    if len(w):
        first_task = np.unique(w, return_index=True)  # stage of each worker's first task
        workers["stage"][first_task[0]] = np.asarray(stage)[first_task[1]]
        np.add.at(workers["partitions"], w, n.astype(np.int32))
        np.add.at(workers["compute_s"], w[done], comp[done])
        np.add.at(workers["delay_s"], w[done], dl[done])
        np.fmax.at(workers["finish_s"], w[done], t_done[done])
        np.maximum.at(workers["used"], w, used.astype(np.int8))
    tasks = {"iteration": np.full(len(w), it, np.int64), "worker": w, "stage": stage,
             "n_partitions": n, "first_partition": first, "t_dispatch": t_disp,
             "t_done": t_done, "used": used, "cancelled": canc.astype(np.int8),
             "compute_s": comp, "delay_s": delay, "t_ready": rdy,
             # partitions the message sums: n_partitions unless a time limit cut it short
             "n_computed": np.asarray([len(t.computed) for t in scheme.tasks.values()],
                                      np.int64)}
    return {"row": row, "workers": workers, "tasks": tasks, "notes": list(scheme.log_notes)}



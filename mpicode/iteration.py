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
    msgs: dict = field(default_factory=dict)       # tid -> (gradient sum, loss sum)
    ready: dict = field(default_factory=dict)      # tid -> time its message was ready to go
    stale: int = 0
    cancelled: int = 0
    msg_bytes: int = 0

    def __post_init__(self):
        if self.task_index is None:
            self.task_index = np.zeros(self.n_workers, np.int64)

    def next_index(self, worker: int) -> int:
        k = int(self.task_index[worker])
        self.task_index[worker] += 1
        return k


def combine(dec, msgs: dict, dim: int) -> tuple[np.ndarray, float]:
    """Decoded gradient sum and loss sum: sum over chosen tasks of weight * message."""
    gsum = np.zeros(dim)
    lsum = 0.0
    for tid, wgt in dec.weights.items():
        g, loss = msgs[tid]
        gsum += wgt * g
        lsum += wgt * loss
    return gsum, lsum


TASK_KEYS = ("iteration", "worker", "stage", "n_partitions", "first_partition", "t_dispatch",
             "t_done", "used", "cancelled", "compute_s", "delay_s", "t_ready")


def collect_rows(scheme, it: int, info: IterationInfo, *, t_start: float, t_end: float,
                 t_wait: float, decode_s: float, dec, summary: dict, grad_norm: float) -> dict:
    """The iteration's rows for the run log: ``row``, ``workers`` (N-vectors), ``tasks``."""
    N = info.n_workers
    # communication time: from the moment every used message was ready to decodability
    ready = [info.ready[t.task_id] for t in scheme.tasks.values()
             if t.used and t.task_id in info.ready]
    comm_s = t_wait - max(ready) if ready else math.nan
    row = {"comm_s": comm_s, "iteration": it, "t_start": t_start, "t_end": t_end, "wait_s": t_wait,
           "decode_s": decode_s, "coverage": dec.coverage, "load": summary["load"],
           "stage2": summary.get("stage2", 0), "n_stage2": summary.get("n_stage2", 0),
           "n_cancelled": info.cancelled, "n_stale": info.stale,
           "bytes_up": info.msg_bytes * len(info.msgs) if info.msgs else
           info.msg_bytes * sum(t.state == "done" for t in scheme.tasks.values()),
           "grad_norm": grad_norm}
    workers = {"stage": np.zeros(N, np.int8), "partitions": np.zeros(N, np.int32),
               "compute_s": np.zeros(N), "delay_s": np.zeros(N),
               "finish_s": np.full(N, np.nan), "used": np.zeros(N, np.int8)}
    tk = {k: [] for k in TASK_KEYS}
    for task in scheme.tasks.values():
        i = task.worker
        if workers["stage"][i] == 0:
            workers["stage"][i] = task.stage
        workers["partitions"][i] += task.n
        comp, dl = info.measured.get(task.task_id, (math.nan, math.nan))
        if task.state == "done":
            workers["compute_s"][i] += comp
            workers["delay_s"][i] += dl
            workers["finish_s"][i] = np.fmax(workers["finish_s"][i], task.t_done)
        workers["used"][i] |= task.used
        vals = (it, i, task.stage, task.n, int(task.partitions[0]) if task.n else -1,
                task.t_dispatch, task.t_done, int(task.used), int(task.state == "cancelled"),
                comp, info.delay.get(task.task_id, 0.0),
                info.ready.get(task.task_id, math.nan))
        for k, v in zip(TASK_KEYS, vals, strict=True):
            tk[k].append(v)
    return {"row": row, "workers": workers, "tasks": {k: np.asarray(v) for k, v in tk.items()}}

"""``mpicode bench runlog [--json] [--quick]``: rank 0's cost of logging one iteration.

Times :meth:`mpicode.io.runlog.RunLog.append` (serial, no MPI) for rows shaped like a
no-straggler uncoded run's (every ``/iterations`` field, the ``/workers`` fields of an ideal
channel, N task rows an iteration) at the demo size (N = 4, K = 16) and at N = 64, with the
default ``--flush-every`` (1 s) and with 0 (a flush every iteration), back to back and paced
like the demo's 3.6 ms iterations (so that the time-based writes fall due). Reports the
median and the mean (the amortised cost, block writes included) per append, in µs. The file goes to
a temporary directory. Wall clock: run it on a quiet machine.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import time

import numpy as np

from mpicode.io.runlog import RunLog


def _rows(N: int, K: int, it: int):
    row = {"iteration": it, "t_start": 0.01 * it, "t_end": 0.01 * it + 0.0036, "loss": 0.5,
           "test_loss": 0.5, "accuracy": 0.8, "train_accuracy": 0.8, "coverage": 1.0,
           "load": 1.0, "stage2": 0, "n_stage2": 0, "wait_s": 0.003, "decode_s": 1e-5,
           "bytes_up": 800 * N, "n_cancelled": 0, "n_stale": 0, "grad_norm": 0.1,
           "comm_s": 1e-4}
    workers = {"stage": np.ones(N, np.int8), "partitions": np.full(N, K // N, np.int32),
               "compute_s": np.full(N, 1e-3), "delay_s": np.zeros(N),
               "finish_s": np.full(N, 2e-3), "used": np.ones(N, np.int8),
               "active": np.ones(N, np.int8)}
    w = np.arange(N, dtype=np.int64)
    tasks = {"iteration": np.full(N, it, np.int64), "worker": w, "stage": np.ones(N, np.int8),
             "n_partitions": np.full(N, K // N), "first_partition": w * (K // N),
             "t_dispatch": np.zeros(N), "t_done": np.full(N, 2e-3), "used": np.ones(N, np.int8),
             "cancelled": np.zeros(N, np.int8), "compute_s": np.full(N, 1e-3),
             "delay_s": np.zeros(N), "t_ready": np.full(N, 2e-3)}
    return row, workers, tasks


def measure(N: int, K: int, appends: int, flush_every: float | None, pace: float = 0.0) -> dict:
    kw = {}
    if flush_every is not None and "flush_every" in inspect.signature(RunLog).parameters:
        kw["flush_every"] = flush_every
    rows = [_rows(N, K, i) for i in range(appends)]
    with tempfile.TemporaryDirectory() as d:
        log = RunLog(os.path.join(d, "bench.h5"), config_json="{}", n_workers=N,
                     n_partitions=K, **kw)
        ts = np.empty(appends)
        for i, (row, workers, tasks) in enumerate(rows):
            if pace:
                time.sleep(pace)  # an iteration's own time: the flushes come by the clock
            t0 = time.perf_counter()
            log.append(row, workers, tasks)
            ts[i] = time.perf_counter() - t0
        t0 = time.perf_counter()
        log.close()
        close_s = time.perf_counter() - t0
    return {"N": N, "K": K, "flush_every": flush_every if kw else "n/a (old API)",
            "appends": appends, "pace_ms": pace * 1e3, "median_us": float(np.median(ts) * 1e6),
            "mean_us": float(ts.mean() * 1e6), "p99_us": float(np.percentile(ts, 99) * 1e6),
            "close_ms": close_s * 1e3}


def run(as_json: bool = False, quick: bool = False) -> list[dict]:
    appends = 300 if quick else 3000
    out = [measure(N, 4 * N, appends, fe) for N in (4, 64) for fe in (1.0, 0.0)]
    # paced like the demo's 3.6 ms iterations, so the mean includes the time-based writes
    out += [measure(N, 4 * N, appends // 3, 1.0, pace=0.0036) for N in (4, 64)]
    if as_json:
        print(json.dumps(out, indent=1))
        return out
    print(f"{'N':>4} {'K':>4} {'flush_every':>12} {'pace_ms':>8} {'appends':>8} "
          f"{'median_us':>10} {'mean_us':>9} {'p99_us':>9} {'close_ms':>9}")
    for r in out:
        print(f"{r['N']:>4} {r['K']:>4} {str(r['flush_every']):>12} {r['pace_ms']:>8.1f} "
              f"{r['appends']:>8} "
              f"{r['median_us']:>10.1f} {r['mean_us']:>9.1f} {r['p99_us']:>9.1f} "
              f"{r['close_ms']:>9.2f}")
    return out

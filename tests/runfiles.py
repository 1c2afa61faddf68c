"""Run files for the report tests, written with the real writer (shared by the unit and the
end-to-end report tests)."""

from __future__ import annotations

import json

import h5py
import numpy as np

from mpicode.io.runlog import RunLog

PNG = b"\x89PNG\r\n\x1a\n"
OLD_KEYS = ["run", "status", "scheme", "stragglers", "N", "iterations", "final_loss",
            "test_accuracy", "mean_iter_s", "p95_iter_s", "total_s", "mean_load", "stage2_frac",
            "mean_coverage", "time_to_target_s"]


def synth(path, n=6, N=3, scheme="two-stage", close=True, scheduler="none", **attrs):
    """A run of ``n`` iterations of ``N`` workers: loss 1/(i+1) at t_end = i + 0.5; worker 2
    straggles every iteration (its stage-1 task cancelled, covered by a stage-2 task of
    worker 0). Returns the RunLog (closed unless ``close`` is False)."""
    log = RunLog(str(path), config_json=json.dumps({"slot_ms": 2.0}), n_workers=N,
                 n_partitions=4 * N,
                 attrs={"scheme": scheme, "scheduler": scheduler, "channel": "ideal",
                        "stragglers": "bimodal", **attrs})
    for i in range(n):
        row = {"iteration": i, "t_start": float(i), "t_end": i + 0.5, "loss": 1.0 / (i + 1),
               "test_loss": 1.1 / (i + 1), "accuracy": 0.5 + 0.05 * i, "coverage": 1.0,
               "load": 1.25, "stage2": 1, "n_stage2": 1, "wait_s": 0.4, "bytes_up": 800,
               "n_cancelled": 1}
        used = np.array([1] * (N - 1) + [0], np.int8)
        workers = {"stage": np.ones(N, np.int8), "partitions": np.full(N, 4, np.int32),
                   "finish_s": np.r_[np.linspace(0.1, 0.2, N - 1), np.nan], "used": used}
        m = N + 1  # N stage-1 tasks + one stage-2 task
        tasks = {"iteration": np.full(m, i), "worker": np.r_[np.arange(N), 0],
                 "stage": np.r_[np.ones(N, np.int8), 2],
                 "t_dispatch": np.r_[np.zeros(N), 0.2],
                 "t_done": np.r_[np.linspace(0.1, 0.2, N - 1), 0.4, 0.35],
                 "cancelled": np.r_[np.zeros(N - 1, np.int8), 1, 0],
                 "used": np.r_[np.ones(N - 1, np.int8), 0, 1],
                 "n_partitions": np.r_[np.full(N, 4), 4]}
        log.append(row, workers, tasks)
    if close:
        log.close()
    else:
        log.flush()  # rows on disk as a live writer's are after its next block write
    return log


def add_comm_fields(path, N=3, cumulative=False):
    """The fields a scheduler adds later (per-worker bytes, Q, Z) and a /slots group."""
    with h5py.File(path, "a") as f:
        n = int(f.attrs["n_done"])
        g = f["workers"]
        for k in ("offered", "admitted", "delivered", "deferred", "dropped", "Q", "Z"):
            if k in g:  # the writer creates them (filled) up front: replace with real rows
                del g[k]
        delivered = np.tile(np.array([100, 100, 400][:N], "i8"), (n, 1))
        if cumulative:
            delivered = np.cumsum(delivered, axis=0)
        for k in ("offered", "admitted", "deferred", "dropped"):
            g.create_dataset(k, data=np.zeros((n, N), "i8"))
        d = g.create_dataset("delivered", data=delivered)
        if cumulative:
            d.attrs["cumulative"] = True
        rng = np.random.default_rng(0)
        g.create_dataset("Q", data=rng.uniform(0, 1000, (n, N)))
        g.create_dataset("Z", data=np.cumsum(rng.uniform(0, 1, (n, N)), axis=0))
        s = f.create_group("slots")
        ns = 50
        s.create_dataset("slot", data=np.arange(ns))
        s.create_dataset("worker", data=np.arange(ns) % N)
        s.create_dataset("Q_sum", data=rng.uniform(0, 3000, ns))
        s.create_dataset("Z_sum", data=np.linspace(0, 5, ns))


def xy(n=23, d=4, seed=0, labels="binary"):
    """A small seeded (X, y) for the dataset-import tests."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.standard_normal((n, d)), 6)
    if labels == "binary":
        y = (rng.random(n) < 0.5) * 1.0
    elif labels == "multiclass":
        y = rng.integers(0, 5, n) * 1.0
    else:
        y = np.round(rng.standard_normal(n) * 10, 6)
    return X, y

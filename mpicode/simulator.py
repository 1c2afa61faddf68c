"""Discrete-event simulator: the MPI runtime's serial twin (DESIGN section 2).

The same scheme objects as ``mpicode train``, driven by a virtual clock instead of messages::

    mpicode simulate --workers 64 --scheme two-stage --stragglers bimodal --iterations 200
    mpicode simulate --workers 10000 --iterations 100 --compute none --scheme two-stage

A task of n partitions takes ``n * partition_cost + delay`` virtual seconds, where the delay
comes from the same seeded straggler model (or trace) as in ``train``; workers run their tasks
one after another; a cancelled task frees its worker at the cancel time. With ``--compute
real`` the gradients are real (computed in-process) and the model trains; with ``none`` only
decisions and timing are simulated. Runs are bit-for-bit reproducible from the seed.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from mpicode.iteration import IterationInfo, collect_rows, combine
from mpicode.vclock import VirtualWorkers
from mpicode.virtual import VirtualIteration

log = logging.getLogger("mpicode")


class Simulator:
    """Virtual-time driver of a scheme (and of an uplink scheduler). Every logged value is a
    function of the seed (the decode takes no virtual time, ``decode_s`` is 0), so equal seeds
    give equal files."""

    def __init__(self, scheme, stragglers, *, n_workers: int, partition_cost: float,
                 problem=None, lr: float = 0.0, eval_every: int = 1, uplink=None,
                 msg_bytes: int | None = None):
        self.scheme = scheme
        self.N = n_workers
        self.problem = problem
        self.lr = lr
        self.eval_every = eval_every
        self.dim = problem.dim if problem is not None else 0
        self.msg_bytes = msg_bytes or 8 * (5 + self.dim)
        self.uplink = uplink
        self.loop = VirtualIteration(scheme, stragglers, VirtualWorkers(n_workers),
                                     partition_cost=partition_cost, uplink=uplink,
                                     msg_bytes=self.msg_bytes, hooks=self)
        self.w = np.zeros(self.dim)
        self.vt = 0.0
        self.history: list[dict] = []
        self._info: IterationInfo | None = None

    def computed(self, task) -> None:
        """Hook: the task's compute finished: its real message (with ``--compute real``)."""
        if self.problem is None:
            return
        g = np.zeros(self.dim)
        loss = 0.0
        c = task.coeffs
        for j, p in enumerate(task.partitions):
            loss += self.problem.accumulate(int(p), self.w, g, 1.0 if c is None else float(c[j]))
        self._info.msgs[task.task_id] = (g, loss)

    def iteration(self, it: int) -> dict:
        scheme = self.scheme
        info = self._info = IterationInfo(self.N, msg_bytes=self.msg_bytes)
        t = self.loop.run(it, info, self.vt)
        dec = scheme.decode()
        grad_norm = math.nan
        if self.problem is not None:
            gsum, _ = combine(dec, info.msgs, self.dim)
            grad = self.problem.gradient(gsum, self.w)
            self.w = self.w - self.lr * grad
            grad_norm = float(np.linalg.norm(grad))
        late = scheme.outstanding(t)
        for task in late:
            self.loop.vw.cancel(task.task_id, t)
        info.cancelled += len(late)
        summary = scheme.end(t)
        t_start = self.vt
        self.vt += t
        out = collect_rows(scheme, it, info, t_start=t_start, t_end=self.vt, t_wait=t,
                           decode_s=0.0, dec=dec, summary=summary, grad_norm=grad_norm)
        if self.uplink is not None:
            self.uplink.drop_iteration(it)
            out["workers"].update(self.uplink.worker_rows())
        return out

    def run(self, iterations: int, start: int = 0, runlog=None, progress=None) -> list[dict]:
        for it in range(start, start + iterations):
            out = self.iteration(it)
            row = out["row"]
            if self.problem is not None and ((it + 1) % self.eval_every == 0
                                             or it == start + iterations - 1):
                row.update(self.problem.evaluate(self.w))
            self.history.append(row)
            if runlog is not None:
                runlog.append(row, out["workers"], out["tasks"])
            if progress is not None:
                progress.update(1)
        return self.history


def measure_partition_cost(rows: int, features: int, repeats: int = 20) -> float:
    """Seconds the fused kernel takes for one partition of this shape (median, warmed up)."""
    from mpicode import kernels
    rng = np.random.default_rng(0)
    X = rng.standard_normal((max(1, rows), features))
    y = (rng.random(max(1, rows)) < 0.5).astype(float)
    w = np.zeros(features)
    g = np.zeros(features)
    kernels.logistic_grad(X, y, w, g, 1.0)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        kernels.logistic_grad(X, y, w, g, 1.0)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def simulate(cfg) -> int:
    """``mpicode simulate``: the whole run in virtual time, logged like ``train``."""
    import sys

    from mpicode.config import validate_for_size
    from mpicode.h5log import RunLog, check_output
    from mpicode.problem import Problem
    from mpicode.schemes import make_scheme
    from mpicode.stragglers import make_straggler_model

    N = cfg.workers if cfg.workers is not None else 8
    cfg = validate_for_size(cfg, N)
    K = cfg.partitions
    check_output(cfg.out, cfg.force)
    problem = None
    if cfg.compute == "real":
        problem = Problem.from_config(cfg, K)
        rows, feats = problem.n / K, problem.dim
    else:
        rows, feats = max(1.0, cfg.samples / K), cfg.features
    cost = cfg.partition_cost
    if cost is None:
        cost = measure_partition_cost(int(round(rows)), feats)
    scheme = make_scheme(cfg, N, K)
    stragglers = make_straggler_model(cfg, N, K)
    attrs = {"scheme": cfg.scheme, "scheduler": "none" if cfg.channel == "ideal"
             else cfg.scheduler, "channel": cfg.channel, "stragglers": cfg.stragglers,
             "N": N, "K": K, "seed": cfg.seed, "mpi_library": "none (simulated)",
             "model": cfg.model, "partition_cost": cost, "compute": cfg.compute}
    if problem is not None:
        attrs.update(dataset=problem.data.name, dim=problem.dim)
    runlog = RunLog(cfg.out, config_json=cfg.to_json(), n_workers=N, n_partitions=K,
                    mode="simulated", attrs=attrs, force=cfg.force)
    from mpicode.uplink import make_uplink
    uplink = make_uplink(cfg, N, scheme)
    sim = Simulator(scheme, stragglers, n_workers=N, partition_cost=cost, problem=problem,
                    lr=cfg.lr, eval_every=cfg.eval_every, uplink=uplink,
                    msg_bytes=8 * (5 + (problem.dim if problem is not None else cfg.features)))
    progress = None
    if not cfg.quiet and sys.stderr.isatty():
        from tqdm import tqdm
        progress = tqdm(total=cfg.iterations, desc=f"simulate {cfg.scheme} N={N}", unit="it")
    status = "failed"
    t0 = time.perf_counter()
    try:
        sim.run(cfg.iterations, runlog=runlog, progress=progress)
        if problem is not None:
            runlog.write_group("model", {"w": sim.w})
        if uplink is not None and cfg.log_slots:
            runlog.write_group("slots", uplink.sched.slot_log(), compress=True)
        runlog.set_attrs(wall_s=time.perf_counter() - t0)
        status = "complete"
    finally:
        if progress is not None:
            progress.close()
        runlog.close(status)
    last = sim.history[-1]
    if not cfg.quiet:
        print(f"wrote {cfg.out}: {len(sim.history)} simulated iterations, virtual time "
              f"{last['t_end']:.3f} s, mean load {np.mean([r['load'] for r in sim.history]):.3f}"
              f", wall {time.perf_counter() - t0:.1f} s")
    return 0

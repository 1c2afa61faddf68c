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

from mpicode.engine.events import VirtualIteration
from mpicode.engine.loop import IterationLoop
from mpicode.engine.rows import IterationInfo, collect_rows, combine
from mpicode.engine.vworkers import VirtualWorkers

log = logging.getLogger("mpicode")


class Simulator(IterationLoop):
    """Virtual-time driver of a scheme (and of an uplink scheduler). Every logged value is a
    function of the seed (the decode takes no virtual time, ``decode_s`` is 0), so equal seeds
    give equal files."""

    def __init__(self, scheme, stragglers, *, n_workers: int, partition_cost: float,
                 problem=None, lr: float = 0.0, eval_every: int = 1, uplink=None,
                 msg_bytes: int | None = None, runlog=None, progress=None,
                 checkpoint_every: int = 0):
        self.scheme = scheme
        self.runlog = runlog
        self.progress = progress
        self.checkpoint_every = checkpoint_every
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

    def elapsed(self) -> float:
        return self.vt


def measure_partition_cost(rows: int, features: int, repeats: int = 20) -> float:
    """Seconds the fused kernel takes for one partition of this shape (median, warmed up)."""
    from mpicode.numerics import kernels
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

    from mpicode.config import UsageError, merge_resumed, validate_for_size
    from mpicode.engine.loop import install_stop_handlers, write_error
    from mpicode.engine.uplink import make_uplink
    from mpicode.io.runlog import RunLog, check_output, read_checkpoint
    from mpicode.models.stragglers import make_straggler_model
    from mpicode.numerics.problem import Problem
    from mpicode.schemes import make_scheme

    snap = None
    if cfg.resume:
        stored, snap = read_checkpoint(cfg.resume)
        cfg = merge_resumed(cfg, stored)
    N = cfg.workers if cfg.workers is not None else 8
    cfg = validate_for_size(cfg, N)
    from mpicode.engine import budget
    budget.check_run(cfg, N)  # before any allocation: refuse what cannot fit in memory
    K = cfg.partitions
    problem = None
    if cfg.compute == "real":
        problem = Problem.from_config(cfg, K)
        rows, feats = problem.n / K, problem.dim
    else:
        rows, feats = max(1.0, cfg.samples / K), cfg.features
    cost = cfg.partition_cost
    if cost is None:
        cost = measure_partition_cost(int(round(rows)), feats)
        cfg = cfg.replace(partition_cost=cost)
    try:
        scheme = make_scheme(cfg, N, K)
        uplink = make_uplink(cfg, N, scheme)
    except ValueError as e:
        raise UsageError(str(e)) from None
    stragglers = make_straggler_model(cfg, N, K)
    from mpicode.engine.loop import STOP
    if STOP["signal"]:  # SIGTERM/SIGINT while setting up: nothing written yet
        print(f"mpicode: interrupted (signal {STOP['signal']}) during start-up: nothing "
              "written", file=sys.stderr)
        return 3
    if snap is None:  # last: it may create the output's directory
        check_output(cfg.out, cfg.force)
    if snap is not None:
        runlog = RunLog.resume(cfg.resume, int(snap["iteration"]), int(snap["n_tasks"]))
    else:
        attrs = {"scheme": cfg.scheme, "scheduler": "none" if cfg.channel == "ideal"
                 else cfg.scheduler, "channel": cfg.channel, "stragglers": cfg.stragglers,
                 "N": N, "K": K, "seed": cfg.seed, "mpi_library": "none (simulated)",
                 "model": cfg.model, "partition_cost": cost, "compute": cfg.compute}
        if problem is not None:
            attrs.update(dataset=problem.data.name, dim=problem.dim)
        runlog = RunLog(cfg.out, config_json=cfg.to_json(), n_workers=N, n_partitions=K,
                        mode="simulated", attrs=attrs, force=cfg.force)
    runlog.start_watchdog()
    install_stop_handlers()
    progress = None
    if not cfg.quiet and sys.stderr.isatty():
        from tqdm import tqdm
        progress = tqdm(total=cfg.iterations, desc=f"simulate {cfg.scheme} N={N}", unit="it")
    sim = Simulator(scheme, stragglers, n_workers=N, partition_cost=cost, problem=problem,
                    lr=cfg.lr, eval_every=cfg.eval_every, uplink=uplink,
                    msg_bytes=8 * (5 + (problem.dim if problem is not None else cfg.features)),
                    runlog=runlog, progress=progress, checkpoint_every=cfg.checkpoint_every)
    start = sim.restore(snap) if snap is not None else 0
    if progress is not None:
        progress.update(start)
    status = "failed"
    t0 = time.perf_counter()
    try:
        sim.run(max(0, cfg.iterations - start), start=start)
        if problem is not None and sim.status != "failed":  # as train: no diverged model
            runlog.write_group("model", {"w": sim.w})
        if uplink is not None and cfg.log_slots:
            runlog.write_group("slots", uplink.sched.slot_log(), compress=True)
        runlog.set_attrs(wall_s=time.perf_counter() - t0)
        status = sim.status
    except (OSError, RuntimeError) as e:
        sim.error = write_error(e)
    finally:
        if progress is not None:
            progress.close()
        runlog.close(status)
    if sim.error:
        print(f"mpicode: error: {sim.error}; kept {runlog.n_done} iterations in {cfg.out}",
              file=sys.stderr)
        return 1
    if status == "interrupted":
        print(f"mpicode: interrupted: {runlog.n_done} iterations and a checkpoint in {cfg.out}"
              f" (continue with --resume {cfg.out})", file=sys.stderr)
        return 3
    if not cfg.quiet and sim.history:
        last = sim.history[-1]
        print(f"wrote {cfg.out}: {runlog.n_done} simulated iterations, virtual time "
              f"{last['t_end']:.3f} s, mean load {np.mean([r['load'] for r in sim.history]):.3f}"
              f", wall {time.perf_counter() - t0:.1f} s")
    return 0

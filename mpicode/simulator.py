"""Discrete-event simulator: the MPI runtime's serial twin (docs/design.md §8).

The same scheme objects as ``mpicode train``, driven by a virtual clock instead of messages::

    mpicode simulate --workers 64 --scheme two-stage --stragglers bimodal --iterations 200
    mpicode simulate --workers 10000 --iterations 100 --compute none --scheme two-stage

A task of n partitions takes ``n * partition_cost + delay`` virtual seconds, where the delay
comes from the same seeded straggler model (or trace) as in ``train``; workers run their tasks
one after another; a cancelled task frees its worker at the cancel time. With ``--compute
real`` the gradients are real (computed in-process) and the model trains; with ``none`` only
decisions and timing are simulated. ``--profile PROFILE.toml`` (``mpicode calibrate``) adds
this machine's dispatch, message and coordinator costs (:mod:`mpicode.engine.costs`), so the
simulation is the twin of a real run (``mpicode bench twin``). Runs are bit-for-bit
reproducible from the options and the seed: the default partition cost is a documented
constant model (``model_partition_cost``), not a measurement, unless
``--measure-partition-cost`` asks for one.
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

from mpicode.config import merge_resumed, validate_for_size
from mpicode.engine import budget
from mpicode.engine.costs import CostModel
from mpicode.engine.events import EventLoop
from mpicode.engine.loop import Trainer
from mpicode.engine.rows import IterationInfo
from mpicode.engine.session import Session
from mpicode.engine.signals import STOP, install_stop_handlers
from mpicode.engine.uplink import make_uplink
from mpicode.engine.vworkers import VirtualWorkers
from mpicode.errors import UsageError
from mpicode.io import checkpoint
from mpicode.io.runlog import check_output, read_checkpoint
from mpicode.models.stragglers import make_straggler_model
from mpicode.numerics.batches import epochs_note, with_epochs
from mpicode.numerics.optim import make_optimizer
from mpicode.schemes import make_scheme
from mpicode.wire import result_bytes

log = logging.getLogger("mpicode")


class SimBackend:
    """What is real in a simulation: with a problem (``--compute real``), each task's message
    is computed in-process when its compute finishes in virtual time."""

    def __init__(self, problem):
        self.problem = problem
        self.dim = problem.dim if problem is not None else 0

    def begin(self, it: int, w: np.ndarray, info: IterationInfo) -> None:
        self.w, self.info, self.it = w, info, it

    def computed(self, task) -> None:
        if self.problem is None:
            return
        g = np.zeros(self.dim)
        loss = 0.0
        c = task.coeffs
        done = self.info.cut.get(task.task_id, task.n)  # a time limit: only the prefix
        for j, p in enumerate(task.partitions[:done]):
            loss += self.problem.accumulate(int(p), self.w, g, 1.0 if c is None else float(c[j]),
                                            it=self.it)
        self.info.msgs[task.task_id] = (g, loss)


def Simulator(scheme, stragglers, *, n_workers: int, partition_cost: float, problem=None,
              lr: float = 0.0, eval_every: int = 1, uplink=None, msg_bytes: int | None = None,
              checkpoint_every: int = 0, dead_after: int = 0, optimizer=None,
              costs=None, rank0=None) -> Trainer:
    """The virtual-time trainer of a scheme (and of an uplink scheduler). Every logged value
    is a function of the seed and of the cost model ``costs`` (:class:`CostModel`; by default
    zero: the decode takes no virtual time, ``decode_s`` is 0), so equal seeds give equal
    files. ``rank0``: a :class:`mpicode.engine.rank0.Rank0` (default: charged by
    ``costs.rank0``)."""
    dim = problem.dim if problem is not None else 0
    backend = SimBackend(problem)
    events = EventLoop(scheme, stragglers, partition_cost=partition_cost, uplink=uplink,
                       msg_bytes=msg_bytes or result_bytes(dim),
                       vworkers=VirtualWorkers(n_workers),
                       hooks=backend, costs=costs, rank0=rank0)
    return Trainer(scheme, events, n_workers=n_workers, problem=problem, lr=lr, backend=backend,
                   eval_every=eval_every, checkpoint_every=checkpoint_every,
                   dead_after=dead_after, log=log, optimizer=optimizer)


# The default partition cost: a documented constant model of the fused kernel (fitted on the
# project's 2-core machine for data that fits in cache), so that two runs with the same options
# are bit-identical anywhere. ``--measure-partition-cost`` times the kernel instead.
KERNEL_OVERHEAD_S = 1e-6
KERNEL_ELEMENTS_PER_S = 2e9


def model_partition_cost(rows: float, features: int,
                         elements_per_s: float | None = None) -> float:
    """Seconds for one partition of ``rows x features``: the constant model, or a calibrated
    profile's ``kernel_elements_per_s``."""
    return KERNEL_OVERHEAD_S + rows * features / (elements_per_s or KERNEL_ELEMENTS_PER_S)


def measure_partition_cost(rows: int, features: int, repeats: int = 20) -> float:
    """Seconds the fused kernel takes for one partition of this shape (median, warmed up)."""
    from mpicode.numerics import kernels  # lazy: numba (~1 s) only to measure
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


def _partition_cost(cfg, problem, K: int) -> float:
    """``--partition-cost``, else the kernel model (or a measurement, if asked for)."""
    if cfg.partition_cost is not None:
        return cfg.partition_cost
    if problem is not None and problem.model == "mlp":  # the MLP's own cost model
        return problem.partition_cost()
    if problem is not None:
        rows, feats = problem.n / K, problem.dim
    else:
        rows, feats = max(1.0, cfg.samples / K), cfg.features
    if cfg.measure_partition_cost:
        return measure_partition_cost(int(round(rows)), feats)
    return model_partition_cost(rows, feats, cfg.kernel_elements_per_s)


def prepare(cfg):
    """Every check of a simulation, before anything is written: (cfg, problem, scheme,
    uplink, stragglers, snap). Usage errors raise :class:`UsageError`."""
    from mpicode.numerics.problem import Problem  # lazy: numba (~1 s) only for real gradients

    snap = None
    if cfg.resume:
        stored, snap = read_checkpoint(cfg.resume, mode="simulated")
        cfg = merge_resumed(cfg, stored)
    N = cfg.workers if cfg.workers is not None else 8
    cfg = validate_for_size(cfg, N)
    K = cfg.partitions
    budget.check_run(cfg, N)  # before any allocation: refuse what cannot fit in memory
    problem = Problem.from_config(cfg, K) if cfg.compute == "real" else None
    n_train = problem.n if problem is not None else cfg.samples
    note = epochs_note(cfg, n_train)
    if note and not cfg.quiet:
        print(note, file=sys.stderr, flush=True)
    cfg = with_epochs(cfg, n_train)
    cfg = cfg.replace(partition_cost=_partition_cost(cfg, problem, K))
    try:
        scheme = make_scheme(cfg, N, K)
        uplink = make_uplink(cfg, N, scheme)
    except ValueError as e:
        raise UsageError(str(e)) from None
    stragglers = make_straggler_model(cfg, N, K)
    if snap is not None:  # a dry restore (into these fresh policies): nothing written yet
        bad = checkpoint.check(snap, dim=problem.dim if problem is not None else 0,
                               scheme=scheme, uplink=uplink)
        if bad:
            raise UsageError(f"--resume {cfg.resume}: {bad}")
    if snap is None:  # last: it may create the output's directory
        check_output(cfg.out, cfg.force)
    return cfg, problem, scheme, uplink, stragglers, snap


def simulate(cfg) -> int:
    """``mpicode simulate``: the whole run in virtual time, logged like ``train``."""
    cfg, problem, scheme, uplink, stragglers, snap = prepare(cfg)
    if STOP["signal"]:  # SIGTERM/SIGINT while setting up: nothing written yet
        print(f"mpicode: interrupted (signal {STOP['signal']}) during start-up: nothing "
              "written", file=sys.stderr)
        return 3
    N, cost = scheme.N, cfg.partition_cost
    attrs = {"mpi_library": "none (simulated)", "partition_cost": cost, "compute": cfg.compute}
    if problem is not None:
        attrs.update(dataset=problem.data.name, dim=problem.dim)
    session = Session(cfg, mode="simulated", n_workers=N, attrs=attrs, snap=snap,
                      desc=f"simulate {cfg.scheme} N={N}")
    session.open()
    install_stop_handlers()
    sim = Simulator(scheme, stragglers, n_workers=N, partition_cost=cost, problem=problem,
                    lr=cfg.lr, eval_every=cfg.eval_every, uplink=uplink,
                    msg_bytes=result_bytes(problem.dim if problem is not None else cfg.features),
                    checkpoint_every=cfg.checkpoint_every, dead_after=cfg.dead_after,
                    optimizer=make_optimizer(cfg, problem.dim) if problem is not None else None,
                    costs=CostModel.from_config(cfg))
    t0 = time.perf_counter()
    code = session.run(sim)
    if code == 0 and not cfg.quiet and sim.history:
        _summary(cfg, session, sim, time.perf_counter() - t0)
    return code


def _summary(cfg, session, sim, wall_s: float) -> None:
    last = sim.history[-1]
    print(f"wrote {cfg.out}: {session.runlog.n_done} simulated iterations, virtual time "
          f"{last['t_end']:.3f} s, mean load {np.mean([r['load'] for r in sim.history]):.3f}"
          f", wall {wall_s:.1f} s")

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
from types import SimpleNamespace

import numpy as np

from mpicode.config import merge_resumed
from mpicode.engine import assembly
from mpicode.engine.costs import (  # noqa: F401  (the kernel model's old home: re-exported)
    KERNEL_ELEMENTS_PER_S,
    KERNEL_OVERHEAD_S,
    CostModel,
    measure_partition_cost,
    model_partition_cost,
    run_partition_cost,
)
from mpicode.engine.hooks import Checkpoints, Every, RunLogWriter
from mpicode.engine.loop import Trainer
from mpicode.engine.rows import IterationInfo
from mpicode.engine.session import Session
from mpicode.engine.signals import STOP, install_stop_handlers
from mpicode.io.runlog import check_output, read_checkpoint
from mpicode.numerics.batches import epochs_note, with_epochs

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
        self.info.msgs[task.task_id] = self.message(task)

    def message(self, task) -> tuple[np.ndarray, float, float]:
        """The task's (gradient sum, loss sum, metric sum), each partition's weighted by its
        coefficient: what its worker would send."""
        g = np.zeros(self.dim)
        loss = metric = 0.0
        c = task.coeffs
        done = self.info.cut.get(task.task_id, task.n)  # a time limit: only the prefix
        for j, p in enumerate(task.partitions[:done]):
            lo, me = self.problem.accumulate(int(p), self.w, g,
                                             1.0 if c is None else float(c[j]), it=self.it)
            loss += lo
            metric += me
        return g, loss, metric


def Simulator(scheme, stragglers, *, n_workers: int, partition_cost: float, problem=None,
              lr: float = 0.0, eval_every: int = 1, uplink=None, msg_bytes: int | None = None,
              checkpoint_every: int = 0, dead_after: int = 0, optimizer=None,
              costs=None, rank0=None, runlog=None, hooks=(), ideal_delays=None) -> Trainer:
    """The virtual-time trainer of a scheme (and of an uplink scheduler), assembled from the
    given policies (:func:`mpicode.engine.assembly.build`). Every logged value is a function
    of the seed and of the cost model ``costs`` (:class:`CostModel`; by default zero: the
    decode takes no virtual time, ``decode_s`` is 0), so equal seeds give equal files.
    ``rank0``: a :class:`mpicode.engine.rank0.Rank0` (default: charged by ``costs.rank0``).
    Its hooks: the evaluation (every ``eval_every`` and the last), ``--dead-after``,
    ``hooks`` (the caller's), and with ``runlog`` the rows written to it and checkpoints
    every ``checkpoint_every`` iterations. ``ideal_delays``: the delays of the
    straggler-free replay (default the model's nominal twin; see
    :func:`mpicode.engine.assembly.build`)."""
    cfg = SimpleNamespace(eval_every=eval_every, dead_after=dead_after)
    logged = [] if runlog is None else [RunLogWriter(runlog),
                                         Checkpoints(runlog, Every(checkpoint_every))]
    run = assembly.build(scheme, stragglers, n_workers=n_workers, uplink=uplink,
                         problem=problem, partition_cost=partition_cost, msg_bytes=msg_bytes,
                         costs=costs, rank0=rank0, virtual=True, backend=sim_backend(problem),
                         lr=lr, optimizer=optimizer, ideal_delays=ideal_delays,
                         hooks=[*assembly.standard_hooks(cfg, n_workers, runlog=runlog),
                                *hooks, *logged])
    return run.trainer


def sim_backend(problem):
    """The assembly's backend factory of a simulation."""
    return lambda **parts: SimBackend(problem)


def prepare(cfg):
    """Every check of a simulation, before anything is written: (cfg, problem, scheme,
    uplink, stragglers, snap). Usage errors raise :class:`UsageError`."""
    from mpicode.numerics.problem import Problem  # lazy: numba (~1 s) only for real gradients

    snap = None
    if cfg.resume:
        stored, snap = read_checkpoint(cfg.resume, mode="simulated")
        cfg = merge_resumed(cfg, stored)
    N = cfg.workers if cfg.workers is not None else 8
    cfg = assembly.check(cfg, N)
    K = cfg.partitions
    problem = Problem.from_config(cfg, K) if cfg.compute == "real" else None
    n_train = problem.n if problem is not None else cfg.samples
    note = epochs_note(cfg, n_train)
    if note and not cfg.quiet:
        print(note, file=sys.stderr, flush=True)
    cfg = with_epochs(cfg, n_train)
    cfg = cfg.replace(partition_cost=run_partition_cost(cfg, problem, K))
    pol = assembly.check_policies(cfg, N, dim=problem.dim if problem is not None else 0,
                                  snap=snap)  # a dry restore (into these fresh policies)
    if snap is None:  # last: it may create the output's directory
        check_output(cfg.out, cfg.force)
    return cfg, problem, pol.scheme, pol.uplink, pol.stragglers, snap


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
    run = assembly.assemble(cfg, n_workers=N, problem=problem,
                            policies=assembly.Policies(scheme, uplink, stragglers),
                            backend=sim_backend(problem), session=session)
    t0 = time.perf_counter()
    code = session.run(run.trainer)
    if code == 0 and not cfg.quiet and run.trainer.history:
        _summary(cfg, session, run.trainer, time.perf_counter() - t0)
    return code


def _summary(cfg, session, sim, wall_s: float) -> None:
    last = sim.history[-1]
    print(f"wrote {cfg.out}: {session.runlog.n_done} simulated iterations, virtual time "
          f"{last['t_end']:.3f} s, mean load {np.mean([r['load'] for r in sim.history]):.3f}"
          f", wall {wall_s:.1f} s")

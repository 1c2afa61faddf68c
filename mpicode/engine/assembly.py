"""One run, assembled: a configuration checked, then every part of the run built in dependency
order, each handed the parts it needs at construction (pure; docs/design.md §2.1). Used by
``mpicode simulate`` (:mod:`mpicode.simulator`), ``mpicode train`` (rank 0,
:mod:`mpicode.mpi.launch`), the experiments, the benchmarks and the conformance checks.

The order (an arrow: "is handed to")::

    scheme -> uplink (scheduler, channel)        policies and models (the registry's kinds)
    straggler model
    cost model -> Rank0                           what rank 0's actions cost (§2.6)
    RunClock -> event clock (virtual | wall)      the one clock (§2.4)
    Inbox, VirtualWorkers (virtual time)          results that arrived; the workers' model
    Membership (--on-failure, the failure model)  who is alive (§2.7)
    backend (SimBackend | MPI Coordinator)        the driver's, built by ``backend(**parts)``
    EventLoop (all of the above)                  one iteration as events (§2.3)
    hooks: Evaluation, DeadWorkerWatch, the caller's, the session's (run log, progress,
           checkpoints)                            handlers on the run loop (§2.2)
    Trainer (scheme, event loop, clock, backend, hooks)

Nothing is wired afterwards: no part is given another by assignment. :func:`check` is what
a configuration must pass before anything is written; :func:`build` builds a run from
parts the caller made (a study's own straggler model, a timed scheme); :func:`assemble`
builds one from a configuration.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from mpicode.config import validate_for_size
from mpicode.engine import budget
from mpicode.engine.clock import RunClock, VirtualClock, WallClock
from mpicode.engine.costs import CostModel, run_partition_cost, virtual_partition_cost
from mpicode.engine.evaluation import EvalSchedule
from mpicode.engine.events import EventLoop, Inbox
from mpicode.engine.hooks import DeadWorkerWatch, Evaluation, Every
from mpicode.engine.ideal import IdealReplay
from mpicode.engine.loop import Trainer
from mpicode.engine.membership import make_membership
from mpicode.engine.rank0 import Rank0
from mpicode.engine.signals import stop_requested
from mpicode.engine.uplink import make_uplink
from mpicode.engine.vworkers import VirtualWorkers
from mpicode.errors import UsageError
from mpicode.io import checkpoint
from mpicode.models.stragglers import make_straggler_model
from mpicode.numerics.optim import make_optimizer
from mpicode.options import _auto_or_int
from mpicode.schemes import make_scheme
from mpicode.wire import result_bytes

log = logging.getLogger("mpicode")


@dataclass(frozen=True)
class Policies:
    """The run's pure policies and models: the scheme, the uplink (its scheduler and
    channel; None with the ``ideal`` channel) and the straggler model."""

    scheme: object
    uplink: object
    stragglers: object

    @classmethod
    def from_config(cls, cfg, n_workers: int, n_partitions: int | None = None,
                    real_link: bool = False) -> Policies:
        """Built by their registered classes; a value a class refuses (``ValueError``) is a
        usage error. ``real_link``: the uplink grants but does not deliver (``--link-timing
        real`` in the MPI runtime: the network delivers)."""
        K = cfg.partitions if n_partitions is None else n_partitions
        try:
            scheme = make_scheme(cfg, n_workers, K)
            uplink = make_uplink(cfg, n_workers, scheme, real_link=real_link)
        except ValueError as e:
            raise UsageError(str(e)) from None
        return cls(scheme, uplink, make_straggler_model(cfg, n_workers, K))


@dataclass
class Run:
    """The parts of one run, as :func:`build` made them."""

    policies: Policies
    costs: CostModel
    rank0: Rank0
    clock: RunClock
    inbox: Inbox
    backend: object
    events: EventLoop
    hooks: list = field(default_factory=list)
    trainer: Trainer | None = None

    @property
    def scheme(self):
        return self.policies.scheme

    @property
    def uplink(self):
        return self.policies.uplink


def check(cfg, n_workers: int, local_ranks: int = 1):
    """The checks of a run's configuration that need N, before anything is allocated or
    written: the cross-option and scheme checks, and the memory the run needs (with
    ``local_ranks`` processes of the job on this node). Returns the configuration with N
    and K filled in; raises :class:`UsageError`. (:func:`check_policies` then builds the
    policies once, so that their own checks run too.)"""
    cfg = validate_for_size(cfg, n_workers)
    budget.check_run(cfg, n_workers, local_ranks)  # before any allocation
    return cfg


def check_policies(cfg, n_workers: int, *, dim: int, snap=None) -> Policies:
    """The policies of ``cfg``, built so that their own checks fail before training; with
    ``snap`` (``--resume``), a dry restore refuses a checkpoint that does not fit them."""
    pol = Policies.from_config(cfg, n_workers)
    if snap is not None:
        bad = checkpoint.check(snap, dim=dim, scheme=pol.scheme, uplink=pol.uplink)
        if bad:
            raise UsageError(f"--resume {cfg.resume}: {bad}")
    return pol


def standard_hooks(cfg, n_workers: int, *, runlog=None, log=log, membership=None,
                   virtual: bool = True) -> list:
    """The run loop's hooks every run has, before the caller's and the session's: the
    evaluation (``--eval-every``, and the last iteration) and ``--dead-after`` (with the
    run's ``membership``: ``--on-failure``, §2.7)."""
    every = _auto_or_int(getattr(cfg, "eval_every", 1))
    schedule = EvalSchedule(every) if every == "auto" else Every(every, last=True)
    return [Evaluation(schedule, runlog=runlog, log=log),
            DeadWorkerWatch(n_workers, getattr(cfg, "dead_after", 0), runlog=runlog, log=log,
                            membership=membership, virtual=virtual)]


def build(scheme, stragglers, *, n_workers: int, uplink=None, problem=None,
          partition_cost: float = 0.0, msg_bytes: int | None = None, costs=None, rank0=None,
          virtual: bool = True, backend=None, lr: float = 0.0, optimizer=None, hooks=(),
          max_wait: float | None = None, record: list | None = None,
          ideal_delays=None, membership=None) -> Run:
    """A run from its policies: the cost model, rank 0, the clocks, the inbox, the backend,
    the event loop and the trainer, in that order.

    Parameters
    ----------
    virtual : bool
        Virtual time (the simulator, ``train --delay-mode virtual``: virtual workers, the
        cost model charged) or the wall clock (``train``: real delays, costs measured).
    backend : callable or None
        ``backend(scheme=, uplink=, clock=, events_clock=, inbox=, vworkers=, virtual=,
        max_wait=)`` -> the driver's backend (the simulator's, the MPI coordinator, a
        conformance check's); its ``hooks`` attribute (else itself) are the event loop's
        hooks. None: none (decisions and timing only, no messages).
    hooks : sequence of Hook
        The run loop's hooks, in order (:func:`standard_hooks`, the caller's, the
        session's).
    max_wait : float or None
        ``--max-wait`` for a scheme that cannot give up by itself: on the wall clock the
        event loop's bound, in virtual time the backend's (waiting for a real message).
    record : list or None
        Rank 0's actions are appended to it (``mpicode calibrate``, §2.6).
    ideal_delays : StragglerModel or None
        The delays of the straggler-free replay (``ideal_s``); default the straggler
        model's nominal twin (a test gives the run's own model: the replay must then be the
        iteration).
    membership : Membership or None
        Who is alive (``--on-failure``, the failure model; §2.7), the event loop's; the
        same one goes to the :class:`DeadWorkerWatch` hook. None: nobody ever fails.
    """
    costs = costs if costs is not None else CostModel()
    dim = problem.dim if problem is not None else 0
    rank0 = rank0 if rank0 is not None else Rank0(costs.rank0, n_workers, virtual=virtual,
                                                  record=record)
    clock = RunClock(None if virtual else time.perf_counter)
    events_clock = VirtualClock() if virtual else WallClock(clock.now, stop_requested)
    inbox = Inbox()
    vworkers = VirtualWorkers(n_workers) if virtual else None
    be = None if backend is None else backend(
        scheme=scheme, uplink=uplink, clock=clock, events_clock=events_clock, inbox=inbox,
        vworkers=vworkers, virtual=virtual, max_wait=max_wait if virtual else None)
    events = EventLoop(scheme, stragglers, partition_cost=partition_cost, uplink=uplink,
                       msg_bytes=msg_bytes or result_bytes(dim), vworkers=vworkers,
                       clock=events_clock, hooks=getattr(be, "hooks", be), costs=costs,
                       rank0=rank0, inbox=inbox, max_wait=None if virtual else max_wait,
                       membership=membership)
    ideal = IdealReplay(stragglers, n_workers, _shadow_loop(events, n_workers),
                        delays=ideal_delays)
    trainer = Trainer(scheme, events, n_workers=n_workers, problem=problem, lr=lr, backend=be,
                      clock=clock, hooks=hooks, optimizer=optimizer, ideal=ideal)
    return Run(Policies(scheme, uplink, stragglers), costs, rank0, clock, inbox, be, events,
               list(hooks), trainer)


def _shadow_loop(events: EventLoop, n_workers: int):
    """The factory of the straggler-free replay's event loops (:mod:`mpicode.engine.ideal`):
    the run's cost model and message size, fresh virtual workers and clock, no uplink (the
    ideal channel), no hooks, rank 0 not charged."""
    def loop(scheme, delays, partition_cost: float) -> EventLoop:
        return EventLoop(scheme, delays, partition_cost=partition_cost, uplink=None,
                         msg_bytes=events.msg_bytes, vworkers=VirtualWorkers(n_workers),
                         clock=VirtualClock(), hooks=None, costs=events.costs)
    return loop


def real_link(cfg, driver: str) -> bool:
    """``--link-timing real`` applies: the MPI runtime in real time (the network delivers a
    granted message, not the slot clock)."""
    return (driver == "train" and cfg.delay_mode != "virtual"
            and getattr(cfg, "link_timing", "emulated") == "real")


def assemble(cfg, *, n_workers: int, problem=None, policies: Policies | None = None,
             driver: str = "simulate", backend=None, session=None, hooks=(),
             record: list | None = None) -> Run:
    """The run of a checked configuration (:func:`check`): its policies (built here unless
    given), cost model, clocks, backend, event loop, hooks and trainer.

    ``driver``: ``simulate`` (virtual time; the partition cost is the configuration's, see
    :func:`mpicode.engine.costs.run_partition_cost`) or ``train`` (``--delay-mode`` decides;
    the cost model is virtual time's only). ``session``: a
    :class:`~mpicode.engine.session.Session` (opened here, creating the run log, unless it
    is already) whose hooks (run log, progress, checkpoints) go last; ``hooks``: the
    caller's own, between the standard ones and the session's."""
    pol = policies or Policies.from_config(cfg, n_workers, real_link=real_link(cfg, driver))
    if session is not None and session.runlog is None:
        session.open()
    scheme = pol.scheme
    virtual = driver == "simulate" or cfg.delay_mode == "virtual"
    K = cfg.partitions
    if driver == "simulate":
        cost = cfg.partition_cost if cfg.partition_cost is not None else \
            run_partition_cost(cfg, problem, K)
    elif virtual:
        cost = virtual_partition_cost(cfg, problem, K)
    else:
        cost = cfg.partition_cost or 0.0
    # the cost model is virtual time's: with real delays the costs are real (and measured)
    costs = CostModel.from_config(cfg) if virtual else CostModel()
    runlog = session.runlog if session is not None else None
    membership = make_membership(cfg, n_workers)
    all_hooks = [*standard_hooks(cfg, n_workers, runlog=runlog, membership=membership,
                                 virtual=virtual), *hooks,
                 *(session.hooks() if session is not None else ())]
    # --max-wait for the schemes that cannot give up by themselves (two-stage's is its own)
    limit = getattr(cfg, "max_wait", None) if getattr(scheme, "max_wait", None) is None \
        else None
    dim = problem.dim if problem is not None else cfg.features
    return build(scheme, pol.stragglers, n_workers=n_workers, uplink=pol.uplink,
                 problem=problem, partition_cost=cost, msg_bytes=result_bytes(dim),
                 costs=costs, virtual=virtual, backend=backend, lr=cfg.lr,
                 optimizer=make_optimizer(cfg, problem.dim) if problem is not None else None,
                 hooks=all_hooks, max_wait=limit if driver == "train" else None,
                 record=record, membership=membership)

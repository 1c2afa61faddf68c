"""``mpicode train``: set up every rank, run the coordinator or a worker, log, shut down.

Launch (1 coordinator + 4 workers)::

    mpiexec -n 5 python -m mpi4py -m mpicode train --scheme uncoded --iterations 50 \\
        --out runs/demo.h5

Bad input is decided the same way on every rank (rank 0 checks what needs the file system
and broadcasts its verdict), so every rank exits with code 2 after one line on stderr.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from mpicode import mpi as runtime
from mpicode.config import Config, merge_resumed, validate_for_size
from mpicode.engine import budget
from mpicode.engine.clock import WallClock
from mpicode.engine.costs import CostModel
from mpicode.engine.events import EventLoop
from mpicode.engine.loop import Trainer
from mpicode.engine.rank0 import Rank0
from mpicode.engine.session import EXIT_INTERRUPTED, EXIT_OK, Session
from mpicode.engine.signals import install_stop_handlers, stop_requested
from mpicode.engine.uplink import make_uplink
from mpicode.engine.vworkers import VirtualWorkers
from mpicode.errors import UsageError
from mpicode.io import checkpoint
from mpicode.io.runlog import check_output, read_checkpoint
from mpicode.models.stragglers import make_straggler_model
from mpicode.mpi import bounds
from mpicode.mpi.coordinator import Coordinator, RealTime, VirtualTime
from mpicode.mpi.deathwatch import DeathWatch
from mpicode.mpi.startup import Startup
from mpicode.mpi.worker import Worker
from mpicode.numerics import kernels, mlp
from mpicode.numerics.batches import epochs_note, with_epochs
from mpicode.numerics.optim import make_optimizer
from mpicode.numerics.problem import Problem
from mpicode.schemes import make_scheme
from mpicode.simulator import model_partition_cost
from mpicode.wire import result_bytes

log = logging.getLogger("mpicode")


def setup_logging(rank: int, size: int, cfg: Config) -> None:
    level = logging.DEBUG if cfg.verbose else (
        logging.WARNING if (rank != 0 or cfg.quiet) else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s [{rank}/{size}] %(levelname)s "
                                           "%(message)s", "%H:%M:%S"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


class BadInput(SystemExit):
    """Raised after every rank agreed on a usage error and MPI was finalized."""


def _agree(st: Startup, error: str | None, what: str) -> None:
    """Rank 0's verdict on the input, shared by all; on error, finalize and exit 2. A
    start-up step (:mod:`mpicode.mpi.startup`): bounded, interruptible, no pickle."""
    verdict = st.bcast_text(error, what)
    if verdict:
        if st.comm.rank == 0:
            print(f"mpicode: error: {verdict}", file=sys.stderr, flush=True)
        runtime.finalize()
        raise BadInput(2)


def _agree_all(st: Startup, error: str | None, what: str) -> None:
    """Every rank's own verdict (after rank 0 agreed): if any rank failed, the lowest such
    rank prints its one line, every rank finalizes and exits 2. A numpy buffer, no pickle."""
    comm = st.comm
    failed = np.zeros(comm.size, np.int32)
    failed[comm.rank] = error is not None
    total = st.reduce_buffer(failed, what)  # default op: SUM
    bad = np.flatnonzero(total)
    if bad.size:
        if comm.rank == bad[0]:
            print(f"mpicode: error: rank {comm.rank}: {error}", file=sys.stderr, flush=True)
        runtime.finalize()
        raise BadInput(2)


def prepare(cfg: Config, st: Startup, snap: dict | None = None):
    """Check the input (identically on every rank) and build the problem.

    1. Rank 0 checks what needs the file system (dataset, labels, K <= rows, trace files,
       code parameters, an existing output) and broadcasts its verdict.
    2. Every other rank loads its copy of the data; if one cannot (a file its node does not
       see), the lowest such rank says so and all stop.
    3. Only then does rank 0 prepare the output (which may create its directory), and
       broadcasts that verdict: a refused run changes nothing on disk.
    No rank exits before all agreed, and all exit 2 after one line on stderr."""
    comm = st.comm
    N = comm.size - 1
    error = None
    problem = None
    try:
        cfg = validate_for_size(cfg, N)
        if comm.rank == 0:
            if Path(cfg.out).parent.is_dir():  # read-only then: fail early, before loading
                check_output(cfg.out, cfg.force)
            budget.check_run(cfg, N, budget.local_ranks(comm.size))  # before any allocation
            # the problem and the policies, built once here so that their own checks fail
            # before training
            problem = Problem.from_config(cfg, cfg.partitions)
            scheme = make_scheme(cfg, N, cfg.partitions)
            make_straggler_model(cfg, N, cfg.partitions)
            uplink = make_uplink(cfg, N)  # channel traces, scheduler parameters
            if snap is not None:  # a dry restore: a checkpoint that does not fit is refused
                bad = checkpoint.check(snap, dim=problem.dim, scheme=scheme, uplink=uplink)
                if bad:
                    raise UsageError(f"--resume {cfg.resume}: {bad}")
    except (UsageError, ValueError) as e:
        error = str(e)
    _agree(st, error, "rank 0 checks the input")
    if comm.rank != 0:
        try:
            problem = Problem.from_config(cfg, cfg.partitions)
        except (UsageError, ValueError) as e:
            error = str(e)
    _agree_all(st, error, "every rank loads the data")
    note = epochs_note(cfg, problem.n)
    cfg = with_epochs(cfg, problem.n)
    if comm.rank == 0:
        if note and not cfg.quiet:
            print(note, file=sys.stderr, flush=True)
        try:
            check_output(cfg.out, cfg.force)  # may create the output's directory
        except UsageError as e:
            error = str(e)
    _agree(st, error, "rank 0 prepares the output")
    return cfg, problem


def resumed(cfg: Config, st: Startup) -> tuple[Config, dict | None]:
    """With ``--resume RUN.h5``: rank 0 reads the stored configuration and checkpoint and
    shares the configuration; every rank continues with it (the command line on top)."""
    if not cfg.resume:
        return cfg, None
    error = stored = snap = None
    if st.comm.rank == 0:
        try:
            stored, snap = read_checkpoint(cfg.resume, n_workers=st.comm.size - 1, mode="mpi")
        except UsageError as e:
            error = str(e)
    _agree(st, error, "rank 0 reads the run to resume")
    stored = st.bcast_json(stored, "rank 0 shares the stored configuration")
    return merge_resumed(cfg, stored), snap


def _warmup(cfg: Config, st: Startup) -> float:
    """Compile before any timing starts; rank 0 first, so that only one process writes
    numba's on-disk cache and the others load it. Returns the seconds it took."""
    comm = st.comm
    t0 = time.perf_counter()
    warm = (kernels.warmup, mlp.warmup) if cfg.model == "mlp" else (kernels.warmup,)
    if comm.rank == 0:
        for f in warm:
            f()
    st.wait_all("rank 0 compiles the kernels")
    if comm.rank != 0:
        for f in warm:
            f()
    return time.perf_counter() - t0


def run(cfg: Config) -> int:
    comm = runtime.world()
    rank, size = comm.rank, comm.size
    setup_logging(rank, size, cfg)
    st = Startup(comm, cfg.startup_timeout)  # every start-up wait: bounded, interruptible
    cfg, snap = resumed(cfg, st)
    # Usage errors found before any communication are the same on every rank.
    cfg, problem = prepare(cfg, st, snap)
    compile_s = _warmup(cfg, st)
    install_stop_handlers()
    # everybody compiled: the clock starts after this
    signum = bounds.agree_on_stop(st, "every rank compiles the kernels")
    if signum:  # SIGTERM/SIGINT during start-up, on any rank: nothing was written yet
        if rank == 0:
            print(f"mpicode: interrupted (signal {signum}) during start-up: nothing written",
                  file=sys.stderr, flush=True)
        runtime.finalize()
        return EXIT_INTERRUPTED
    if rank != 0:
        code = execute(cfg, comm, problem)  # the job's exit code, sent with STOP
        if code:
            runtime.finalize()  # exit with the code, not an MPI_Abort
        return code
    attrs = {"mpi_library": runtime.mpi_library(), "dataset": problem.data.name,
             "dim": problem.dim, "compile_s": compile_s, "n_ranks": size}
    session = Session(cfg, mode="mpi", n_workers=size - 1, attrs=attrs, snap=snap)
    watch = DeathWatch(st.same_host_pids(), (cfg.resume or cfg.out).removesuffix(".part")).start()
    try:
        code = execute(cfg, comm, problem, session, watch=watch)
    finally:
        watch.disarm()  # (already, before STOP; again here if the run raised)
    if session.shutdown:  # a worker never ACKed STOP: MPI_Finalize would hang
        bounds.abort_quietly(comm, code)
    if code != EXIT_OK:
        runtime.finalize()  # the workers are stopped: exit with a code, not an MPI_Abort
        return code
    last = session.trainer.history[-1] if session.trainer.history else {}
    log.info("wrote %s: %d iterations, final loss %.6g, test accuracy %.4f, %.2f s",
             cfg.out, session.runlog.n_done, last.get("loss", float("nan")),
             last.get("accuracy", float("nan")), last.get("t_end", float("nan")))
    return 0


def build(cfg: Config, comm, problem, record: list | None = None):
    """Rank 0's trainer and its MPI backend for ``cfg`` on ``comm``. ``record``: a list to
    which rank 0's actions are appended (``mpicode calibrate``; docs/design.md §2.6)."""
    N, K = comm.size - 1, cfg.partitions
    scheme = make_scheme(cfg, N, K)
    virtual = cfg.delay_mode == "virtual"
    real_link = cfg.link_timing == "real" and not virtual
    uplink = make_uplink(cfg, N, scheme, real_link=real_link)
    coord = Coordinator(comm, problem.dim, now=None)
    cost = cfg.partition_cost or 0.0
    if virtual and cfg.partition_cost is None and cfg.kernel_elements_per_s is not None:
        cost = model_partition_cost(problem.n / K, problem.dim, cfg.kernel_elements_per_s)
    # the cost model is virtual time's: with real delays the costs are real (and measured)
    costs = CostModel.from_config(cfg) if virtual else CostModel()
    events = EventLoop(scheme, make_straggler_model(cfg, N, K), uplink=uplink,
                       partition_cost=cost, msg_bytes=result_bytes(problem.dim),
                       vworkers=VirtualWorkers(N) if virtual else None, costs=costs,
                       rank0=Rank0(costs.rank0, N, virtual=virtual, record=record))
    trainer = Trainer(scheme, events, n_workers=N, problem=problem, lr=cfg.lr, backend=coord,
                      optimizer=make_optimizer(cfg, problem.dim),
                      now=None if virtual else time.perf_counter, eval_every=cfg.eval_every,
                      checkpoint_every=cfg.checkpoint_every, dead_after=cfg.dead_after, log=log)
    coord.now = trainer.now
    events.hooks = (VirtualTime(coord, events, uplink) if virtual
                    else RealTime(coord, events, uplink, real_link=real_link))
    if not virtual:
        events.clock = WallClock(trainer.now, coord.poll, stop_requested)
    coord.attach(scheme, events.hooks)
    # --max-wait for the schemes that cannot give up by themselves (two-stage's is its own)
    limit = getattr(cfg, "max_wait", None) if getattr(scheme, "max_wait", None) is None else None
    if virtual:
        coord.max_wait = limit   # waiting for the real message of a virtual event
    else:
        events.max_wait = limit
    return trainer, coord


def execute(cfg: Config, comm, problem: Problem, session: Session | None = None,
            record: list | None = None, watch=None):
    """Run the job on ``comm``: rank 0 coordinates (logged by ``session``, if given) and
    returns the exit code, or the trainer when there is no session; the other ranks work and
    return their exit code (rank 0's decision, sent with STOP). STOP/ACK on the way out,
    bounded by ``--stop-timeout``. ``record``: rank 0's per-action log (as ``build``);
    ``watch`` (a :class:`~mpicode.mpi.deathwatch.DeathWatch`) is disarmed before the workers
    are told to stop."""
    if comm.rank != 0:
        worker = Worker(comm, problem, uplink=cfg.channel != "ideal")
        worker.loop()
        return worker.exit_code
    trainer, coord = build(cfg, comm, problem, record)

    def stop() -> str | None:
        if watch is not None:
            watch.disarm()
        silent = coord.stop(cfg.stop_timeout, bounds.exit_code(trainer.status, trainer.error))
        return bounds.silent_ranks_text(silent, cfg.stop_timeout) if silent else None

    if session is None:
        trainer.run(cfg.iterations)
        stop()
        return trainer
    return session.run(trainer, after_loop=stop)

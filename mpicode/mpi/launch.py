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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpicode import mpi as runtime
from mpicode.config import Config, merge_resumed, validate_for_size
from mpicode.engine import assembly, budget
from mpicode.engine.loop import Trainer
from mpicode.engine.session import EXIT_INTERRUPTED, EXIT_OK, Session
from mpicode.engine.signals import install_stop_handlers
from mpicode.errors import UsageError
from mpicode.io.runlog import check_output, read_checkpoint
from mpicode.mpi import bounds, library
from mpicode.mpi.coordinator import Coordinator
from mpicode.mpi.deathwatch import DeathWatch
from mpicode.mpi.startup import Startup
from mpicode.mpi.worker import Worker
from mpicode.numerics import kernels, mlp
from mpicode.numerics.batches import epochs_note, with_epochs
from mpicode.numerics.problem import Problem

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
            # before any allocation
            cfg = assembly.check(cfg, N, budget.local_ranks(comm.size))
            check_failure_launch(cfg)
            # the problem and the policies, built once here so that their own checks fail
            # before training; a dry restore refuses a checkpoint that does not fit them
            problem = Problem.from_config(cfg, cfg.partitions)
            assembly.check_policies(cfg, N, dim=problem.dim, snap=snap)
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


def check_failure_launch(cfg: Config) -> None:
    """``--on-failure continue`` needs a launch with fault tolerance (ULFM); the failure
    model (``--fail``, ``--failure-model``) strikes in virtual time only."""
    if cfg.on_failure == "continue" and not library.fault_tolerance_enabled():
        name, ver = library.vendor()
        how = ("launch with mpiexec --with-ft ulfm" if library.fault_tolerance_built() else
               "install an MPI that has it: make install MPI=openmpi, then mpiexec --with-ft "
               "ulfm")
        raise UsageError(f"--on-failure continue needs MPI fault tolerance (ULFM), which this "
                         f"job does not have ({name} {ver}): {how}; see mpicode info")
    if cfg.delay_mode != "virtual" and (cfg.fail or cfg.failure_model != "none"):
        raise UsageError("--fail and --failure-model kill workers in virtual time: use them "
                         "with --delay-mode virtual (or mpicode simulate); to kill a real "
                         "worker, kill its process")


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
        code = execute(cfg, comm, problem).code  # the job's exit code, sent with STOP
        if code:
            runtime.finalize()  # exit with the code, not an MPI_Abort
        return code
    session, code = _coordinate(cfg, st, problem, compile_s, snap)
    if session.shutdown:  # a worker never ACKed STOP: MPI_Finalize would hang
        bounds.abort_quietly(comm, code)
    if code == EXIT_OK:
        _final_line(cfg, session)
    if session.trainer.backend.dead:  # a rank died (ULFM): finalize could wait for it
        bounds.exit_now(code)
    if code != EXIT_OK:
        runtime.finalize()  # the workers are stopped: exit with a code, not an MPI_Abort
    return code


def _coordinate(cfg: Config, st: Startup, problem, compile_s: float,
                snap: dict | None) -> tuple[Session, int]:
    """Rank 0's run, logged by its session; and its exit code. The death watch names a
    worker that dies before the launcher ends the job; under ``--on-failure continue`` a
    worker's death does not end the job (the run goes on without it), so it watches only
    rank 0 itself."""
    comm = st.comm
    attrs = {"mpi_library": runtime.mpi_library(), "dataset": problem.data.name,
             "dim": problem.dim, "compile_s": compile_s, "n_ranks": comm.size}
    session = Session(cfg, mode="mpi", n_workers=comm.size - 1, attrs=attrs, snap=snap)
    pids = st.same_host_pids() if cfg.on_failure != "continue" else {}
    watch = DeathWatch(pids, (cfg.resume or cfg.out).removesuffix(".part")).start()
    try:
        code = execute(cfg, comm, problem, session, watch=watch).code
    finally:
        watch.disarm()  # (already, before STOP; again here if the run raised)
    return session, code


def _final_line(cfg: Config, session: Session) -> None:
    last = session.trainer.history[-1] if session.trainer.history else {}
    log.info("wrote %s: %d iterations, final loss %.6g, test accuracy %.4f, %.2f s",
             cfg.out, session.runlog.n_done, last.get("loss", float("nan")),
             last.get("accuracy", float("nan")), last.get("t_end", float("nan")))


@dataclass
class Outcome:
    """What :func:`execute` returns on every rank: the exit code (rank 0's decision, which
    the workers exit with) and, on rank 0, the trainer (its ``history``, ``w``, ...)."""

    code: int
    trainer: Trainer | None = None

    @property
    def history(self) -> list[dict]:
        return self.trainer.history

    @property
    def w(self) -> np.ndarray:
        return self.trainer.w


def build(cfg: Config, comm, problem, record: list | None = None, session=None, hooks=()):
    """Rank 0's run of ``cfg`` on ``comm`` (:class:`mpicode.engine.assembly.Run`), its
    backend the MPI :class:`Coordinator`. ``session``: an opened session (its hooks: the run
    log, progress, checkpoints); ``hooks``: the caller's own hooks on the run loop;
    ``record``: a list to which rank 0's actions are appended (``mpicode calibrate``;
    docs/design.md §2.6)."""
    def coordinator(**parts):
        return Coordinator(comm, problem.dim, parts["scheme"], clock=parts["clock"],
                           events_clock=parts["events_clock"], inbox=parts["inbox"],
                           uplink=parts["uplink"], virtual=parts["virtual"],
                           max_wait=parts["max_wait"],
                           real_link=assembly.real_link(cfg, "train"))

    return assembly.assemble(cfg, n_workers=comm.size - 1, problem=problem, driver="train",
                             backend=coordinator, session=session, hooks=hooks,
                             record=record)


def execute(cfg: Config, comm, problem: Problem, session: Session | None = None,
            record: list | None = None, hooks=(), watch=None) -> Outcome:
    """Run the job on ``comm``: rank 0 coordinates (logged by ``session``, if given; the
    assembly opens it), the other ranks work. Every rank returns an
    :class:`Outcome`: the exit code (the workers', rank 0's decision sent with STOP) and,
    on rank 0, the trainer. STOP/ACK on the way out, bounded by ``--stop-timeout``.
    ``record``: rank 0's per-action log (as ``build``); ``hooks``: the caller's hooks on
    the run loop; ``watch`` (a :class:`~mpicode.mpi.deathwatch.DeathWatch`) is disarmed
    before the workers are told to stop."""
    if comm.rank != 0:
        worker = Worker(comm, problem, uplink=cfg.channel != "ideal")
        worker.loop()
        if worker.exit_now:  # a rank died (ULFM): MPI_Finalize could wait for it forever
            bounds.exit_now(worker.exit_code)
        return Outcome(worker.exit_code)
    run = build(cfg, comm, problem, record, session, hooks)
    trainer, coord = run.trainer, run.backend

    def stop() -> str | None:
        if watch is not None:
            watch.disarm()
        silent = coord.stop(cfg.stop_timeout, bounds.exit_code(trainer.status, trainer.error))
        return bounds.silent_ranks_text(silent, cfg.stop_timeout) if silent else None

    if session is None:
        trainer.run(cfg.iterations)
        stop()
        return Outcome(bounds.exit_code(trainer.status, trainer.error), trainer)
    return Outcome(session.run(trainer, after_loop=stop), trainer)

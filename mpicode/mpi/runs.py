"""MPI runs as a library: a configuration, a problem loaded once per job, a run logged like
``train``. What ``mpicode calibrate``, the benchmarks that run MPI jobs and the research
suite's MPI jobs (``studies/``) call on every rank of their job, e.g. ::

    mpiexec -n 5 python -m mpi4py -m studies.batch CELLS.json OUT_DIR

    from mpicode.mpi.runs import logged_run, run_config
    cfg = run_config(4, "run.h5", {"samples": 2000, "features": 20}, iterations=10)
    code, trainer = logged_run(cfg, comm, cache={})     # rank 0; the others get None
"""

from __future__ import annotations

from mpicode import mpi as runtime
from mpicode.config import Config, defaults, validate_for_size
from mpicode.engine.session import Session
from mpicode.io.datasets import load
from mpicode.mpi.launch import execute
from mpicode.numerics.problem import Problem


def run_config(N: int, out: str, size: dict, iterations: int, **kw):
    """A validated configuration of one calibration (or benchmark) run on N workers."""
    v = dict(defaults().values)  # every option, the registered schemes' too
    v.update(size)
    v.update(iterations=iterations, quiet=True, force=True, delay_mode="sleep",
             stragglers="none", stragglers_tolerated=1, out=out)
    v.update(kw)
    return validate_for_size(Config(v), N)


def cached_problem(cfg, comm, cache: dict):
    """The run's problem on every rank, its dataset loaded once per job (``cache``); the ranks
    leave together (a barrier), so no run starts before every rank has its data."""
    key = (cfg.dataset, cfg.model, cfg.samples, cfg.features, cfg.seed)
    if key not in cache:
        cache[key] = load(cfg)
    problem = Problem.from_config(cfg, cfg.partitions, data=cache[key])
    comm.Barrier()
    return problem


def logged_run(cfg, comm, cache: dict, attrs: dict | None = None, record: list | None = None):
    """Run ``cfg`` on ``comm`` (every rank), rank 0 logging it to ``cfg.out`` like ``train``
    (with ``attrs`` besides the run's own); rank 0 returns (exit code, trainer), the others
    None. ``cache`` keeps the loaded datasets between runs of one job; ``record``: a list
    rank 0 appends its actions to (§2.6)."""
    problem = cached_problem(cfg, comm, cache)
    if comm.rank != 0:
        execute(cfg, comm, problem)
        return None
    attrs = {"mpi_library": runtime.mpi_library(), "dataset": problem.data.name,
             "dim": problem.dim, "n_ranks": comm.size, **(attrs or {})}
    session = Session(cfg, mode="mpi", n_workers=comm.size - 1, attrs=attrs)
    out = execute(cfg, comm, problem, session, record=record)
    return out.code, out.trainer

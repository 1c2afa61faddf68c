"""The MPI block of the claim-2 study (:mod:`studies.comm_study`): its cells in
ONE job, seed-major, the scheduler order rotated per seed. Launched by
:func:`studies.comm_study.run_mpi` as::

    mpiexec -n 9 python -m mpi4py -m studies.comm_mpi --inner --seeds 3 \\
        --iterations 15 --schemes cyclic two-stage --variants fifo ... lyapunov

Rank 0 prints one ``CELL {json}`` line per cell (the metrics of
:func:`studies.comm_study.cell_metrics`); injected delays are real sleeps and the
slot clock is the wall clock.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from mpicode import mpi as runtime  # lazy: importing mpi4py initialises MPI
from mpicode.engine.hooks import Hook
from mpicode.mpi.launch import execute  # lazy: importing mpi4py initialises MPI
from mpicode.mpi.runs import cached_problem  # lazy: importing mpi4py initialises MPI
from mpicode.numerics import kernels  # lazy: numba (~1 s), on the MPI ranks only
from studies.comm_study import (  # noqa: F401  (run_mpi: its old name here)
    cell_metrics,
    config,
    link_s,
    options,
    run_mpi,
    target_iteration,
)


class LinkTimes(Hook):
    """A hook on rank 0's run loop: each iteration's link time (it needs the iteration's
    tasks, which the scheme forgets at the next; NaN without an uplink), after the row is
    final; then ``after(it)``, if given (the cluster study throttles a link there)."""

    def __init__(self, after=None):
        self.times: list[float] = []
        self.after = after

    def post_step(self, trainer, it, out):
        self.times.append(link_s(trainer.scheme, out["tasks"], out["row"]["wait_s"])
                          if trainer.uplink is not None else math.nan)
        if self.after is not None:
            self.after(it)


def run_series(opts: dict, comm, cache: dict, after=None) -> tuple | None:
    """Run one cell's options in the MPI runtime (every rank; real sleeps, the wall clock);
    rank 0 returns ``(trainer, per)``: per-iteration lists ``iter_s``, ``t_end``, ``comm_s``,
    ``link_s`` (NaN without an uplink) and ``loss``. ``after(it)`` is called on rank 0 after
    each iteration (the cluster study throttles a link there)."""
    N = comm.size - 1
    cfg = config(opts, N, delay_mode="sleep")
    problem = cached_problem(cfg, comm, cache)
    if comm.rank != 0:
        execute(cfg, comm, problem)
        return None
    links = LinkTimes(after)
    trainer = execute(cfg, comm, problem, hooks=[links]).trainer
    h = trainer.history
    per = {"iter_s": [r["t_end"] - r["t_start"] for r in h], "t_end": [r["t_end"] for r in h],
           "comm_s": [r["comm_s"] for r in h], "link_s": links.times[:len(h)],
           "loss": [_loss_after(h, k) for k in range(len(h))]}
    return trainer, per


def _mpi_cell(opts: dict, comm, cache: dict) -> dict | None:
    """One cell in the MPI runtime (every rank); rank 0 returns its metrics."""
    out = run_series(opts, comm, cache)
    if out is None:
        return None
    trainer, per = out
    h = trainer.history
    k = target_iteration(opts["iterations"])
    res = cell_metrics(per, trainer.events.uplink.sched, k)
    res["loss_at_target"] = _loss_after(h, min(k, len(h) - 1))
    res["iterations_done"] = len(h)
    return res


def _loss_after(h: list[dict], k: int) -> float:
    """The training loss after row k's step: rank 0's evaluation, else (``--eval-every``
    skipped it) the workers' ``train_loss`` of the next row, the same model."""
    loss = float(h[k].get("loss", math.nan)) if h else math.nan
    if not math.isfinite(loss) and k + 1 < len(h):
        loss = float(h[k + 1].get("train_loss", math.nan))
    return loss


def _inner(argv) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, required=True)
    p.add_argument("--schemes", nargs="+", required=True)
    p.add_argument("--variants", nargs="+", required=True)
    p.add_argument("--iterations", type=int, required=True)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    kernels.warmup()
    comm = runtime.world().Dup()
    cache: dict = {}
    for k in range(a.seeds):
        order = a.variants[k % len(a.variants):] + a.variants[:k % len(a.variants)]
        for scheme in a.schemes:
            for v in order:
                res = _mpi_cell(options(scheme, v, 100 + k, a.iterations, a.quick), comm, cache)
                if res is not None:
                    print("CELL " + json.dumps({"scheme": scheme, "scheduler": v, "seed": k,
                                                **res}), flush=True)
    comm.Barrier()
    comm.Free()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        sys.exit(_inner(sys.argv[2:]))
    sys.exit("run through python -m studies.comm_study")

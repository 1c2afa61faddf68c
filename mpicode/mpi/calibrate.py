"""``mpicode calibrate``: measure this machine's cost model with the MPI runtime and write a
profile for ``mpicode simulate --profile`` (and ``train --delay-mode virtual --profile``)::

    mpiexec -n 5 python -m mpi4py -m mpicode calibrate --out profile.toml
    mpiexec -n 3 python -m mpi4py -m mpicode calibrate --quick --out /tmp/p.toml  # seconds

Measured, on the ranks of the job (N = ranks - 1 workers): a buffer ping-pong between rank 0
and rank 1 over message sizes, then two short no-delay training runs at the demo size
(``jobs/configs/demo.toml``: 8000 x 100 logistic; ``--quick``: 2000 x 20), ``uncoded`` and
``two-stage``, logged like ``train``; :mod:`mpicode.analysis.calibration` fits the profile's
options from the ping-pong and the runs' rows; ``poll_s`` is rank 0's longest backoff sleep
plus its measured overshoot. The profile is TOML with a header comment
(machine, date, command, MPI library) and a ``[calibration]`` table of what was measured.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mpicode import analysis
from mpicode import mpi as runtime
from mpicode.analysis import rank0_fit
from mpicode.analysis.calibration import fit_profile
from mpicode.errors import UsageError
from mpicode.io import safefile
from mpicode.mpi.comm import Backoff
from mpicode.mpi.floor import barrier, pingpong, rank0_messages

# the run library (mpicode.mpi.runs): the old names here too
from mpicode.mpi.runs import cached_problem, logged_run, run_config  # noqa: F401
from mpicode.numerics import kernels
from mpicode.profile import render_profile
from mpicode.wire import result_bytes

SIZES = (8, 800, 8_000, 80_000, 800_000)
QUICK_SIZES = (8, 8_000, 80_000)
DEMO = {"samples": 8000, "features": 100, "seed": 1, "lr": 0.5}
QUICK = {"samples": 2000, "features": 20, "seed": 1, "lr": 0.5}


def columns(path: str) -> dict:
    """The rows and tasks of a run log as column arrays (``analysis.read_run``)."""
    run = analysis.read_run(path)
    it, tk = analysis.iterations(run), analysis.tasks(run)
    return {"rows": {k: it[k] for k in it.dtype.names},
            "tasks": {k: tk[k] for k in tk.dtype.names}}


def measure(comm, quick: bool, workdir: str, policies: bool = True) -> tuple[dict, dict] | None:
    """Collective: the ping-pong, rank 0's message costs, the runs and (``policies``) the
    in-process fit of rank 0's per-action CPU model; rank 0 returns (profile options,
    record)."""
    sizes = QUICK_SIZES if quick else SIZES
    one_way = pingpong(comm, sizes, reps=20 if quick else 200)
    msg_costs = rank0_messages(comm, reps=50 if quick else 400)
    N = comm.size - 1
    size, iters = (QUICK, 6) if quick else (DEMO, 40)
    runs, cache, actions = [], {}, []
    for scheme in ("uncoded", "two-stage"):
        cfg = run_config(N, str(Path(workdir) / f"calibrate-{scheme}.h5"), size, iters,
                         scheme=scheme)
        mine: list = []
        out = logged_run(cfg, comm, cache, record=mine)
        if out is not None:
            if out[0] != 0:
                raise RuntimeError(f"calibration run {scheme} failed (exit code {out[0]})")
            runs.append(columns(cfg.out))
            actions.append(mine)
    table = None
    if policies and comm.rank == 0:  # the others sleep in a polled barrier meanwhile
        table = rank0_fit.fit_table(rank0_fit.measure(
            Ns=rank0_fit.QUICK_N if quick else rank0_fit.FIT_N))
    barrier(comm, timeout=1800.0)
    if comm.rank != 0:
        return None
    X, K = next(iter(cache.values())).X, cfg.partitions  # logistic: dim = columns of X
    rows, dim = X.shape[0] / K, X.shape[1]
    over = sleep_overshoot()
    values, record = fit_profile(runs, {"bytes": sizes, "one_way_s": one_way}, rows=rows,
                                 features=dim, result_bytes=result_bytes(dim), skip=2,
                                 poll_s=Backoff().hi + over, actions=actions,
                                 rank0_messages=msg_costs, rank0_table=table)
    record.update(workers=N, samples=size["samples"], iterations=iters, partitions=K,
                  runs=["uncoded", "two-stage"], sleep_overshoot_s=over)
    return values, record


def sleep_overshoot(reps: int = 50) -> float:
    """Median seconds by which rank 0's longest backoff sleep overshoots (its poll interval
    is the backoff's longest sleep plus this)."""
    hi = Backoff().hi
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        time.sleep(hi)
        ts.append(time.perf_counter() - t0 - hi)
    return max(0.0, float(np.median(ts)))


def header(argv: list[str]) -> list[str]:
    cmd = " ".join(["mpiexec", "-n", str(runtime.world().size), "python", "-m", "mpi4py", "-m",
                    "mpicode", *argv])
    return ["mpicode cost profile (mpicode calibrate)",
            f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cpus, "
            f"{platform.system()} {platform.release()}, python {platform.python_version()})",
            f"date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
            f"command: {cmd}", f"MPI library: {runtime.mpi_library()}",
            "the options below are defaults for simulate/train --profile; the command line "
            "overrides them"]


def main(args) -> int:
    """The command (every rank); rank 0 writes ``--out``."""
    out = Path(args.out)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists (use --force to overwrite)")
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: no such directory {out.parent}")
    comm = runtime.world()
    if comm.size < 2:
        raise UsageError("calibrate needs MPI ranks: mpiexec -n N+1 python -m mpi4py -m "
                         "mpicode calibrate --out PROFILE.toml")
    kernels.warmup()
    comm = comm.Dup()
    with tempfile.TemporaryDirectory(prefix="mpicode-calibrate-") as tmp:
        res = measure(comm, args.quick, tmp)  # (only rank 0 logs its runs there)
    comm.Free()
    if res is not None:
        values, record = res
        text = render_profile(values, record, header(sys.argv[1:]))
        safefile.output_text(out, text, force=args.force)  # never through a link
        if not args.quiet:
            print(text, end="")
            print(f"wrote {out}")
    return 0

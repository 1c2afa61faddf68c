"""Benchmarks (commands, not tests): ``mpicode bench kernels|schemes|comm|scale|messaging``."""

from __future__ import annotations

import os
import subprocess
import sys


def inner_setup(argv):
    """The MPI side of a benchmark: its ``--json``/``--quick`` flags, numba compiled on
    every rank, and a communicator of its own."""
    import argparse

    from mpicode import mpi as runtime
    from mpicode.numerics import kernels
    p = argparse.ArgumentParser()
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    kernels.warmup()
    return a, runtime.world().Dup()


def launch_inner(module: str, ranks: int, args: list[str], timeout_s: int = 1800) -> None:
    """Run ``mpiexec -n RANKS python -m mpi4py -m MODULE --inner ARGS`` (the MPI part of a
    benchmark) with one thread per rank and a launcher timeout; its output passes through."""
    py = sys.executable
    mpiexec = os.environ.get("MPIEXEC") or os.path.join(os.path.dirname(py), "mpiexec")
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    env.setdefault("MPIEXEC_TIMEOUT", str(timeout_s))
    cmd = [mpiexec, "-n", str(ranks), py, "-m", "mpi4py", "-m", module, "--inner", *args]
    r = subprocess.run(cmd, env=env)
    if r.returncode:
        raise SystemExit(r.returncode)

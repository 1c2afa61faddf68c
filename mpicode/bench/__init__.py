"""Benchmarks (commands, not tests): ``mpicode bench NAME`` (kernels, schemes, comm, scale,
messaging, twin, overhead, runlog, policy)."""

from __future__ import annotations

from mpicode import launcher


def inner_setup(argv):
    """The MPI side of a benchmark: its ``--json``/``--quick`` flags, numba compiled on
    every rank, and a communicator of its own."""
    import argparse

    from mpicode import mpi as runtime  # lazy: importing mpi4py initialises MPI
    from mpicode.numerics import kernels  # lazy: numba (~1 s), on the MPI ranks only
    p = argparse.ArgumentParser()
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    kernels.warmup()
    return a, runtime.world().Dup()


def launch_inner(module: str, ranks: int, args: list[str], timeout_s: int = 1800) -> None:
    """Run ``mpiexec -n RANKS python -m mpi4py -m MODULE --inner ARGS`` (the MPI part of a
    benchmark) with one thread per rank and a launcher timeout (``MPIEXEC_TIMEOUT`` if set);
    its output passes through."""
    r = launcher.launch([module, "--inner", *args], ranks, timeout_s=timeout_s,
                        keep_timeout=True, grace_s=None)
    if r.returncode:
        raise SystemExit(r.returncode)

"""Shared fixtures. Every MPI launch here is bounded (MPIEXEC_TIMEOUT + subprocess timeout)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
MPIEXEC = os.environ.get("MPIEXEC") or str(BIN / "mpiexec")


def wait_until(ok, timeout: float, period: float = 0.1) -> bool:
    """Poll ``ok()`` every ``period`` s for at most ``timeout`` s; True once it holds. (A bound
    on a wait, never a timing assertion.)"""
    end = time.monotonic() + timeout
    while True:
        if ok():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(period)


def run_attr(path, key):
    """Root attribute ``key`` of a run file that may still be written (None if unreadable)."""
    import h5py
    try:
        with h5py.File(path, "r", locking=False) as f:
            return f.attrs[key]
    except (OSError, KeyError):
        return None


def mpirun(n, args, timeout=120, cwd=None, env=None, **kw):
    """``mpiexec -n n python -m mpi4py -m mpicode ARGS`` with a hard timeout."""
    e = dict(os.environ)
    e.setdefault("MPIEXEC_TIMEOUT", str(int(timeout)))
    e["OMP_NUM_THREADS"] = e["NUMBA_NUM_THREADS"] = "1"
    e.update(env or {})
    cmd = [MPIEXEC, "-n", str(n), PY, "-m", "mpi4py", "-m", "mpicode", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30,
                          cwd=cwd or ROOT, env=e, **kw)


def mpicode(args, timeout=120, cwd=None, env=None):
    """Serial ``python -m mpicode ARGS`` (``env``: variables added to the environment)."""
    e = {**os.environ, **env} if env else None
    return subprocess.run([PY, "-m", "mpicode", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env=e)


@pytest.fixture
def run_mpi():
    return mpirun


@pytest.fixture
def run_cli():
    return mpicode


# pytest-mpi prints a 20-line "MPI Information" banner on every rank at the end of a run:
# one line from rank 0 instead (the library and the number of ranks), the rest stays as is.
_MPI_LINE = {"on": False}


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "MPIPlugin" and getattr(plugin, "_is_testing_mpi", False):
            plugin._is_testing_mpi = False  # the flag its banner hook reads; nothing else does
            _MPI_LINE["on"] = True


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _MPI_LINE["on"]:
        return
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        vendor, version = MPI.get_vendor()
        terminalreporter.write_line(f"MPI: {vendor} {'.'.join(map(str, version))}, "
                                    f"{comm.size} ranks (per-rank results above)")


@pytest.fixture
def two_runs(tmp_path):
    """Two small run files (two-stage; uncoded with uplink fields) for the report tests."""
    from runfiles import add_comm_fields, synth
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    synth(a, scheme="two-stage")
    synth(b, n=4, scheme="uncoded", scheduler="lyapunov")
    add_comm_fields(b)
    return str(a), str(b)


@pytest.fixture(scope="session")
def vcluster():
    """The virtual cluster of tests/cluster (:mod:`mpicode.vcluster`): 5 nodes on one bridge,
    built once per session (leftovers of a killed earlier session removed first) and torn
    down at its end, on SIGTERM/SIGHUP and at exit. Where it cannot be built (not root, no
    ``ip``, no network namespaces) every test that uses it skips with one line saying why;
    with ``CI=true`` it fails instead."""
    from mpicode.vcluster import VirtualCluster, cleanup_stale, unavailable
    why = unavailable()
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the virtual cluster cannot run in CI: {why}")
        pytest.skip(f"no virtual cluster: {why}")
    cleanup_stale()
    with VirtualCluster(5) as vc:
        yield vc

"""Shared fixtures. Every MPI launch here is bounded (MPIEXEC_TIMEOUT + subprocess timeout)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
MPIEXEC = os.environ.get("MPIEXEC") or str(BIN / "mpiexec")


def mpirun(n, args, timeout=120, cwd=None, env=None, **kw):
    """``mpiexec -n n python -m mpi4py -m mpicode ARGS`` with a hard timeout."""
    e = dict(os.environ)
    e.setdefault("MPIEXEC_TIMEOUT", str(int(timeout)))
    e["OMP_NUM_THREADS"] = e["NUMBA_NUM_THREADS"] = "1"
    e.update(env or {})
    cmd = [MPIEXEC, "-n", str(n), PY, "-m", "mpi4py", "-m", "mpicode", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30,
                          cwd=cwd or ROOT, env=e, **kw)


def mpicode(args, timeout=120, cwd=None):
    """Serial ``python -m mpicode ARGS``."""
    return subprocess.run([PY, "-m", "mpicode", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT)


@pytest.fixture
def run_mpi():
    return mpirun


@pytest.fixture
def run_cli():
    return mpicode

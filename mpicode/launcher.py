"""How mpicode starts its own MPI jobs from a serial process (benchmarks, experiments,
``mpicode sweep``), and the one-thread environment every rank runs with.

One thread per rank: ranks already share the cores, so numba, OpenMP and the BLAS must not
each start a pool of their own. ``import mpicode`` sets :data:`THREAD_VARS` to 1 unless the
user set them (:func:`one_thread_defaults`); a job launched from here gets them set to 1
(:func:`one_thread_env`). The launch itself::

    launcher.launch(["mpicode.bench.schemes", "--inner", "--quick"], ranks=9, timeout_s=600)
    # = MPIEXEC_TIMEOUT=600 mpiexec -n 9 python -m mpi4py -m mpicode.bench.schemes --inner ...

is always bounded: by the launcher's own timeout (``MPIEXEC_TIMEOUT``) and, unless asked
not to, by a subprocess timeout a minute later.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
THREAD_VARS = ("NUMBA_NUM_THREADS", *BLAS_THREAD_VARS)
GRACE_S = 60  # the subprocess timeout is the launcher's plus this


def one_thread_defaults(environ=os.environ) -> None:
    """Set every :data:`THREAD_VARS` to 1 where it is not set (a user's own setting wins).
    Called by ``import mpicode``, before numba, numpy or a BLAS is loaded."""
    for var in THREAD_VARS:
        environ.setdefault(var, "1")


def one_thread_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a launched job: ``base`` (default: this process's) with every
    :data:`THREAD_VARS` set to 1, and ``extra`` on top."""
    env = dict(os.environ if base is None else base)
    env.update({var: "1" for var in THREAD_VARS})
    env.update(extra)
    return env


def mpiexec() -> str:
    """The launcher: ``$MPIEXEC``, else the ``mpiexec`` beside this Python (the virtual
    environment's MPICH), else the one on ``PATH``."""
    import shutil
    env = os.environ.get("MPIEXEC")
    if env:
        return env
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else (shutil.which("mpiexec") or "mpiexec")


def command(ranks: int, module_args: list[str]) -> list[str]:
    """``mpiexec -n RANKS python -m mpi4py -m MODULE ARGS...`` (``module_args`` starts with
    the module: ``["mpicode", "train", ...]``)."""
    return [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpi4py", "-m",
            *map(str, module_args)]


def launch(module_args: list[str], ranks: int, *, timeout_s: int, capture: bool = False,
           keep_timeout: bool = False, grace_s: int | None = GRACE_S):
    """Run :func:`command` under :func:`one_thread_env` and wait for it.

    ``MPIEXEC_TIMEOUT`` is ``timeout_s`` (``keep_timeout``: unless the caller's environment
    sets it); the subprocess gets ``timeout_s + grace_s`` (``grace_s=None``: only the
    launcher's timeout bounds it). ``capture``: stdout is returned as text, else it passes
    through. Returns the :class:`subprocess.CompletedProcess`."""
    import subprocess
    env = one_thread_env()
    if keep_timeout:
        env.setdefault("MPIEXEC_TIMEOUT", str(timeout_s))
    else:
        env["MPIEXEC_TIMEOUT"] = str(timeout_s)
    return subprocess.run(command(ranks, module_args), env=env,
                          timeout=None if grace_s is None else timeout_s + grace_s,
                          stdout=subprocess.PIPE if capture else None,
                          text=True if capture else None)

"""How mpicode starts its own MPI jobs from a serial process (benchmarks, experiments,
``mpicode sweep``), and the one-thread environment every rank runs with. No mpi4py import
(the launching process is serial and must not initialise MPI)::

    from mpicode import launcher
    launcher.launch(["mpicode.bench.schemes", "--inner", "--quick"], ranks=9, timeout_s=600)
    # = MPIEXEC_TIMEOUT=600 mpiexec -n 9 python -m mpi4py -m mpicode.bench.schemes --inner ...

or, to run the command yourself::

    cmd = [*launcher.mpiexec_argv(5), *launcher.python_m("mpicode", "train", ...)]
    subprocess.run(cmd, env=launcher.launch_env(timeout=600), timeout=660)

Which MPI: the family of the ``mpiexec`` comes from ``mpiexec --version`` (Hydra: MPICH;
``(Open MPI)``: Open MPI), asked once per path, and decides the flags it needs on a shared
2-core machine or in a container:

* MPICH (Hydra): nothing; ``MPIEXEC_TIMEOUT`` bounds the job.
* Open MPI 5 (PRRTE, ``make install MPI=openmpi``): ``--oversubscribe`` (it refuses more
  ranks than cores), as root ``--allow-run-as-root``, ``--with-ft ulfm`` for fault
  tolerance (``train --on-failure continue``), and ``--timeout SECONDS`` (it honours
  ``MPIEXEC_TIMEOUT`` too; both are set).

One thread per rank: ranks already share the cores, so numba, OpenMP and the BLAS must not
each start a pool of their own. ``import mpicode`` sets :data:`THREAD_VARS` to 1 unless the
user set them (:func:`one_thread_defaults`); a launched job gets them set to 1
(:func:`launch_env`). Which ``mpiexec``: ``$MPIEXEC``, else the one beside this Python (the
virtual environment's), else the first on ``PATH``. A launch is always bounded: by the
launcher's own timeout (``MPIEXEC_TIMEOUT``) and, unless asked not to, by a subprocess timeout
a minute later.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
THREAD_VARS = ("NUMBA_NUM_THREADS", *BLAS_THREAD_VARS)
ONE_THREAD = {var: "1" for var in THREAD_VARS}
GRACE_S = 60  # the subprocess timeout is the launcher's plus this


def one_thread_defaults(environ=os.environ) -> None:
    """Set every :data:`THREAD_VARS` to 1 where it is not set (a user's own setting wins).
    Called by ``import mpicode``, before numba, numpy or a BLAS is loaded."""
    for var, value in ONE_THREAD.items():
        environ.setdefault(var, value)


def launch_env(base=None, *, timeout: float | None = None, **extra) -> dict[str, str]:
    """The environment of a launched job: ``base`` (default: this process's) with one thread
    per rank, ``MPIEXEC_TIMEOUT`` if ``timeout`` is given (else the caller's own, if any),
    and ``extra`` on top."""
    env = dict(os.environ if base is None else base)
    env.update(ONE_THREAD)
    if timeout:
        env["MPIEXEC_TIMEOUT"] = str(max(1, int(timeout)))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def mpiexec_path(env=None) -> str:
    """``$MPIEXEC``, else the ``mpiexec`` beside ``sys.executable``, else the first on PATH."""
    env = os.environ if env is None else env
    if env.get("MPIEXEC"):
        return env["MPIEXEC"]
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else (shutil.which("mpiexec") or "mpiexec")


@functools.cache
def _version_text(mpiexec: str) -> str:
    try:
        r = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout + r.stderr


def family(mpiexec: str | None = None) -> str:
    """``mpich``, ``openmpi``, ``intel`` or ``unknown``: the MPI behind ``mpiexec``."""
    text = _version_text(mpiexec or mpiexec_path())
    if "Open MPI" in text or "OpenRTE" in text:
        return "openmpi"
    if "Intel(R) MPI" in text:
        return "intel"
    if "HYDRA" in text or "MPICH" in text:
        return "mpich"
    return "unknown"


def version(mpiexec: str | None = None) -> str:
    """The launcher's version line (e.g. ``mpiexec (Open MPI) 5.0.11``, ``Hydra 5.0.2``)."""
    lines = [ln.strip() for ln in _version_text(mpiexec or mpiexec_path()).splitlines()]
    for line in lines:
        if line.startswith("Version:"):  # Hydra prints a table
            return "Hydra " + line.split(":", 1)[1].strip()
    return next((ln for ln in lines if ln), "")


def launcher_flags(fam: str, *, ft: bool = False, timeout: float | None = None) -> list[str]:
    """The flags ``fam``'s ``mpiexec`` needs before ``-n``. ``ft``: launch with fault
    tolerance (ULFM; Open MPI only, ValueError otherwise)."""
    if fam != "openmpi":
        if ft:
            raise ValueError(f"no fault-tolerant launch with {fam}'s mpiexec: install Open MPI "
                             "(make install MPI=openmpi)")
        return []
    flags = ["--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--allow-run-as-root")
    if ft:
        flags += ["--with-ft", "ulfm"]
    if timeout:
        flags += ["--timeout", str(max(1, int(timeout)))]
    return flags


def mpiexec_argv(n: int, *, mpiexec: str | None = None, ft: bool = False,
                 timeout: float | None = None) -> list[str]:
    """``[mpiexec, flags its MPI needs..., "-n", n]``: append the program (:func:`python_m`).
    ``ft``: with fault tolerance (Open MPI's ULFM)."""
    path = mpiexec or mpiexec_path()
    return [path, *launcher_flags(family(path), ft=ft, timeout=timeout), "-n", str(int(n))]


def fault_tolerance_available(mpiexec: str | None = None) -> bool:
    """Does the installed MPI offer ULFM (Open MPI 5 built with it: ``ompi_info`` says
    ``FT MPI support: yes``)? MPICH's is not usable (``MPIR_CVAR_ENABLE_FT=1`` asserts in
    ``MPI_Init``; with it off a dead rank ends the job)."""
    path = mpiexec or mpiexec_path()
    if family(path) != "openmpi":
        return False
    info = Path(path).parent / "ompi_info"
    exe = str(info) if os.access(info, os.X_OK) else shutil.which("ompi_info")
    return bool(exe) and "FT MPI support: yes" in _ompi_info(exe)


@functools.cache
def _ompi_info(exe: str) -> str:
    try:
        return subprocess.run([exe], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def python_m(*module_args: str) -> list[str]:
    """``[sys.executable, "-m", "mpi4py", "-m", *module_args]``: every rank's program (an
    exception on any rank aborts the whole job)."""
    return [sys.executable, "-m", "mpi4py", "-m", *map(str, module_args)]


def launch(module_args: list[str], ranks: int, *, timeout_s: int, capture: bool = False,
           keep_timeout: bool = False, grace_s: int | None = GRACE_S):
    """Run ``mpiexec -n RANKS python -m mpi4py -m MODULE ARGS...`` (``module_args`` starts
    with the module) under :func:`launch_env` and wait for it.

    ``MPIEXEC_TIMEOUT`` is ``timeout_s`` (``keep_timeout``: unless the caller's environment
    sets it); the subprocess gets ``timeout_s + grace_s`` (``grace_s=None``: only the
    launcher's timeout bounds it). ``capture``: stdout is returned as text, else it passes
    through. Returns the :class:`subprocess.CompletedProcess`."""
    env = launch_env()
    if keep_timeout:
        env.setdefault("MPIEXEC_TIMEOUT", str(timeout_s))
    else:
        env["MPIEXEC_TIMEOUT"] = str(timeout_s)
    return subprocess.run([*mpiexec_argv(ranks), *python_m(*module_args)], env=env,
                          timeout=None if grace_s is None else timeout_s + grace_s,
                          stdout=subprocess.PIPE if capture else None,
                          text=True if capture else None)

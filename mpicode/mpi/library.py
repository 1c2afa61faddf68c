"""Which MPI this process runs on, and whether it can survive a dead rank (ULFM).

``mpicode info`` prints it; ``mpicode train --on-failure continue`` asks
:func:`fault_tolerance_enabled` on rank 0 and refuses to start without it::

    mpiexec --with-ft ulfm -n 5 python -m mpi4py -m mpicode train --on-failure continue ...

Fault tolerance needs two things: a library built with ULFM (Open MPI 5 from PyPI is:
``ompi_info`` says "FT MPI support: yes"; MPICH 5's ``MPIR_CVAR_ENABLE_FT=1`` asserts in
``MPI_Init``, so mpicode treats MPICH as without it) and a launch that turns it on (Open MPI:
``mpirun --with-ft ulfm``, which sets ``OMPI_MCA_mpi_ft_enable=1`` in every rank's
environment; ``--mca mpi_ft_enable true`` does the same).
"""

from __future__ import annotations

import json
import os

from mpi4py import MPI

from mpicode import launcher

_TRUE = ("1", "true", "yes", "on", "enabled")


def vendor() -> tuple[str, str]:
    """(name, version) of the MPI library, e.g. ("Open MPI", "5.0.11")."""
    name, ver = MPI.get_vendor()
    return name, ".".join(map(str, ver))


def library_line() -> str:
    return MPI.Get_library_version().replace("\0", "").splitlines()[0].strip()


def family() -> str:
    """``openmpi``, ``mpich``, ``intel`` or ``unknown`` (of the library, not the launcher)."""
    name = vendor()[0]
    return {"Open MPI": "openmpi", "MPICH": "mpich", "Intel MPI": "intel"}.get(name, "unknown")


def fault_tolerance_built() -> bool:
    """The library offers ULFM (Open MPI's ``ftmpi`` extension; mpi4py >= 4 wraps it)."""
    if family() != "openmpi" or not hasattr(MPI.Comm, "Shrink"):
        return False
    return launcher.fault_tolerance_available() or fault_tolerance_enabled()


def fault_tolerance_enabled() -> bool:
    """This job was launched with ULFM on (Open MPI ``--with-ft ulfm``): a dead rank is
    reported as ``MPI_ERR_PROC_FAILED`` instead of ending the job."""
    if family() != "openmpi":
        return False
    return os.environ.get("OMPI_MCA_mpi_ft_enable", "").strip().lower() in _TRUE


def describe() -> dict:
    """Everything ``mpicode info`` prints, as a dict."""
    import mpi4py
    name, ver = vendor()
    mpiexec = launcher.mpiexec_path()
    return {"mpi_library": name, "mpi_version": ver, "library": library_line(),
            "mpi_standard": ".".join(map(str, MPI.Get_version())),
            "mpi4py": mpi4py.__version__, "mpiexec": mpiexec,
            "mpiexec_family": launcher.family(mpiexec), "launcher": launcher.version(mpiexec),
            "fault_tolerance": fault_tolerance_built(),
            "fault_tolerance_enabled": fault_tolerance_enabled(),
            "launch": " ".join(launcher.mpiexec_argv(5, ft=fault_tolerance_built()))
            + " python -m mpi4py -m mpicode train ..."}


def info_text(version: str, as_json: bool = False) -> str:
    """What ``mpicode info`` prints: mpicode's ``version``, the MPI library (as mpi4py
    loaded it), the launcher and fault tolerance; as JSON with ``as_json``."""
    d = {"mpicode": version, **describe()}
    if as_json:
        return json.dumps(d, indent=1)
    ft = ("yes" if d["fault_tolerance"] else "no") + (
        ": launched with it (--on-failure continue works)" if d["fault_tolerance_enabled"]
        else ": launch with mpiexec --with-ft ulfm for --on-failure continue"
        if d["fault_tolerance"] else " (--on-failure continue needs Open MPI: make install "
        "MPI=openmpi)")
    return (f"mpicode {d['mpicode']}\n"
            f"MPI library: {d['mpi_library']} {d['mpi_version']} (MPI {d['mpi_standard']}, "
            f"mpi4py {d['mpi4py']})\n"
            f"  {d['library']}\n"
            f"launcher: {d['mpiexec']} ({d['mpiexec_family']}: {d['launcher']})\n"
            f"fault tolerance (ULFM): {ft}\n"
            f"launch: {d['launch']}")

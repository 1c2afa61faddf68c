"""Starting MPI jobs on a virtual cluster as over ssh: the ``ssh`` stand-in, hostfiles, argv.

MPICH's Hydra and Open MPI both start one daemon per host with ``ssh HOST COMMAND``. The
stand-in (``DIR/ssh``, written by :func:`ssh_shim`) drops ssh's options, and runs COMMAND
(joined with spaces, run by ``sh -c``, as sshd does) on node HOST through ``node-exec``. The
daemons connect back to ``mpiexec`` on the login node by this host's name, which every node's
hosts file maps to the login node's address. So, on the login node::

    mpiexec -launcher ssh -launcher-exec DIR/ssh -f HOSTFILE -n 5 python -m mpi4py -m mpicode ...
    mpirun --mca plm_rsh_agent DIR/ssh --hostfile HOSTFILE -n 5 ...        # Open MPI

(:func:`mpiexec_argv` builds either, with its hostfile). Environment (:func:`mpi_env`):
pip's MPICH talks through UCX, and UCX sees that every "node" is one machine (one kernel, one
boot id) and would move the bytes through shared memory; ``UCX_TLS=tcp,self`` makes it use
sockets between nodes, as on a cluster without a fast fabric (ranks of one node still share
memory through MPICH's own shared-memory transport). On a real cluster, do not set it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mpicode import launcher
from mpicode.vcluster.netns import VirtualCluster

SSH_SHIM = r"""#!/bin/sh
# ssh stand-in for the virtual cluster in {dir}: ssh [OPTIONS] [USER@]HOST COMMAND...
# runs COMMAND (its words joined, run by sh -c, as sshd does) on node HOST.
while [ $# -gt 0 ]; do
  case "$1" in
    -[BbcDEeFIiJLlmOopQRSWw]) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || {{ echo "ssh stand-in: no host" >&2; exit 255; }}
host=${{1#*@}}
shift
exec "{dir}/node-exec" "$host" sh -c "$*"
"""


def ssh_shim(vc: VirtualCluster) -> Path:
    """The cluster's ``ssh`` stand-in (written once, in the cluster's directory)."""
    p = vc.dir / "ssh"
    if not p.exists():
        p.write_text(SSH_SHIM.format(dir=vc.dir))
        p.chmod(0o755)
    return p


def mpi_kind(mpiexec: str) -> str:
    """``mpich`` (Hydra) or ``openmpi``, from ``mpiexec --version``."""
    r = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    text = r.stdout + r.stderr
    if "Open MPI" in text or "OpenRTE" in text or "PRRTE" in text:
        return "openmpi"
    if "HYDRA" in text or "MPICH" in text:
        return "mpich"
    raise RuntimeError(f"{mpiexec}: neither MPICH's Hydra nor Open MPI:\n{text[:300]}")


def hostfile(vc: VirtualCluster, slots: list[tuple[str, int]], kind: str = "mpich") -> Path:
    """A new hostfile of ``(node, slots)`` lines in the cluster's directory; ranks fill it in
    order (the first node's slots first). MPICH ``node:n``, Open MPI ``node slots=n``."""
    fmt = "{}:{}" if kind == "mpich" else "{} slots={}"
    n = len(list(vc.dir.glob("hostfile-*")))
    p = vc.dir / f"hostfile-{n}"
    p.write_text("".join(fmt.format(node, k) + "\n" for node, k in slots))
    return p


def mpiexec_argv(vc: VirtualCluster, slots: list[tuple[str, int]], n: int | None = None,
                 mpiexec: str | None = None, ft: bool = False) -> list[str]:
    """The launcher's command line, run on the login node, for ``n`` ranks (default: one per
    slot) placed by a hostfile of ``slots``, ``[(node, ranks), ...]`` in rank order (append
    the program). ``mpiexec``: :func:`mpicode.launcher.mpiexec_path` by default (``$MPIEXEC``,
    else the venv's); MPICH's Hydra or Open MPI. ``ft``: with fault tolerance (Open MPI's
    ``--with-ft ulfm``; ValueError for MPICH, which has none)."""
    mpiexec = mpiexec or launcher.mpiexec_path()
    kind = mpi_kind(mpiexec)
    if ft and kind != "openmpi":
        raise ValueError("no fault-tolerant launch with MPICH's mpiexec: install Open MPI "
                         "(make install MPI=openmpi)")
    hf = str(hostfile(vc, slots, kind))
    n = sum(k for _, k in slots) if n is None else n
    shim = str(ssh_shim(vc))
    if kind == "mpich":
        argv = [mpiexec, "-launcher", "ssh", "-launcher-exec", shim, "-f", hf, "-n", str(n)]
    else:
        argv = [mpiexec, "--mca", "plm_rsh_agent", shim, "--hostfile", hf, "-n", str(n)]
        if os.geteuid() == 0:
            argv.insert(1, "--allow-run-as-root")
        if ft:
            argv[1:1] = ["--with-ft", "ulfm"]
    return vc.head_argv(argv)


def mpi_env(base: dict | None = None) -> dict:
    """The environment of a job on the virtual cluster: sockets between nodes (module
    docstring), one thread per rank (:func:`mpicode.launcher.launch_env`)."""
    return launcher.launch_env(base, UCX_TLS="tcp,self")

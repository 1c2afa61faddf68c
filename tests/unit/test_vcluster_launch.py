"""The virtual cluster's launch lines without building a cluster (no root): the hostfile in
each launcher's format and the ssh stand-in in the right flag, for MPICH's Hydra and for Open
MPI (whose cluster runs need root: tests/cluster).

    python -m pytest -q tests/unit/test_vcluster_launch.py
"""

import os

import pytest

from mpicode.vcluster import VirtualCluster, mpiexec_argv
from mpicode.vcluster.launcher import mpi_kind


def _fake_mpiexec(tmp_path, banner):
    p = tmp_path / "mpiexec"
    p.write_text(f"#!/bin/sh\necho '{banner}'\n")
    p.chmod(0o755)
    return str(p)


@pytest.mark.parametrize("banner,kind", [("HYDRA build details:", "mpich"),
                                         ("mpiexec (Open MPI) 5.0.11", "openmpi")])
def test_launch_line_and_hostfile_per_launcher(tmp_path, banner, kind):
    vc = VirtualCluster(3)  # named, not built: only its directory is used here
    vc.dir = tmp_path
    mpx = _fake_mpiexec(tmp_path, banner)
    assert mpi_kind(mpx) == kind
    argv = mpiexec_argv(vc, [(vc.nodes[0], 1), (vc.nodes[1], 2), (vc.nodes[2], 2)],
                        mpiexec=mpx)
    assert argv[:4] == ["ip", "netns", "exec", vc.router] and argv[4] == mpx
    assert argv[-2:] == ["-n", "5"]
    shim = str(tmp_path / "ssh")
    hf = tmp_path / "hostfile-0"
    if kind == "mpich":
        assert argv[5:11] == ["-launcher", "ssh", "-launcher-exec", shim, "-f", str(hf)]
        assert hf.read_text() == f"{vc.nodes[0]}:1\n{vc.nodes[1]}:2\n{vc.nodes[2]}:2\n"
    else:
        assert ["--mca", "plm_rsh_agent", shim, "--hostfile", str(hf)] == [
            a for a in argv[5:-2] if a != "--allow-run-as-root"]
        assert ("--allow-run-as-root" in argv) == (os.geteuid() == 0)
        assert hf.read_text() == (f"{vc.nodes[0]} slots=1\n{vc.nodes[1]} slots=2\n"
                                  f"{vc.nodes[2]} slots=2\n")
    assert os.access(shim, os.X_OK) and "node-exec" in open(shim).read()


def test_fault_tolerant_launch_is_open_mpis_only(tmp_path):
    """ft=True: Open MPI's --with-ft ulfm before the agent and hostfile (tests/cluster's
    node-failure runs); MPICH has no fault tolerance: ValueError, nothing written."""
    vc = VirtualCluster(2)
    vc.dir = tmp_path
    layout = [(vc.nodes[0], 1), (vc.nodes[1], 2)]
    ompi = _fake_mpiexec(tmp_path, "mpiexec (Open MPI) 5.0.11")
    argv = mpiexec_argv(vc, layout, mpiexec=ompi, ft=True)
    i = argv.index("--with-ft")
    assert argv[i + 1] == "ulfm" and i < argv.index("--mca") and argv[-2:] == ["-n", "3"]
    assert "--with-ft" not in mpiexec_argv(vc, layout, mpiexec=ompi)
    (tmp_path / "hydra").mkdir()
    vc.dir = tmp_path / "hydra"
    hydra = _fake_mpiexec(vc.dir, "HYDRA build details:")
    with pytest.raises(ValueError, match="make install MPI=openmpi"):
        mpiexec_argv(vc, layout, mpiexec=hydra, ft=True)
    assert sorted(p.name for p in vc.dir.iterdir()) == ["mpiexec"]  # no hostfile, no shim


def test_names_carry_the_owner_pid():
    from mpicode.vcluster.netns import owner
    vc = VirtualCluster(2)
    assert owner(vc.router) == os.getpid() and owner(vc.nodes[1]) == os.getpid()
    assert all(len(vc.veth(n)) <= 15 and len(vc.port(n)) <= 15 for n in vc.nodes)  # IFNAMSIZ
    assert owner("mpcx") is None and owner("eth0") is None

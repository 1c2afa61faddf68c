"""A small cluster on one Linux host: network namespaces as nodes, real rate-limited links.

For the cluster tests (``make test-cluster``, ``tests/cluster/``) and the real-link study
(:mod:`studies.cluster_links`); it needs root, ``ip`` and network namespaces
(:func:`unavailable` says why not, in one line). Nothing here imports MPI.

* :mod:`~mpicode.vcluster.netns`: the nodes (one namespace each, its own hostname and a
  node-local directory), a bridge in a router namespace that is also the login node where
  ``mpiexec``, ``sbatch`` and ``slurmctld`` run, hosts files, and the teardown that always runs;
* :mod:`~mpicode.vcluster.links`: per-node uplink rates and a shared bottleneck into one node
  (``tbf``/``htb``; this kernel has no ``netem``: no emulated latency or loss), and the
  per-node byte counters;
* :mod:`~mpicode.vcluster.launcher`: the ``ssh`` stand-in that MPICH's Hydra
  (``-launcher-exec``) and Open MPI (``plm_rsh_agent``) call, hostfiles and the ``mpiexec``
  command line.

::

    with VirtualCluster(3) as vc:               # nodes mpc<pid>an0 .. mpc<pid>an2
        layout = [(vc.nodes[0], 1), (vc.nodes[1], 2), (vc.nodes[2], 2)]  # rank 0 alone
        subprocess.run(mpiexec_argv(vc, layout) + [python, "-m", "mpi4py", "-m", "mpicode",
                       "train", ...], env=mpi_env(), timeout=300)
"""

from mpicode.vcluster.launcher import mpi_env, mpiexec_argv
from mpicode.vcluster.netns import VirtualCluster, cleanup_stale, unavailable

__all__ = ["VirtualCluster", "cleanup_stale", "mpi_env", "mpiexec_argv", "unavailable"]

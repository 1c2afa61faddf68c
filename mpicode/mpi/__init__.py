"""The MPI package: the only code of mpicode that imports mpi4py.

``comm`` (backoff, send pool, world), ``worker`` (ranks 1..N), ``coordinator`` (rank 0) and
``launch`` (``mpicode train``); the wire format they speak is :mod:`mpicode.wire` (pure,
re-exported here; ``mpicode.mpi.protocol`` is its old name)::

    mpiexec -n 5 python -m mpi4py -m mpicode train --scheme uncoded --iterations 20

(``python -m mpi4py`` turns an exception on any rank into ``MPI_Abort``, so nothing hangs.)
"""

from mpi4py import MPI

from mpicode.mpi.comm import Backoff, SendPool, finalize, mpi_library, world
from mpicode.mpi.coordinator import Coordinator
from mpicode.mpi.worker import Worker
from mpicode.wire import *  # noqa: F401,F403
from mpicode.wire import RESULT_HEADER, TAG_CHUNK, TAG_RESULT

__all__ = ["MPI", "Backoff", "SendPool", "Coordinator", "Worker", "finalize", "mpi_library",
           "world", "RESULT_HEADER", "TAG_CHUNK", "TAG_RESULT"]

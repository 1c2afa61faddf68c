"""mpicode: straggler-tolerant (coded) synchronous distributed gradient descent on MPI.

Rank 0 coordinates, ranks 1..N compute partial gradients. Launch a training job as::

    mpiexec -n 5 python -m mpi4py -m mpicode train --iterations 50 --out runs/demo.h5

The policies (schemes, schedulers) are pure objects; ``mpicode.runtime`` is the only
module that talks MPI.
"""

__version__ = "0.1.0"
FORMAT_VERSION = 1

"""mpicode: straggler-tolerant (coded) synchronous distributed gradient descent on MPI.

Rank 0 coordinates, ranks 1..N compute partial gradients. Launch a training job as::

    mpiexec -n 5 python -m mpi4py -m mpicode train --iterations 50 --out runs/demo.h5

The policies (schemes, schedulers) are pure objects; ``mpicode.mpi`` is the only
module that talks MPI.
"""

from mpicode.launcher import one_thread_defaults as _one_thread_defaults

# One thread per rank (ranks already share the cores): numba, BLAS and OpenMP read these when
# they load, so they are set before any of them is imported. A user's own setting wins.
_one_thread_defaults()

__version__ = "0.2.0.dev0"  # CHANGELOG.md: the version scheme and tags
FORMAT_VERSION = 1


def register_scheme(cls):
    """Register a scheme class under ``cls.name`` (decorator; see :mod:`mpicode.registry`).
    Imported lazily so that ``import mpicode`` stays light."""
    from mpicode.registry import register_scheme as register  # lazy: a light package root
    return register(cls)


def register_scheduler(cls):
    """Register a scheduler class under ``cls.name`` (decorator)."""
    from mpicode.registry import register_scheduler as register  # lazy: a light package root
    return register(cls)


def register_straggler_model(cls):
    """Register a straggler model class under ``cls.name``, the value of ``--stragglers``
    (decorator; see docs/extending.md)."""
    from mpicode.registry import register_straggler_model as register  # lazy: a light package root
    return register(cls)


def register_channel(cls):
    """Register a channel class under ``cls.name``, the value of ``--channel`` (decorator)."""
    from mpicode.registry import register_channel as register  # lazy: a light package root
    return register(cls)

"""The research suite: the experiments that test mpicode's claims, their publishing and
verdicts. It sits beside the package, in the source tree (the wheel ships ``mpicode`` only),
and uses mpicode as any user would: through its public names.

::

    python -m studies                       # make experiments: results/, results/README.md
    python -m studies.rivals --quick        # one study alone (each module says its command)

``python -m mpicode.experiments[.X]`` are the old names (:mod:`mpicode.experiments`).
:mod:`studies.experiments` is the suite; the others are its studies and their parts.

Importing ``studies`` (before any of its modules, which load numpy before mpicode) sets one
thread per process, as ``import mpicode`` does, before numpy, numba or a BLAS loads
(:func:`mpicode.launcher.one_thread_defaults`). The MPI jobs a study starts run modules of
``studies`` on every rank, wherever they start (``mpiexec`` may not keep the working directory
on another node): importing ``studies`` puts the checkout on ``PYTHONPATH`` for every process
it launches.
"""

import os
from pathlib import Path

from mpicode.launcher import one_thread_defaults

one_thread_defaults()

ROOT = str(Path(__file__).resolve().parent.parent)
_paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
if ROOT not in _paths:
    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, _paths)])

"""``python -m studies`` (``make experiments``): :func:`studies.experiments.main`."""

import sys

# one thread per process, as in every MPI rank: `import mpicode` (loaded by the suite before
# numpy) sets it, before numpy loads its BLAS
from studies.experiments import main

sys.exit(main())

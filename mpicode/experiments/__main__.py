import os
import sys

# one thread per process, as in every MPI rank (set before numpy loads its BLAS)
for _k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

from mpicode.experiments import main  # noqa: E402

sys.exit(main())

import sys

# one thread per process, as in every MPI rank: `import mpicode` (the parent package, loaded
# before this module) has set it, before numpy loads its BLAS
from studies import main

sys.exit(main())

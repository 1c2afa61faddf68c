import sys

from mpicode.experiments import main

sys.exit(main())

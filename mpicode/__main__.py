"""``python -m mpicode`` (serial commands) and ``python -m mpi4py -m mpicode train`` (MPI)."""

from mpicode.cli import main

if __name__ == "__main__":
    main()

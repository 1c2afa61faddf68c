"""Virtual-time benchmarks (pure, no MPI)."""

"""Benchmarks (commands, not tests): ``mpicode bench kernels``."""

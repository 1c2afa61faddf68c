"""Benchmarks (commands, not tests): ``mpicode bench kernels|schemes|comm|scale|messaging``."""

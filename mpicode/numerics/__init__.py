"""Numerics: the fused numba kernels and the learning problem they serve."""

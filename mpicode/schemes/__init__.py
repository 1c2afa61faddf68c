"""Computing-phase schemes (pure policies, DESIGN sections 3 and 4)."""

from __future__ import annotations

from mpicode.schemes.base import Actions, Decoding, Scheme, Task
from mpicode.schemes.uncoded import IgnoreStragglers, Uncoded

SCHEMES: dict[str, type[Scheme]] = {c.name: c for c in (Uncoded, IgnoreStragglers)}


def make_scheme(cfg, n_workers: int, n_partitions: int) -> Scheme:
    """The scheme a configuration names, with its parameters."""
    cls = SCHEMES[cfg.scheme]
    return cls(n_workers, n_partitions, tolerance=cfg.stragglers_tolerated, seed=cfg.seed,
               speed_alpha=cfg.speed_alpha, **scheme_params(cfg))


def scheme_params(cfg) -> dict:
    keys = ("rho", "trigger", "trigger_k", "beta", "stage2_tolerance", "max_wait", "placement")
    return {k: getattr(cfg, k) for k in keys}


__all__ = ["Actions", "Decoding", "Scheme", "Task", "SCHEMES", "make_scheme"]

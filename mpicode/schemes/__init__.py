"""Computing-phase schemes (pure policies, docs/design.md §3)."""

from __future__ import annotations

from mpicode.schemes.base import Actions, Decoding, Scheme, Task
from mpicode.schemes.cyclic import CyclicRepetition
from mpicode.schemes.frc import FractionalRepetition
from mpicode.schemes.self_scheduling import SelfScheduling
from mpicode.schemes.speed_aware import SpeedAware
from mpicode.schemes.two_stage import TwoStage
from mpicode.schemes.uncoded import IgnoreStragglers, Uncoded

SCHEMES: dict[str, type[Scheme]] = {
    c.name: c for c in (Uncoded, IgnoreStragglers, SpeedAware, FractionalRepetition,
                        CyclicRepetition, TwoStage, SelfScheduling)
}


def make_scheme(cfg, n_workers: int, n_partitions: int) -> Scheme:
    """The scheme a configuration names, with its parameters."""
    cls = SCHEMES[cfg.scheme]
    return cls(n_workers, n_partitions, tolerance=cfg.stragglers_tolerated, seed=cfg.seed,
               speed_alpha=cfg.speed_alpha, **scheme_params(cfg))


def scheme_params(cfg) -> dict:
    """The scheme options of ``cfg``; two-stage and self-scheduling use them, the others keep
    them in ``Scheme.params`` and ignore them."""
    keys = ("rho", "trigger", "trigger_k", "beta", "stage2_tolerance", "max_wait", "placement",
            "replan", "stage1_chunks", "chunk", "backup")
    return {k: getattr(cfg, k) for k in keys}


__all__ = ["Actions", "Decoding", "Scheme", "Task", "SCHEMES", "make_scheme", "scheme_params",
           "CyclicRepetition", "FractionalRepetition", "IgnoreStragglers", "SelfScheduling",
           "SpeedAware",
           "TwoStage", "Uncoded"]

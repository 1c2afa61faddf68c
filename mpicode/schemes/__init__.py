"""Computing-phase schemes (pure policies, docs/design.md §3).

Every scheme registers itself (``@register_scheme``); the registry (:mod:`mpicode.registry`)
is the one list of names, with the plugins of the entry-point group ``mpicode.schemes``.
"""

from __future__ import annotations

# isort: off
# registration order is the order of `--scheme` choices and of `mpicode schemes`
from mpicode.schemes.base import Actions, Decoding, Scheme, Task
from mpicode.schemes.uncoded import IgnoreStragglers, Quorum, Uncoded
from mpicode.schemes.speed_aware import SpeedAware
from mpicode.schemes.frc import FractionalRepetition
from mpicode.schemes.cyclic import CyclicRepetition
from mpicode.schemes.two_stage import TwoStage
from mpicode.schemes.self_scheduling import SelfScheduling
# isort: on
from mpicode import registry

SCHEMES = registry.View(registry.schemes)  # name -> class, always current (old name)


def make_scheme(cfg, n_workers: int, n_partitions: int) -> Scheme:
    """The scheme a configuration names, given only its own options."""
    cls = registry.scheme(cfg.scheme)
    return cls(n_workers, n_partitions, tolerance=cfg.stragglers_tolerated, seed=cfg.seed,
               **cls.option_values(cfg))


def scheme_params(cfg) -> dict:
    """The options of the scheme ``cfg`` names, as ``cfg`` gives them."""
    return registry.scheme(cfg.scheme).option_values(cfg)


__all__ = ["Actions", "Decoding", "Scheme", "Task", "SCHEMES", "make_scheme", "scheme_params",
           "CyclicRepetition", "FractionalRepetition", "IgnoreStragglers", "Quorum",
           "SelfScheduling",
           "SpeedAware",
           "TwoStage", "Uncoded"]

"""Uplink schedulers of the communication phase (pure policies, docs/design.md §4).

Where the code goes beyond the reference design (and why; docs/design.md §4):

* the participation floor of coding-aware admission is a second virtual queue ``P`` (per
  offered message), beside the fairness queue ``Z`` of items 1-4 (per slot, messages): with one
  queue, the utility's argmax drives the target to 1 whenever the data queues are short (the
  gradient regime), so it cannot hold participation at a floor below 1;
* ``queue_weights="airtime"`` (Lyapunov function sum_i Q_i^2 E[R]/E[R_i], still
  throughput- and utility-optimal) ranks a queue by the slots it needs; it is an option, the
  default is the design's bytes. It cuts the gradient-regime communication time by a further
  ~10% at N = 8 (see ``python -m mpicode.bench.comm``);
* a worker whose share of a slot cannot carry one byte (a deep fade) leaves the time to the
  next worker instead of wasting it.
"""

from __future__ import annotations

# isort: off
# registration order is the order of `--scheduler` choices and of `mpicode schemes`
from mpicode.schedulers.base import Grant, Message, Scheduler, SlotResult
from mpicode.schedulers.lyapunov import Lyapunov
from mpicode.schedulers.baselines import Fifo, MaxWeight, ProportionalFair, RoundRobin
from mpicode.schedulers.utility import make_utility
from mpicode.stats import jain
# isort: on
from mpicode import registry

SCHEDULERS = registry.View(registry.schedulers)  # name -> class, always current (old name)


def scheduler_params(cfg) -> dict:
    """Keyword arguments of the scheduler a configuration names: the base ones (access,
    record, the wired bottleneck's capacity) and the class's own options."""
    kw = {"access": cfg.access, "record": bool(getattr(cfg, "log_slots", False))}
    if cfg.access == "wired" and getattr(cfg, "bottleneck", None):
        kw["capacity"] = cfg.bottleneck * cfg.slot_ms / 1000.0  # bytes per slot
    kw.update(registry.scheduler(cfg.scheduler).option_values(cfg))
    return kw


def make_scheduler(cfg, n_workers: int, channel, **overrides) -> Scheduler:
    """The scheduler ``cfg.scheduler`` over ``channel`` (``models.channels.make_channel``)."""
    cls = registry.scheduler(cfg.scheduler)  # ValueError naming the choices if unknown
    kw = scheduler_params(cfg)
    kw.update(overrides)
    return cls(n_workers, channel, **kw)


__all__ = ["Grant", "Message", "Scheduler", "SlotResult", "SCHEDULERS", "make_scheduler",
           "scheduler_params", "jain", "make_utility", "Lyapunov", "Fifo", "RoundRobin",
           "MaxWeight", "ProportionalFair"]

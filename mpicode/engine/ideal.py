"""The straggler-free what-if of every iteration: ``ideal_s`` (pure: no MPI).

The metric of straggler what-if analysis (Lin et al., *Understanding Stragglers in Large
Model Training Using What-if Analysis*, OSDI 2025): ``T_ideal`` is the same run with the
straggler delays removed, and ``S = T / T_ideal`` its slowdown. Here each iteration is
replayed by the simulator's own event loop (:class:`mpicode.engine.events.EventLoop` over
:class:`mpicode.engine.vworkers.VirtualWorkers`, the same cost model) with a copy of the
scheme in the state it had when the iteration began (its ``state_dict``: speed estimates,
active workers, ...), every task's injected delay replaced by the straggler model's
*nominal* delay (:meth:`StragglerModel.nominal_rate` times its load: the share of a task
that does not straggle, e.g. ``bimodal`` with every worker at the fast workers' speed,
``shifted-exp`` without its exponential tail, a trace at its iteration's median worker; the per-task
overhead, ``--task-overhead``, is a cost, not a delay, and stays) and the iteration's
partition cost: the model's in virtual time, the one the workers measured in a
real-time run (as the oracle, :mod:`mpicode.models.oracle`). The replay decides as the
scheme would have without delays, so ``ideal_s`` is the scheme's own schedule, redundancy
and all, at straggler-free speed; the uplink is not emulated in it (the ideal channel), so
``S`` counts a slow or shared link as slowdown too.

``ideal_s`` (``/iterations/ideal_s``) is comparable to ``wait_s``: the time from the
iteration's start to decodability. A row's ideal duration is its duration with ``wait_s``
replaced by ``ideal_s`` (the coordinator's other phases are not straggler delays), and the
run's ``S = sum(t_end - t_start) / sum(t_end - t_start - wait_s + ideal_s)``
(:mod:`mpicode.analysis.slowdown`).
"""

from __future__ import annotations

import copy
import logging
import math

import numpy as np

from mpicode.engine.rows import IterationInfo

log = logging.getLogger("mpicode")


class _Nominal:
    """A straggler model's straggler-free twin: every task gets the model's nominal rate
    times its load, plus the per-task overhead (a cost, not a delay); no one-off."""

    def __init__(self, model):
        self.model = model

    def delay(self, iteration, worker, task_index, n_partitions):
        m = self.model
        rate = m.nominal_rate(iteration) if hasattr(m, "nominal_rate") else 0.0
        return rate * m.load(n_partitions) + getattr(m, "overhead", 0.0)


def _frozen(state: dict) -> dict:
    """A copy of a ``state_dict`` that later changes to the live scheme cannot reach."""
    return {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else copy.deepcopy(v))
            for k, v in state.items()}


class IdealReplay:
    """Replays iterations of a run without straggler delays (module docstring).

    ``stragglers`` is the run's straggler model; ``loop(scheme, delays, partition_cost)``
    builds the replay's event loop (the assembly's: the run's cost model and message size,
    virtual workers, a virtual clock, no uplink, no hooks). Call :meth:`before` when an
    iteration begins (it takes the scheme's state) and :meth:`wait` after it; the replay
    never touches the live scheme."""

    def __init__(self, stragglers, n_workers: int, loop, delays=None):
        self.loop = loop
        self.N = int(n_workers)
        self._shadow = None
        self._state: dict | None = None
        self.broken: str | None = None   # why there is no replay (a scheme not copyable)
        # the replay's delay model: the run's straggler-free twin (``delays`` replaces it: a
        # test replays with the real delays and must get the real iteration back)
        self.no_delay = delays if delays is not None else _Nominal(stragglers)

    def before(self, scheme) -> None:
        """The iteration is about to begin: remember the scheme's state."""
        if self.broken is not None:
            return
        if not getattr(scheme, "replayable", True):  # a driver's proxy (bench policy): none
            self.broken = "not replayable"
            return
        if self._shadow is None:   # once: everything the constructor derived (codes, orders)
            try:
                self._shadow = copy.deepcopy(scheme)
            except Exception as e:  # a plugin scheme that cannot be copied: no ideal_s
                self.broken = f"{type(e).__name__}: {e}"
                log.warning("ideal_s not logged: scheme %s cannot be copied for the "
                            "straggler-free replay (%s)", scheme.name, self.broken)
                return
        self._state = _frozen(scheme.state_dict())

    def wait(self, it: int, partition_cost: float) -> float:
        """The iteration's time to decodability without straggler delays (NaN when the
        partition cost is unknown, or the scheme cannot finish the replay)."""
        if self.broken is not None or self._state is None or partition_cost is None \
                or not math.isfinite(partition_cost):
            return math.nan
        shadow = self._shadow
        shadow.load_state_dict(_frozen(self._state))
        loop = self.loop(shadow, self.no_delay, partition_cost)
        try:
            return float(loop.run(it, IterationInfo(self.N), 0.0))
        except RuntimeError:  # a scheme that cannot decode without a message it never gets
            return math.nan
        finally:
            shadow.outstanding(math.nan)

"""The simulator's model of what the MPI runtime costs besides compute and delays (pure).

Used by the event loop in virtual time (``mpicode simulate`` and ``train --delay-mode
virtual``), so a calibrated simulation is the twin of a real run on this machine:

* ``dispatch_s``: a task starts on its worker this long after the coordinator decided it
  (the TASK message, the model's broadcast, the worker noticing it);
  ``redispatch_s`` (default: the same) for a task decided during the iteration (stage 2, a
  re-plan, a steal, a re-issue): one worker woken, not all of them at once;
* ``msg_latency_s + bytes / msg_bandwidth``: each result message, with the ideal channel,
  reaches the coordinator this long after the task's compute finished (the worker is free at
  once: the send is asynchronous);
* ``poll_s``: rank 0 notices a message only when it polls; waiting, it polls with the
  runtime's backoff (:class:`mpicode.engine.clock.Backoff`: intervals growing 1.25x from
  10 us to ``poll_s``, each overshooting by ``poll_s`` beyond the longest sleep of 1 ms,
  restarted at every event), so results that land within one interval are seen
  together, and one that lands just after an event is seen at once;
* ``coord_log_s``, ``coord_decode_s``, ``coord_update_s``, ``coord_eval_s``: rank 0's
  per-iteration work (the previous row's bookkeeping, the decode, the update, an
  evaluation when one is due), added to each iteration's virtual time and logged in the row's
  phases of the same names, so that rows still tile the run's time.

Every value defaults to 0 (and the bandwidth to infinite): then nothing changes, bit for bit.
``mpicode calibrate`` measures them and writes a profile (:mod:`mpicode.profile`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from mpicode.engine.clock import BACKOFF_GROWTH, BACKOFF_HI, BACKOFF_LO


@dataclass(frozen=True)
class CostModel:
    dispatch_s: float = 0.0
    redispatch_s: float | None = None    # None: dispatch_s
    msg_latency_s: float = 0.0
    msg_bandwidth: float | None = None   # bytes/s; None: infinite
    poll_s: float = 0.0                  # 0: a message is noticed the moment it lands
    coord_log_s: float = 0.0
    coord_decode_s: float = 0.0
    coord_update_s: float = 0.0
    coord_eval_s: float = 0.0

    @classmethod
    def from_config(cls, cfg) -> CostModel:
        """The cost model of a configuration (options of the same names; absent: 0)."""
        kw = {}
        for f in fields(cls):
            v = getattr(cfg, f.name, None) if hasattr(cfg, "values") else cfg.get(f.name)
            if v is not None:
                kw[f.name] = float(v)
        return cls(**kw)

    def dispatch_at(self, t: float) -> float:
        """The dispatch latency of a task decided ``t`` seconds into its iteration."""
        return self.dispatch_s if t <= 0.0 or self.redispatch_s is None else self.redispatch_s

    def message_s(self, nbytes: float) -> float:
        """Seconds a result message of ``nbytes`` takes from its worker to the coordinator."""
        t = self.msg_latency_s
        if self.msg_bandwidth is not None and math.isfinite(self.msg_bandwidth):
            t += nbytes / self.msg_bandwidth
        return t

    def noticed(self, t_event: float, t_arrival: float) -> float:
        """When rank 0, whose last event (the backoff's restart) was at ``t_event``, notices
        a message that landed at ``t_arrival``: its first poll at or after it. A ``poll_s``
        above the backoff's longest sleep is that sleep plus the machine's overshoot
        (``mpicode calibrate``), and every sleep of the ramp overshoots by as much."""
        if self.poll_s <= 0 or t_arrival <= t_event:
            return t_arrival
        over = max(0.0, self.poll_s - BACKOFF_HI)
        t, dt = t_event, BACKOFF_LO
        while dt < self.poll_s - over:  # the ramp
            t += dt + over
            if t >= t_arrival:
                return t
            dt *= BACKOFF_GROWTH
        return t + math.ceil((t_arrival - t) / self.poll_s) * self.poll_s

    @property
    def coordinator_s(self) -> float:
        """Rank 0's per-iteration cost without an evaluation."""
        return self.coord_log_s + self.coord_decode_s + self.coord_update_s

    @property
    def is_zero(self) -> bool:
        return (self.dispatch_s == 0.0 and not self.redispatch_s
                and self.message_s(1.0) == 0.0 and self.poll_s == 0.0
                and self.coordinator_s == 0.0 and self.coord_eval_s == 0.0)


ZERO = CostModel()

"""Baseline uplink schedulers (docs/design.md §4). None has admission control: every offered
message enters its data queue at once.

* ``fifo``: send at once; the slot is shared equally (in time) among all workers with data,
  unused shares go to the others (work-conserving).
* ``round-robin``: one worker per slot, cyclically among those with data, channel-blind; the
  time it cannot fill goes to the next in the cycle.
* ``max-weight``: the slot goes to the largest Q_i * R_i(s) (theta = 0, no admission control).
* ``proportional-fair``: the slot goes to the largest D_i(s) / T_i, where D_i = min(Q_i, R_i(s))
  is what worker i can actually deliver in this slot and T_i an exponentially weighted mean of
  its delivered bytes per slot (window ``pf_window`` slots). Ranking on R_i alone would hand
  slots to workers with almost nothing left to send.
"""

from __future__ import annotations

import numpy as np

from mpicode.registry import register_scheduler
from mpicode.schedulers.base import Scheduler


@register_scheduler
class Fifo(Scheduler):
    name = "fifo"

    def _order(self, R):
        order = [i for i in range(self.N) if self.Q[i] > 0]
        return order, max(1, len(order))


@register_scheduler
class RoundRobin(Scheduler):
    name = "round-robin"

    def state_dict(self):
        return {**super().state_dict(), "next": int(self.next)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "next" in state:
            self.next = int(state["next"])

    def __init__(self, n_workers, channel, **kw):
        super().__init__(n_workers, channel, **kw)
        self.next = 0

    def _order(self, R):
        order = [(self.next + j) % self.N for j in range(self.N)]
        k = 1 if self.access != "ofdma" else self.m
        return order, k

    def _after(self, R, out, sent):
        served = [i for i in [(self.next + j) % self.N for j in range(self.N)] if sent[i] > 0]
        if served:
            # the cycle moves on past the workers served first (k of them under ofdma)
            k = 1 if self.access != "ofdma" else self.m
            self.next = (served[min(k, len(served)) - 1] + 1) % self.N


@register_scheduler
class MaxWeight(Scheduler):
    name = "max-weight"

    def _order(self, R):
        w = self.Q * R
        order = [int(i) for i in np.lexsort((np.arange(self.N), -w)) if self.Q[i] > 0]
        return order, 1 if self.access != "ofdma" else self.m


@register_scheduler
class ProportionalFair(Scheduler):
    name = "proportional-fair"
    STATE = Scheduler.STATE + ("T",)

    def __init__(self, n_workers, channel, *, pf_window: float = 100.0, **kw):
        super().__init__(n_workers, channel, **kw)
        self.window = float(pf_window)
        self.T = self.mean_rate / self.N  # a neutral start: the equal share of the mean rate

    def _order(self, R):
        with np.errstate(invalid="ignore"):
            D = np.minimum(self.Q, R)
        metric = D / np.maximum(self.T, 1e-9)
        order = [int(i) for i in np.lexsort((np.arange(self.N), -metric)) if self.Q[i] > 0]
        return order, 1 if self.access != "ofdma" else self.m

    def _after(self, R, out, sent):
        a = 1.0 / self.window
        self.T = (1 - a) * self.T + a * sent

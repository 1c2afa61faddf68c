"""The communication phase on a clock: a scheduler stepped slot by slot (pure, no MPI).

Slot s covers [s * slot_s, (s + 1) * slot_s) of the run's clock (seconds since training
began; virtual in the simulator, wall time in the MPI runtime). Data offered at t can be
granted from the first slot that begins at or after t; a message whose last chunk is granted
in slot s is delivered at the end of slot s. Slots with nothing waiting are skipped (the
scheduler is told the real slot index, so channel samples stay aligned with time).

On the wall clock rank 0 can run late: it then runs the slots it missed back to back (their
capacity was real). An offer that arrives meanwhile, at t after the slot the clock is at,
waits in ``pending`` and reaches the scheduler at the first slot that begins at or after t,
as in virtual time (where the loop runs every slot before a later offer, so nothing waits);
offered at once, it could be granted slots that ended before it was ready.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from mpicode.models.channels import make_channel
from mpicode.schedulers import make_scheduler

BYTE_COUNTERS = ("offered", "admitted", "delivered", "deferred", "dropped")


class Uplink:
    """The slot clock around ``scheduler``. With ``deliver=False`` (``--link-timing real``)
    it only grants: a message is delivered when its last chunk really arrives (the MPI
    receiver reports it), not at the end of the slot that carried its last byte."""

    def __init__(self, scheduler, slot_s: float, deliver: bool = True):
        self.sched = scheduler
        self.slot_s = float(slot_s)
        self.deliver = bool(deliver)
        self.next_slot = 0
        self._last = {k: np.zeros(scheduler.N, np.int64) for k in BYTE_COUNTERS}
        self.iteration = -1
        self.deliveries: list[tuple[float, int]] = []  # (delivery time, task id), this iteration
        # offers made while the slot clock was behind them: (t, seq, worker, msg_id, nbytes)
        self.pending: list[tuple] = []
        self._seq = 0

    def new_iteration(self, it: int) -> None:
        self.iteration = it
        self.deliveries = []

    def state_dict(self) -> dict:
        """The slot clock and the counters already logged (the scheduler has its own)."""
        return {"next_slot": int(self.next_slot),
                **{f"last_{k}": v.copy() for k, v in self._last.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.next_slot = int(state["next_slot"])
        for k in self._last:
            if f"last_{k}" in state:
                self._last[k] = np.asarray(state[f"last_{k}"], np.int64).reshape(self.sched.N)

    def offer(self, worker: int, msg_id, nbytes: int, t: float) -> None:
        if not self.sched.waiting() and not self.pending:
            # idle link: jump to the first slot that begins at or after t
            self.next_slot = max(self.next_slot, math.ceil(t / self.slot_s - 1e-9))
        elif t > self.next_slot * self.slot_s + 1e-9:  # the clock is behind t (wall clock)
            heapq.heappush(self.pending, (t, self._seq, worker, msg_id, nbytes))
            self._seq += 1
            return
        self.sched.offer(worker, msg_id, nbytes)

    def _release(self) -> None:
        """Offer the pending messages whose time has come: those offered at or before the
        next slot's start; on an idle link, the earliest one at once (the clock jumps)."""
        while self.pending:
            t = self.pending[0][0]
            if self.sched.waiting() and t > self.next_slot * self.slot_s + 1e-9:
                return
            _, _, worker, msg_id, nbytes = heapq.heappop(self.pending)
            if not self.sched.waiting():
                self.next_slot = max(self.next_slot, math.ceil(t / self.slot_s - 1e-9))
            self.sched.offer(worker, msg_id, nbytes)

    def drop(self, ids) -> int:
        """Forget these messages (cancelled tasks), pending or in the scheduler."""
        ids = set(ids)
        self.pending = [p for p in self.pending if p[3] not in ids]
        heapq.heapify(self.pending)
        return self.sched.drop(ids)

    def next_slot_time(self) -> float:
        """When the next slot begins, if any data waits (else inf)."""
        self._release()
        return self.next_slot * self.slot_s if self.sched.waiting() else math.inf

    def step(self):
        """Run the next slot; returns its grants. Messages of this iteration whose last
        chunk it carried are delivered at the end of the slot (:meth:`next_delivery`)."""
        self._release()
        s = self.next_slot
        out = self.sched.step(s)
        self.next_slot = s + 1
        end = (s + 1) * self.slot_s
        for (i, tid) in out.completed if self.deliver else ():
            if i == self.iteration:
                heapq.heappush(self.deliveries, (end, tid))
        return out.grants

    def next_delivery(self, present=None) -> float:
        """When the next delivery is due (inf if none); with ``present(tid)``, only those
        whose message is really here count (MPI: the last chunk arrived)."""
        if present is None:
            return self.deliveries[0][0] if self.deliveries else math.inf
        return min((t for t, tid in self.deliveries if present(tid)), default=math.inf)

    def pop_delivery(self, present=None) -> int:
        """The task id of the earliest (present) delivery, removed from the queue."""
        if present is None:
            return heapq.heappop(self.deliveries)[1]
        t, tid = min((t, tid) for t, tid in self.deliveries if present(tid))
        self.deliveries.remove((t, tid))
        heapq.heapify(self.deliveries)
        return tid

    def drop_iteration(self, it: int) -> int:
        """The iteration decoded: its offered and queued data is dropped (and counted; a
        pending message never reached the scheduler and is forgotten)."""
        self.pending = [p for p in self.pending if p[3][0] != it]
        heapq.heapify(self.pending)
        return self.sched.drop(lambda m: m[0] == it)

    def worker_rows(self) -> dict[str, np.ndarray]:
        """Per-worker log row of the iteration that just ended: byte counters as amounts of
        this iteration, Q, Z and long-run participation as they stand now."""
        st = self.sched.stats()
        out = {}
        for k in BYTE_COUNTERS:
            out[k] = st[k] - self._last[k]
            self._last[k] = st[k].copy()
        out["Q"] = st["Q"]
        out["Z"] = st["Z"]
        out["participation"] = st["participation"]
        return out


def make_uplink(cfg, n_workers: int, scheme=None, real_link: bool = False):
    """The uplink of a configuration, or None for the ``ideal`` channel (no emulation). With
    a scheme, the scheduler's coding-aware admission asks it which messages are redundant.
    ``real_link`` (the MPI runtime in real time with ``--link-timing real``): the scheduler
    grants, the real network delivers."""
    if cfg.channel == "ideal":
        return None
    channel = make_channel(cfg, n_workers)
    sched = make_scheduler(cfg, n_workers, channel, record=bool(cfg.log_slots))
    if scheme is not None:
        def decodable(ids):
            it = scheme.iteration
            return scheme.decodable_with({tid for (i, tid) in ids if i == it})
        sched.set_decodable(decodable)
    return Uplink(sched, cfg.slot_ms / 1000.0, deliver=not real_link)

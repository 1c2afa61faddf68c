"""The communication phase on a clock: a scheduler stepped slot by slot (pure, no MPI).

Slot s covers [s * slot_s, (s + 1) * slot_s) of the run's clock (seconds since training
began; virtual in the simulator, wall time in the MPI runtime). Data offered at t can be
granted from the first slot that begins at or after t; a message whose last chunk is granted
in slot s is delivered at the end of slot s. Slots with nothing waiting are skipped (the
scheduler is told the real slot index, so channel samples stay aligned with time).
"""

from __future__ import annotations

import heapq
import math

import numpy as np

BYTE_COUNTERS = ("offered", "admitted", "delivered", "deferred", "dropped")


class Uplink:
    def __init__(self, scheduler, slot_s: float):
        self.sched = scheduler
        self.slot_s = float(slot_s)
        self.next_slot = 0
        self._last = {k: np.zeros(scheduler.N, np.int64) for k in BYTE_COUNTERS}
        self.iteration = -1
        self.deliveries: list[tuple[float, int]] = []  # (delivery time, task id), this iteration

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
        if not self.sched.waiting():
            # idle link: jump to the first slot that begins at or after t
            self.next_slot = max(self.next_slot, math.ceil(t / self.slot_s - 1e-9))
        self.sched.offer(worker, msg_id, nbytes)

    def next_slot_time(self) -> float:
        """When the next slot begins, if any data waits (else inf)."""
        return self.next_slot * self.slot_s if self.sched.waiting() else math.inf

    def step(self):
        """Run the next slot; returns its grants. Messages of this iteration whose last
        chunk it carried are delivered at the end of the slot (:meth:`next_delivery`)."""
        s = self.next_slot
        out = self.sched.step(s)
        self.next_slot = s + 1
        end = (s + 1) * self.slot_s
        for (i, tid) in out.completed:
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
        """The iteration decoded: its offered and queued data is dropped (and counted)."""
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


def make_uplink(cfg, n_workers: int, scheme=None):
    """The uplink of a configuration, or None for the ``ideal`` channel (no emulation). With
    a scheme, the scheduler's coding-aware admission asks it which messages are redundant."""
    from mpicode.models.channels import make_channel
    from mpicode.schedulers import make_scheduler
    if cfg.channel == "ideal":
        return None
    channel = make_channel(cfg, n_workers)
    sched = make_scheduler(cfg, n_workers, channel, record=bool(cfg.log_slots))
    if scheme is not None:
        def decodable(ids):
            it = scheme.iteration
            return scheme.decodable_with({tid for (i, tid) in ids if i == it})
        sched.set_decodable(decodable)
    return Uplink(sched, cfg.slot_ms / 1000.0)

"""The uplink scheduler interface: a pure, slotted, event-driven policy (docs/design.md §4).

A driver (the MPI coordinator, or the simulator) runs the communication phase as::

    sched = make_scheduler(cfg, N, channel)
    sched.set_decodable(fn)                 # optional: coding-aware admission (lyapunov)
    ...
    sched.offer(worker, msg_id, nbytes)     # a worker finished a task: "nbytes ready"
    out = sched.step(slot)                  # at every slot boundary, slot = 0, 1, 2, ...
    for g in out.grants: tell g.worker to send bytes [g.offset, g.offset + g.nbytes) of g.msg_id
    for m in out.completed: the last byte of message m was granted (it is delivered)
    sched.drop(lambda m: m[0] == it)        # iteration ``it`` decoded: forget its messages

Messages move offered -> (admitted) queued -> delivered, or are dropped on the way. Only
admitted data is in the data queue Q_i (bytes). A message is delivered in chunks, in order,
and counts as delivered when its last byte is granted. Workers are numbered 0..N-1.

Subclasses choose what to admit (:meth:`_admit`) and who gets the slot (:meth:`_order`);
the base class does the bookkeeping, the work-conserving sharing of the slot and the counters.
Nothing here imports MPI or reads a clock: a slot is an integer.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

import numpy as np

from mpicode.schedulers.sharing import share_airtime, share_wired

MsgId = Hashable


@dataclass(frozen=True)
class Grant:
    """Worker ``worker`` may send bytes [offset, offset + nbytes) of message ``msg_id`` now.
    ``last`` is True when this chunk completes the message."""

    worker: int
    msg_id: MsgId
    offset: int
    nbytes: int
    last: bool = False


@dataclass
class SlotResult:
    """What happened in one slot."""

    slot: int
    grants: list[Grant] = field(default_factory=list)
    completed: list[MsgId] = field(default_factory=list)   # delivered in this slot
    admitted: list[MsgId] = field(default_factory=list)    # entered a data queue in this slot

    @property
    def sent(self) -> int:
        return sum(g.nbytes for g in self.grants)

    def __iter__(self):  # ``for g in sched.step(s)`` iterates over grants
        return iter(self.grants)

    def __len__(self):
        return len(self.grants)


@dataclass
class Message:
    worker: int
    msg_id: MsgId
    nbytes: int
    slot_offered: int
    sent: int = 0
    state: str = "offered"   # offered | queued | delivered | dropped
    deferred: bool = False   # held back as redundant by coding-aware admission at least once

    @property
    def remaining(self) -> int:
        return self.nbytes - self.sent


class Scheduler:
    """Base class: message bookkeeping, work-conserving slot sharing, counters.

    Parameters
    ----------
    n_workers : int
    channel : mpicode.models.channels.Channel
        Gives ``rates(slot)`` (bytes/slot) and ``mean_rates()``.
    access : {"tdma", "ofdma", "wired"}
        How a slot is shared (:mod:`mpicode.schedulers.sharing`). ``tdma``: in time, the
        first worker of the policy's order first, time it cannot fill to the next
        (work-conserving). ``ofdma``: the band split equally among the top ``m``, unused shares
        pooled to the next in order. ``wired``: every worker up to its own rate, all together
        up to ``capacity`` (links into a shared bottleneck), in the policy's order.
    m : int
        OFDMA: number of workers a slot is split among (default min(4, N)).
    capacity : float
        Wired: bytes per slot all workers share (default: no shared limit).
    record : bool
        Keep one row per slot (:meth:`slot_log`) for ``/slots/``.
    """

    name = "base"
    options: tuple = ()  # mpicode.config.Option entries this scheduler owns (CLI, TOML)
    # counters and queues that live across iterations (checkpointed by state_dict)
    STATE = ("Q", "offered_bytes", "Z", "offered", "admitted", "delivered", "deferred",
             "dropped", "n_offered", "n_admitted", "n_delivered", "n_left_out")

    @classmethod
    def option_values(cls, cfg) -> dict:
        """This class's options as ``cfg`` gives them (its default where ``cfg`` has none)."""
        return {o.name: getattr(cfg, o.name, o.default) for o in cls.options}

    def __init__(self, n_workers: int, channel, *, access: str = "tdma", m: int | None = None,
                 record: bool = False, capacity: float = math.inf, **params):
        if access not in ("tdma", "ofdma", "wired"):
            raise ValueError(f"unknown access {access!r} (tdma, ofdma, wired)")
        if not capacity > 0:
            raise ValueError(f"the wired capacity must be > 0 bytes per slot, not {capacity}")
        self.N = int(n_workers)
        self.channel = channel
        self.access = access
        self.capacity = float(capacity)
        self.m = int(m) if m else min(4, self.N)
        self.record = bool(record)
        self.params = params
        mean = np.asarray(channel.mean_rates(), float)
        self.mean_rate = np.where(np.isfinite(mean) & (mean > 0), mean, 1.0)
        self.offered_q: list[deque[Message]] = [deque() for _ in range(self.N)]
        self.queued_q: list[deque[Message]] = [deque() for _ in range(self.N)]
        self.msgs: dict[MsgId, Message] = {}        # live: offered or queued
        self.delivered_ids: set[MsgId] = set()      # delivered and not yet dropped
        self.decodable: Callable[[set], bool] | None = None
        self.Q = np.zeros(self.N)                   # bytes admitted, not yet granted
        self.offered_bytes = np.zeros(self.N)       # bytes offered, not yet admitted
        self.Z = np.zeros(self.N)                   # virtual fairness queue (messages)
        z = np.zeros(self.N, np.int64)
        self.offered, self.admitted, self.delivered = z.copy(), z.copy(), z.copy()
        self.deferred, self.dropped = z.copy(), z.copy()                       # bytes
        # ``deferred``: bytes of messages admitted later than offered, or never (left out)
        self.n_offered, self.n_admitted, self.n_delivered = z.copy(), z.copy(), z.copy()
        self.n_left_out = z.copy()  # messages dropped before they were ever admitted
        self.slot = -1
        self.unit: float | None = None  # bytes of one message (utility unit): first offer
        self._rows: list[tuple] = []
        self._dirty = True

    # ---- events -------------------------------------------------------------------------
    def offer(self, worker: int, msg_id: MsgId, nbytes: int) -> None:
        """Worker ``worker`` has a message of ``nbytes`` bytes ready (it finished a task)."""
        if not 0 <= worker < self.N:
            raise ValueError(f"worker {worker} out of range 0..{self.N - 1}")
        nbytes = int(nbytes)
        if nbytes <= 0:
            raise ValueError("a message has at least one byte")
        if msg_id in self.msgs or msg_id in self.delivered_ids:
            raise ValueError(f"message {msg_id!r} offered twice")
        if self.unit is None:
            self.unit = float(nbytes)
        msg = Message(int(worker), msg_id, nbytes, self.slot + 1)
        self.msgs[msg_id] = msg
        self.offered_q[worker].append(msg)
        self.offered[worker] += nbytes
        self.offered_bytes[worker] += nbytes
        self.n_offered[worker] += 1
        self._dirty = True

    def set_decodable(self, fn: Callable[[set], bool] | None) -> None:
        """Coding-aware admission: ``fn(msg_ids)`` tells whether these messages (delivered and
        granted ones plus the candidates) would suffice to decode. None switches it off.
        Only schedulers with admission control (lyapunov) use it."""
        self.decodable = fn
        self._dirty = True

    def drop(self, what: Callable[[MsgId], bool] | Iterable[MsgId]) -> int:
        """Forget messages: a predicate on msg_id or a collection of msg_ids. Undelivered bytes
        (offered or queued) are counted as dropped; returns them. Delivered ids are forgotten
        too (they no longer count towards decodability)."""
        if callable(what):
            pred = what
        else:
            ids = set(what)
            pred = ids.__contains__
        total = 0
        for i in range(self.N):
            for q, was_queued in ((self.offered_q[i], False), (self.queued_q[i], True)):
                if not q:
                    continue
                keep = deque()
                for msg in q:
                    if pred(msg.msg_id):
                        rem = msg.remaining
                        total += rem
                        self.dropped[i] += rem
                        if was_queued:
                            self.Q[i] -= rem
                        else:
                            self.offered_bytes[i] -= msg.nbytes
                            self._resolve(msg, admitted=False)
                        msg.state = "dropped"
                        del self.msgs[msg.msg_id]
                    else:
                        keep.append(msg)
                q.clear()
                q.extend(keep)
        self.Q[np.abs(self.Q) < 1e-6] = 0.0
        self.delivered_ids = {m for m in self.delivered_ids if not pred(m)}
        self._dirty = True
        return total

    def step(self, slot: int | None = None) -> SlotResult:
        """Run one slot: admission, transmission, queue updates. Returns the grants, the
        messages completed and the messages admitted in this slot."""
        slot = self.slot + 1 if slot is None else int(slot)
        self.slot = slot
        out = SlotResult(slot)
        R = np.asarray(self.channel.rates(slot), float)
        self._before(R)
        self._admit(out)
        order, k = self._order(R)
        sent = self._serve(order, k, R)
        self._transmit(sent, out)
        self._after(R, out, sent)
        if self.record:
            first = out.grants[0].worker if out.grants else -1
            self._rows.append((slot, first, out.sent, len({g.worker for g in out.grants}),
                               float(self.Q.sum()), float(self.Z.sum())))
        return out

    # ---- queries --------------------------------------------------------------------------
    def waiting(self) -> bool:
        """Is any data offered or queued?"""
        return bool(self.msgs)

    def backlog(self) -> np.ndarray:
        """Bytes queued (admitted) per worker: Q."""
        return self.Q.copy()

    def participation(self) -> np.ndarray:
        """Per worker: fraction of its resolved offers (admitted, or dropped before admission)
        that were admitted; 1 where nothing was resolved yet."""
        resolved = self.n_admitted + self.n_left_out
        return np.where(resolved > 0, self.n_admitted / np.maximum(resolved, 1), 1.0)

    def stats(self) -> dict:
        """Per-worker counters for logging (copies)."""
        return {
            "offered": self.offered.copy(), "admitted": self.admitted.copy(),
            "delivered": self.delivered.copy(), "deferred": self.deferred.copy(),
            "dropped": self.dropped.copy(), "n_offered": self.n_offered.copy(),
            "n_admitted": self.n_admitted.copy(), "n_delivered": self.n_delivered.copy(),
            "n_left_out": self.n_left_out.copy(), "participation": self.participation(),
            "Q": self.Q.copy(), "Z": self.Z.copy(),
        }

    def slot_log(self) -> dict:
        """Per-slot rows (when ``record``): slot, first worker served (-1: idle), bytes sent,
        workers served, sum of Q, sum of Z."""
        names = ("slot", "worker", "bytes", "n_served", "Q_sum", "Z_sum")
        cols = list(zip(*self._rows, strict=True)) if self._rows else [()] * len(names)
        types = (np.int64, np.int64, np.int64, np.int64, np.float64, np.float64)
        return {n: np.asarray(c, t) for n, c, t in zip(names, cols, types, strict=True)}

    # ---- explicit state (checkpoints) ---------------------------------------------------
    def state_dict(self) -> dict:
        """What later slots depend on, as plain arrays and scalars: the queues and counters
        of :data:`STATE`, the slot, the message unit and the per-slot rows (``slot_rows``,
        n x 6). Taken between iterations, when no message is in flight; subclasses add their
        own queues. Everything the constructor derives is rebuilt by constructing anew."""
        out = {k: getattr(self, k).copy() for k in self.STATE}
        out["slot"] = int(self.slot)
        if self.unit is not None:
            out["unit"] = float(self.unit)
        out["slot_rows"] = np.asarray(self._rows, float).reshape(len(self._rows), 6)
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; unknown keys (older checkpoints) are ignored."""
        for k in self.STATE:
            if k in state:
                cur = getattr(self, k)
                setattr(self, k, np.array(state[k], dtype=cur.dtype).reshape(cur.shape))
        if "slot" in state:
            self.slot = int(state["slot"])
        if "unit" in state:
            self.unit = float(state["unit"])
        rows = state.get("slot_rows")
        if rows is not None:
            self._rows = [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4], r[5])
                          for r in np.asarray(rows).reshape(-1, 6)]
        self._dirty = True

    # ---- policy hooks ---------------------------------------------------------------------
    def _before(self, R: np.ndarray) -> None:
        """Start of a slot (before admission)."""

    def _admit(self, out: SlotResult) -> None:
        """Default: admit everything offered at once (no admission control)."""
        for i in range(self.N):
            while self.offered_q[i]:
                self._admit_msg(self.offered_q[i].popleft(), out)

    def _order(self, R: np.ndarray) -> tuple[list[int], int]:
        """(workers in priority order, how many share the slot first)."""
        raise NotImplementedError

    def _after(self, R: np.ndarray, out: SlotResult, sent: np.ndarray) -> None:
        """End of a slot (after Q was updated)."""

    # ---- mechanics --------------------------------------------------------------------------
    def _admit_msg(self, msg: Message, out: SlotResult) -> None:
        msg.state = "queued"
        self.queued_q[msg.worker].append(msg)
        self.Q[msg.worker] += msg.nbytes
        self.offered_bytes[msg.worker] -= msg.nbytes
        self.admitted[msg.worker] += msg.nbytes
        self._resolve(msg, admitted=True)
        out.admitted.append(msg.msg_id)
        self._dirty = True

    def _resolve(self, msg: Message, admitted: bool) -> None:
        """A message left the offered state: admitted, or dropped before admission. Its bytes
        count as ``deferred`` if it was not admitted in the first slot it could have been."""
        if admitted:
            self.n_admitted[msg.worker] += 1
            late = self.slot > msg.slot_offered
        else:
            self.n_left_out[msg.worker] += 1
            late = self.slot >= msg.slot_offered
        if late or msg.deferred:
            self.deferred[msg.worker] += msg.nbytes

    def _serve(self, order: list[int], k: int, R: np.ndarray) -> np.ndarray:
        """Bytes each worker sends in this slot, by the access mode's sharing
        (:mod:`mpicode.schedulers.sharing`) of the policy's ``order`` (its first ``k`` share
        first). A worker is eligible if it has data and a positive rate."""
        elig = [i for i in order if self.Q[i] > 0 and R[i] > 0]
        if self.access == "wired":
            return share_wired(elig, k, self.Q, R, self.capacity)
        return share_airtime(elig, k, self.Q, R)

    def _transmit(self, sent: np.ndarray, out: SlotResult) -> None:
        for i in np.flatnonzero(sent):
            b = int(round(sent[i]))
            q = self.queued_q[i]
            while b > 0 and q:
                msg = q[0]
                n = min(b, msg.remaining)
                last = n == msg.remaining
                out.grants.append(Grant(int(i), msg.msg_id, msg.sent, int(n), last))
                msg.sent += n
                b -= n
                self.Q[i] -= n
                self.delivered[i] += n
                if last:
                    q.popleft()
                    msg.state = "delivered"
                    del self.msgs[msg.msg_id]
                    self.delivered_ids.add(msg.msg_id)
                    self.n_delivered[i] += 1
                    out.completed.append(msg.msg_id)
                    self._dirty = True
            if abs(self.Q[i]) < 1e-6:
                self.Q[i] = 0.0

"""Slots: the positions of an iteration's plan, and when each is complete (pure).

A task fills one slot (``Task.slot``: its own id when planned). When its worker dies the
task is lost and the scheme may re-issue it as *pieces* on the survivors (the same
per-partition coefficients, so the pieces' messages add up to the lost one's); the pieces
fill the lost task's slot, which is complete when every piece arrived. Schemes count, decode
and answer ``decodable_with`` in slots, so a re-issued slot stands for the original
(docs/design.md §2.7). Without failures every slot is one task and nothing here costs more
than a set insertion per arrival.
"""

from __future__ import annotations

import numpy as np

from mpicode.schemes.shares import largest_remainder


def split(n: int, holders, tau, busy) -> list[tuple[int, slice]]:
    """Cut ``n`` partitions of a lost task into pieces for ``holders`` (the survivors that
    may take them): the least loaded first, ``(busy + 1) * tau``, at most one piece each,
    sized in proportion to speed 1/tau (at least one partition each while they last).
    Returns (worker, slice of the task's partitions)."""
    tau = np.asarray(tau, np.float64)
    order = sorted((int(w) for w in holders), key=lambda w: ((busy[w] + 1) * tau[w], w))
    order = order[:max(1, min(len(order), n))]
    counts = largest_remainder(n, 1.0 / tau[order], minimum=1)
    out, i = [], 0
    for w, c in zip(order, counts, strict=True):
        if c:
            out.append((w, slice(i, i + int(c))))
            i += int(c)
    return out


class Slots:
    """The slots of one iteration of a scheme whose tasks are ``tasks`` (id -> Task)."""

    def __init__(self, tasks: dict):
        self.tasks = tasks
        self.done: set[int] = set()           # complete slots
        self.missing: dict[int, int] = {}     # re-issued slot -> pieces still to come
        self.pieces: dict[int, list] = {}     # re-issued slot -> its live pieces

    def arrived(self, task) -> bool:
        """``task``'s message arrived; True if that completes its slot."""
        sl = task.slot
        if sl in self.missing:
            self.missing[sl] -= 1
            if self.missing[sl]:
                return False
            del self.missing[sl]
        self.done.add(sl)
        return True

    def replace(self, lost, pieces: list) -> None:
        """Lost task (or lost piece) ``lost`` is re-issued as ``pieces``: its slot waits for
        them instead."""
        sl = lost.slot
        if sl in self.pieces:
            self.pieces[sl].remove(lost)
            self.missing[sl] += len(pieces) - 1
        else:
            self.missing[sl] = len(pieces)
            self.pieces[sl] = []
        self.pieces[sl] += pieces

    def is_done(self, slot: int) -> bool:
        return slot in self.done

    def complete(self, task_ids) -> set[int]:
        """The slots that the messages of ``task_ids`` would complete (a re-issued slot
        needs all its live pieces; lost tasks bring nothing)."""
        count: dict[int, int] = {}
        for i in task_ids:
            x = self.tasks.get(i)
            if x is not None and not x.lost:
                count[x.slot] = count.get(x.slot, 0) + 1
        return {sl for sl, n in count.items() if n >= (len(self.pieces.get(sl, ())) or 1)}

    def t_done(self, slot: int) -> float:
        """When ``slot`` completed (its last piece's arrival)."""
        x = self.tasks[slot]
        if x.state == "done":
            return x.t_done
        return max(y.t_done for y in self.pieces[slot])

    def expand(self, weights: dict[int, float]) -> dict[int, float]:
        """Weights per slot -> weights per arrived task (every piece of a re-issued slot
        gets the slot's weight); marks them ``used``."""
        out = {}
        for sl, w in weights.items():
            x = self.tasks[sl]
            for y in ([x] if x.state == "done" else self.pieces.get(sl, ())):
                if y.state == "done":
                    out[y.task_id] = w
                    y.used = True
        return out

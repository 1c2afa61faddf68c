"""Two-stage's pool of idle workers, with a heap by rate (pure).

The pool holds the workers that went idle and were given nothing since. Re-planning takes
them fastest first (key: (rate, worker)) and usually stops after a few, so the pool keeps a
heap instead of sorting itself: entries go stale when a worker leaves or its rate changes and
are dropped when met; a worker that joins, or whose rate changes, is pushed anew.
"""

from __future__ import annotations

import heapq

import numpy as np


class IdlePool(set):
    """A set of idle workers that also keeps a heap of them by rate."""

    def __init__(self):
        super().__init__()
        self.joined: list[int] = []  # added since the heap last looked
        self.heap: list[tuple[float, int]] = []
        self.seen = None  # the rates array the heap last looked at
        self.taken: list[int] = []

    def add(self, w: int) -> None:
        super().add(w)
        self.joined.append(w)

    def fastest(self, tau: np.ndarray, tl: list[float], active: np.ndarray):
        """The pool's active workers fastest first (``tau``/``tl``: the rates as an array
        and as a list), lazily, O(log N) a worker taken; :meth:`restore` puts them back.
        The rates may change only where measured (the iteration's estimates are fixed)."""
        h = self.heap
        fresh = self.joined
        if self.seen is not None and self.seen is not tau:
            fresh += np.flatnonzero(tau != self.seen).tolist()
        for w in fresh:
            if w in self:
                heapq.heappush(h, (tl[w], w))
        self.joined, self.seen, self.taken = [], tau, []
        while h:
            r, w = heapq.heappop(h)
            if w in self and r == tl[w] and active[w] and w not in self.taken:
                self.taken.append(w)
                yield w

    def restore(self, tl: list[float]) -> None:
        """Put back the workers :meth:`fastest` handed out."""
        for w in self.taken:
            heapq.heappush(self.heap, (tl[w], w))
        self.taken = []

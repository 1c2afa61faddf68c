"""Two-stage's pool of idle workers, taken fastest first from heaps (pure).

The pool holds the workers that went idle and were given nothing since. Stealing and
re-planning take them fastest first (key: (rate, worker)) and usually stop after a few, so
the pool keeps heaps instead of sorting itself: one keyed by each worker's own rate, and,
without history, one of the workers not measured yet, who all share the measured ones' mean
(keyed by worker). Entries go stale when a worker leaves or its rate changes and are dropped
when met; a worker that joins, or whose rate changes (:attr:`Rates.changed`), is pushed anew.
Taking k workers costs O((k + stale) log N).
"""

from __future__ import annotations

import copy
import heapq

from mpicode.schemes.rates import Rates


class IdlePool(set):
    """A set of idle workers that can hand them out fastest first."""

    def __init__(self, rates: Rates, active):
        super().__init__()
        self.rates = rates
        self.active = active
        self.joined: list[int] = []  # added since the heaps last looked
        self.own: list[tuple[float, int]] = []  # (rate, worker): estimated or measured
        self.mean: list[int] = []    # no history: workers at the measured mean
        self.taken: list[int] = []

    def __deepcopy__(self, memo):
        # a set subclass whose __init__ takes other arguments than its items: copy.deepcopy
        # (the straggler-free replay of mpicode.engine.ideal copies the scheme) would call
        # IdlePool(items); the rates and the active mask are shared with the scheme (memo)
        new = IdlePool.__new__(IdlePool)
        memo[id(self)] = new
        set.update(new, self)
        new.rates = copy.deepcopy(self.rates, memo)
        new.active = copy.deepcopy(self.active, memo)
        new.joined, new.own = list(self.joined), list(self.own)
        new.mean, new.taken = list(self.mean), list(self.taken)
        return new

    def add(self, w: int) -> None:
        super().add(w)
        self.joined.append(w)

    def _push(self, w: int) -> None:
        r = self.rates
        if r.history or r.measured(w):
            heapq.heappush(self.own, (r.rate(w), w))
        else:
            heapq.heappush(self.mean, w)

    def _refresh(self) -> None:
        changed = self.rates.changed
        for w in self.joined:
            if w in self:
                self._push(w)
        for w in changed:
            if w in self:
                self._push(w)
        self.joined = []
        changed.clear()

    def top(self) -> int | None:
        """The pool's fastest active worker, without taking it (None if none)."""
        self._refresh()
        rates, own, mean, active = self.rates, self.own, self.mean, self.active
        rate, measured = rates.rate, rates.measured
        while own:
            r, w = own[0]
            if w in self and active[w] and r == rate(w) and (rates.history or measured(w)):
                break
            heapq.heappop(own)
        while mean:
            w = mean[0]
            if w in self and active[w] and not measured(w):
                break
            heapq.heappop(mean)
        if own and (not mean or own[0] < (rate(mean[0]), mean[0])):
            return own[0][1]
        return mean[0] if mean else None

    def fastest(self):
        """The pool's active workers fastest first, key (rate, worker), lazily; the rates
        must not change until :meth:`restore` puts those handed out back."""
        self._refresh()
        self.taken = []
        rates, own, mean, active, taken = self.rates, self.own, self.mean, self.active, \
            self.taken
        rate, measured = rates.rate, rates.measured
        while True:
            while own:  # drop stale entries at the tops
                r, w = own[0]
                if w in self and active[w] and r == rate(w) and w not in taken and (
                        rates.history or measured(w)):
                    break
                heapq.heappop(own)
            while mean:
                w = mean[0]
                if w in self and active[w] and not measured(w) and w not in taken:
                    break
                heapq.heappop(mean)
            if own and (not mean or own[0] < (rate(mean[0]), mean[0])):
                w = heapq.heappop(own)[1]
            elif mean:
                w = heapq.heappop(mean)
            else:
                return
            taken.append(w)
            yield w

    def restore(self) -> None:
        """Put back the workers :meth:`fastest` handed out."""
        for w in self.taken:
            if w in self:
                self._push(w)
        self.taken = []

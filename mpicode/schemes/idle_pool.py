"""Two-stage's pool of idle workers, with a heap by rate for re-planning (pure)."""

from __future__ import annotations

import copy


class IdlePool(set):
    """Two-stage's idle pool: a set that also keeps a heap of its workers by rate, for
    :meth:`Replanning._idle_order` (entries go stale when a worker leaves or its rate
    changes and are dropped when met; who joined and whose rate changed is pushed anew)."""

    def __init__(self):
        super().__init__()
        self.joined: list[int] = []  # added since the heap last looked
        self.heap: list[tuple[float, int]] = []
        self.seen = None  # the rates array the heap last looked at

    def __deepcopy__(self, memo):
        # a set subclass whose __init__ takes no items: copy.deepcopy (the straggler-free
        # replay of mpicode.engine.ideal copies the scheme) would call IdlePool(items)
        new = IdlePool()
        memo[id(self)] = new
        set.update(new, self)
        new.joined = list(self.joined)
        new.heap = list(self.heap)
        new.seen = copy.deepcopy(self.seen, memo)
        return new

    def add(self, w: int) -> None:
        super().add(w)
        self.joined.append(w)

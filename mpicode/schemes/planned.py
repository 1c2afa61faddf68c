"""Two-stage's planned stage-1 finishes, and the stage-1 tasks past theirs (pure).

Each stage-1 task gets a planned finish when it is dispatched: the end of its worker's share
so far at the worker's rate. A min-heap of the planned finishes moves every task, once, into
``late`` (in order: most overdue first) when the clock passes its finish, O(log n) a task;
re-planning looks for stragglers there, and the next planned finish is when a tick may find
a new one.
"""

from __future__ import annotations

import heapq

from mpicode.schemes.coverage import Coverage


class Changes:
    """Has anything a re-planning round depends on changed (a worker went idle, a task turned
    late, a rate was measured) since a round last found nothing to do?"""

    def __init__(self):
        self.dirty = True

    def bump(self) -> None:
        self.dirty = True


class PlannedFinishes:
    def __init__(self, coverage: Coverage, changes: Changes):
        self.coverage = coverage
        self.changes = changes
        self.at: dict[int, float] = {}       # stage-1 id -> planned finish
        self.heap: list[tuple[float, int]] = []  # (planned finish, id), not yet late
        self.late: dict[int, None] = {}      # ids past their planned finish (a dict: ordered)
        self.added = 0                       # entries ever put in ``late``
        self.late_of: dict[int, list[int]] = {}  # worker -> its ids put in ``late``

    def set(self, j: int, f: float) -> None:
        self.at[j] = f
        heapq.heappush(self.heap, (f, j))

    def someone_late(self, t: float) -> bool:
        """Is a running, uncovered stage-1 task past its planned finish?"""
        h = self.heap
        while h and h[0][0] < t:
            j = heapq.heappop(h)[1]
            self.late[j] = None
            x = self.coverage.s1.get(j)
            if x is not None:
                self.late_of.setdefault(x.worker, []).append(j)
            self.added += 1
            self.changes.bump()
        live = self.coverage.live
        while self.late:  # drop the finished from the front (amortised O(1))
            j = next(iter(self.late))
            if live(j):
                break
            del self.late[j]
        return bool(self.late)

    def next_finish(self) -> float | None:
        """The earliest planned finish of a running, uncovered stage-1 task not late yet."""
        h, live = self.heap, self.coverage.live
        while h and not live(h[0][1]):
            heapq.heappop(h)
        return h[0][0] if h else None

    def rekey(self, queues, rates) -> None:
        """Plan every pending stage-1 task's finish again at ``rates`` (without history the
        first plan guessed 1 s a partition; once, at the first arrival)."""
        s1 = self.coverage.s1
        self.heap = []
        for w, xs in enumerate(queues.tasks):
            f = 0.0
            for x in xs:
                if x.task_id in s1 and x.state == "pending":
                    f += rates.rate(w) * x.n
                    self.at[x.task_id] = f
                    self.heap.append((f, x.task_id))
        heapq.heapify(self.heap)

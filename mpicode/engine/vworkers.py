"""Virtual-time model of N workers, each running its tasks one after another.

Used by the simulator and by the MPI coordinator in ``--delay-mode virtual``: both learn
*when* (in virtual seconds) each dispatched task finishes, so events reach the scheme in
the same order and at the same times whatever the machine does. Pure: no MPI, no clock.
"""

from __future__ import annotations

import heapq

from mpicode.schemes.base import cut_short  # noqa: F401  (the worker's rule, re-exported)


class VirtualWorkers:
    def __init__(self, n_workers: int):
        self.N = n_workers
        self.reset()

    def reset(self) -> None:
        """A new iteration: every worker idle at t = 0, nothing queued."""
        # (tid, duration, earliest start): a task cannot start before it reached its worker
        self.queue: list[list[tuple[int, float, float]]] = [[] for _ in range(self.N)]
        self.start: list[float] = [0.0] * self.N      # start time of the head task
        self.finish: dict[int, float] = {}            # tid -> current finish time
        # (finish, tid) of each worker's running (head) task: the earliest completion is
        # always a head (a queued task ends no sooner than the one before it, and has a
        # larger id), so the heap holds at most one live entry per worker, not one per task
        self.heap: list[tuple[float, int]] = []
        self.worker_of: dict[int, int] = {}

    def _reschedule(self, w: int, t_free: float) -> None:
        """Recompute finish times of worker w's queue, its head starting at ``t_free``."""
        t = t_free
        q = self.queue[w]
        for tid, dur, avail in q:
            t = max(t, avail) + dur
            self.finish[tid] = t
        if q:
            heapq.heappush(self.heap, (self.finish[q[0][0]], q[0][0]))

    def add(self, worker: int, tid: int, t: float, duration: float) -> float:
        """Task ``tid`` reaches ``worker`` at ``t`` (its dispatch time plus the dispatch
        latency); it starts then or when the worker's earlier tasks are done. Returns its
        finish time."""
        q = self.queue[worker]
        self.worker_of[tid] = worker
        if not q:
            self.start[worker] = t
            q.append((tid, duration, t))
            self._reschedule(worker, t)
        else:
            # queued behind the worker's current tasks
            q.append((tid, duration, t))
            prev_finish = self.finish[q[-2][0]]
            self.finish[tid] = max(prev_finish, t) + duration
        return self.finish[tid]

    def cancel(self, tid: int, t: float) -> None:
        """Cancel ``tid`` at ``t``: a running task frees its worker at ``t``."""
        w = self.worker_of.get(tid)
        if w is None or tid not in self.finish:
            return
        q = self.queue[w]
        idx = next((i for i, (x, _, _) in enumerate(q) if x == tid), None)
        if idx is None:
            return
        running = idx == 0
        del q[idx]
        del self.finish[tid]  # (its heap entry, if it ran, is now stale)
        if running:
            self.start[w] = t
            self._reschedule(w, t)
        else:
            # the tasks queued after it move up
            tt = self.finish[q[idx - 1][0]]
            for x, dur, avail in q[idx:]:
                tt = max(tt, avail) + dur
                self.finish[x] = tt

    def peek(self) -> tuple[float, int] | None:
        """(finish time, tid) of the earliest pending completion, or None."""
        h, finish, queue, worker_of = self.heap, self.finish, self.queue, self.worker_of
        while h:
            t, tid = h[0]
            if finish.get(tid) == t and queue[worker_of[tid]][0][0] == tid:
                return t, tid
            heapq.heappop(h)
        return None

    def pop(self) -> tuple[float, int]:
        """Complete the earliest task; its worker moves on to the next in its queue."""
        ev = self.peek()
        if ev is None:
            raise IndexError("no pending task")
        t, tid = ev
        heapq.heappop(self.heap)
        w = self.worker_of[tid]
        q = self.queue[w]
        assert q and q[0][0] == tid, "tasks of a worker finish in order"
        q.pop(0)
        del self.finish[tid]
        self.start[w] = t
        if q:
            heapq.heappush(self.heap, (self.finish[q[0][0]], q[0][0]))
        return t, tid

"""Per-worker task queues of one iteration, as a coordinator sees them (pure).

A worker runs its tasks one after another in the order they were dispatched; a cancelled
task frees it at once. :class:`WorkerQueues` keeps, for each worker, its tasks in that order,
how many are still pending and where its running task (the first pending one) is, so that
"is w idle", "what is w running" and "when did that task start" cost O(1) amortised instead
of a scan of the worker's tasks. The owner reports every task that leaves the pending state
(:meth:`WorkerQueues.left`); a task never returns to it.
"""

from __future__ import annotations

import math

from mpicode.schemes.base import Task


class WorkerQueues:
    """Tasks per worker in dispatch order, with pending counts and the running task."""

    def __init__(self, n_workers: int):
        self.tasks: list[list[Task]] = [[] for _ in range(n_workers)]
        self.n_pending = [0] * n_workers
        self.head = [0] * n_workers      # tasks before it are no longer pending
        self.done_end = [-math.inf] * n_workers  # latest end of a done task before head

    def add(self, task: Task) -> None:
        self.tasks[task.worker].append(task)
        self.n_pending[task.worker] += 1

    def left(self, task: Task) -> None:
        """``task`` is no longer pending (it arrived or was cancelled)."""
        self.n_pending[task.worker] -= 1

    def idle(self, w: int) -> bool:
        return self.n_pending[w] == 0

    def running(self, w: int) -> Task | None:
        """Worker w's running task: its first pending one (None if idle)."""
        if not self.n_pending[w]:
            return None
        q, i = self.tasks[w], self.head[w]
        end = self.done_end[w]
        while q[i].state != "pending":
            if q[i].state == "done" and q[i].t_done > end:
                end = q[i].t_done
            i += 1
        self.head[w], self.done_end[w] = i, end
        return q[i]

    def start(self, x: Task) -> float | None:
        """When ``x`` started, if it is its worker's running task: the end of the latest done
        task before it, or its dispatch if later; None if it is queued behind another."""
        if self.running(x.worker) is not x:
            return None
        end = self.done_end[x.worker]
        return end if end > x.t_dispatch else x.t_dispatch

    def pending(self, w: int) -> list[Task]:
        """Worker w's pending tasks, the running one first."""
        if not self.n_pending[w]:
            return []
        self.running(w)
        return [x for x in self.tasks[w][self.head[w]:] if x.state == "pending"]

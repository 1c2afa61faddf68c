"""Two-stage's stage 1 in chunks, with work stealing (``--stage1-chunks M``, pure).

Each stage-1 worker's speed-proportional share is dispatched as M consecutive tasks that queue
on the worker. A worker that runs out of work steals the *queued* (not started) stage-1 task
of the worker predicted to finish last: the task is cancelled on its worker and the same set
is dispatched to the thief, so nothing is computed twice and every set is still one stage-1
task (the coverage-map decode is unchanged). The running task of a straggler is left to stage
2 and the re-planning rounds. Chunks cost messages (M per worker instead of 1) and buy the
dynamic balance of self-scheduling when speeds change from one iteration to the next. Used as
a mixin by :class:`mpicode.schemes.two_stage.TwoStage`.
"""

from __future__ import annotations

import math

import numpy as np

from mpicode.schemes.base import Actions, Task
from mpicode.schemes.shares import largest_remainder


class Stealing:
    def _chunked(self, worker: int, parts) -> list[Task]:
        """The share of ``worker`` as up to ``stage1_chunks`` consecutive tasks."""
        parts = list(parts)
        m = max(1, min(self.stage1_chunks, len(parts)))
        sizes = largest_remainder(len(parts), np.ones(m), minimum=1)
        out, i = [], 0
        for n in sizes.tolist():
            out.append(self.new_task(worker, 1, parts[i:i + n]))
            i += n
        return out

    def _queue_finish(self, pend: list[Task], t: float, tau) -> float:
        """When a worker's pending stage-1 tasks are predicted to be done (in order)."""
        f = t
        for k, x in enumerate(pend):
            start = x.t_dispatch if k == 0 else f
            f = max(f, start + tau[x.worker] * x.n) if k == 0 else f + tau[x.worker] * x.n
        return f

    def _steal(self, t: float) -> Actions:
        """Every idle worker that finished its own work steals the last queued stage-1 task
        of the worker predicted to finish last (if the thief holds its partitions)."""
        acts = Actions()
        if self.stage1_chunks <= 1:
            return acts
        tau = self.speeds()
        while True:
            pending: dict[int, list[Task]] = {}
            for x in self.s1.values():
                if x.state == "pending":
                    pending.setdefault(x.worker, []).append(x)
            busy = {x.worker for x in self.tasks.values() if x.state == "pending"}
            idle = [int(w) for w in np.flatnonzero(self.active) if w not in busy]
            victims = [(self._queue_finish(q, t, tau), v) for v, q in pending.items()
                       if len(q) > 1 and not self.tiles[q[-1].task_id]]
            if not idle or not victims:
                return acts
            _, v = max(victims)
            x = pending[v][-1]
            thieves = [w for w in idle if all(self.placement.holds(w, int(k))
                                                for k in x.partitions)]
            if not thieves:
                return acts
            w = min(thieves, key=lambda u: (tau[u], u))
            acts.cancel += self._cancel([x], t)
            x.t_done = math.nan  # never ran: no lower bound on its worker's speed
            del self.s1[x.task_id], self.tiles[x.task_id]
            y = self.new_task(w, 1, x.partitions, t=t)
            self.s1[y.task_id] = y
            self.tiles[y.task_id] = []
            acts.dispatch.append(y)
            self.steals += 1
            self.stolen_n += x.n

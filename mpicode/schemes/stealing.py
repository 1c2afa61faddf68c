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

import heapq
import math

import numpy as np

from mpicode.schemes.base import Actions, Task


class Stealing:
    def new_task(self, worker, stage, partitions, coeffs=None, t=0.0):
        task = super().new_task(worker, stage, partitions, coeffs, t)
        self.by_worker.setdefault(task.worker, []).append(task)
        self.idle_pool.discard(task.worker)  # the pool holds only workers with nothing to do
        return task

    def _cancel(self, tasks, t: float) -> list[Task]:
        """Cancel, and free the workers left with nothing pending: they take work again (a
        cancelled running task frees its worker at once). A cancelled running task also
        bounds its worker's speed this iteration from below."""
        tasks = list(tasks)
        for x in tasks:
            if x.state == "pending" and not np.isfinite(self.rate_now[x.worker]):
                s = self._start(x)
                if s is not None and t > s and x.n:
                    self.rate_now[x.worker] = (t - s) / x.n
                    self._rates = None
                    self.version += 1
        out = super()._cancel(tasks, t)
        for x in out:
            if self.active[x.worker] and self.idle(x.worker):
                self.idle_pool.add(x.worker)
                self.version += 1
        return out

    def idle(self, w: int) -> bool:
        return not any(x.state == "pending" for x in self.by_worker.get(w, ()))

    def _idle_candidates(self) -> list[int]:
        """Workers that may take work now: those known idle (and, at the first arrival,
        every idle worker: a reserve)."""
        if self.first_event:
            return [int(w) for w in np.flatnonzero(self.active) if self.idle(int(w))]
        return [w for w in self.idle_pool if self.active[w]]

    def _may_act(self, task) -> bool:
        """Stealing and re-planning need an idle worker: the one that just finished, one that
        went idle before and got nothing, or (at the first arrival) a reserve."""
        return self.first_event or bool(self.idle_pool) or self.idle(task.worker)

    def _with_holders(self, s1: set[int], order: list[int]) -> set[int]:
        """Under replicated placement, add the fastest live holder of any partition that no
        stage-1 worker holds (else stage 1 could not cover it)."""
        rank = {w: i for i, w in enumerate(order)}
        for k in range(self.K):
            hs = self.placement.holders(k)
            if any(h in s1 for h in hs):
                continue
            live = [h for h in hs if h in rank]
            if not live:
                raise RuntimeError(f"two-stage: partition {k} has no live holder")
            h = min(live, key=rank.__getitem__)
            s1.add(h)
            self.log_notes.append(f"stage 1: added worker {h}, the fastest holder of "
                                  f"partition {k}")
        return s1

    def _chunked(self, worker: int, parts) -> list[Task]:
        """The share of ``worker`` as up to ``stage1_chunks`` consecutive tasks."""
        parts = list(parts)
        m = max(1, min(self.stage1_chunks, len(parts)))
        q, r = divmod(len(parts), m)  # equal sizes, the larger first (largest remainder)
        sizes = [q + (i < r) for i in range(m)]
        if not self.placement.shared:
            sizes = self._block_sizes(parts, m)
        out, i = [], 0
        tau = float(self.speeds()[worker])
        f = 0.0
        for n in sizes:
            out.append(self.new_task(worker, 1, parts[i:i + n]))
            f += tau * n  # chunks run one after another: planned finishes accumulate
            self.planned[out[-1].task_id] = f
            heapq.heappush(self.finish_heap, (f, out[-1].task_id))
            i += n
        return out

    def _block_sizes(self, parts: list, m: int) -> list[int]:
        """Replicated placement: chunk sizes that never cross a home block (a chunk within
        one block has all R of its holders to steal or back it up): the runs of one block,
        the longest cut in two until there are m chunks (or every chunk is one partition)."""
        runs: list[int] = []
        last = None
        for k in parts:
            b = k * self.N // self.K
            if b == last:
                runs[-1] += 1
            else:
                runs.append(1)
                last = b
        while len(runs) < m and max(runs) > 1:
            i = max(range(len(runs)), key=lambda r: (runs[r], -r))
            runs[i:i + 1] = [runs[i] - runs[i] // 2, runs[i] // 2]
        return runs

    def _someone_late(self, t: float) -> bool:
        """Is a pending stage-1 task past its planned finish? Tasks move from a min-heap of
        planned finishes into ``late_ids`` once (O(log n) each)."""
        h = self.finish_heap
        while h and h[0][0] < t:
            self.late_ids[heapq.heappop(h)[1]] = None  # (a dict: most overdue first)
            self.version += 1
        while self.late_ids:  # drop the finished from the front (amortised O(1))
            j = next(iter(self.late_ids))
            if j in self.s1 and j not in self.cover and self.s1[j].state == "pending":
                break
            del self.late_ids[j]
        return bool(self.late_ids)

    def _s1_pending(self, w: int) -> list[Task]:
        return [x for x in self.by_worker.get(w, ()) if x.state == "pending"
                and x.task_id in self.s1]

    def _stale_victim(self, entry) -> bool:
        _, v, tid = entry
        q = self._s1_pending(v)
        return len(q) < 2 or q[-1].task_id != tid or any(self.tiles[tid])

    def _push_victim(self, w: int) -> None:
        """Offer worker w's last queued stage-1 task to thieves (key: its planned finish)."""
        q = self._s1_pending(w)
        if len(q) > 1:
            x = q[-1]
            heapq.heappush(self.victims, (-self.planned[x.task_id], w, x.task_id))

    def _steal(self, t: float) -> Actions:
        """Every idle worker that finished its own work steals the last queued stage-1 task
        of the worker predicted to finish last, among those whose task it holds."""
        if self.stage1_chunks <= 1:  # nothing queued to steal: O(1)
            return Actions()
        if self.placement.shared:
            while self.victims and self._stale_victim(self.victims[0]):
                heapq.heappop(self.victims)
            if not self.victims:  # nothing queued to steal: no thief to sort
                return Actions()
        tau = self.rates()
        tl = self._rate_list()
        thieves = sorted(self._idle_candidates(), key=lambda u: (tl[u], u))
        if not thieves:
            return Actions()
        if self.placement.shared:
            return self._steal_shared(t, thieves, tau)
        acts = Actions()
        for w in thieves:  # replicated: only workers within R - 1 of w share blocks with it
            R = self.placement.R
            best = None
            for v in {(w + d) % self.N for d in range(1 - R, R)} - {w}:
                q = self._s1_pending(v)
                if len(q) < 2 or any(self.tiles[q[-1].task_id]):  # (empty: no holder)
                    continue
                x, end = q[-1], self._queue_end(v, t, tau)
                if ((best is None or end > best[0]) and t + tau[w] * x.n < end
                        and all(self.placement.holds(w, int(k)) for k in x.partitions)):
                    best = (end, v, q)
            if best is not None:
                acts.cancel += self._move(self._tail(best[2], w, best[0], t, tau), w, t, tau,
                                          acts)
        return acts

    def _tail(self, q: list[Task], w: int, end: float, t: float, tau) -> list[Task]:
        """The queued stage-1 tasks of a victim (``q``, running first) that thief w takes,
        from the last: while w would finish them sooner than the victim (done by ``end``),
        and w holds them."""
        took: list[Task] = []
        n = 0
        v = q[0].worker
        for x in reversed(q[1:]):
            if any(self.tiles[x.task_id]) or t + tau[w] * (n + x.n) >= end or not all(
                    self.placement.holds(w, int(k)) for k in x.partitions):
                break
            took.append(x)
            n += x.n
            end -= tau[v] * x.n
        return took

    def _queue_end(self, v: int, t: float, tau) -> float:
        """When worker v is predicted to finish everything it has pending (then its last
        queued task): its running task's predicted finish plus the rest at its rate."""
        q = [x for x in self.by_worker.get(v, ()) if x.state == "pending"]
        if not q:
            return t
        f = self._finish(q[0], t, tau, self._start(q[0]))
        return f + tau[v] * sum(x.n for x in q[1:])

    def _steal_shared(self, t: float, thieves: list[int], tau) -> Actions:
        """Shared placement: a heap of victims keyed by planned finish, O(log N) a steal."""
        acts = Actions()
        while self.victims and self._stale_victim(self.victims[0]):
            heapq.heappop(self.victims)
        while thieves and self.victims:
            entry = heapq.heappop(self.victims)
            if self._stale_victim(entry):
                continue  # that task ran, was stolen, or has stage-2 blocks
            x = self.s1[entry[2]]
            if t + tau[thieves[0]] * x.n >= self._queue_end(entry[1], t, tau):
                heapq.heappush(self.victims, entry)  # the fastest thief would not be sooner
                break
            acts.cancel += self._move(x, thieves.pop(0), t, tau, acts)
            self._push_victim(entry[1])
        return acts

    def _move(self, xs, w: int, t: float, tau, acts: Actions) -> list[Task]:
        """Stage-1 task(s) xs move, not yet started, to worker w: cancelled on their worker,
        their union dispatched to w as one stage-1 task (into ``acts``); the cancels."""
        xs = [xs] if isinstance(xs, Task) else xs
        gone = self._cancel(xs, t)
        for x in xs:
            x.t_done = math.nan  # never ran: no lower bound on its worker's speed
            del self.s1[x.task_id], self.tiles[x.task_id]
        x = xs[0] if len(xs) == 1 else Task(-1, w, 1, np.sort(np.concatenate(
            [z.partitions for z in xs])))
        y = self.new_task(w, 1, x.partitions, t=t)
        self.planned[y.task_id] = t + tau[w] * y.n
        heapq.heappush(self.finish_heap, (self.planned[y.task_id], y.task_id))
        self.s1[y.task_id] = y
        self.tiles[y.task_id] = []
        acts.dispatch.append(y)
        self.steals += 1
        self.stolen_n += x.n
        return gone

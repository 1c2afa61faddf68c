"""Two-stage's stage 1 in chunks, with work stealing (``--stage1-chunks M``, pure).

Each stage-1 worker's speed-proportional share is dispatched as M consecutive tasks that queue
on the worker. A worker that runs out of work steals the *queued* (not started) stage-1 task
of the worker predicted to finish last: the task is cancelled on its worker and the same set
is dispatched to the thief, so nothing is computed twice and every set is still one stage-1
task (the coverage-map decode is unchanged). The running task of a straggler is left to stage
2 and the re-planning rounds. Chunks cost messages (M per worker instead of 1) and buy the
dynamic balance of self-scheduling when speeds change from one iteration to the next.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from mpicode.schemes.base import Actions, Task
from mpicode.schemes.rates import predicted_finish


class Stealer:
    """Stage-1 chunks and the thefts of queued ones, for one iteration.

    Parameters
    ----------
    scheme : TwoStage
        For its task factory and cancels (``dispatch``, ``cancel``), its coverage map, worker
        queues, rates, planned finishes and idle pool, all of this iteration.
    chunks : int
        Queued tasks per stage-1 share (1: nothing to steal).
    """

    def __init__(self, scheme, chunks: int):
        self.sc = scheme
        self.chunks = chunks
        self.placement = scheme.placement
        self.victims: list = []  # heap of (-planned finish, worker, id of its last queued task)
        self.steals = 0          # stage-1 tasks stolen by idle workers
        self.stolen_n = 0        # their partitions (never computed on the victim)
        self.queued: list[int] = []  # replicated: workers that had queued stage-1 work

    # ---- the plan ------------------------------------------------------------------------
    def chunked(self, worker: int, parts, rate: float) -> list[Task]:
        """The share of ``worker`` (``rate``: its seconds per partition) as up to ``chunks``
        consecutive tasks, each with its planned finish."""
        sc = self.sc
        parts = list(parts)
        m = max(1, min(self.chunks, len(parts)))
        q, r = divmod(len(parts), m)  # equal sizes, the larger first (largest remainder)
        sizes = [q + (i < r) for i in range(m)]
        if not self.placement.shared:
            sizes = self._block_sizes(parts, m)
        out, i = [], 0
        f = 0.0
        run = parts[-1] - parts[0] + 1 == len(parts)  # contiguous: chunks as ranges (faster)
        for n in sizes:
            out.append(sc.dispatch(worker, 1, np.arange(parts[i], parts[i] + n, dtype=np.int64)
                                   if run else parts[i:i + n]))
            f += rate * n  # chunks run one after another: planned finishes accumulate
            sc.planned.set(out[-1].task_id, f)
            i += n
        return out

    def _block_sizes(self, parts: list, m: int) -> list[int]:
        """Replicated placement: chunk sizes that never cross a home block (a chunk within
        one block has all R of its holders to steal or back it up): the runs of one block,
        the longest cut in two until there are m chunks (or every chunk is one partition)."""
        N, K = self.placement.N, self.placement.K
        runs: list[int] = []
        last = None
        for k in parts:
            b = k * N // K
            if b == last:
                runs[-1] += 1
            else:
                runs.append(1)
                last = b
        while len(runs) < m and max(runs) > 1:
            i = max(range(len(runs)), key=lambda r: (runs[r], -r))
            runs[i:i + 1] = [runs[i] - runs[i] // 2, runs[i] // 2]
        return runs

    # ---- victims -------------------------------------------------------------------------
    def _queued(self, w: int) -> list[Task]:
        """Worker w's pending stage-1 tasks (the running one first)."""
        s1 = self.sc.coverage.s1
        return [x for x in self.sc.queues.pending(w) if x.task_id in s1]

    def _stale(self, entry) -> bool:
        _, v, tid = entry
        q = self._queued(v)
        return len(q) < 2 or q[-1].task_id != tid or self.sc.coverage.has_groups(tid)

    def offer(self, w: int) -> None:
        """Offer worker w's last queued stage-1 task to thieves (key: its planned finish)."""
        q = self._queued(w)
        if len(q) > 1:
            x = q[-1]
            if not self.placement.shared:  # (offered only by the plan)
                self.queued.append(w)
            heapq.heappush(self.victims, (-self.sc.planned.at[x.task_id], w, x.task_id))

    # ---- thefts --------------------------------------------------------------------------
    def steal(self, t: float) -> Actions:
        """Every idle worker that finished its own work steals the last queued stage-1 task
        of the worker predicted to finish last, among those whose task it holds."""
        if self.chunks <= 1:  # nothing queued to steal: O(1)
            return Actions()
        if self.placement.shared:
            while self.victims and self._stale(self.victims[0]):
                heapq.heappop(self.victims)
            if not self.victims:  # nothing queued to steal: no thief to look at
                return Actions()
            return self._steal_shared(t)
        return self._steal_replicated(t)

    def _steal_replicated(self, t: float) -> Actions:
        """Replicated placement: only workers within R - 1 of a thief share blocks with it,
        so the thieves that may steal are the idle workers near a worker with queued work
        (found from the smaller of the two sets, O(R min(#idle, #queues)) an event)."""
        sc = self.sc
        rate, N, R = sc.rates.rate, self.placement.N, self.placement.R
        grouped = sc.coverage.grouped
        if sc.first_event:
            pool = sc.idle_candidates()
        else:
            queues = self._stealable()
            if not queues:
                return Actions()
            if len(sc.idle_pool) <= len(queues) * (2 * R - 1):
                pool = [w for w in sc.idle_pool if sc.active[w]]
            else:
                pool = [w for w in {(v + d) % N for v in queues for d in range(1 - R, R)}
                        if w in sc.idle_pool and sc.active[w]]
        thieves = sorted(pool, key=lambda u: (rate(u), u))
        acts = Actions()
        for w in thieves:
            best = None
            rw = rate(w)
            for v in {(w + d) % N for d in range(1 - R, R)} - {w}:
                q = self._queued(v)
                if len(q) < 2 or q[-1].task_id in grouped:
                    continue
                x, end = q[-1], self._queue_end(v, t)
                if ((best is None or end > best[0]) and t + rw * x.n < end
                        and all(self.placement.holds(w, int(k)) for k in x.partitions)):
                    best = (end, v, q)
            if best is not None:
                acts.cancel += self._move(self._tail(best[2], w, best[0], t), w, t, acts)
        return acts

    def _stealable(self) -> list[int]:
        """Workers with queued stage-1 work to steal (pruned as they lose it: a worker gets
        queued work only from the plan, so the set only shrinks)."""
        grouped = self.sc.coverage.grouped
        keep = []
        for v in self.queued:
            q = self._queued(v)
            if len(q) >= 2 and q[-1].task_id not in grouped:
                keep.append(v)
        self.queued = keep
        return keep

    def _tail(self, q: list[Task], w: int, end: float, t: float) -> list[Task]:
        """The queued stage-1 tasks of a victim (``q``, running first) that thief w takes,
        from the last: while w would finish them sooner than the victim (done by ``end``),
        and w holds them."""
        took: list[Task] = []
        n = 0
        rate = self.sc.rates.rate
        rw, rv = rate(w), rate(q[0].worker)
        grouped = self.sc.coverage.grouped
        for x in reversed(q[1:]):
            if x.task_id in grouped or t + rw * (n + x.n) >= end or not all(
                    self.placement.holds(w, int(k)) for k in x.partitions):
                break
            took.append(x)
            n += x.n
            end -= rv * x.n
        return took

    def _queue_end(self, v: int, t: float) -> float:
        """When worker v is predicted to finish everything it has pending (then its last
        queued task): its running task's predicted finish plus the rest at its rate."""
        q = self.sc.queues.pending(v)
        if not q:
            return t
        r = self.sc.rates.rate(v)
        f = predicted_finish(q[0], t, r, self.sc.queues.start(q[0]))
        return f + r * sum(x.n for x in q[1:])

    def _steal_shared(self, t: float) -> Actions:
        """Shared placement: a heap of victims keyed by planned finish and the idle pool's
        heaps of thieves by rate, O(log N) a steal."""
        sc = self.sc
        acts = Actions()
        s1, rate = sc.coverage.s1, sc.rates.rate
        if sc.first_event:  # every idle worker: once an iteration, O(N log N)
            thieves = iter(sorted(sc.idle_candidates(), key=lambda u: (rate(u), u)))
        else:
            thieves = sc.idle_pool.fastest()
        thief = next(thieves, None)
        while thief is not None and self.victims:
            entry = heapq.heappop(self.victims)
            if self._stale(entry):
                continue  # that task ran, was stolen, or has stage-2 blocks
            x = s1[entry[2]]
            if t + rate(thief) * x.n >= self._queue_end(entry[1], t):
                heapq.heappush(self.victims, entry)  # the fastest thief would not be sooner
                break
            acts.cancel += self._move(x, thief, t, acts)
            self.offer(entry[1])
            thief = next(thieves, None)
        if not sc.first_event:
            sc.idle_pool.restore()
        return acts

    def _move(self, xs, w: int, t: float, acts: Actions) -> list[Task]:
        """Stage-1 task(s) xs move, not yet started, to worker w: cancelled on their worker,
        their union dispatched to w as one stage-1 task (into ``acts``); the cancels."""
        sc = self.sc
        xs = [xs] if isinstance(xs, Task) else xs
        gone = sc.cancel(xs, t)
        for x in xs:
            x.t_done = math.nan  # never ran: no lower bound on its worker's speed
            sc.coverage.remove_set(x.task_id)
        x = xs[0] if len(xs) == 1 else Task(-1, w, 1, np.sort(np.concatenate(
            [z.partitions for z in xs])))
        y = sc.dispatch(w, 1, x.partitions, t=t)
        sc.planned.set(y.task_id, t + sc.rates.rate(w) * y.n)
        sc.coverage.add_set(y)
        acts.dispatch.append(y)
        self.steals += 1
        self.stolen_n += x.n
        return gone

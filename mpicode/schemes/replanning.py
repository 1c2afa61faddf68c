"""Two-stage's stage k: re-planning on idle workers (``--replan R``, pure).

Whenever a worker that finished its own work goes idle while a straggler's set is still
uncovered, the pending rest of that set's best group (the group predicted to complete first;
before any group exists, the whole set of the straggler's running stage-1 task) is re-split
among the idle workers as a *new group*: the group's arrived blocks plus new blocks that tile
the rest. Groups still tile the set exactly,
so the coverage-map decode stays exact and O(|U|); the first group to complete covers the set
and the others are cancelled. A round is spent only when the idle workers would cover the rest
sooner than its predicted finish; at most R rounds an iteration bound the extra load and
messages. Used as a mixin by :class:`mpicode.schemes.two_stage.TwoStage` (its ``s1``,
``tiles``, ``owner``, ``missing``, ``cover``, ``rounds`` and ``placement``).
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from mpicode.schemes.base import Actions, Task
from mpicode.schemes.shares import assign, largest_remainder

AUTO_MIN = 64  # --replan auto: max(AUTO_MIN, N) groups, one per worker at scale


def replan_value(s):
    """``--replan``: an integer, ``none`` (N) or ``auto`` (max(64, N))."""
    if isinstance(s, str) and s.strip().lower() == "auto":
        return "auto"
    if s is None or (isinstance(s, str) and s.strip().lower() in ("", "none")):
        return None
    return int(s)


def replan_groups(value, n_workers: int) -> int:
    """The cap on re-planning groups per iteration that ``--replan value`` means."""
    if value == "auto":
        return max(AUTO_MIN, n_workers)
    r = n_workers if value is None else int(value)
    if r < 0:
        raise ValueError(f"replan must be >= 0, got {value}")
    return r


class Replanning:
    def rates(self) -> np.ndarray:
        """Seconds per partition: this iteration's measure of a worker where one of its
        tasks arrived (a slow draw of this iteration shows there first), else the estimate."""
        if self._rates is not None:  # (cached until a rate is measured: do not modify)
            return self._rates
        tau = self.speeds()
        ok = np.isfinite(self.rate_now)
        if not np.isfinite(self.tau).any() and ok.any():  # no history: this iteration's mean
            tau[:] = self.rate_now[ok].mean()
        tau[ok] = self.rate_now[ok]
        self._rates = tau
        return tau

    def _rate_list(self) -> list[float]:
        """rates() as python floats (one tolist per change of the rates: a numpy scalar per
        look-up is 10x slower)."""
        tau = self.rates()
        if getattr(self, "_tl_of", None) is not tau:
            self._tl_of, self._tl = tau, tau.tolist()
        return self._tl

    def _measured(self) -> np.ndarray:
        """Per worker, this iteration's seconds per partition over its arrived tasks."""
        busy, n = np.zeros(self.N), np.zeros(self.N)
        for x in self.tasks.values():
            if x.state == "done" and x.n and np.isfinite(x.duration):
                busy[x.worker] += x.duration
                n[x.worker] += x.n
        out = np.full(self.N, np.nan)
        out[n > 0] = busy[n > 0] / n[n > 0]
        return out

    def _rekey(self) -> None:
        """Without history the plan's finishes were guesses (1 s a partition): at the first
        arrival, plan them again from this iteration's measured rates (once, O(n log n))."""
        tau = self.rates()
        self.finish_heap = []
        for w, xs in self.by_worker.items():
            f = 0.0
            for x in xs:
                if x.task_id in self.s1 and x.state == "pending":
                    f += tau[w] * x.n
                    self.planned[x.task_id] = f
                    self.finish_heap.append((f, x.task_id))
        heapq.heapify(self.finish_heap)

    def _finish(self, x: Task, t: float, tau, start: float | None = None) -> float:
        """Predicted finish of a pending task: its speed estimate from its start (dispatch,
        or the end of the task before it on its worker), or, overdue, as long again from now
        as it has run (with heavy tails an overdue worker is no closer to done)."""
        s = x.t_dispatch if start is None else max(start, x.t_dispatch)
        f = s + tau[x.worker] * x.n
        return f if f >= t else t + max(tau[x.worker] * x.n, t - s)

    def _start(self, x: Task) -> float | None:
        """When ``x`` started, if it is its worker's running task (its first pending one: a
        worker runs its tasks in dispatch order): the end of the task before it; else None."""
        last = x.t_dispatch
        for y in self.by_worker.get(x.worker, ()):
            if y is x:
                return last
            if y.state == "pending":
                return None  # queued behind a running task
            if y.state == "done":
                last = max(last, y.t_done)
        return None

    def _best_group(self, j: int, t: float, tl) -> tuple[int, list[Task], float]:
        """(group, its pending blocks, predicted cover time) of the group of j that is
        predicted to complete first (``tl``: rates as a list; :meth:`_finish` inlined)."""
        best = (-1, [], math.inf)
        for g, blks in enumerate(self.tiles[j]):
            if not blks:  # (empty: no holder)
                continue
            pend, f = [], -math.inf
            for b in blks:
                st = b.state
                if st == "cancelled":
                    break
                if st == "pending":
                    pend.append(b)
                    a = tl[b.worker] * len(b.partitions)
                    fb = b.t_dispatch + a
                    if not fb >= t:
                        fb = t + max(a, t - b.t_dispatch)
                    if fb > f:
                        f = fb
            else:
                if not pend:
                    f = t
                if f < best[2]:
                    best = (g, pend, f)
        return best

    def _late_stragglers(self, t: float, tau, near=()) -> list:
        """(predicted cover time, stage-1 id, best group or -1, its pending tasks) of every
        late straggler: a running stage-1 task past its predicted finish (a set on time is
        not worth the extra load), or one whose groups are all late; and the running
        stage-1 tasks of the workers ``near`` (replicated placement: the neighbours of the
        event's worker) whatever their planned finish, since this iteration's rates may
        show them slow (whether an idle holder would be sooner is :meth:`_groups`' test)."""
        late = []
        # shared: a round gives each idle worker at most one group, so the most overdue
        # few suffice (the cost of an event stays independent of N)
        limit = min(2 * len(self.idle_pool) + 8, 32) if self.placement.shared else len(
            self.late_ids)
        tl, gone = self._rate_list(), []
        for j in self.late_ids:  # past their planned finish (see _someone_late)
            if len(late) >= limit:
                break
            e = self._straggler(j, t, tl, True)
            if e is None and (j not in self.s1 or j in self.cover
                              or self.s1[j].state != "pending"):
                gone.append(j)
            elif e is not None:
                late.append(e)
        for j in gone:
            del self.late_ids[j]
        for v in near:
            run = next((x for x in self.by_worker.get(v, ()) if x.state == "pending"), None)
            if run is not None and run.task_id in self.s1 and all(e[1] != run.task_id
                                                                  for e in late):
                e = self._straggler(run.task_id, t, tl, False)
                if e is not None:
                    late.append(e)
        return late

    def _straggler(self, j: int, t: float, tl, late_only: bool):
        """The entry of :meth:`_late_stragglers` for stage-1 task j, or None (``tl``: the
        rates as a list; :meth:`_finish` inlined)."""
        x = self.s1.get(j)
        if x is None or j in self.cover or x.state != "pending":
            return None
        start = self._start(x)
        a = tl[x.worker] * len(x.partitions)
        g = -1
        if any(self.tiles[j]):  # (a group left empty had no holder: it is no group)
            g, pend, f = self._best_group(j, t, tl)
        if g < 0:
            if start is None:  # queued behind its worker's running task: work stealing's
                return None
            pend = [x]  # no group yet: a backup of its whole set, in pieces
        if not pend or (late_only and t < max(start or 0.0, x.t_dispatch) + a):
            return None
        s = x.t_dispatch if start is None else max(start, x.t_dispatch)
        fx = s + a
        if not fx >= t:
            fx = t + max(a, t - s)
        return (min(f, fx) if g >= 0 else fx, j, g, pend)

    def _groups(self, t: float, idle: list[int], late: list, tl: list) -> list:
        """Deal the idle workers (fastest first) to the late stragglers, each to the one
        predicted to be covered last that it can speed up (it holds all of its rest): a
        straggler's group covers its m pending partitions at t + m / (sum of speeds)."""
        cands = []  # [cover, m, speed, members, f, j, g, pend, rest, hold]
        shared = self.placement.shared
        for f, j, g, pend in late:
            if shared:  # the rest itself only for the groups made (below)
                m = sum(len(b.partitions) for b in pend)
                cands.append([f, m, 0.0, [], f, j, g, pend, None, None])
                continue
            rest = np.concatenate([b.partitions for b in pend])
            hold = set(self.placement.holders(int(rest[0])))
            for k in rest[1:].tolist():
                hold.intersection_update(self.placement.holders(k))
            cands.append([f, len(rest), 0.0, [], f, j, g, pend, rest, hold])
        near: dict[int, list] = {}  # replicated: straggler's worker -> its candidates
        for c in cands if not shared else ():
            near.setdefault(self.s1[c[5]].worker, []).append(c)
        R = self.placement.R
        heap = [(-c[0], c[5], i) for i, c in enumerate(cands)]  # latest predicted cover
        heapq.heapify(heap)
        for w in idle:  # fastest first
            if self.placement.shared:  # the latest few (a heap: O(log) a worker)
                top = [heapq.heappop(heap) for _ in range(min(8, len(heap)))]
                mine = [cands[e[2]] for e in top]
            else:  # only stragglers within R - 1 of w can share a block with it
                mine = sorted((c for v in {(w + d) % self.N for d in range(1 - R, R)}
                               for c in near.get(v, ())), key=lambda c: (-c[0], c[5]))
            took = self._join(w, mine, t, 1.0 / tl[w])
            if self.placement.shared:
                for _, j, i in top:  # back, with the cover w brought forward
                    heapq.heappush(heap, (-cands[i][0], j, i))
                if not took:  # the fastest idle worker helps none: a slower one neither
                    break
        out = sorted((c for c in cands if c[3]), key=lambda c: (-c[4], c[5]))
        for c in out if shared else ():
            c[8] = np.concatenate([b.partitions for b in c[7]])
        return out

    def _idle_order(self, tl: list, late: list):
        """The idle workers that may join a group, fastest first (key (rate, worker)), lazily
        from a heap: a round stops at the first that helps none (shared placement), so it
        looks at a few, not all; None if no worker is idle. Replicated placement: only those
        within R - 1 of a late straggler's worker (the others share no block with it)."""
        if self.first_event:
            pool = self._idle_candidates()
        elif self.placement.shared and np.isfinite(self.tau).any():
            return self._idle_heap(tl) if self.idle_pool else None
        else:
            act = self.active.tolist()
            pool = [w for w in self.idle_pool if act[w]]
        if not pool:
            return None
        if not self.placement.shared:
            R, N = self.placement.R, self.N
            near = {(self.s1[e[1]].worker + d) % N for e in late for d in range(1 - R, R)}
            pool = [w for w in pool if w in near]
        keys = [(tl[w], w) for w in pool]
        heapq.heapify(keys)
        return (heapq.heappop(keys)[1] for _ in range(len(keys)))

    def _idle_heap(self, tl: list):
        """The idle pool fastest first from its heap (a rate changes only where measured:
        speeds() are fixed within an iteration once there is history), O(log N) a worker
        taken; :meth:`_idle_restore` puts back those taken."""
        pool, h, tau = self.idle_pool, self.idle_pool.heap, self.rates()
        fresh = pool.joined
        if pool.seen is not None and pool.seen is not tau:
            fresh += np.flatnonzero(tau != pool.seen).tolist()
        for w in fresh:
            if w in pool:
                heapq.heappush(h, (tl[w], w))
        pool.joined, pool.seen, pool.taken = [], tau, []
        act = self.active
        while h:
            r, w = heapq.heappop(h)
            if w in pool and r == tl[w] and act[w] and w not in pool.taken:
                pool.taken.append(w)
                yield w

    def _idle_restore(self, tl: list) -> None:
        pool = self.idle_pool
        for w in getattr(pool, "taken", ()):
            heapq.heappush(pool.heap, (tl[w], w))
        pool.taken = []

    @staticmethod
    def _join(w: int, mine: list, t: float, v: float) -> bool:
        """Worker w (speed v) joins the first candidate of ``mine`` whose cover it brings
        forward; False if none."""
        for c in mine:
            if len(c[3]) >= c[1] or (c[9] is not None and w not in c[9]):
                continue
            cover = t + c[1] / (c[2] + v)
            if cover < c[0]:
                c[0], c[2] = cover, c[2] + v
                c[3].append(w)
                return True
        return False

    def _replan(self, t: float, near=()) -> Actions:
        """Give the idle workers the pending rest of the late stragglers, as new groups: a
        group's arrived blocks plus new blocks tiling the rest (several stragglers a round)."""
        if self.placement.shared and self.version == self.failed_at:
            return Actions()  # nothing changed since a round found nothing to do: O(1)
        version = self.version
        tau = self.rates()
        late = self._late_stragglers(t, tau, near)
        if not late:
            self.failed_at = version
            return Actions()
        # idle: nothing pending (a stage-1 straggler whose set was covered has a lower
        # bound on its speed in rates(): a slow machine stays slow)
        tl = self._rate_list()
        idle = self._idle_order(tl, late)
        if idle is None:
            self.failed_at = version
            return Actions()
        acts = Actions()
        groups = self._groups(t, idle, late, tl)
        self._idle_restore(tl)
        for c in groups:
            if self.rounds >= self.replan:
                break
            acts += self._new_group(t, c[5], c[6], c[7], c[8], c[3], tau)
        if not acts.dispatch:
            self.failed_at = version
        return acts

    def _new_group(self, t: float, j: int, g: int, pend: list, rest, members: list,
                   tau) -> Actions:
        """Group of stage-1 task j: the arrived blocks of its group g plus ``rest`` split
        among ``members`` in proportion to their speeds."""
        if self.reissued + len(rest) > self.replan_load * self.K:
            return Actions()  # the load cap
        # the message cap: one member replaces the straggler's message, each other adds one
        room = int(self.replan_messages * self.N) - len(self.s1) - self.extra_msgs
        members = members[:max(1, 1 + room)]
        quotas = largest_remainder(len(rest), 1.0 / tau[members], minimum=1)
        got = assign(rest, members, quotas, tau, self.placement)
        if got.get(-1):
            return Actions()
        self.rounds += 1
        self.reissued += len(rest)
        g2 = len(self.tiles[j])
        keep = [b for b in self.tiles[j][g] if b.state == "done"] if g >= 0 else []
        self.tiles[j].append(list(keep))
        for b in keep:
            self.owner[b.task_id].append((g2, j))
        acts = Actions()
        for w in members:
            if got[w]:
                b = self.new_task(w, 2, got[w], t=t)
                self.owner[b.task_id] = [(g2, j)]
                self.tiles[j][g2].append(b)
                acts.dispatch.append(b)
        self.missing[g2, j] = len(acts.dispatch)
        self.extra_msgs += max(0, len(acts.dispatch) - 1)
        self.log_notes.append(f"stage {2 + self.rounds} at t={t:.6g}: {len(rest)} partitions "
                              f"of stage-1 task {j} re-split among {len(acts.dispatch)} idle "
                              "workers")
        return acts

    def _worth_it(self, t: float) -> bool:
        """Count trigger refinement: is some unfinished stage-1 worker *not* about to finish,
        i.e. its predicted finish (from tau) is further from now, either way, than the time
        idle workers need to cover its partitions? Without history (first iteration) or
        with nobody idle, yes. When every straggler is about to finish on its own (balanced
        shares, as with persistently slow workers once speeds are learnt), re-issuing its
        partitions only adds load and messages; the deadline trigger stays as the safety
        net."""
        if not np.isfinite(self.tau).any():
            return True
        tau = self.speeds()
        busy = {x.worker for x in self.s1.values() if x.state != "done"}
        idle = [w for w in np.flatnonzero(self.active).tolist() if w not in busy]
        if not idle:
            return True
        fastest = min(tau[w] for w in idle)
        per_group = max(1, len(idle) // (self.s2 + 1))
        for x in self.s1.values():
            if x.state != "pending" or x.task_id in self.cover:
                continue
            predicted = x.t_dispatch + tau[x.worker] * x.n
            cover = fastest * math.ceil(x.n / per_group)
            # off its prediction by more than half a cover (and more than the 10% that
            # timing noise makes on a real machine), late or overdue: not "about to finish";
            # with exponential tails an overdue worker is no closer to done
            if abs(predicted - t) > max(0.5 * cover, 0.1 * predicted):
                return True
        return False

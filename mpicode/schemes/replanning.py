"""Two-stage's stage k: re-planning on idle workers (``--replan R``, pure).

Whenever a worker that finished its own work goes idle while a straggler's set is still
uncovered, the pending rest of that set's best group (the group predicted to complete first;
before any group exists, the whole set of the straggler's running stage-1 task) is re-split
among the idle workers as a *new group*: the group's arrived blocks plus new blocks that tile
the rest. Groups still tile the set exactly, so the coverage-map decode stays exact and
O(|U|); the first group to complete covers the set and the others are cancelled. A round is
spent only when the idle workers would cover the rest sooner than its predicted finish; at
most R rounds an iteration bound the extra load and messages. Costs: docs/design.md §3.2.
"""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np

from mpicode.schemes.base import Actions
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


class Replanner:
    """The re-planning rounds of one iteration.

    ``scheme`` (TwoStage): its options (``replan``, ``replan_load``, ``replan_messages``,
    ``placement``), task factory, notes, and this iteration's coverage map, worker queues,
    rates, planned finishes, idle pool and change tracker.
    """

    def __init__(self, scheme):
        self.sc = scheme
        self.cap = scheme.replan
        self.placement = scheme.placement
        self.rounds = 0          # re-planning rounds used this iteration
        self._cover: dict[int, tuple] = {}  # stage-1 id -> (gen, valid until, best group)
        self._entries: dict[int, tuple] = {}  # stage-1 id -> (gen, until, strict, entry)
        self._last = None  # shared: (late list, limit, until, until_strict, full, added)
        self._refused_speed = 0.0  # ... the fastest idle speed that helped none of it

    def left(self) -> bool:  # rounds left this iteration
        return self.rounds < self.cap

    # ---- a round -------------------------------------------------------------------------
    def replan(self, t: float, near=()) -> Actions:
        """Give the idle workers the pending rest of the late stragglers, as new groups: a
        group's arrived blocks plus new blocks tiling the rest (several stragglers a round)."""
        sc = self.sc
        changes = sc.changes
        if self.placement.shared and not changes.dirty:
            return Actions()  # nothing changed since a round found nothing to do: O(1)
        late = self._late_stragglers(t, near)
        if not late:
            changes.dirty = False
            return Actions()
        if (self.placement.shared and not sc.first_event and late is self._last[0]
                and self._refused_speed):
            w0 = sc.idle_pool.top()  # (the common event: the same list, no faster worker)
            if w0 is None or 1.0 / sc.rates.rate(w0) <= self._refused_speed:
                changes.dirty = False
                return Actions()
        # idle: nothing pending (a stage-1 straggler whose set was covered has a lower
        # bound on its speed in rates: a slow machine stays slow)
        idle = self._idle_order(late)
        if idle is None:
            changes.dirty = False
            return Actions()
        if self.placement.shared:
            # the fastest idle worker joins one of the (8) latest candidates, or the round
            # does nothing: unless it would bring one of them forward, skip the dealing
            w0 = next(idle, None)
            if w0 is None or not self._helps(w0, t, late):
                sc.idle_pool.restore()
                changes.dirty = False
                return Actions()
            idle = itertools.chain((w0,), idle)
        acts = Actions()
        groups = self._groups(t, idle, late)
        sc.idle_pool.restore()
        for c in groups:
            if self.rounds >= self.cap:
                break
            acts += self._new_group(t, c[5], c[6], c[7], c[8], c[3])
        if not acts.dispatch:
            changes.dirty = False
        return acts

    def _best_group(self, j: int, t: float) -> tuple[int, list, float, int]:
        """(group, its pending blocks, predicted cover time, their partitions) of the group of
        j that is predicted to complete first (:func:`predicted_finish` inlined). Cached until
        j's groups change (:meth:`Coverage.touch`) or a pending block's predicted finish
        passes (then it is overdue: its prediction moves with the clock)."""
        cov = self.sc.coverage
        gen = cov.gen.get(j, 0)
        hit = self._cover.get(j)
        if hit is not None and hit[0] == gen and t <= hit[1]:
            return hit[2]
        rates = self.sc.rates
        rate, steady = rates.rate, rates.history
        horizon = math.inf  # the predictions below hold until then (-inf: not at all)
        best = (-1, [], math.inf, 0)
        for g, blks in enumerate(cov.tiles[j]):
            if not blks:  # (empty: no holder)
                continue
            pend, f, m = [], -math.inf, 0
            for b in blks:
                st = b.state
                if st == "cancelled":
                    break
                if st == "pending":
                    pend.append(b)
                    n = len(b.partitions)
                    m += n
                    a = rate(b.worker) * n
                    fb = b.t_dispatch + a
                    if not fb >= t:
                        fb = t + max(a, t - b.t_dispatch)
                        horizon = -math.inf
                    elif fb < horizon:
                        horizon = fb
                    if not steady and not rates.measured(b.worker):
                        horizon = -math.inf  # at the measured mean, which moves
                    if fb > f:
                        f = fb
            else:
                if not pend:
                    f = t
                    horizon = -math.inf
                if f < best[2]:
                    best = (g, pend, f, m)
        self._cover[j] = (gen, horizon, best)
        return best

    def _late_stragglers(self, t: float, near=()) -> list:
        """(predicted cover, stage-1 id, best group or -1, its pending tasks, their
        partitions) of the late stragglers (running past their predicted finish, or with all
        groups late), and of the running tasks of the workers ``near`` (replicated: the event
        worker's neighbours; this iteration's rates may show them slow)."""
        sc = self.sc
        planned, cov = sc.planned, sc.coverage
        # shared: a round gives each idle worker at most one group, so the most overdue
        # few suffice (the cost of an event stays independent of N)
        shared = self.placement.shared
        limit = min(2 * len(sc.idle_pool) + 8, 32) if shared else len(planned.late)
        prev = self._last
        if (shared and prev is not None and not cov.watch_hit and prev[1] == limit
                and t <= prev[2] and t < prev[3] and (prev[4] or prev[5] == planned.added)):
            return prev[0]  # no entry it looked at changed, nor the clock enough, nor limit
        late, seen, until, until_strict = self._scan(t, limit)
        if shared:  # what this list depends on: the entries seen, the clock, the limit
            cov.watched, cov.watch_hit = set(seen), False
            self._last = (late, limit, until, until_strict, len(late) >= limit,
                          planned.added)
            self._refused_speed = 0.0
        s1 = cov.s1
        for v in near:
            run = sc.queues.running(v)
            if run is not None and run.task_id in s1 and all(e[1] != run.task_id
                                                             for e in late):
                e = self._evaluate(run.task_id, t, False)[0]
                if e is not None:
                    late.append(e)
        return late

    def _scan(self, t: float, limit: int):
        """The first ``limit`` late stragglers in ``PlannedFinishes.late`` order (dropping the
        finished): (entries, ids seen, until, until_strict)."""
        sc = self.sc
        planned, cov = sc.planned, sc.coverage
        late, gone = [], []
        s1, cover, gens, cache = cov.s1, cov.cover, cov.gen, self._entries
        seen, until, until_strict = [], math.inf, math.inf
        ids = planned.late  # past their planned finish (see PlannedFinishes)
        N, R = self.placement.N, self.placement.R  # replicated: only a straggler within R - 1
        # of an idle worker can get a group: look only there when that is fewer (same groups)
        if not self.placement.shared and (sc.first_event
                                          or len(sc.idle_pool) * (2 * R - 1) < len(ids)):
            pool = sc.idle_candidates()
            if len(pool) * (2 * R - 1) < len(ids):
                late_of = planned.late_of
                ids = {j for w in pool for d in range(1 - R, R)
                       for j in late_of.get((w + d) % N, ())}
        for j in ids:
            if len(late) >= limit:
                break
            x = s1.get(j)
            if x is None or j in cover or x.state != "pending":
                gone.append(j)
                continue
            seen.append(j)
            hit = cache.get(j)
            if hit is None or hit[0] != gens.get(j, 0) or not (
                    t < hit[1] if hit[2] else t <= hit[1]):
                e, u, strict = self._evaluate(j, t, True)
                hit = cache[j] = (gens.get(j, 0), u, strict, e)
            if hit[2]:
                until_strict = min(until_strict, hit[1])
            else:
                until = min(until, hit[1])
            if hit[3] is not None:
                late.append(hit[3])
        for j in gone:
            planned.late.pop(j, None)
        return late, seen, until, until_strict

    def _evaluate(self, j: int, t: float, late_only: bool):
        """(entry, until, strict): the entry of :meth:`_late_stragglers` for stage-1 task j
        or None (:func:`predicted_finish` inlined), and until when it holds while j's groups,
        worker and tasks do not change (:meth:`Coverage.touch`): while ``t <= until``
        (``t < until`` if ``strict``); -inf: it moves with the clock."""
        sc = self.sc
        cov = sc.coverage
        x = cov.s1.get(j)
        if x is None or j in cov.cover or x.state != "pending":
            return None, math.inf, False
        start = sc.queues.start(x)
        grouped = j in cov.grouped
        if start is None and not grouped:
            return None, math.inf, False  # queued behind its worker's running task: stealing's
        rates = sc.rates
        steady = rates.history or rates.measured(x.worker)  # (else: the moving mean)
        n = len(x.partitions)
        a = rates.rate(x.worker) * n
        b = max(start or 0.0, x.t_dispatch) + a
        if late_only and t < b:
            return None, (b if steady else -math.inf), True  # not late yet from its start
        until = math.inf if steady else -math.inf
        g = -1
        if grouped:
            g, pend, f, m = self._best_group(j, t)
            until = min(until, self._cover[j][1])
        if g < 0:
            if start is None:
                return None, until, False
            pend, m = [x], n  # no group yet: a backup of its whole set, in pieces
        if not pend:
            return None, until, False
        s = x.t_dispatch if start is None else max(start, x.t_dispatch)
        fx = s + a
        if not fx >= t:
            fx = t + max(a, t - s)  # overdue: grows with the clock
            if g < 0 or fx < f:
                until = -math.inf
        else:
            until = min(until, fx)
        return (min(f, fx) if g >= 0 else fx, j, g, pend, m), until, False

    def _helps(self, w: int, t: float, late: list) -> bool:
        """Would worker w, alone, bring some late straggler's cover forward (:meth:`_join`'s
        test)? Not if a worker as fast helped none of the same list (the clock moves on)."""
        v = 1.0 / self.sc.rates.rate(w)
        if late is (self._last[0] if self._last else None) and v <= self._refused_speed:
            return False
        for f, _, _, _, m in late:
            if t + m / v < f:
                return True
        if self._last is not None and late is self._last[0]:
            self._refused_speed = max(self._refused_speed, v)
        return False

    def _groups(self, t: float, idle, late: list) -> list:
        """Deal the idle workers (fastest first) to the late stragglers, each to the one
        predicted to be covered last that it can speed up (it holds all of its rest): a
        straggler's group covers its m pending partitions at t + m / (sum of speeds)."""
        cands = []  # [cover, m, speed, members, f, j, g, pend, rest, hold]
        shared = self.placement.shared
        for f, j, g, pend, m in late:
            if shared:  # the rest itself only for the groups made (below)
                cands.append([f, m, 0.0, [], f, j, g, pend, None, None])
                continue
            rest = np.concatenate([b.partitions for b in pend])
            hold = set(self.placement.holders(int(rest[0])))
            for k in rest[1:].tolist():
                hold.intersection_update(self.placement.holders(k))
            cands.append([f, len(rest), 0.0, [], f, j, g, pend, rest, hold])
        near: dict[int, list] = {}  # replicated: straggler's worker -> its candidates
        s1 = self.sc.coverage.s1
        for c in cands if not shared else ():
            near.setdefault(s1[c[5]].worker, []).append(c)
        N, R = self.placement.N, self.placement.R
        rate = self.sc.rates.rate
        heap = [(-c[0], c[5], i) for i, c in enumerate(cands)]  # latest predicted cover
        heapq.heapify(heap)
        for w in idle:  # fastest first
            if shared:  # the latest few (a heap: O(log) a worker)
                top = [heapq.heappop(heap) for _ in range(min(8, len(heap)))]
                mine = [cands[e[2]] for e in top]
            else:  # only stragglers within R - 1 of w can share a block with it
                mine = sorted((c for v in {(w + d) % N for d in range(1 - R, R)}
                               for c in near.get(v, ())), key=lambda c: (-c[0], c[5]))
            took = self._join(w, mine, t, 1.0 / rate(w))
            if shared:
                for _, j, i in top:  # back, with the cover w brought forward
                    heapq.heappush(heap, (-cands[i][0], j, i))
                if not took:  # the fastest idle worker helps none: a slower one neither
                    break
        out = sorted((c for c in cands if c[3]), key=lambda c: (-c[4], c[5]))
        for c in out if shared else ():
            c[8] = np.concatenate([b.partitions for b in c[7]])
        return out

    def _idle_order(self, late: list):
        """The idle workers that may join a group, fastest first (key (rate, worker)), lazily
        (shared: a round stops at the first that helps none); None if none. Replicated: only
        those within R - 1 of a late straggler's worker (found from the smaller set)."""
        sc = self.sc
        rate = sc.rates.rate
        if sc.first_event:
            pool = sc.idle_candidates()
        elif self.placement.shared:
            return sc.idle_pool.fastest() if sc.idle_pool else None
        else:
            pool = sc.idle_pool
        if not pool:
            return None
        if not self.placement.shared:
            N, R = self.placement.N, self.placement.R
            s1 = sc.coverage.s1
            near = {(s1[e[1]].worker + d) % N for e in late for d in range(1 - R, R)}
            act = sc.active
            pool = pool if isinstance(pool, set) else set(pool)
            if len(near) < len(pool):
                pool = [w for w in near if w in pool and act[w]]
            else:
                pool = [w for w in pool if w in near and act[w]]
        keys = [(rate(w), w) for w in pool]
        heapq.heapify(keys)
        return (heapq.heappop(keys)[1] for _ in range(len(keys)))

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

    def _new_group(self, t: float, j: int, g: int, pend: list, rest, members: list
                   ) -> Actions:
        """Group of stage-1 task j: the arrived blocks of its group g plus ``rest`` split
        among ``members`` in proportion to their speeds."""
        sc = self.sc
        cov = sc.coverage
        if cov.reissued + len(rest) > sc.replan_load * sc.K:
            return Actions()  # the load cap
        # the message cap: one member replaces the straggler's message, each other adds one
        room = int(sc.replan_messages * sc.N) - len(cov.s1) - cov.extra_msgs
        members = members[:max(1, 1 + room)]
        quotas = largest_remainder(len(rest), 1.0 / sc.rates.take(members), minimum=1)
        got = assign(rest, members, quotas, sc.rates, self.placement)
        if got.get(-1):
            return Actions()
        self.rounds += 1
        cov.reissued += len(rest)
        keep = [b for b in cov.tiles[j][g] if b.state == "done"] if g >= 0 else []
        g2 = cov.new_group(j, keep)
        for b in keep:
            cov.owner[b.task_id].append((g2, j))
        acts = Actions()
        for w in members:
            if got[w]:
                b = sc.dispatch(w, 2, got[w], t=t)
                cov.owner[b.task_id] = [(g2, j)]
                cov.add_block(j, g2, b)
                acts.dispatch.append(b)
        cov.missing[g2, j] = len(acts.dispatch)
        cov.extra_msgs += max(0, len(acts.dispatch) - 1)
        sc.log_notes.append(f"stage {2 + self.rounds} at t={t:.6g}: {len(rest)} partitions "
                            f"of stage-1 task {j} re-split among {len(acts.dispatch)} idle "
                            "workers")
        return acts

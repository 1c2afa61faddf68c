"""Two-stage's trigger and stage 2: the stragglers' sets U re-issued once to idle workers (pure).

The trigger is a count (k1 stage-1 arrivals, when some unfinished stage-1 worker is not about
to finish) or a deadline (beta times the predicted stage-1 time), whichever fires first, once
an iteration. Then the partitions U of the stage-1 tasks still running are re-issued to the
idle workers as a fractional-repetition code restricted to U with r2 = s2 + 1 groups (each
group's blocks tile each straggler's set, so the first group to complete covers it). With
re-planning on (``--replan R > 0``), stage 2 keeps to the same load and message caps as the
rounds.
"""

from __future__ import annotations

import math

import numpy as np

from mpicode.schemes.base import Actions, Task
from mpicode.schemes.rates import predicted_finish
from mpicode.schemes.shares import assign, largest_remainder


class Stage2:
    """The trigger and the stage-2 plan of one iteration.

    Parameters
    ----------
    scheme : TwoStage
        For its options (``trigger``, ``s2``, ``replan``, ``replan_load``,
        ``replan_messages``, ``placement``), speed estimates, task factory, notes, and this
        iteration's coverage map, worker queues and rates.
    k1 : int
        The count trigger.
    deadline : float or None
        The deadline trigger (None: none this iteration).
    """

    def __init__(self, scheme, k1: int, deadline: float | None):
        self.sc = scheme
        self.k1 = k1
        self.deadline = deadline
        self.fired = ""          # "", "count" or "deadline": what triggered stage 2
        self.t_trigger = math.nan
        self.armed = False       # triggered, but nobody was idle yet to take stage 2
        self.issued = False      # stage 2 handed out (once per iteration)
        self.r2 = 0
        self.n_u = 0
        # stage 2 armed, but no worker was free of stage 1 when it last looked: how many
        # sets had been stolen then (a steal can free its victim); None: not waiting
        self.blocked: int | None = None

    @classmethod
    def planned(cls, scheme, tasks: list[Task], tau) -> Stage2:
        """Stage 2 of an iteration whose stage-1 plan is ``tasks`` (``tau``: the estimates):
        k1 = n1 - ceil(s n1 / N) or ``--trigger-k``, in [1, n1]; the deadline beta x the
        predicted stage-1 time, if some stage-1 worker has a history (none in the first
        iteration: a prediction needs one)."""
        n1 = len(tasks)
        k1 = n1 - math.ceil(scheme.s * n1 / scheme.N)
        if scheme.trigger_k is not None:
            k1 = scheme.trigger_k
        deadline = None
        if scheme.trigger != "count" and np.isfinite(scheme.tau[[t.worker for t in tasks]]).any():
            share: dict[int, int] = {}
            for x in tasks:  # a worker's chunks run one after another
                share[x.worker] = share.get(x.worker, 0) + x.n
            predicted = max(n * tau[w] for w, n in share.items())
            deadline = float(scheme.beta * predicted)
        return cls(scheme, k1=min(max(1, k1), n1), deadline=deadline)

    # ---- the trigger ----------------------------------------------------------------------
    def count_fires(self, t: float) -> bool:
        """At a stage-1 arrival: does the count trigger fire now? (Arms stage 2 if so.)"""
        sc = self.sc
        if (not self.fired and sc.trigger != "deadline" and not sc.coverage.complete()
                and sc.coverage.n_done >= self.k1 and self._worth_it(t)):
            self.fired, self.t_trigger = "count", t
            self.armed = True
            return True
        return False

    def deadline_fires(self, t: float) -> bool:
        """At a tick: does the deadline trigger fire now? (Arms stage 2 if so.)"""
        if not (self.fired or self.deadline is None or t < self.deadline
                or self.sc.coverage.complete() or self.sc.expired):
            self.fired, self.t_trigger = "deadline", t
            self.armed = True
            return True
        return False

    def _worth_it(self, t: float) -> bool:
        """Count trigger refinement: is some unfinished stage-1 worker *not* about to finish,
        i.e. its predicted finish (from tau) is further from now, either way, than the time
        idle workers need to cover its partitions? Without history (first iteration) or
        with nobody idle, yes. When every straggler is about to finish on its own (balanced
        shares, as with persistently slow workers once speeds are learnt), re-issuing its
        partitions only adds load and messages; the deadline trigger stays as the safety
        net."""
        sc = self.sc
        if not sc.rates.history:
            return True
        tau = sc.speeds()
        s1 = sc.coverage.s1
        busy = {x.worker for x in s1.values() if x.state != "done"}
        idle = [w for w in np.flatnonzero(sc.active).tolist() if w not in busy]
        if not idle:
            return True
        fastest = min(tau[w] for w in idle)
        per_group = max(1, len(idle) // (sc.s2 + 1))
        cover_map = sc.coverage.cover
        for x in s1.values():
            if x.state != "pending" or x.task_id in cover_map:
                continue
            predicted = x.t_dispatch + tau[x.worker] * x.n
            cover = fastest * math.ceil(x.n / per_group)
            # off its prediction by more than half a cover (and more than the 10% that
            # timing noise makes on a real machine), late or overdue: not "about to finish";
            # with exponential tails an overdue worker is no closer to done
            if abs(predicted - t) > max(0.5 * cover, 0.1 * predicted):
                return True
        return False

    # ---- stage 2 ------------------------------------------------------------------------
    def issue(self, t: float, arrived: int | None = None) -> Actions:
        """Cover the stragglers' partitions U with r2 groups of idle workers (``arrived``:
        the worker whose stage-1 task just arrived, :meth:`_still_blocked`)."""
        sc, cov = self.sc, self.sc.coverage
        if arrived is not None and self._still_blocked(arrived):
            return self._waiting(t)
        stragglers = [x for x in cov.s1.values()
                      if x.state == "pending" and x.task_id not in cov.cover]
        tau = sc.speeds()
        if sc.replan:  # with re-planning, the load cap holds for stage 2 too: latest first
            stragglers = self._within_load(stragglers, t)
        if not stragglers:
            return Actions()
        u = np.concatenate([x.partitions for x in stragglers])
        w2 = self._workers(u, tau)
        if not w2:
            self.blocked = len(cov.removed)
            return self._waiting(t)
        self.blocked = None
        self.armed, self.issued = False, True
        r2 = sc.s2 + 1
        if sc.replan:  # and the message cap: about one block per straggler beyond room
            room = int(sc.replan_messages * sc.N) - len(cov.s1) - cov.extra_msgs
            w2 = w2[:max(r2, r2 * len(stragglers) + room)]
        if len(w2) < r2:
            sc.log_notes.append(f"stage 2: r2 shrunk from {r2} to {len(w2)} "
                                f"(only {len(w2)} idle workers)")
            r2 = len(w2)
        self.r2, self.n_u = r2, len(u)
        owner_of = {int(k): x.task_id for x in stragglers for k in x.partitions}
        # stage 2's groups come after any a re-planning round already made
        base = {x.task_id: len(cov.tiles[x.task_id]) for x in stragglers}
        acts = Actions()
        for g in range(r2):
            members = w2[g::r2]  # fastest first, dealt round-robin: groups of equal speed
            quotas = largest_remainder(len(u), 1.0 / tau[members], minimum=1)
            got = assign(u, members, quotas, tau, sc.placement)
            lost = {owner_of[k] for k in got.get(-1, [])}
            for j in lost:
                sc.log_notes.append(f"stage 2 group {g}: no holder for part of stage-1 task "
                                    f"{j}; that group does not cover it")
            for x in stragglers:
                cov.new_group(x.task_id, [])
            for w in members:
                by_owner: dict[int, list[int]] = {}
                for k in got[w]:
                    by_owner.setdefault(owner_of[int(k)], []).append(int(k))
                for j, ks in by_owner.items():  # one block per straggler: never crosses two
                    if j in lost:
                        continue
                    b = sc.dispatch(w, 2, ks, t=t)
                    cov.reissued += b.n
                    gj = base[j] + g
                    cov.owner[b.task_id] = [(gj, j)]
                    cov.add_block(j, gj, b)
                    cov.missing[gj, j] = cov.missing.get((gj, j), 0) + 1
                    cov.extra_msgs += cov.missing[gj, j] > 1
                    acts.dispatch.append(b)
        return acts

    def _still_blocked(self, arrived: int) -> bool:
        """Nobody was free of stage 1 at the last look, and the only workers that could have
        become free since (the arrival's, those a set was stolen from) still have stage-1
        work: nobody is free now either (the full scan would find the same; this costs
        O(their tasks), not O(N), per arrival while stage 2 waits)."""
        sc, cov = self.sc, self.sc.coverage
        if (self.blocked is None or not sc.placement.shared or not self._in_stage1(arrived)
                or not all(self._in_stage1(w) for w in cov.removed[self.blocked:])):
            return False
        self.blocked = len(cov.removed)
        return True

    def _waiting(self, t: float) -> Actions:
        sc = self.sc
        if not sc.log_notes or not sc.log_notes[-1].startswith("stage 2 at"):
            sc.log_notes.append(f"stage 2 at t={t:.6g}: no idle worker yet, waiting for one")
        return Actions()

    def _in_stage1(self, w: int) -> bool:
        """Has worker w a stage-1 set not done (what :meth:`_workers` calls busy)?"""
        s1 = self.sc.coverage.s1
        return any(x.stage == 1 and x.state != "done" and s1.get(x.task_id) is x
                   for x in self.sc.queues.tasks[w])

    def _within_load(self, stragglers: list[Task], t: float) -> list[Task]:
        """The stragglers predicted to finish last whose sets fit in ``replan_load`` (the
        latest one in any case)."""
        sc = self.sc
        rate, start = sc.rates.rate, sc.queues.start
        stragglers.sort(key=lambda x: (-predicted_finish(x, t, rate(x.worker), start(x)),
                                       x.task_id))
        out, n = [], sc.coverage.reissued
        for x in stragglers:  # (the first always: stage 2 covers someone)
            if n + x.n <= sc.replan_load * sc.K or not out:
                out.append(x)
                n += x.n
        return out

    def _workers(self, u, tau) -> list[int]:
        """The workers free of stage 1 (holders of some of U), fastest first."""
        sc = self.sc
        busy = {x.worker for x in sc.coverage.s1.values() if x.state != "done"}
        w2 = [int(w) for w in np.flatnonzero(sc.active) if w not in busy]
        if not sc.placement.shared:
            holders = {h for k in u.tolist() for h in sc.placement.holders(k)}
            w2 = [w for w in w2 if w in holders]
        tl = tau.tolist()  # python floats: a numpy scalar per comparison is 10x slower
        w2.sort(key=lambda w: (tl[w], w))
        return w2

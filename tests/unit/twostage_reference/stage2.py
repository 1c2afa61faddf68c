"""Two-stage's stage 2: the stragglers' sets U re-issued once to idle workers (pure).

At the trigger, the partitions U of the stage-1 tasks still running are re-issued to the idle
workers as a fractional-repetition code restricted to U with r2 = s2 + 1 groups (each group's
blocks tile each straggler's set, so the first group to complete covers it). With re-planning
on (``--replan R > 0``), stage 2 keeps to the same load and message caps as the rounds. Used
as a mixin by :class:`mpicode.schemes.two_stage.TwoStage` (its ``s1``, ``tiles``, ``owner``,
``missing``, ``placement``).
"""

from __future__ import annotations

import numpy as np

from mpicode.schemes.base import Actions, Task
from mpicode.schemes.shares import assign, largest_remainder


class Stage2:
    def _stage2(self, t: float) -> Actions:
        """Cover the stragglers' partitions U with r2 groups of idle workers."""
        stragglers = [x for x in self.s1.values()
                      if x.state == "pending" and x.task_id not in self.cover]
        tau = self.speeds()
        if self.replan:  # with re-planning, the load cap holds for stage 2 too: latest first
            stragglers = self._within_load(stragglers, t, tau)
        if not stragglers:
            return Actions()
        u = np.concatenate([x.partitions for x in stragglers])
        w2 = self._stage2_workers(u, tau)
        if not w2:
            if not self.log_notes or not self.log_notes[-1].startswith("stage 2 at"):
                self.log_notes.append(f"stage 2 at t={t:.6g}: no idle worker yet, "
                                      "waiting for one")
            return Actions()
        self.armed, self.issued = False, True
        r2 = self.s2 + 1
        if self.replan:  # and the message cap: about one block per straggler beyond room
            room = int(self.replan_messages * self.N) - len(self.s1) - self.extra_msgs
            w2 = w2[:max(r2, r2 * len(stragglers) + room)]
        if len(w2) < r2:
            self.log_notes.append(f"stage 2: r2 shrunk from {r2} to {len(w2)} "
                                  f"(only {len(w2)} idle workers)")
            r2 = len(w2)
        self.r2, self.n_u = r2, len(u)
        owner_of = {int(k): x.task_id for x in stragglers for k in x.partitions}
        # stage 2's groups come after any a re-planning round already made
        base = {x.task_id: len(self.tiles[x.task_id]) for x in stragglers}
        acts = Actions()
        for g in range(r2):
            members = w2[g::r2]  # fastest first, dealt round-robin: groups of equal speed
            quotas = largest_remainder(len(u), 1.0 / tau[members], minimum=1)
            got = assign(u, members, quotas, tau, self.placement)
            lost = {owner_of[k] for k in got.get(-1, [])}
            for j in lost:
                self.log_notes.append(f"stage 2 group {g}: no holder for part of stage-1 task "
                                      f"{j}; that group does not cover it")
            for x in stragglers:
                self.tiles[x.task_id].append([])
            for w in members:
                by_owner: dict[int, list[int]] = {}
                for k in got[w]:
                    by_owner.setdefault(owner_of[int(k)], []).append(int(k))
                for j, ks in by_owner.items():  # one block per straggler: never crosses two
                    if j in lost:
                        continue
                    b = self.new_task(w, 2, ks, t=t)
                    self.reissued += b.n
                    gj = base[j] + g
                    self.owner[b.task_id] = [(gj, j)]
                    self.tiles[j][gj].append(b)
                    self.missing[gj, j] = self.missing.get((gj, j), 0) + 1
                    self.extra_msgs += self.missing[gj, j] > 1
                    acts.dispatch.append(b)
        return acts

    def _within_load(self, stragglers: list[Task], t: float, tau) -> list[Task]:
        """The stragglers predicted to finish last whose sets fit in ``replan_load`` (the
        latest one in any case)."""
        rt = self.rates()
        stragglers.sort(key=lambda x: (-self._finish(x, t, rt, self._start(x)), x.task_id))
        out, n = [], self.reissued
        for x in stragglers:  # (the first always: stage 2 covers someone)
            if n + x.n <= self.replan_load * self.K or not out:
                out.append(x)
                n += x.n
        return out

    def _stage2_workers(self, u, tau) -> list[int]:
        """The workers free of stage 1 (holders of some of U), fastest first."""
        busy = {x.worker for x in self.s1.values() if x.state != "done"}
        w2 = [int(w) for w in np.flatnonzero(self.active) if w not in busy]
        if not self.placement.shared:
            holders = {h for k in u.tolist() for h in self.placement.holders(k)}
            w2 = [w for w in w2 if w in holders]
        tl = tau.tolist()  # python floats: a numpy scalar per comparison is 10x slower
        w2.sort(key=lambda w: (tl[w], w))
        return w2

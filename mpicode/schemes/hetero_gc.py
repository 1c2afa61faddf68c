"""``hetero-gc``: heterogeneity-aware fractional repetition, the exact coded counterpart of
``speed-aware``.

The construction is the heterogeneity-aware allocation of binary fractional repetition codes
(Charalambides, Mahdavifar, Hero, *Generalized Fractional Repetition Codes for Binary Coded
Computations*, IEEE Trans. Inf. Theory 2024, arXiv 2109.10484), in the line of
heterogeneity-aware gradient coding that Wang, Liu and Shroff began (*Heterogeneity-aware
Gradient Coding for Straggler Tolerance*, ICDCS 2019): the workers form s + 1 groups of equal
total computing capability; inside each group the whole data set is split among the members
in proportion to their capabilities, and every member sends the plain (0/1-coded) sum of its
share. Each partition is therefore computed s + 1 times, once per group; any s stragglers
leave at least one group whole, and that group's messages, each with weight 1, are the exact
gradient: no linear system is solved, so nothing is ill-conditioned (Tandon et al.'s
fractional repetition, ``frc``, is the special case of equal speeds and equal groups).

The capabilities are this run's measured speeds (the estimate tau_i of docs/design.md §3.1,
re-planned every iteration), as ``speed-aware`` uses them; the groups are formed by the
longest-processing-time rule (fastest worker first, each to the group of least total speed),
which the papers leave open (docs/design.md §3.4a). Only active workers are
planned (``--dead-after``); with fewer than s + 1 of them the groups are as many as there are
workers, noted in ``/notes``.
"""

from __future__ import annotations

import numpy as np

from mpicode.options import UsageError
from mpicode.registry import register_scheme
from mpicode.schemes.base import Decoding, Scheme
from mpicode.schemes.shares import contiguous, largest_remainder


def speed_groups(speeds, n_groups: int) -> list[list[int]]:
    """Indices of ``speeds`` in ``n_groups`` groups of near-equal total speed: the fastest
    first (ties by index), each to the group whose total is least (ties by group index);
    every group gets at least one member while there are as many as groups. Each group's
    members are returned in index order."""
    speeds = np.asarray(speeds, np.float64)
    order = np.lexsort((np.arange(len(speeds)), -speeds))
    totals = np.zeros(n_groups)
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    for rank, i in enumerate(order):
        if rank < n_groups:      # one member each first: no empty group
            g = rank
        else:
            g = int(np.argmin(totals))
        groups[g].append(int(i))
        totals[g] += speeds[i]
    return [sorted(g) for g in groups]


@register_scheme
class HeteroGC(Scheme):
    """s + 1 groups of equal total speed, each splitting the data by speed (module docstring)."""

    name = "hetero-gc"
    # groups: groups planned (s + 1 unless fewer workers are active); group_used: the group
    # whose messages made the gradient
    log_fields = {"groups": "i4", "group_used": "i4"}

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        """s < N, and K >= N (every member of a group gets a partition of its own)."""
        super().validate_size(cfg, n_workers, n_partitions)
        if n_partitions < n_workers:
            raise UsageError(f"--partitions {n_partitions} must be >= the number of workers "
                             f"{n_workers} for scheme {cls.name}")

    def __init__(self, n_workers, n_partitions, **kw):
        super().__init__(n_workers, n_partitions, **kw)
        self._group_of: dict[int, int] = {}
        self._left: list[int] = []
        self._members: list[list] = []
        self._first = -1

    def plan(self):
        workers = np.flatnonzero(self.active)
        if len(workers) == 0:
            raise RuntimeError("hetero-gc: no active worker")
        n_groups = min(self.s + 1, len(workers))
        if n_groups < self.s + 1:
            self.log_notes.append(f"hetero-gc: only {len(workers)} active workers: "
                                  f"{n_groups} groups, tolerating {n_groups - 1} stragglers")
        speed = 1.0 / self.speeds()[workers]
        self._group_of, self._first = {}, -1
        self._members = [[] for _ in range(n_groups)]
        tasks = []
        for g, members in enumerate(speed_groups(speed, n_groups)):
            counts = largest_remainder(self.K, speed[members], minimum=1)
            for m, parts in zip(members, contiguous(counts), strict=True):
                if len(parts) == 0:
                    continue
                task = self.new_task(int(workers[m]), 1, parts)
                self._group_of[task.task_id] = g
                self._members[g].append(task)
                tasks.append(task)
        self._left = [len(m) for m in self._members]
        return tasks

    def react(self, task, t):
        g = self._group_of[task.task_id]
        self._left[g] -= 1
        if self._left[g] == 0 and self._first < 0:
            self._first = g
        return super().react(task, t)

    def done(self):
        return self._first >= 0

    def decodable_with(self, task_ids):
        have = [0] * len(self._members)
        for i in task_ids:
            g = self._group_of.get(i)
            if g is not None:
                have[g] += 1
        return any(h == len(m) and h > 0 for h, m in zip(have, self._members, strict=True))

    def decode(self):
        if self._first < 0:
            return Decoding({}, 0.0)
        for x in self._members[self._first]:
            x.used = True
        return Decoding({x.task_id: 1.0 for x in self._members[self._first]}, 1.0)

    def end(self, t):
        out = super().end(t)
        out["groups"] = len(self._members)
        out["group_used"] = self._first
        return out

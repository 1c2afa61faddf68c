"""``frc``: fractional repetition gradient coding (Tandon et al., ICML 2017, section 3.1).

The N workers form N/(s+1) groups of s+1; every worker of group g holds the group's s+1
blocks (of the N equal blocks) and sends their plain sum. Any s stragglers leave at least one
worker per group, and one message per group adds up to the full gradient.

After a failure (``--on-failure continue``) the M survivors are regrouped: floor(M/(s+1))
groups (at least one), the last taking the members left over, and the data cut into that
many contiguous runs, so every group still tolerates s stragglers.
"""

from __future__ import annotations

import numpy as np

from mpicode.errors import UsageError
from mpicode.registry import register_scheme
from mpicode.schemes.base import Decoding, Scheme, equal_blocks, multiple_of_workers


@register_scheme
class FractionalRepetition(Scheme):
    name = "frc"
    elastic = True

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        super().validate_size(cfg, n_workers, n_partitions)
        multiple_of_workers(cls.name, n_workers, n_partitions)
        s = cfg.stragglers_tolerated
        if n_workers % (s + 1):
            raise UsageError(f"scheme frc needs N={n_workers} to be a multiple of s+1={s + 1}")

    def __init__(self, n_workers, n_partitions, **kw):
        super().__init__(n_workers, n_partitions, **kw)
        r = self.s + 1
        if self.N % r:
            raise ValueError(f"frc needs N={self.N} to be a multiple of s+1={r}")
        if self.K % self.N:
            raise ValueError(f"frc needs K={self.K} to be a multiple of N={self.N}")
        self.group_size = r
        self._groups(np.arange(self.N))

    def _groups(self, members) -> None:
        """Group the members: member j (ascending) joins group min(j // r, G - 1), G =
        max(1, M // r); group g holds the g-th of G contiguous runs of partitions (with all
        N members, blocks g*r .. g*r + r - 1 of the N equal blocks)."""
        r, M = self.group_size, len(members)
        G = max(1, M // r)
        self.group_of = {int(w): min(j // r, G - 1) for j, w in enumerate(members)}
        blocks = equal_blocks(self.N, self.K) if M == self.N else equal_blocks(G, self.K)
        per = r if M == self.N else 1
        self.group_parts = [np.concatenate(blocks[g * per:(g + 1) * per]) for g in range(G)]

    def on_members_changed(self):
        self._groups(self.alive())

    def group(self, worker: int) -> int:
        return self.group_of[worker]

    def plan(self):
        self._groups_hit: set[int] = set()
        tasks = [self.new_task(w, 1, self.group_parts[g]) for w, g in self.group_of.items()]
        self._slot_group = {x.slot: self.group_of[x.worker] for x in tasks}
        return tasks

    def _groups_with(self, task_ids) -> set[int]:
        return {self._slot_group[sl] for sl in self.slots.complete(task_ids)}

    def react(self, task, t):
        self._groups_hit.add(self._slot_group[task.slot])
        return super().react(task, t)

    def done(self):
        return len(self._groups_hit) == len(self.group_parts)

    def decodable_with(self, task_ids):
        return len(self._groups_with(task_ids)) == len(self.group_parts)

    def decode(self):
        first: dict[int, int] = {}
        for t in sorted(self.arrived(), key=lambda t: (t.t_done, t.task_id)):
            if self.slots.is_done(t.slot):
                first.setdefault(self._slot_group[t.slot], t.slot)
        covered = sum(len(self.group_parts[g]) for g in first)
        return Decoding(self.slots.expand({sl: 1.0 for sl in first.values()}), covered / self.K)

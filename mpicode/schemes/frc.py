"""``frc``: fractional repetition gradient coding (Tandon et al., ICML 2017, section 3.1).

The N workers form N/(s+1) groups of s+1; every worker of group g holds the group's s+1
blocks (of the N equal blocks) and sends their plain sum. Any s stragglers leave at least one
worker per group, and one message per group adds up to the full gradient.
"""

from __future__ import annotations

import numpy as np

from mpicode.errors import UsageError
from mpicode.registry import register_scheme
from mpicode.schemes.base import Decoding, Scheme, equal_blocks, multiple_of_workers


@register_scheme
class FractionalRepetition(Scheme):
    name = "frc"

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
        blocks = equal_blocks(self.N, self.K)
        # group g holds blocks g*r .. g*r + r - 1, i.e. one contiguous run of partitions
        self.group_parts = [np.concatenate(blocks[g * r:(g + 1) * r]) for g in range(self.N // r)]

    def group(self, worker: int) -> int:
        return worker // self.group_size

    def plan(self):
        self._groups_hit: set[int] = set()
        return [self.new_task(i, 1, self.group_parts[self.group(i)]) for i in range(self.N)]

    def _groups_with(self, task_ids) -> set[int]:
        return {self.group(self.tasks[i].worker) for i in task_ids if i in self.tasks}

    def react(self, task, t):
        self._groups_hit.add(self.group(task.worker))
        return super().react(task, t)

    def done(self):
        return len(self._groups_hit) == len(self.group_parts)

    def decodable_with(self, task_ids):
        return len(self._groups_with(task_ids)) == len(self.group_parts)

    def decode(self):
        first: dict[int, object] = {}
        for t in sorted(self.arrived(), key=lambda t: (t.t_done, t.task_id)):
            first.setdefault(self.group(t.worker), t)
        for t in first.values():
            t.used = True
        covered = sum(len(self.group_parts[g]) for g in first)
        return Decoding({t.task_id: 1.0 for t in first.values()}, covered / self.K)

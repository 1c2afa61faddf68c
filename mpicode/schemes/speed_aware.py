"""``speed-aware``: one contiguous block per worker, sized in proportion to its speed.

Like two-stage's stage 1 with every worker in it and no stage 2: heterogeneity-aware but not
straggler-tolerant (it waits for all). It isolates how much of two-stage's gain comes from
speed-proportional shares alone (docs/design.md §3). Under ``--placement replicated:R`` a
partition goes only to a worker that holds it (the same assignment as two-stage's stage 1).
"""

from __future__ import annotations

import numpy as np

from mpicode.registry import register_scheme
from mpicode.schemes.base import Decoding, Scheme
from mpicode.schemes.shares import (
    PLACEMENT,
    Placement,
    assign,
    check_placement_size,
    contiguous,
    largest_remainder,
)


@register_scheme
class SpeedAware(Scheme):
    name = "speed-aware"
    options = Scheme.options + (PLACEMENT,)

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        """Waits for every worker: any s and any K >= N are fine; R <= N."""
        check_placement_size(cls.option_values(cfg)["placement"], n_workers)

    def __init__(self, n_workers, n_partitions, *, placement="shared", **kw):
        super().__init__(n_workers, n_partitions, placement=placement, **kw)
        self.placement = Placement(placement, self.N, self.K)

    def plan(self):
        workers = np.flatnonzero(self.active)
        if len(workers) == 0:
            raise RuntimeError("speed-aware: no active worker")
        tau = self.speeds()
        counts = largest_remainder(self.K, 1.0 / tau[workers], minimum=1)
        if self.placement.shared:
            blocks = contiguous(counts)
        else:
            got = assign(range(self.K), workers.tolist(), counts, tau, self.placement)
            if got.get(-1):
                raise RuntimeError("speed-aware: a partition has no live holder")
            blocks = [got[int(w)] for w in workers]
        return [self.new_task(w, 1, b) for w, b in zip(workers, blocks, strict=True) if len(b)]

    def decodable_with(self, task_ids):
        return all(tid in task_ids for tid in self.tasks)

    def done(self):
        return len(self._arrived) == len(self.tasks)

    def decode(self):
        got = self.arrived()
        for t in got:
            t.used = True
        return Decoding({t.task_id: 1.0 for t in got}, 1.0)

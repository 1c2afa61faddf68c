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
    elastic = True
    options = Scheme.options + (PLACEMENT,)

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        """Waits for every worker: any s and any K >= N are fine; R <= N."""
        check_placement_size(cls.option_values(cfg)["placement"], n_workers)

    def __init__(self, n_workers, n_partitions, *, placement="shared", **kw):
        super().__init__(n_workers, n_partitions, placement=placement, **kw)
        self.placement = Placement(placement, self.N, self.K)

    def plan(self):
        workers = np.flatnonzero(self.active & self.members)
        if len(workers) == 0:
            raise RuntimeError("speed-aware: no active worker")
        tau = self.speeds()
        counts = largest_remainder(self.K, 1.0 / tau[workers], minimum=1)
        if self.placement.shared:
            blocks = contiguous(counts)
        else:
            got = assign(range(self.K), workers.tolist(), counts, tau, self.placement)
            for k in got.pop(-1, []):  # every holder failed: a survivor loads it
                w = int(self.placement.survivors_for([k], self.active & self.members)[0])
                got[w].append(k)
            blocks = [got[int(w)] for w in workers]
        tasks = [self.new_task(w, 1, b) for w, b in zip(workers, blocks, strict=True) if len(b)]
        self.n_slots = len(tasks)
        return tasks

    def holders(self, task):
        """Survivors holding every partition of ``task``; if none (every holder died), the
        survivors nearest its home block: they load the partitions from the dataset file."""
        return self.placement.survivors_for(task.partitions, self.members)

    def decodable_with(self, task_ids):
        return len(self.slots.complete(task_ids)) == self.n_slots

    def done(self):
        return len(self.slots.done) == self.n_slots

    def decode(self):
        return Decoding(self.slots.expand({sl: 1.0 for sl in self.slots.done}), 1.0)

"""``speed-aware``: one contiguous block per worker, sized in proportion to its speed.

Like two-stage's stage 1 with every worker in it and no stage 2: heterogeneity-aware but not
straggler-tolerant (it waits for all). It isolates how much of two-stage's gain comes from
speed-proportional shares alone (DESIGN sections 3 and 4).
"""

from __future__ import annotations

import numpy as np

from mpicode.registry import register_scheme
from mpicode.schemes.base import Decoding, Scheme
from mpicode.schemes.shares import contiguous, largest_remainder


@register_scheme
class SpeedAware(Scheme):
    name = "speed-aware"

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        """Waits for every worker: any s and any K >= N are fine."""

    def plan(self):
        workers = np.flatnonzero(self.active)
        if len(workers) == 0:
            raise RuntimeError("speed-aware: no active worker")
        tau = self.speeds()
        counts = largest_remainder(self.K, 1.0 / tau[workers], minimum=1)
        blocks = contiguous(counts)
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

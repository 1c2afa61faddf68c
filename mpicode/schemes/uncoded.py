"""``uncoded``: N equal blocks, one per worker, wait for all; and ``ignore-stragglers``:
the same blocks, wait for the fastest N - s, rescale by N / (N - s)."""

from __future__ import annotations

from mpicode.registry import register_scheme
from mpicode.schemes.base import Decoding, Scheme, equal_blocks, multiple_of_workers


@register_scheme
class Uncoded(Scheme):
    name = "uncoded"

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        # waits for every worker: any s is fine (it tolerates none)
        multiple_of_workers(cls.name, n_workers, n_partitions)

    def plan(self):
        return [self.new_task(i, 1, blk) for i, blk in enumerate(equal_blocks(self.N, self.K))]

    def decodable_with(self, task_ids):
        return all(tid in task_ids for tid in self.tasks)

    def done(self):
        return len(self._arrived) == len(self.tasks)  # O(1): no cancels mid-iteration

    def decode(self):
        for t in self.arrived():
            t.used = True
        return Decoding({t.task_id: 1.0 for t in self.arrived()}, 1.0)


@register_scheme
class IgnoreStragglers(Uncoded):
    name = "ignore-stragglers"
    exact = False

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        super(Uncoded, cls).validate_size(cfg, n_workers, n_partitions)  # s < N
        multiple_of_workers(cls.name, n_workers, n_partitions)

    def decodable_with(self, task_ids):
        # its rule, not exactness: any N - s messages make a (scaled) gradient
        return sum(tid in self.tasks for tid in task_ids) >= self.N - self.s

    def done(self):
        return len(self._arrived) >= self.N - self.s

    def decode(self):
        got = sorted(self.arrived(), key=lambda t: t.t_done)[: self.N - self.s]
        for t in got:
            t.used = True
        scale = self.N / len(got)
        return Decoding({t.task_id: scale for t in got}, len(got) / self.N)

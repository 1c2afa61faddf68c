"""``uncoded``: N equal blocks, one per worker, wait for all; and ``ignore-stragglers``:
the same blocks, wait for the fastest N - s, rescale by N / (N - s).

After a worker failed (``--on-failure continue``) both plan over the M survivors: M blocks,
as equal as K allows; a lost block is re-issued to the survivors in the iteration it was
lost (``uncoded``), or, within ``ignore-stragglers``' rule, simply not waited for.
"""

from __future__ import annotations

from mpicode.registry import register_scheme
from mpicode.schemes.base import Decoding, Scheme, equal_blocks, multiple_of_workers


@register_scheme
class Uncoded(Scheme):
    name = "uncoded"
    elastic = True

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        # waits for every worker: any s is fine (it tolerates none)
        multiple_of_workers(cls.name, n_workers, n_partitions)

    def plan(self):
        members = self.alive()
        tasks = [self.new_task(int(w), 1, blk)
                 for w, blk in zip(members, equal_blocks(len(members), self.K), strict=True)]
        self.n_slots = len(tasks)
        return tasks

    def decodable_with(self, task_ids):
        return len(self.slots.complete(task_ids)) == self.n_slots

    def done(self):
        return len(self.slots.done) == self.n_slots  # O(1)

    def decode(self):
        return Decoding(self.slots.expand({sl: 1.0 for sl in self.slots.done}), 1.0)


@register_scheme
class IgnoreStragglers(Uncoded):
    name = "ignore-stragglers"
    exact = False

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        super(Uncoded, cls).validate_size(cfg, n_workers, n_partitions)  # s < N
        multiple_of_workers(cls.name, n_workers, n_partitions)

    def wanted(self) -> int:
        """Messages its rule waits for: the fastest n - s of this plan's n (at least 1)."""
        return max(1, self.n_slots - self.s)

    def decodable_with(self, task_ids):
        # its rule, not exactness: any n - s messages make a (scaled) gradient
        return len(self.slots.complete(task_ids)) >= self.wanted()

    def done(self):
        return len(self.slots.done) >= self.wanted()

    def decode(self):
        got = sorted(self.slots.done, key=lambda sl: (self.slots.t_done(sl), sl))[: self.wanted()]
        covered = sum(self.tasks[sl].n for sl in got)
        if covered * self.n_slots == self.K * len(got):  # equal blocks: N / (N - s) as always
            scale, coverage = self.n_slots / len(got), len(got) / self.n_slots
        else:
            scale, coverage = self.K / covered, covered / self.K
        return Decoding(self.slots.expand({sl: scale for sl in got}), coverage)



@register_scheme
class Quorum(Uncoded):
    """``quorum``: uncoded while every worker lives; a worker that dies takes its block with
    it for the rest of the run, and the gradient is the survivors' blocks rescaled by K /
    covered (torchft's quorum: the dead replica's data is dropped). Inexact once a worker
    died: a baseline for ``--on-failure continue``, which keeps every sample."""

    name = "quorum"
    exact = False
    elastic = True

    def plan(self):
        # every worker keeps its own block of the N; a dead worker's block is not planned
        blocks = equal_blocks(self.N, self.K)
        tasks = [self.new_task(int(w), 1, blocks[w]) for w in self.alive()]
        self.n_slots = len(tasks)
        return tasks

    def react_failure(self, worker, lost, t):
        self.n_slots -= len(lost)  # its share is dropped: nothing re-issued, nobody waited for
        return super().react_failure(worker, [], t)

    def decode(self):
        done = sorted(self.slots.done)
        covered = sum(self.tasks[sl].n for sl in done)
        if covered == self.K:
            return Decoding(self.slots.expand({sl: 1.0 for sl in done}), 1.0)
        return Decoding(self.slots.expand({sl: self.K / covered for sl in done}),
                        covered / self.K)

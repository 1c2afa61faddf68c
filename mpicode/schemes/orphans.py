"""Self-scheduling's recovery from a worker that dies (``--on-failure continue``, pure;
docs/design.md §2.7).

A worker runs one chunk at a time. When it dies its running copy is lost; the chunk is an
*orphan* when no other copy of it (a backup) still runs and none arrived. Orphans go, before
anything is pulled or copied, to the fastest idle survivor that may take them (:meth:`Orphans.
adopt`): anyone under ``shared`` placement; under ``replicated:R`` a live holder of all of the
chunk, or, when every holder died, the survivors nearest its home block, which load it from
the dataset file. If nobody who may take it is idle, the next arrival that frees one does.
The first copy of a chunk to arrive still wins, so the decode stays the sum of disjoint chunks
covering every partition once. Under ``replicated:R`` a home block whose every holder died is
pulled, from then on, by the survivor nearest after it (:func:`adopt_blocks`).

Costs: a failure is O(N R) (the blocks) plus its lost copy; while an orphan waits, each feed
looks at its takers once (O(N) shared, O(R) replicated); without failures nothing here runs.
"""

from __future__ import annotations

import numpy as np

from mpicode.schemes.base import Task


def adopt_blocks(sc, reset: bool = False) -> list[int]:
    """Replicated placement: give every home block that no live worker of
    :class:`~mpicode.schemes.self_scheduling.SelfScheduling` ``sc`` pulls from (``sc.order``)
    to the survivor nearest after it (:meth:`Placement.survivors_for`); the workers that got
    one. ``reset``: between iterations, from the workers' own blocks. O(N R)."""
    if sc.placement.shared:
        return []
    if reset:
        sc.order = [list(o) for o in sc._order0]
    pulled = np.zeros(sc.N, bool)
    for w in np.flatnonzero(sc.members).tolist():
        pulled[sc.order[w]] = True
    got = []
    for b in np.flatnonzero(~pulled).tolist():
        if sc.hi[b] > sc.lo0[b]:
            w = int(sc.placement.survivors_for([sc.lo0[b]], sc.members)[0])
            sc.order[w].append(b)
            got.append(w)
    return got


class Orphans:
    """The chunks of one iteration whose every copy was lost, in the order they were lost,
    each with the survivors that may take it. ``sc``: the scheme (its chunks, copies, idle
    workers, rates, placement and members)."""

    def __init__(self, sc):
        self.sc = sc
        self.chunks: dict[int, list[int]] = {}

    def __bool__(self) -> bool:
        return bool(self.chunks)

    def failed(self, worker: int, lost: list[Task]) -> None:
        """``worker`` died with the copies ``lost`` (``Scheme.on_failure`` cancelled them):
        forget it, and make orphans of the chunks left without a running copy."""
        sc, w = self.sc, int(worker)
        if sc.idle[w]:
            sc.idle[w] = False
            sc.n_idle -= 1
        sc.n_active = max(1, sc.n_active - 1)
        sc._vsum = None          # the weighted rule's total speed: without w now
        sc.vectors.settled = -1  # an idle worker refused before may take an orphan
        for task in lost:
            x = sc.chunk_of.get(task.task_id)
            if x is None:
                continue
            j = sc.copy_of[task.task_id]
            sc.cpend[j] = False
            if sc.cur[w] == j:
                sc.cur[w] = -1
            sc.live[x] = [c for c in sc.live[x] if sc.cpend[c]]
            if sc.backups is not None:
                sc.backups.lost(x, j)
            if sc.winner[x] is None and not sc.live[x]:
                self.chunks[x] = self.takers(x)
        for v in adopt_blocks(sc):  # replicated: its blocks' unpulled partitions
            sc.dirty.add(v)

    def takers(self, x: int) -> list[int]:
        """The survivors that may compute chunk x: everyone alive (shared); its live holders,
        or if every holder died the survivors nearest its home block (replicated)."""
        sc = self.sc
        if sc.placement.shared:
            return [int(w) for w in np.flatnonzero(sc.members)]
        return [int(w) for w in sc.placement.survivors_for(sc.chunks[x], sc.members)]

    def adopt(self, t: float, out: list[Task]) -> None:
        """Give every orphan to the fastest idle worker that may take it (into ``out``)."""
        sc = self.sc
        rate = sc.rl if sc.backups is not None else sc.rates().tolist()
        for x in list(self.chunks):
            if sc.winner[x] is not None or sc.live[x]:
                del self.chunks[x]  # (a copy of it arrived or runs after all)
                continue
            takers = self.chunks[x]
            if not any(sc.members[w] for w in takers):  # they died too: survivors load it
                takers = self.chunks[x] = self.takers(x)
            idle = [w for w in takers if sc.idle[w] and sc.members[w]]
            if not idle:
                continue  # its takers are busy: the next one freed takes it
            w = min(idle, key=lambda v: (rate[v], v))
            del self.chunks[x]
            out.append(sc._dispatch(w, x, 1, t))
            sc.log_notes.append(f"chunk {x} ({sc.nsize[x]} partitions) of a failed worker "
                                f"re-issued to worker {w}")
            if not sc.n_idle:
                return

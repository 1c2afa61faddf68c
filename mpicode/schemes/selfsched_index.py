"""Indexes that keep :class:`mpicode.schemes.self_scheduling.SelfScheduling` near-linear in N.

The scheme's rule is unchanged (its decisions are bit for bit those of the plain scan, see
tests/unit/test_self_scheduling_index.py); what these helpers save is looking again at idle
workers that provably get nothing. An idle worker with nothing left to pull that found no
backup copy stays empty-handed until one of these happens: a chunk it holds is pulled, the
speed estimate of itself or of a worker running a copy it holds changes, or a running copy it
holds becomes overdue (its expected finish jumps). Everything else that happens (copies
dispatched, chunks won, time passing between overdue points) only removes candidates.
"""

from __future__ import annotations

import heapq

import numpy as np

GRACE = 0.05  # a copy is overdue 5% of its expected run time after its expected finish


def holders(blocks: list[int], N: int, R: int) -> list[int]:
    """The workers that hold every block of ``blocks`` under replicated:R (block b lives on
    b, b+1, ..., b+R-1 mod N), ascending."""
    b0 = blocks[0]
    return sorted(v for v in ((b0 + j) % N for j in range(R))
                  if all((v - b) % N < R for b in blocks))


class Watch:
    """Which pending copies changed since the last look: a speed estimate changed, or the copy
    crossed its overdue point. ``sc`` is the scheme (its ``cur``: per worker the pending
    copy, -1 for none; ``cx``, ``cs``, ``csize``)."""

    def __init__(self):
        self.prev: np.ndarray | None = None
        self.t_seen = -np.inf

    def look(self, sc, rate: np.ndarray, t: float):
        """(workers whose rate changed, chunks with a copy that became overdue) since the
        last look; None for "everything" (the first look of an iteration)."""
        prev, self.prev = self.prev, rate
        if prev is None:
            self.t_seen = t
            return None
        changed = np.flatnonzero(~(rate == prev)) if rate is not prev else np.empty(0, int)
        busy = np.flatnonzero(sc.cur >= 0)
        j = sc.cur[busy]
        x = sc.cx[j]
        due = sc.cs[j] + sc.csize[x] * rate[busy] * (1 + GRACE)
        crossed = x[(due > self.t_seen) & (due <= t)]
        self.t_seen = t
        return changed, crossed


def exam(sc, w: int, t: float, rl: list[float]) -> int | None:
    """The chunk the plain rule would copy for ``w`` among the chunks w holds, or None:
    expected finish (earliest copy not overdue; inf when all are) latest first, then the
    earliest start, then the lowest chunk index; only where w's copy would finish sooner.
    Same arithmetic as the vectorised rule (``start + size * rate``), hence the same floats."""
    best = None
    keep = []
    rw = rl[w]
    for x in sc.held[w]:
        pend = sc.live[x]
        if not pend:
            continue  # won: drop it from the list for good
        keep.append(x)
        n = sc.nsize[x]
        E = first = np.inf
        for j in pend:
            s = sc.start[j]
            run = n * rl[sc.owner[j]]
            if t < s + run * (1 + GRACE) and s + run < E:
                E = s + run
            if s < first:
                first = s
        if t + n * rw < E:
            key = (-E, first, x)
            if best is None or key < best:
                best = key
    sc.held[w] = keep
    return None if best is None else best[2]


class Dirty:
    """Replicated placement: the idle workers that may get something at the next feed (a
    superset of those that do); the others are known to get nothing."""

    def __init__(self, sc):
        self.sc = sc
        self.maybe: set[int] = set()
        # per chunk its holders, -1 padded (at most K chunks): marking them is then one
        # vectorised gather, not a Python loop over chunks (for small R; else the lists)
        R = sc.placement.R
        self.H = np.full((sc.K, R), -1, np.int64) if R <= 32 else None

    def add_chunk(self, x: int, hs: list[int]) -> None:
        if self.H is not None:
            self.H[x, :len(hs)] = hs

    def add(self, w: int) -> None:
        self.maybe.add(w)

    def note(self, change, rate: np.ndarray) -> None:
        """Mark the idle workers a :meth:`Watch.look` result may have given something."""
        sc = self.sc
        if change is None:
            self.maybe.update(np.flatnonzero(sc.idle).tolist())
            return
        changed, crossed = change
        if not len(changed) and not len(crossed):
            return
        busy = changed[sc.cur[changed] >= 0]
        chunks = np.concatenate([sc.cx[sc.cur[busy]], crossed])
        idle = sc.idle
        self.maybe.update(changed[idle[changed]].tolist())
        if self.H is not None:
            v = self.H[chunks].ravel()
            v = v[v >= 0]
            self.maybe.update(v[idle[v]].tolist())
            return
        for x in set(chunks.tolist()):
            self.maybe.update(v for v in sc.holders_of[x] if idle[v])

    def feed(self, t: float, rl: list[float], out: list) -> None:
        """The plain rule's loop (idle workers fastest first: pull, else copy) over the
        workers that may get something, in the same order."""
        sc = self.sc
        heap = [(rl[w], w) for w in self.maybe if sc.idle[w]]
        heapq.heapify(heap)
        later: set[int] = set()
        queued = {w for _, w in heap}
        while heap:
            key = heapq.heappop(heap)
            w = key[1]
            queued.discard(w)
            task = sc._pull(w, t) if sc.n_left else None
            if task is None and sc.backup:
                x = exam(sc, w, t, rl)
                task = None if x is None else sc._dispatch(w, x, 2, t)
            if task is None:
                continue  # nothing for w until something it holds changes
            out.append(task)
            if task.stage == 1:  # a new chunk: its idle holders may copy it
                for v in sc.holders_of[sc.chunk_of[task.task_id]]:
                    if not sc.idle[v] or v in queued:
                        continue
                    if (rl[v], v) > key:
                        heapq.heappush(heap, (rl[v], v))
                        queued.add(v)
                    else:
                        later.add(v)
        self.maybe = later

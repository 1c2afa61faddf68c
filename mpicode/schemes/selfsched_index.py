"""Indexes that keep :class:`mpicode.schemes.self_scheduling.SelfScheduling` cheap per event.

The scheme's rule is unchanged (its decisions are bit for bit those of the plain scan of every
idle worker and chunk: tests/unit/test_decision_corpus.py); what these helpers save is looking
at what provably does not matter.

* :class:`Backups` (once the iteration has speed estimates: every rate is then fixed until
  its worker's task arrives, so a copy's expected finish and overdue point are fixed when it
  is dispatched): the running chunks in heaps per chunk size keyed by (expected finish,
  start, chunk), a heap of the copies' overdue points, and the idle workers by rate. The
  backup a worker gets is the best passing top of each size's heap, O(S log N) with S the
  number of distinct chunk sizes (a few: the guided sizes shrink from K/N to 1); a copy
  turning overdue re-keys its chunk, once.
* Without estimates (the first iteration) every unmeasured worker runs at the measured ones'
  mean, which moves with every arrival: then the rule is evaluated as vectors over the
  workers and chunks (O(N) numpy a decision), and :class:`Watch`/:class:`Dirty` skip the idle
  workers that provably get nothing. An idle worker with nothing left to pull that found no
  backup copy stays empty-handed until one of these happens: a chunk it holds is pulled, the
  speed estimate of itself or of a worker running a copy it holds changes, or a running copy
  it holds becomes overdue (its expected finish jumps). Everything else that happens (copies
  dispatched, chunks won, time passing between overdue points) only removes candidates.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

GRACE = 0.05  # a copy is overdue 5% of its expected run time after its expected finish


def holders(blocks: list[int], N: int, R: int) -> list[int]:
    """The workers that hold every block of ``blocks`` under replicated:R (block b lives on
    b, b+1, ..., b+R-1 mod N), ascending."""
    b0 = blocks[0]
    return sorted(v for v in ((b0 + j) % N for j in range(R))
                  if all((v - b) % N < R for b in blocks))


def pending_copies(sc, rate: np.ndarray):
    """Pending copies (at most one per worker) as arrays: (chunk, start, run time)."""
    busy = np.flatnonzero(sc.cur >= 0)
    pend = sc.cur[busy]
    x = sc.cx[pend]
    return x, sc.cs[pend], sc.csize[x] * rate[busy]


def vector_backup(sc, w: int, t: float, rate: np.ndarray) -> int | None:
    """The plain rule as vectors over the pending copies and chunks (shared placement, no
    estimates yet): the running chunk expected to finish last that w's copy would beat
    (expected finish: the earliest of its copies that are not overdue, inf if all are);
    among the overdue, the longest running; None if there is none. (An idle w has no copy of
    a running chunk: its copies of a chunk end only when the chunk is won.)"""
    x, start, run = pending_copies(sc, rate)
    nx = len(sc.chunks)
    E = np.full(nx, np.nan)  # NaN: won (no pending copy), compares False below
    E[x] = np.inf
    ok = t < start + run * (1 + GRACE)
    np.minimum.at(E, x[ok], (start + run)[ok])
    first = np.full(nx, np.inf)
    np.minimum.at(first, x, start)
    mine = t + sc.csize[:nx] * rate[w]
    cand = np.flatnonzero(mine < E)
    if not len(cand):
        return None
    return int(cand[np.lexsort((first[cand], -E[cand]))[0]])


class Vectors:
    """The rule without speed estimates (the first iteration), as vectors: the fastest idle
    worker by ``argmin`` over the rates, its backup by :func:`vector_backup`; ``settled``, an
    idle worker known to get no copy until :class:`Watch` sees a change, skips a repeat."""

    def __init__(self, sc):
        self.sc = sc
        self.settled = -1
        self.rate = None

    def start(self, t: float) -> None:
        sc = self.sc
        self.rate = rate = sc.rates()
        if self.settled >= 0:
            change = sc.watch.look(sc, rate, t)
            if change is None or self.settled in change[0] or len(change[1]) \
                    or (sc.cur[change[0]] >= 0).any():
                self.settled = -1  # what it was refused may have changed

    def fastest(self) -> int | None:
        sc = self.sc
        w = int(np.argmin(np.where(sc.idle, self.rate, np.inf)))
        return None if not sc.n_left and w == self.settled else w

    def backup(self, w: int, t: float) -> int | None:
        x = vector_backup(self.sc, w, t, self.rate)
        if x is None:
            self.settled = w  # changes are looked for from now on
            self.sc.watch.prev, self.sc.watch.t_seen = self.rate, t
        return x

    def note_dirty(self, t: float) -> None:
        """Replicated: mark the idle workers a change since the last look may concern."""
        sc = self.sc
        self.rate = sc.rates()
        sc.dirty.note(sc.watch.look(sc, self.rate, t), self.rate)

    def rate_list(self) -> list[float]:
        return self.rate.tolist()


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


class Backups:
    """Running chunks and idle workers, indexed (the iteration has speed estimates).

    ``sc`` is the scheme: its ``rl`` (rates as a list, updated in place by the scheme when a
    worker is measured), ``cpend`` (pending copies), ``idle`` and ``active``.
    """

    def __init__(self, sc):
        self.sc = sc
        self.fast: list[tuple[float, int]] = []  # (rate, worker) of idle workers (lazy)
        self.size: dict[int, int] = {}           # running chunk -> size
        self.first: dict[int, float] = {}        # ... -> earliest start of its copies
        self.on_time: dict[int, list] = {}       # ... -> [(expected finish, copy)] not overdue
        self.E: dict[int, float] = {}            # ... -> expected finish (inf: all overdue)
        self.by_size: dict[int, list] = {}       # size -> heap of (-E, first, chunk)
        self.due: list[tuple[float, int, int]] = []  # (overdue point, copy, chunk)
        self.crossed: list[int] = []             # chunks whose copy turned overdue (Dirty)

    # ---- idle workers ------------------------------------------------------------------
    def idle(self, w: int) -> None:
        heapq.heappush(self.fast, (self.sc.rl[w], w))

    def fastest(self) -> int | None:
        """The fastest idle worker (ties: the lowest index), or None."""
        fast, rl, idle = self.fast, self.sc.rl, self.sc.idle
        while fast:
            r, w = fast[0]
            if idle[w] and r == rl[w]:
                return w
            heapq.heappop(fast)
        return None

    # ---- running chunks ----------------------------------------------------------------
    def copy(self, x: int, j: int, w: int, start: float, size: int) -> None:
        """Copy j of chunk x dispatched to worker w at ``start``."""
        run = size * self.sc.rl[w]
        f = start + run
        heapq.heappush(self.due, (start + run * (1 + GRACE), j, x))
        if x not in self.size:
            self.size[x], self.first[x], self.on_time[x] = size, start, []
        self.on_time[x].append((f, j))
        self._key(x)

    def won(self, x: int) -> None:
        for d in (self.size, self.first, self.on_time, self.E):
            d.pop(x, None)

    def lost(self, x: int, j: int) -> None:
        """Copy j of chunk x was lost with its worker (``--on-failure continue``): its
        expected finish no longer counts (inf once no copy is on time)."""
        if x in self.size:
            self.on_time[x] = [(f, c) for f, c in self.on_time[x] if c != j]
            self._key(x)

    def _key(self, x: int) -> None:
        ok = self.on_time[x]
        E = min(f for f, _ in ok) if ok else math.inf
        if self.E.get(x) != E:
            self.E[x] = E
            heapq.heappush(self.by_size.setdefault(self.size[x], []), (-E, self.first[x], x))

    def advance(self, t: float) -> None:
        """Copies whose overdue point is at or before ``t`` turn overdue (a copy is on time
        while t < start + run (1 + GRACE))."""
        due, cpend = self.due, self.sc.cpend
        while due and due[0][0] <= t:
            _, j, x = heapq.heappop(due)
            if not cpend[j] or x not in self.size:
                continue
            self.on_time[x] = [(f, c) for f, c in self.on_time[x] if c != j]
            self.crossed.append(x)
            self._key(x)

    def start(self, t: float) -> None:
        self.crossed.clear()  # (shared: nobody to mark)

    def note_dirty(self, t: float) -> None:
        """Replicated: mark the idle holders of the chunks whose copy turned overdue (and, at
        the first look of the iteration, every idle worker)."""
        sc = self.sc
        self.advance(t)
        if sc.watch.prev is None:
            sc.watch.prev = sc.rarr
            sc.dirty.note(None, sc.rarr)
        idle = sc.idle
        for x in self.crossed:
            sc.dirty.maybe.update(v for v in sc.holders_of[x] if idle[v])
        self.crossed.clear()

    def rate_list(self) -> list[float]:
        return self.sc.rl

    def next_due(self, t: float) -> float | None:
        """The earliest overdue point after ``t`` of a pending copy."""
        self.advance(t)
        due, cpend = self.due, self.sc.cpend
        while due and (not cpend[due[0][1]] or due[0][2] not in self.size):
            heapq.heappop(due)
        return due[0][0] if due else None

    def backup(self, w: int, t: float) -> int | None:
        """The chunk the plain rule copies for idle worker w at ``t``: expected finish latest
        first (inf: every copy overdue), then the earliest start, then the lowest index,
        among the chunks w's copy would finish before (``t + size * rate < E``); None."""
        self.advance(t)
        rw = self.sc.rl[w]
        best = None
        for size, heap in self.by_size.items():
            while heap:
                negE, first, x = heap[0]
                if self.E.get(x) == -negE and self.first.get(x) == first:
                    break
                heapq.heappop(heap)  # won, or re-keyed since
            if heap and t + size * rw < -heap[0][0] and (best is None or heap[0] < best):
                best = heap[0]
        return None if best is None else best[2]

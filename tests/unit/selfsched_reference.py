"""The self-scheduling scheme as it was before it was indexed (commit 2a975a2), kept only as
the reference its indexed successor must match decision for decision (not registered)."""


from __future__ import annotations

import math

import numpy as np

from mpicode.config import Option, _bool
from mpicode.schemes.base import Actions, Decoding, Scheme, Task
from mpicode.schemes.shares import PLACEMENT, Placement, check_placement_size

GRACE = 0.05  # a copy is overdue 5% of its expected run time after its expected finish


def chunk_error(spec) -> str | None:
    """None if ``spec`` is ``guided``, ``weighted`` or ``fixed:C`` with an integer C >= 1."""
    if spec in ("guided", "weighted"):
        return None
    if isinstance(spec, str) and spec.startswith("fixed:") and spec[6:].isdigit() \
            and int(spec[6:]) >= 1:
        return None
    return "must be 'guided', 'weighted' or 'fixed:C' with an integer C >= 1"


class SelfSchedulingReference(Scheme):
    """Self-scheduling with backup copies (exact).

    Parameters (besides :class:`Scheme`'s)
    ----------
    chunk : str
        ``guided`` (default), ``weighted`` or ``fixed:C``.
    backup : bool
        Speculative copies of the running chunk expected to finish last (default on).
    placement : str
        ``shared`` or ``replicated:R``.
    """

    name = "self-scheduling"
    options = Scheme.options + (
        Option("chunk", str, "guided",
               "self-scheduling: chunk size, guided (ceil(remaining/N)), weighted (guided "
               "times the worker's share of the speed) or fixed:C",
               check=chunk_error, group="self-scheduling"),
        Option("backup", _bool, True,
               "self-scheduling: speculative copy of the running chunk expected to finish last "
               "once nothing is unassigned (--backup false or --no-backup: off)",
               group="self-scheduling"),
        PLACEMENT,
    )

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        """Waits for every partition, from whoever has it: any s and any K >= N; R <= N."""
        check_placement_size(cls.option_values(cfg)["placement"], n_workers)

    def __init__(self, n_workers, n_partitions, *, chunk="guided", backup=True,
                 placement="shared", **kw):
        super().__init__(n_workers, n_partitions, **kw)
        err = chunk_error(chunk)
        if err:
            raise ValueError(f"chunk {chunk!r}: {err}")
        self.fixed = int(chunk[6:]) if chunk.startswith("fixed:") else None
        self.weighted = chunk == "weighted"
        self.backup = _bool(backup)
        self.placement = Placement(placement, self.N, self.K)
        if self.placement.shared:
            self.lo0, self.hi = [0], [self.K]
            self.order = [[0] for _ in range(self.N)]
        else:  # home block b holds the k with k*N//K == b: [ceil(bK/N), ceil((b+1)K/N))
            self.lo0 = [-(-b * self.K // self.N) for b in range(self.N)]
            self.hi = self.lo0[1:] + [self.K]
            R = self.placement.R
            # worker w holds blocks w-R+1 .. w; it is the last holder of w-R+1: that first
            self.order = [[(w - j) % self.N for j in range(R - 1, -1, -1)]
                          for w in range(self.N)]
        self._reset()

    def _reset(self) -> None:
        self.next = list(self.lo0)                   # per block: first unassigned partition
        self.n_left = self.K                          # partitions not yet in any chunk
        self.chunks: list[np.ndarray] = []
        self.blocks: list[list[int]] = []             # per chunk: the home blocks it spans
        self.copies: list[list[Task]] = []
        self.winner: list[Task | None] = []
        self.n_won = 0
        self.chunk_of: dict[int, int] = {}            # task id -> chunk
        # per chunk: partitions; per copy (index copy_of[task id]): chunk, worker, start,
        # still pending. Arrays with spare room (at most ~2 tasks per worker and chunk)
        cap = 2 * (self.N + self.K) + 8
        self.csize = np.zeros(cap, np.int64)
        self.copy_of: dict[int, int] = {}
        self.n_copies = 0
        self.cx = np.zeros(cap, np.int64)
        self.cw = np.zeros(cap, np.int64)
        self.cs = np.zeros(cap)
        self.cpend = np.zeros(cap, bool)
        self._rate: np.ndarray | None = None        # rates() of the current state
        self.idle = np.zeros(self.N, bool)            # active workers with no pending task
        self.rate_now = np.full(self.N, np.nan)       # s/partition measured this iteration
        self.n_active = 1
        self.t_last = 0.0

    # ---- planning ------------------------------------------------------------------------
    def plan(self):
        self._reset()
        live = [int(w) for w in np.flatnonzero(self.active)]
        if not live:
            raise RuntimeError("self-scheduling: no active worker")
        if not self.placement.shared:
            held = np.zeros(self.N, bool)
            for w in live:
                held[self.order[w]] = True
            if not all(held[b] for b in range(self.N) if self.hi[b] > self.lo0[b]):
                b = next(b for b in range(self.N) if not held[b] and self.hi[b] > self.lo0[b])
                raise RuntimeError(f"self-scheduling: partition {self.lo0[b]} has no live "
                                   "holder")
        self.n_active = len(live)
        self.idle[live] = True
        return self._feed(0.0)

    def rates(self) -> np.ndarray:
        """Seconds per partition: this iteration's measure where there is one, else the
        speed estimate; before any estimate, the mean of this iteration's measures."""
        if self._rate is not None:
            return self._rate
        r = self.rate_now.copy()
        obs = np.isfinite(r)
        hist = self.tau
        if np.isfinite(hist).any():
            r[~obs] = self.speeds()[~obs]
        else:
            r[~obs] = r[obs].mean() if obs.any() else 1.0
        self._rate = r
        return r

    def _dispatch(self, w: int, x: int, stage: int, t: float) -> Task:
        task = self.new_task(w, stage, self.chunks[x], t=t)
        self.chunk_of[task.task_id] = x
        j = self.n_copies
        if j == len(self.cx):  # out of room: double
            self.cx, self.cw, self.cs, self.cpend = (
                np.concatenate([a, np.zeros_like(a)]) for a in (self.cx, self.cw, self.cs,
                                                                 self.cpend))
        self.copy_of[task.task_id] = j
        self.n_copies += 1
        self.copies[x].append(task)
        self.cx[j], self.cw[j], self.cs[j], self.cpend[j] = x, w, t, True
        self.idle[w] = False
        return task

    def _pull(self, w: int, t: float) -> Task | None:
        """A new chunk of unassigned partitions that ``w`` holds, or None."""
        if self.fixed:
            size = self.fixed
        elif self.weighted:
            v = 1.0 / self.rates()
            size = math.ceil(self.n_left * v[w] / v[self.active].sum() - 1e-9)
        else:
            size = math.ceil(self.n_left / self.n_active)
        size = max(1, size)
        parts: list[np.ndarray] = []
        blocks: list[int] = []
        got = 0
        for b in self.order[w]:
            take = min(size - got, self.hi[b] - self.next[b])
            if take > 0:
                parts.append(np.arange(self.next[b], self.next[b] + take, dtype=np.int64))
                blocks.append(b)
                self.next[b] += take
                got += take
            if got == size:
                break
        if not got:
            return None
        self.n_left -= got
        self.chunks.append(np.concatenate(parts))
        if len(self.chunks) > len(self.csize):
            self.csize = np.concatenate([self.csize, np.zeros_like(self.csize)])
        self.csize[len(self.chunks) - 1] = got
        self.blocks.append(blocks)
        self.copies.append([])
        self.winner.append(None)
        x = len(self.chunks) - 1
        return self._dispatch(w, x, 1, t)

    def _copies(self, rate: np.ndarray):
        """Pending copies as arrays: (chunk, start, expected run time)."""
        pend = np.flatnonzero(self.cpend[:self.n_copies])
        x = self.cx[pend]
        return x, self.cs[pend], self.csize[x] * rate[self.cw[pend]]

    def _estimates(self, t: float, rate: np.ndarray):
        """Per chunk: expected finish (the earliest of its copies that are not overdue; inf
        if all are; NaN for chunks with no pending copy, i.e. won) and earliest start."""
        x, start, run = self._copies(rate)
        nx = len(self.chunks)
        E = np.full(nx, np.nan)
        E[x] = np.inf
        ok = t < start + run * (1 + GRACE)
        np.minimum.at(E, x[ok], (start + run)[ok])
        first = np.full(nx, np.inf)
        np.minimum.at(first, x, start)
        return E, first

    def _copy(self, w: int, t: float, rate: np.ndarray) -> Task | None:
        """A backup copy for ``w`` of the running chunk expected to finish last, if w's copy
        would beat it; None if there is none. (An idle w has no copy of a running chunk:
        its copies of a chunk end only when the chunk is won.)"""
        E, first = self._estimates(t, rate)
        mine = t + self.csize[:len(self.chunks)] * rate[w]
        cand = np.flatnonzero(mine < E)  # NaN (won) compares False
        if not len(cand):
            return None
        # latest expected finish first; among the overdue (inf), the longest running
        cand = cand[np.lexsort((first[cand], -E[cand]))]
        for x in cand.tolist():
            if self.placement.shared or all((w - b) % self.N < self.placement.R
                                            for b in self.blocks[x]):
                return self._dispatch(w, x, 2, t)
        return None

    def _feed(self, t: float) -> list[Task]:
        """Work for the idle workers, fastest first: a pulled chunk, else a backup copy."""
        self.t_last = t
        out: list[Task] = []
        if self.done() or not self.idle.any():
            return out
        rate = self.rates()
        if self.placement.shared:  # everyone can take anything: only the fastest idle matters
            while self.idle.any() and (self.n_left or self.backup):
                w = int(np.argmin(np.where(self.idle, rate, np.inf)))
                task = self._pull(w, t) if self.n_left else self._copy(w, t, rate)
                if task is None:
                    break  # the fastest idle worker cannot help: nor can a slower one
                out.append(task)
            return out
        rl = rate.tolist()
        for w in sorted(np.flatnonzero(self.idle).tolist(), key=lambda v: (rl[v], v)):
            task = self._pull(w, t) if self.n_left else None
            if task is None and self.backup:
                task = self._copy(w, t, rate)
            if task is not None:
                out.append(task)
        return out

    # ---- events ----------------------------------------------------------------------------
    def react(self, task, t):
        acts = Actions()
        w = task.worker
        if task.n:
            self.rate_now[w] = task.duration / task.n
            self._rate = None
        if self.active[w]:
            self.idle[w] = True
        x = self.chunk_of[task.task_id]
        self.cpend[self.copy_of[task.task_id]] = False
        if self.winner[x] is None:  # the first copy wins; the others are redundant
            self.winner[x] = task
            self.n_won += 1
            lost = self._cancel([c for c in self.copies[x] if c is not task], t)
            for c in lost:
                self.cpend[self.copy_of[c.task_id]] = False
                if self.active[c.worker]:
                    self.idle[c.worker] = True
            acts.cancel += lost
        acts.dispatch += self._feed(t)
        return acts

    def on_tick(self, t):
        return Actions(dispatch=self._feed(t))

    def next_deadline(self):
        """When a running copy becomes overdue, while a worker idles with nothing to pull."""
        if not self.backup or not self.idle.any() or self.done() or (
                self.placement.shared and self.n_left):
            return None
        _, start, run = self._copies(self.rates())
        due = start + run * (1 + GRACE)
        due = due[due > self.t_last]
        return float(due.min()) if len(due) else None

    # ---- decoding --------------------------------------------------------------------------
    def done(self):
        return self.n_left == 0 and self.n_won == len(self.chunks)

    def decodable_with(self, task_ids):
        if self.n_left:
            return False
        return all(any(c.task_id in task_ids for c in cs) for cs in self.copies)

    def decode(self):
        """The winning copy of every chunk, weight 1: each partition exactly once."""
        if not self.done():
            raise RuntimeError("self-scheduling: decode() before every chunk arrived")
        for c in self.winner:
            c.used = True
        return Decoding({c.task_id: 1.0 for c in self.winner}, 1.0)

    def end(self, t):
        """Base summary (``n_stage2`` = backup copies) plus ``chunks`` and ``backups_won``;
        speeds are also learnt from arrived backup copies."""
        for task in self.tasks.values():
            if task.stage == 2 and task.state == "done" and task.n:
                self.observe(task.worker, task.duration / task.n)
        out = super().end(t)
        out.update(chunks=len(self.chunks),
                   backups_won=sum(1 for c in self.winner if c is not None and c.stage == 2))
        return out

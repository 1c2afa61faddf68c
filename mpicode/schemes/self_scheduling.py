"""``self-scheduling``: pull-based dynamic scheduling with speculative backup copies.

The baseline an HPC user reaches for under shared storage: idle workers pull the next chunk of
unassigned micro-partitions (``--chunk fixed:C``, or ``guided``: guided self-scheduling's
ceil(remaining / N) rule, large chunks first, small ones at the end; or ``weighted``: guided
scaled by the worker's share of the total speed, ceil(remaining * v_w / sum v), so a worker
known to be slow takes small chunks). With ``--backup`` (the
default), once a worker finds nothing unassigned that it holds, it gets a speculative copy of
the running chunk expected to finish last (MapReduce's backup tasks), provided its copy is
expected to finish sooner, or the chunk is overdue (past its expected finish by 5%: then
nobody knows when it ends and any copy can only help). The first copy to arrive wins; the
others are cancelled. Decoding is the plain sum of the winning chunks: the chunks are disjoint
and cover every partition, so each partition counts exactly once, with no linear algebra.

Placement (``--placement shared | replicated:R``) limits who may take what: under
``replicated:R`` a worker pulls only partitions it holds (the last holder's blocks first, as in
:func:`mpicode.schemes.shares.assign`) and copies only chunks it holds entirely.

A worker that dies (``--on-failure continue``): its chunk goes to an idle survivor unless a backup
copy runs, a home block without a live holder to the nearest one (:mod:`~.orphans`).

Cost per decision (:mod:`mpicode.schemes.selfsched_index`): once the iteration has speed
estimates, O(S log N) with S the number of distinct chunk sizes (heaps of the idle workers by
rate and of the running chunks by expected finish); in the first iteration, without estimates,
a few O(N) vector passes plus work for the idle workers whose options changed. Either way the
decisions are those of the plain scan of every idle worker and chunk.

Expected finishes use this iteration's measured seconds per partition of a worker once one of
its chunks arrived, else the scheme's speed estimate (:meth:`Scheme.speeds`)::

    mpicode simulate --workers 64 --scheme self-scheduling --stragglers shifted-exp
    mpiexec -n 9 python -m mpi4py -m mpicode train --scheme self-scheduling --chunk fixed:2
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from mpicode.options import Option, _bool
from mpicode.registry import register_scheme
from mpicode.schemes.base import Actions, Decoding, Scheme, Task
from mpicode.schemes.orphans import Orphans, adopt_blocks
from mpicode.schemes.selfsched_index import (
    GRACE,
    Backups,
    Dirty,
    Vectors,
    Watch,
    holders,
    pending_copies,
)
from mpicode.schemes.shares import PLACEMENT, Placement, check_placement_size

__all__ = ["GRACE", "SelfScheduling", "chunk_error"]


def chunk_error(spec) -> str | None:
    """None if ``spec`` is ``guided``, ``weighted`` or ``fixed:C`` with an integer C >= 1."""
    if spec in ("guided", "weighted"):
        return None
    if isinstance(spec, str) and spec.startswith("fixed:") and spec[6:].isdigit() \
            and int(spec[6:]) >= 1:
        return None
    return "must be 'guided', 'weighted' or 'fixed:C' with an integer C >= 1"


@register_scheme
class SelfScheduling(Scheme):
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
    elastic = True  # a dead worker's running chunk goes to a survivor (react_failure)
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
        self._order0 = [list(o) for o in self.order]
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
        self.cur = np.full(self.N, -1, np.int64)      # per worker: its pending copy, or -1
        self.live: list[list[int]] = []               # per chunk: its pending copies
        self.nsize: list[int] = []                    # per chunk: its size (a Python int)
        self.start: list[float] = []                  # per copy: dispatch time
        self.owner: list[int] = []                    # per copy: worker
        self.holders_of: list[list[int]] = []         # per chunk: who holds all of it
        self.held: list[list[int]] = [[] for _ in range(self.N)]  # per worker: those chunks
        self.watch = Watch()
        self.dirty = Dirty(self)
        self.vectors = Vectors(self)  # the rule without estimates (first iteration)
        self._vsum = None       # (rates, sum of the active workers' speeds) for weighted
        self._rate: np.ndarray | None = None        # rates() of the current state
        self.idle = np.zeros(self.N, bool)            # active workers with no pending task
        self.n_idle = 0
        self.rate_now = np.full(self.N, np.nan)       # s/partition measured this iteration
        self.n_active = 1
        self.t_last = 0.0
        # with speed estimates (not the first iteration) the rates are kept up to date in
        # place (rarr, rl: array and list, version) and Backups indexes the running chunks
        self.backups: Backups | None = None
        self.rarr: np.ndarray | None = None
        self.rl: list[float] = []
        self.rate_version = 0
        self.orphans = Orphans(self)  # chunks lost with their worker (--on-failure continue)

    # ---- planning ------------------------------------------------------------------------
    def plan(self):
        self._reset()
        live = [int(w) for w in np.flatnonzero(self.active)]
        if not live:
            raise RuntimeError("self-scheduling: no active worker")
        if not self.placement.shared:
            held = np.zeros(self.N, bool)
            for w in live:
                held[self.order[w]] = True  # (a loader's order has the blocks it adopted)
            if not all(held[b] for b in range(self.N) if self.hi[b] > self.lo0[b]):
                b = next(b for b in range(self.N) if not held[b] and self.hi[b] > self.lo0[b])
                raise RuntimeError(f"self-scheduling: partition {self.lo0[b]} has no live "
                                   "holder")
        self.n_active = len(live)
        self.idle[live] = True
        self.n_idle = len(live)
        if np.isfinite(self.tau).any():
            self.rarr = self.speeds()
            self.rl = self.rarr.tolist()
            self.backups = Backups(self)
            self.backups.fast = [(self.rl[w], w) for w in live]
            heapq.heapify(self.backups.fast)
        return self._feed(0.0)

    def rates(self) -> np.ndarray:
        """Seconds per partition: this iteration's measure where there is one, else the
        speed estimate; before any estimate, the mean of this iteration's measures (do not
        modify)."""
        if self.backups is not None:
            return self.rarr
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
        self.cur[w] = j
        self.live[x].append(j)
        self.start.append(float(self.cs[j]))
        self.owner.append(w)
        self.idle[w] = False
        self.n_idle -= 1
        if self.backups is not None:
            self.backups.copy(x, j, w, t, self.nsize[x])
        return task

    def _pull(self, w: int, t: float) -> Task | None:
        """A new chunk of unassigned partitions that ``w`` holds, or None."""
        if self.fixed:
            size = self.fixed
        elif self.weighted:
            rate = self.rates()
            if (self._vsum is None or self._vsum[0] is not rate
                    or self._vsum[2] != self.rate_version):
                self._vsum = (rate, (1.0 / rate)[self.active].sum(), self.rate_version)
            size = math.ceil(self.n_left * (1.0 / rate[w]) / self._vsum[1] - 1e-9)
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
        self.live.append([])
        self.nsize.append(got)
        if not self.placement.shared:
            self.holders_of.append(holders(blocks, self.N, self.placement.R))
            for v in self.holders_of[x]:
                self.held[v].append(x)
            self.dirty.add_chunk(x, self.holders_of[x])
        return self._dispatch(w, x, 1, t)

    def _feed(self, t: float) -> list[Task]:
        """Work for the idle workers, fastest first: a pulled chunk, else a backup copy."""
        self.t_last = t
        out: list[Task] = []
        if self.done() or not self.n_idle:
            return out  # (changes meanwhile are still seen: Watch compares with its last look)
        rule = self.backups or self.vectors  # with estimates: indexed; without: vectors
        if self.orphans:  # (only after a failure: a lost chunk before any new work)
            self.orphans.adopt(t, out)
            if not self.n_idle:
                return out
        if not self.placement.shared:
            # every idle worker that may get something, fastest first: pull, else a copy
            rule.note_dirty(t)
            self.dirty.feed(t, rule.rate_list(), out)
            return out
        rule.start(t)  # everyone can take anything: only the fastest idle worker matters
        while self.n_idle and (self.n_left or self.backup):
            w = rule.fastest()
            if w is None:
                break  # (refused a copy, and nothing it could take has changed since)
            if self.n_left:
                task = self._pull(w, t)
            else:
                x = rule.backup(w, t)
                task = None if x is None else self._dispatch(w, x, 2, t)
            if task is None:
                break  # the fastest idle worker cannot help: nor can a slower one
            out.append(task)
        return out

    def react_failure(self, worker, lost, t):
        """A dead worker's chunk goes to a survivor (:class:`~.orphans.Orphans`)."""
        self.orphans.failed(worker, lost)
        return Actions(dispatch=self._feed(t))

    def on_members_changed(self):
        adopt_blocks(self, reset=True)  # replicated: blocks without a live holder

    def _now_idle(self, w: int) -> None:
        if not self.idle[w]:
            self.idle[w] = True
            self.n_idle += 1
            if self.backups is not None:
                self.backups.idle(w)

    # ---- events ----------------------------------------------------------------------------
    def react(self, task, t):
        acts = Actions()
        w = task.worker
        if task.n:
            self.rate_now[w] = task.duration / task.n
            self._rate = None
            if self.backups is not None:
                self.rarr[w] = self.rl[w] = self.rate_now[w]
                self.rate_version += 1
        if self.active[w]:
            self._now_idle(w)
            self.dirty.add(w)
        x = self.chunk_of[task.task_id]
        self.cpend[self.copy_of[task.task_id]] = False
        self.cur[w] = -1
        if self.winner[x] is None:  # the first copy wins; the others are redundant
            self.winner[x] = task
            self.n_won += 1
            if self.backups is not None:
                self.backups.won(x)
            lost = self._cancel([c for c in self.copies[x] if c is not task], t)
            for c in lost:
                self.cpend[self.copy_of[c.task_id]] = False
                self.cur[c.worker] = -1
                if self.active[c.worker]:
                    self._now_idle(c.worker)
                    self.dirty.add(c.worker)
            acts.cancel += lost
        self.live[x] = [j for j in self.live[x] if self.cpend[j]]
        acts.dispatch += self._feed(t)
        return acts

    def on_tick(self, t):
        return Actions(dispatch=self._feed(t))

    def next_deadline(self):
        """When a running copy becomes overdue, while a worker idles with nothing to pull."""
        if not self.backup or not self.n_idle or self.done() or (
                self.placement.shared and self.n_left):
            return None
        if self.backups is not None:
            return self.backups.next_due(self.t_last)
        _, start, run = pending_copies(self, self.rates())
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

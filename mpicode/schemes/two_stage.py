"""``two-stage``: two-stage dynamic partial gradient coding (docs/design.md §3).

Stage 1 is uncoded and heterogeneity-aware: the n1 = ceil(rho N) fastest workers split the K
micro-partitions in proportion to their speeds. At the trigger (k1 arrivals, or beta times
the predicted stage-1 time) the partitions of the stragglers, U, are re-issued to the reserve
and the finished workers as a fractional-repetition code restricted to U, with r2 = s2 + 1
groups. Decoding never solves anything: a coverage map records, for every stage-1 worker,
whether its own message or one group's blocks (which tile its set exactly) arrived first.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from mpicode import options as cf
from mpicode.errors import UsageError
from mpicode.options import Option
from mpicode.registry import register_scheme
from mpicode.schemes import shares
from mpicode.schemes.base import Actions, Decoding, Scheme, Task
from mpicode.schemes.idle_pool import IdlePool
from mpicode.schemes.replanning import Replanning, replan_groups, replan_value
from mpicode.schemes.shares import PLACEMENT, Placement, assign, largest_remainder
from mpicode.schemes.stage2 import Stage2
from mpicode.schemes.stealing import Stealing

SELF = -1  # cover[j] == SELF: stage-1 task j is covered by its own message

TRIGGERS = ("count", "deadline", "both")
GRACE = 0.05  # a re-planning tick comes 5% of a task's planned finish after it


OPTIONS = (
    Option("rho", cf.finite_float, 1.0, "two-stage: fraction of workers in stage 1",
           check=cf.unit_open_closed, group="two-stage"),
    Option("trigger", str, "both", "two-stage: stage-2 trigger", choices=TRIGGERS,
           group="two-stage"),
    Option("trigger_k", cf.optional_int, None,
           "two-stage: count trigger k1 (default n1 - ceil(s*n1/N))",
           check=cf.optional_positive, group="two-stage"),
    Option("beta", cf.finite_float, 1.5, "two-stage: deadline = beta x predicted stage-1 time",
           check=lambda x: None if x >= 1 else "must be >= 1", group="two-stage"),
    Option("stage1_chunks", int, 3, "two-stage: queued tasks per stage-1 share (idle workers "
           "steal queued ones; 1: one task per worker)", check=cf.positive, group="two-stage"),
    Option("replan", replan_value, "auto", "two-stage: re-planning groups per iteration for "
           "late stragglers (stage k; 0: the paper's single stage 2; none: N, one per worker; "
           "auto: max(64, N))", check=lambda x: None if x in (None, "auto") or x >= 0
           else "must be >= 0", group="two-stage"),
    Option("replan_load", cf.finite_float, 0.3, "two-stage: re-planning stops once stage 2 and "
           "the rounds re-issued this fraction of the K partitions in an iteration (a cap on "
           "the load above 1)", check=cf.nonneg, group="two-stage"),
    Option("replan_messages", cf.finite_float, 3.0, "two-stage: a re-planning group gets no "
           "more members than keep the iteration's result messages, if every group wins, "
           "within this many per worker (one member always)", check=cf.nonneg,
           group="two-stage"),
    Option("stage2_tolerance", int, 0, "two-stage: s2, stage-2 redundancy is s2+1",
           check=cf.nonneg, group="two-stage"),
    Option("max_wait", cf.optional_float, None,
           "hard deadline (s) of an iteration: two-stage decodes the covered part and "
           "scales it; with another scheme train fails the run, with a checkpoint",
           check=cf.optional_positive, group="reliability"),
    PLACEMENT,
)


@register_scheme
class TwoStage(Stealing, Replanning, Stage2, Scheme):
    """Two-stage dynamic partial gradient coding.

    Parameters (besides :class:`Scheme`'s)
    ----------
    rho : float in (0, 1]
        Fraction of the workers in stage 1.
    trigger : {"count", "deadline", "both"}
        What starts stage 2.
    trigger_k : int or None
        Count trigger k1; default n1 - ceil(s n1 / N), at least 1.
    beta : float
        Deadline trigger at beta x the predicted stage-1 completion time.
    stage2_tolerance : int
        s2; stage 2 has redundancy r2 = s2 + 1 groups.
    max_wait : float or None
        Hard deadline (seconds since the iteration began) for a partial, scaled decode.
    placement : str
        ``shared`` or ``replicated:R``.
    stage1_chunks : int
        Each stage-1 share goes out as this many queued tasks; an idle worker steals a
        queued one from the worker predicted to finish last (1: one task per worker).
    replan_load : float
        Re-planning rounds stop once stage 2 and the rounds re-issued this fraction of the K
        partitions in the iteration (so the load stays <= 1 + replan_load + one set).
    replan_messages : float
        A re-planning group gets no more members than keep the iteration's messages, if
        every group wins (one replaces its straggler's message, each other adds one),
        within this many per worker; a group of one is always allowed.
    replan : int, None or "auto"
        Re-planning rounds (new groups) per iteration (None: N; "auto": max(64, N); 0: the
        paper's single stage 2).
        Whenever a worker goes idle while a straggler's set is uncovered and predicted to be
        covered later than the idle workers could cover what is left of it, the pending rest
        of its best group is re-split among the idle workers as a new group (stage k).
    """

    name = "two-stage"
    options = Scheme.options + OPTIONS
    # the per-iteration summary of end(), logged as /iterations columns
    log_fields = {"r2": "i4", "n1": "i4", "k1": "i4", "u": "i4", "replans": "i4", "steals": "i4",
                  "trigger": "S8", "t_trigger": "f8", "deadline": "f8", "expired": "i1"}

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        super().validate_size(cfg, n_workers, n_partitions)
        opts = cls.option_values(cfg)
        shares.check_placement_size(opts["placement"], n_workers)
        trigger_k = opts["trigger_k"]
        if trigger_k is not None and trigger_k > n_workers:
            raise UsageError(f"--trigger-k {trigger_k} must be <= number of workers "
                             f"{n_workers}")

    def __init__(self, n_workers, n_partitions, *, rho=1.0, trigger="both", trigger_k=None,
                 beta=1.5, stage2_tolerance=0, max_wait=None, placement="shared", replan="auto",
                 stage1_chunks=3, replan_load=0.3, replan_messages=3.0, **kw):
        super().__init__(n_workers, n_partitions, **kw)
        if not 0 < rho <= 1:
            raise ValueError(f"rho must be in (0, 1], got {rho}")
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, got {trigger!r}")
        if trigger_k is not None and trigger_k < 1:
            raise ValueError(f"trigger_k must be >= 1, got {trigger_k}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if stage2_tolerance < 0:
            raise ValueError(f"stage2_tolerance must be >= 0, got {stage2_tolerance}")
        if max_wait is not None and not max_wait > 0:
            raise ValueError(f"max_wait must be > 0, got {max_wait}")
        self.rho = float(rho)
        self.trigger = trigger
        self.trigger_k = trigger_k
        self.beta = float(beta)
        self.s2 = int(stage2_tolerance)
        self.max_wait = None if max_wait is None else float(max_wait)
        self.placement = Placement(placement, self.N, self.K)
        self.replan = replan_groups(replan, self.N)
        if int(stage1_chunks) < 1:
            raise ValueError(f"stage1_chunks must be >= 1, got {stage1_chunks}")
        self.stage1_chunks = int(stage1_chunks)
        if not replan_load >= 0:
            raise ValueError(f"replan_load must be >= 0, got {replan_load}")
        self.replan_load = float(replan_load)
        if not replan_messages >= 0:
            raise ValueError(f"replan_messages must be >= 0, got {replan_messages}")
        self.replan_messages = float(replan_messages)
        self.exact = self.max_wait is None
        # how well last iterations' estimates predicted the speeds then measured (a
        # correlation, 0..1; NaN before any): shares trust the history only that much
        self.reliability = math.nan
        self._reset()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "reliability": float(self.reliability)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._speeds = self._rates = None
        if "reliability" in state:
            self.reliability = float(state["reliability"])

    def speeds(self) -> np.ndarray:
        """The speed estimates, shrunk toward their (geometric) mean by ``reliability``:
        when this iteration's speeds do not follow the last ones' (fresh draws every
        iteration), proportional shares would only follow noise."""
        if self._speeds is None:  # the estimates change only between iterations
            self._speeds = shares.shrink(super().speeds(), self.reliability)
        return self._speeds.copy()

    def _reset(self):
        self.s1: dict[int, Task] = {}                # stage-1 task id -> task
        self.tiles: dict[int, list[list[Task]]] = {}  # stage-1 id -> per group, its blocks
        self.owner: dict[int, list[tuple[int, int]]] = {}  # block id -> [(group, stage-1 id)]
        self.missing: dict[tuple[int, int], int] = {}  # (group, stage-1 id) -> blocks to come
        self.cover: dict[int, int] = {}               # stage-1 id -> SELF or group
        self.n1 = self.k1 = 0
        self.n_done1 = 0          # stage-1 messages arrived
        self.deadline: float | None = None
        self.fired = ""          # "", "count" or "deadline": what triggered stage 2
        self.t_trigger = math.nan
        self.armed = False       # triggered, but nobody was idle yet to take stage 2
        self.issued = False      # stage 2 handed out (once per iteration)
        self.expired = False     # max_wait passed
        self.r2 = 0
        self.n_u = 0
        self.rounds = 0          # re-planning rounds used this iteration
        self.reissued = 0        # partitions stage 2 and the rounds re-issued
        self.extra_msgs = 0      # messages groups add if they win (blocks beyond one)
        self.steals = 0          # stage-1 tasks stolen by idle workers
        self.by_worker: dict[int, list[Task]] = {}  # every task of a worker, in dispatch order
        self.finish_heap: list = []  # (planned finish, task id) of stage-1 tasks: who is late
        self.first_event = True  # the first arrival also looks at workers idle from the start
        self.idle_pool = IdlePool()  # workers that went idle and were given nothing
        self.planned: dict[int, float] = {}  # stage-1 task id -> planned finish
        self.victims: list = []  # heap of (-planned finish, worker, id of its last queued task)
        self.late_ids: dict[int, None] = {}  # stage-1 tasks past their planned finish
        self.stolen_n = 0        # their partitions (never computed on the victim)
        self.coverage = math.nan
        self.rate_now = np.full(self.N, np.nan)  # s/partition measured this iteration
        self._speeds = self._rates = None  # caches of speeds() and rates()
        self.version = 0         # bumped when a worker idles, a task turns late, a rate...
        self.failed_at = -1      # ... is measured; the version a round last found nothing

    # ---- stage 1 ---------------------------------------------------------------------------
    def plan(self):
        self._reset()
        tau = self.speeds()
        live = [int(w) for w in np.flatnonzero(self.active)]
        if not live:
            raise RuntimeError("two-stage: no active worker")
        order = sorted(live, key=lambda w: (tau[w], w))
        n1 = min(math.ceil(self.rho * self.N), len(live), self.K)
        s1 = set(order[:n1])
        if not self.placement.shared:
            s1 = self._with_holders(s1, order)
        workers = sorted(s1)  # contiguous ranges in worker order
        counts = largest_remainder(self.K, 1.0 / tau[workers], minimum=1)
        parts = assign(range(self.K), workers, counts, tau, self.placement)
        tasks = [x for w in workers if parts[w] for x in self._chunked(w, parts[w])]
        self.s1 = {t.task_id: t for t in tasks}
        for w in workers:  # their queued chunks, for idle workers to steal
            self._push_victim(w)
        self.tiles = {t.task_id: [] for t in tasks}
        self.n1 = len(tasks)
        k1 = self.n1 - math.ceil(self.s * self.n1 / self.N)
        if self.trigger_k is not None:
            k1 = self.trigger_k
        self.k1 = min(max(1, k1), self.n1)
        # the deadline needs a prediction, which needs history: none in the first iteration
        if self.trigger != "count" and np.isfinite(self.tau[[t.worker for t in tasks]]).any():
            share: dict[int, int] = {}
            for x in tasks:  # a worker's chunks run one after another
                share[x.worker] = share.get(x.worker, 0) + x.n
            predicted = max(n * tau[w] for w, n in share.items())
            self.deadline = float(self.beta * predicted)
        return tasks

    # ---- events ------------------------------------------------------------------------------
    def react(self, task, t):
        acts = Actions()
        if self.max_wait is not None and t >= self.max_wait:
            self.expired = True
        if task.n and np.isfinite(task.duration) and task.duration > 0:
            self.rate_now[task.worker] = task.duration / task.n
            self._rates = None
            self.version += 1
            if self.first_event and not np.isfinite(self.tau).any():
                self._rekey()
        if task.stage == 1:
            j = task.task_id
            self.n_done1 += 1
            self.cover.setdefault(j, SELF)
            # its stage-2 blocks, in every group, are now redundant
            acts.cancel += self._cancel((b for g in self.tiles[j] for b in g), t)
            if (not self.fired and self.trigger != "deadline" and not self._complete()
                    and self.n_done1 >= self.k1 and self._worth_it(t)):
                self.fired, self.t_trigger = "count", t
                self.armed = True
            if self.idle(task.worker):
                self._free(task.worker)
            if self._may_act(task) and not self._complete() and not self.expired:
                acts += self._steal(t)
                self.idle_pool.difference_update(x.worker for x in acts.dispatch)
            if self.armed and not self.issued and not self._complete() and not self.expired:
                acts += self._stage2(t)
        else:
            for g, j in self.owner[task.task_id]:
                self.missing[g, j] -= 1
                if self.missing[g, j] == 0 and j not in self.cover:
                    self.cover[j] = g  # group g's blocks tile j's set: the rest is redundant
                    acts.cancel += self._cancel([self.s1[j]], t)
                    mine = {b.task_id for b in self.tiles[j][g]}
                    acts.cancel += self._cancel((b for blks in self.tiles[j] for b in blks
                                                 if b.task_id not in mine), t)
        near = () if self.placement.shared else {
            (task.worker + d) % self.N for d in range(1 - self.placement.R, self.placement.R)}
        if (self.rounds < self.replan and self._may_act(task) and not self._complete()
                and not self.expired and (self._someone_late(t) or near)):
            acts += self._replan(t, near)
        self.first_event = False
        if self.idle(task.worker):
            self._free(task.worker)
        self.idle_pool.difference_update(x.worker for x in acts.dispatch)
        return acts


    def _free(self, w: int) -> None:
        if w not in self.idle_pool:
            self.idle_pool.add(w)
            self.version += 1

    def on_tick(self, t):
        """The deadline trigger; and, while a worker idles, the planned finish of a stage-1
        task passing (it may be late now, with no arrival to notice it: a re-planning round)."""
        if self.max_wait is not None and t >= self.max_wait:
            self.expired = True
        acts = Actions()
        if not (self.fired or self.deadline is None or t < self.deadline or self._complete()
                or self.expired):
            self.fired, self.t_trigger = "deadline", t
            self.armed = True
            acts += self._stage2(t)
        if (self.rounds < self.replan and self.idle_pool and not self._complete()
                and not self.expired and self._someone_late(t)):
            acts += self._replan(t)
            self.idle_pool.difference_update(x.worker for x in acts.dispatch)
        return acts

    def next_deadline(self):
        """The deadline trigger (until stage 2 fires), ``max_wait``, and while a worker idles
        with re-planning rounds left, the next planned stage-1 finish; None once done."""
        if self.done():
            return None
        cands = [] if self.fired or self.deadline is None else [self.deadline]
        if self.max_wait is not None:
            cands.append(self.max_wait)
        if self.rounds < self.replan and self.idle_pool:
            h = self.finish_heap
            while h and (h[0][1] not in self.s1 or h[0][1] in self.cover
                         or self.s1[h[0][1]].state != "pending"):
                heapq.heappop(h)
            if h:  # a little after it: then, overdue, a backup is predicted to be sooner
                cands.append(h[0][0] * (1 + GRACE) + 1e-12)
        return min(cands) if cands else None

    # ---- decoding ----------------------------------------------------------------------------
    def _complete(self) -> bool:
        return len(self.cover) == len(self.s1)

    def done(self):
        """Exactly decodable, or ``max_wait`` passed (then :meth:`decode` is partial)."""
        return self._complete() or self.expired

    def decodable_with(self, task_ids):
        for j, blocks in self.tiles.items():
            if j in task_ids:
                continue
            if not any(g and all(b.task_id in task_ids for b in g) for g in blocks):
                return False
        return True

    def decode(self):
        """Sum of the chosen messages, each partition once; O(n1 + |U|), no linear algebra.

        After ``max_wait`` with coverage incomplete, an uncovered stage-1 set contributes the
        arrived blocks of the one group that has most of it, and the sum is scaled by
        K / |covered| (``coverage`` < 1). With nothing covered the weights are empty.
        """
        chosen: list[Task] = []
        for j, x in self.s1.items():
            c = self.cover.get(j)
            if c == SELF:
                chosen.append(x)
            elif c is not None:
                chosen += self.tiles[j][c]
            elif self.expired:
                best = max(([b for b in g if b.state == "done"] for g in self.tiles[j]),
                           key=lambda bs: sum(b.n for b in bs), default=[])
                chosen += best
            else:
                raise RuntimeError("two-stage: decode() before the gradient is covered")
        covered = sum(b.n for b in chosen)
        scale = self.K / covered if covered else 0.0
        for b in chosen:
            b.used = True
        self.coverage = covered / self.K
        return Decoding({b.task_id: scale for b in chosen}, self.coverage)

    def end(self, t):
        """Base summary plus: ``coverage``, ``r2`` (0 without stage 2), ``n1``, ``k1``,
        ``u`` (|U|), ``trigger`` ("", "count", "deadline"), ``t_trigger``, ``deadline`` (NaN
        if none), ``expired`` (1 if max_wait forced a partial decode), ``replans``
        (re-planning rounds used)."""
        before = self.tau.copy()
        out = super().end(t)
        self._speeds = self._rates = None
        self.reliability = shares.update_reliability(self.reliability, before,
                                                     self._measured())
        # a stolen task never ran on its first worker: only its thief's copy is load
        out["load"] = (sum(x.n for x in self.tasks.values()) - self.stolen_n) / self.K
        if not np.isfinite(self.coverage):
            covered = sum(x.n for j, x in self.s1.items() if j in self.cover)
            self.coverage = covered / self.K
        out.update(coverage=self.coverage, r2=self.r2, n1=self.n1, k1=self.k1, u=self.n_u,
                   replans=self.rounds, steals=self.steals,
                   trigger=self.fired, t_trigger=self.t_trigger,
                   deadline=math.nan if self.deadline is None else self.deadline,
                   expired=int(self.expired and not self._complete()))
        return out

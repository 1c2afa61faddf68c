"""``two-stage``: two-stage dynamic partial gradient coding (docs/design.md §3).

Stage 1 is uncoded and heterogeneity-aware: the n1 = ceil(rho N) fastest workers split the K
micro-partitions in proportion to their speeds. At the trigger (k1 arrivals, or beta times
the predicted stage-1 time) the partitions of the stragglers, U, are re-issued to the reserve
and the finished workers as a fractional-repetition code restricted to U, with r2 = s2 + 1
groups. Decoding never solves anything: a coverage map records, for every stage-1 worker,
whether its own message or one group's blocks (which tile its set exactly) arrived first.

A worker that dies (``--on-failure continue``) is a straggler that never returns: the sets it
leaves without a live group get new ones on the survivors (:mod:`mpicode.schemes.regroup`).
"""

from __future__ import annotations

import math

import numpy as np

from mpicode import options as cf
from mpicode.errors import UsageError
from mpicode.options import Option
from mpicode.registry import register_scheme
from mpicode.schemes import regroup, shares
from mpicode.schemes.base import Actions, Decoding, Scheme, Task
from mpicode.schemes.coverage import SELF, Coverage
from mpicode.schemes.idle_pool import IdlePool
from mpicode.schemes.planned import Changes, PlannedFinishes
from mpicode.schemes.queues import WorkerQueues
from mpicode.schemes.rates import Rates
from mpicode.schemes.replanning import Replanner, replan_groups, replan_value
from mpicode.schemes.shares import PLACEMENT, Placement, assign, largest_remainder
from mpicode.schemes.stage2 import Stage2
from mpicode.schemes.stealing import Stealer

__all__ = ["SELF", "TwoStage", "OPTIONS", "TRIGGERS"]

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
class TwoStage(Scheme):
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
        paper's single stage 2): :mod:`mpicode.schemes.replanning`.
    """

    name = "two-stage"
    elastic = True  # a dead worker's uncovered sets get new groups (react_failure)
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
        for bad, what, value in (
                (not 0 < rho <= 1, "rho must be in (0, 1]", rho),
                (trigger not in TRIGGERS, f"trigger must be one of {TRIGGERS}", trigger),
                (trigger_k is not None and trigger_k < 1, "trigger_k must be >= 1", trigger_k),
                (not beta > 0, "beta must be > 0", beta),
                (stage2_tolerance < 0, "stage2_tolerance must be >= 0", stage2_tolerance),
                (max_wait is not None and not max_wait > 0, "max_wait must be > 0", max_wait),
                (int(stage1_chunks) < 1, "stage1_chunks must be >= 1", stage1_chunks),
                (not replan_load >= 0, "replan_load must be >= 0", replan_load),
                (not replan_messages >= 0, "replan_messages must be >= 0", replan_messages)):
            if bad:
                raise ValueError(f"{what}, got {value!r}")
        self.rho, self.trigger, self.trigger_k = float(rho), trigger, trigger_k
        self.beta, self.s2 = float(beta), int(stage2_tolerance)
        self.max_wait = None if max_wait is None else float(max_wait)
        self.placement = Placement(placement, self.N, self.K)
        self.replan = replan_groups(replan, self.N)
        self.stage1_chunks = int(stage1_chunks)
        self.replan_load, self.replan_messages = float(replan_load), float(replan_messages)
        self.exact = self.max_wait is None
        # how well last iterations' estimates predicted the speeds then measured (a
        # correlation, 0..1; NaN before any): shares trust the history only that much
        self.reliability = math.nan
        self._speeds: np.ndarray | None = None  # speeds() of the iteration (cached)
        self._new_iteration(np.ones(self.N), history=False)

    # ---- explicit state (checkpoints) ---------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "reliability": float(self.reliability)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._speeds = None
        if "reliability" in state:
            self.reliability = float(state["reliability"])

    def speeds(self) -> np.ndarray:
        """The speed estimates, shrunk toward their (geometric) mean by ``reliability``:
        when this iteration's speeds do not follow the last ones' (fresh draws every
        iteration), proportional shares would only follow noise."""
        if self._speeds is None:  # the estimates change only between iterations
            self._speeds = shares.shrink(super().speeds(), self.reliability)
        return self._speeds.copy()

    # ---- the iteration's collaborators --------------------------------------------------
    def _new_iteration(self, speeds: np.ndarray, history: bool) -> None:
        """Fresh per-iteration state, built in dependency order: what each part owns is
        declared in its class (docs/design.md §3.2)."""
        self.changes = Changes()                  # a round's "anything new?" flag
        self.coverage = Coverage()                # stage-1 sets, their groups, covers
        self.queues = WorkerQueues(self.N)        # every worker's tasks, running, idle
        self.rates = Rates(speeds, history)       # s/partition: estimates, measured now
        self.planned = PlannedFinishes(self.coverage, self.changes)  # who is late
        self.idle_pool = IdlePool(self.rates, self.active)  # idle, given nothing yet
        self.stealer = Stealer(self, self.stage1_chunks)  # stage-1 chunks and thefts
        self.replanner = Replanner(self)          # stage k: re-planning rounds
        self.stage2 = Stage2(self, k1=0, deadline=None)  # the trigger and stage 2
        self.n1 = 0
        self.first_event = True  # the first arrival also looks at workers idle from the start
        self.expired = False     # max_wait passed
        self.covered = math.nan  # fraction of the K partitions the decode covered

    def dispatch(self, worker: int, stage: int, partitions, t: float = 0.0) -> Task:
        """A new task of this iteration (the collaborators' one task factory)."""
        task = self.new_task(worker, stage, partitions, t=t)
        self.queues.add(task)
        self.idle_pool.discard(task.worker)  # the pool holds only workers with nothing to do
        return task

    def cancel(self, tasks, t: float) -> list[Task]:
        """Cancel, and free the workers left with nothing pending: they take work again (a
        cancelled running task frees its worker at once). A cancelled running task also
        bounds its worker's speed this iteration from below."""
        tasks = list(tasks)
        rates, queues = self.rates, self.queues
        for x in tasks:
            if x.state == "pending" and not rates.measured(x.worker):
                s = queues.start(x)
                if s is not None and t > s and x.n:
                    self._measure(x.worker, (t - s) / x.n)
        out = self._cancel(tasks, t)
        cov = self.coverage
        for x in out:
            queues.left(x)
            if x.stage == 2:
                cov.touch_block(x.task_id)
            else:
                cov.touch(x.task_id)
        for w in {x.worker for x in out}:
            self._worker_changed(w)
        for x in out:
            if self.active[x.worker] and queues.idle(x.worker):
                self.idle_pool.add(x.worker)
                self.changes.bump()
        return out

    def _measure(self, w: int, rate: float) -> None:
        """Worker w's rate this iteration is ``rate``."""
        self.rates.measure(w, rate)
        self.changes.bump()

    def _worker_changed(self, w: int) -> None:
        """Worker w's rate or running task changed: what re-planning derived from the tasks
        it still has to run (their start, their predicted finish) is stale."""
        cov = self.coverage
        for x in self.queues.pending(w):
            if x.stage == 1:
                cov.touch(x.task_id)
            else:
                cov.touch_block(x.task_id)

    def outstanding(self, t: float = math.nan) -> list[Task]:
        return self.cancel(self.pending(), t)

    def idle_candidates(self) -> list[int]:
        """Workers that may take work now: those known idle (and, at the first arrival,
        every idle worker: a reserve)."""
        if self.first_event:
            return [int(w) for w in np.flatnonzero(self.active) if self.queues.idle(int(w))]
        return [w for w in self.idle_pool if self.active[w]]

    def _may_act(self, task) -> bool:
        """Stealing and re-planning need an idle worker: the one that just finished, one that
        went idle before and got nothing, or (at the first arrival) a reserve."""
        return self.first_event or bool(self.idle_pool) or self.queues.idle(task.worker)

    def _free(self, w: int) -> None:
        if w not in self.idle_pool:
            self.idle_pool.add(w)
            self.changes.bump()

    # ---- stage 1 ---------------------------------------------------------------------------
    def plan(self):
        self._speeds = None  # the estimates as they are now (end() or a test set them)
        tau = self.speeds()
        self._new_iteration(tau.copy(), history=bool(np.isfinite(self.tau).any()))
        live = [int(w) for w in np.flatnonzero(self.active)]
        if not live:
            raise RuntimeError("two-stage: no active worker")
        order = sorted(live, key=lambda w: (tau[w], w))
        n1 = min(math.ceil(self.rho * self.N), len(live), self.K)
        s1 = set(order[:n1])
        if not self.placement.shared:  # the fastest live holder of what S1 holds none of
            for k, h in shares.add_holders(s1, order, self.placement):
                self.log_notes.append(f"stage 1: added worker {h}, the fastest holder of "
                                      f"partition {k}")
        workers = sorted(s1)  # contiguous ranges in worker order
        counts = largest_remainder(self.K, 1.0 / tau[workers], minimum=1)
        parts = assign(range(self.K), workers, counts, tau, self.placement)
        orphans = parts.pop(-1, [])
        if orphans:  # every holder failed (--on-failure continue): a survivor loads them
            parts = shares.to_loaders(orphans, parts, tau, self.placement,
                                      self.active & self.members, self.log_notes)
            workers = sorted(parts)
        tasks = [x for w in workers if parts[w]
                 for x in self.stealer.chunked(w, parts[w], float(tau[w]))]
        for x in tasks:
            self.coverage.add_set(x)
        for w in workers:  # their queued chunks, for idle workers to steal
            self.stealer.offer(w)
        self.n1 = len(tasks)
        self.stage2 = Stage2.planned(self, tasks, tau)
        return tasks

    def react_failure(self, worker, lost, t):
        """A dead worker's sets left without a live group get new ones (:mod:`~.regroup`)."""
        return regroup.failed(self, worker, lost, t)

    # ---- events ------------------------------------------------------------------------------
    def react(self, task, t):
        self.queues.left(task)
        cov = self.coverage
        acts = Actions()
        if self.max_wait is not None and t >= self.max_wait:
            self.expired = True
        if task.n and math.isfinite(task.duration) and task.duration > 0:
            self._measure(task.worker, task.duration / task.n)
            if self.first_event and not self.rates.history:
                self.planned.rekey(self.queues, self.rates)
        self._worker_changed(task.worker)
        if task.stage == 1:
            j = task.task_id
            cov.touch(j)
            cov.n_done += 1
            cov.cover.setdefault(j, SELF)
            if j in cov.grouped:  # its stage-2 blocks, in every group, are now redundant
                acts.cancel += self.cancel((b for g in cov.tiles[j] for b in g), t)
            self.stage2.count_fires(t)
            if self.queues.idle(task.worker):
                self._free(task.worker)
            if self._may_act(task) and not cov.complete() and not self.expired:
                acts += self.stealer.steal(t)
                self.idle_pool.difference_update(x.worker for x in acts.dispatch)
            if (self.stage2.armed and not self.stage2.issued and not cov.complete()
                    and not self.expired):
                acts += self.stage2.issue(t, arrived=task.worker)
        else:  # a group whose last block this is covers its set: the rest is redundant
            for j, redundant in cov.block_arrived(task):
                acts.cancel += self.cancel([cov.s1[j]], t)
                acts.cancel += self.cancel(redundant, t)
        near = () if self.placement.shared else {
            (task.worker + d) % self.N for d in range(1 - self.placement.R, self.placement.R)}
        if (self.replanner.left() and self._may_act(task) and not cov.complete()
                and not self.expired and (self.planned.someone_late(t) or near)):
            acts += self.replanner.replan(t, near)
        self.first_event = False
        if self.queues.idle(task.worker):
            self._free(task.worker)
        self.idle_pool.difference_update(x.worker for x in acts.dispatch)
        return acts

    def on_tick(self, t):
        """The deadline trigger; and, while a worker idles, the planned finish of a stage-1
        task passing (it may be late now, with no arrival to notice it: a re-planning round)."""
        if self.max_wait is not None and t >= self.max_wait:
            self.expired = True
        acts = Actions()
        if self.stage2.deadline_fires(t):
            acts += self.stage2.issue(t)
        if (self.replanner.left() and self.idle_pool and not self.coverage.complete()
                and not self.expired and self.planned.someone_late(t)):
            acts += self.replanner.replan(t)
            self.idle_pool.difference_update(x.worker for x in acts.dispatch)
        return acts

    def next_deadline(self):
        """The deadline trigger (until stage 2 fires), ``max_wait``, and while a worker idles
        with re-planning rounds left, the next planned stage-1 finish; None once done."""
        if self.done():
            return None
        st2 = self.stage2
        cands = [] if st2.fired or st2.deadline is None else [st2.deadline]
        if self.max_wait is not None:
            cands.append(self.max_wait)
        if self.replanner.left() and self.idle_pool:
            f = self.planned.next_finish()
            if f is not None:  # a little after it: then, overdue, a backup is predicted sooner
                cands.append(f * (1 + GRACE) + 1e-12)
        return min(cands) if cands else None

    # ---- decoding ----------------------------------------------------------------------------
    def done(self):
        """Exactly decodable, or ``max_wait`` passed (then :meth:`decode` is partial)."""
        return self.coverage.complete() or self.expired

    def decodable_with(self, task_ids):
        return self.coverage.decodable_with(task_ids)

    def decode(self):
        """Sum of the chosen messages, each partition once; O(n1 + |U|), no linear algebra
        (:meth:`Coverage.chosen`: after ``max_wait``, partial and scaled by K / |covered|;
        with nothing covered the weights are empty)."""
        chosen = self.coverage.chosen(self.expired)
        covered = sum(b.n for b in chosen)
        scale = self.K / covered if covered else 0.0
        for b in chosen:
            b.used = True
        self.covered = covered / self.K
        return Decoding({b.task_id: scale for b in chosen}, self.covered)

    def end(self, t):
        """Base summary plus: ``coverage``, ``r2`` (0 without stage 2), ``n1``, ``k1``,
        ``u`` (|U|), ``trigger`` ("", "count", "deadline"), ``t_trigger``, ``deadline`` (NaN
        if none), ``expired`` (1 if max_wait forced a partial decode), ``replans``
        (re-planning rounds used), ``steals``."""
        before = self.tau.copy()
        out = super().end(t)
        self._speeds = None
        self.reliability = shares.update_reliability(
            self.reliability, before, shares.measured_rates(self.tasks.values(), self.N))
        # a stolen task never ran on its first worker: only its thief's copy is load
        out["load"] = (sum(x.n for x in self.tasks.values()) - self.stealer.stolen_n) / self.K
        cov, st2 = self.coverage, self.stage2
        if not np.isfinite(self.covered):
            covered = sum(x.n for j, x in cov.s1.items() if j in cov.cover)
            self.covered = covered / self.K
        out.update(coverage=self.covered, r2=st2.r2, n1=self.n1, k1=st2.k1, u=st2.n_u,
                   replans=self.replanner.rounds, steals=self.stealer.steals,
                   trigger=st2.fired, t_trigger=st2.t_trigger,
                   deadline=math.nan if st2.deadline is None else st2.deadline,
                   expired=int(self.expired and not cov.complete()))
        return out

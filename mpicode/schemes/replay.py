"""A tiny pure driver for schemes: virtual time, synthetic gradients, no MPI.

It runs one iteration the way the MPI coordinator does (``begin``, then arrivals and clock
ticks in time order until ``done``, then ``decode``/``outstanding``/``end``) and lets tests
check a decode against the uncoded sum. Each partition k gets a random gradient g_k and loss;
a task's message is sum_p coeff_p * g_p. A worker runs its tasks one after another, in the
order they were dispatched; the ``duration`` callback gives each task's run time (all of its
partitions; a task with a ``time_limit`` stops as the worker would, :func:`cut_short`).
With ``failures`` (worker -> the time it dies) the scheme learns of each death at that time
(``on_failure``, as with ``--on-failure continue``) and the dead worker's results never come.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mpicode.schemes.base import Decoding, Scheme, Task, cut_short


class GradientOracle:
    """Random per-partition gradients g_k (rows) and losses, and the messages they make."""

    def __init__(self, n_partitions: int, dim: int = 3, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.g = rng.standard_normal((n_partitions, dim))
        self.loss = rng.random(n_partitions)

    def message(self, task: Task) -> tuple[np.ndarray, float]:
        parts = task.computed   # a task a time limit cut short sums only its prefix
        c = np.ones(len(parts)) if task.coeffs is None else task.coeffs[:len(parts)]
        return c @ self.g[parts], float(c @ self.loss[parts])

    def full(self) -> tuple[np.ndarray, float]:
        return self.g.sum(axis=0), float(self.loss.sum())

    def combine(self, scheme: Scheme, dec: Decoding) -> tuple[np.ndarray, float]:
        """sum over the decoding's tasks of weight * message."""
        g = np.zeros(self.g.shape[1])
        loss = 0.0
        for tid, w in dec.weights.items():
            mg, ml = self.message(scheme.tasks[tid])
            g += w * mg
            loss += w * ml
        return g, loss


def effective_coeffs(scheme: Scheme, dec: Decoding) -> np.ndarray:
    """Per partition, the total weight a decoding gives it: all ones for an exact decode
    (every partition counted exactly once), K/|covered| on the covered ones if partial."""
    c = np.zeros(scheme.K)
    for tid, w in dec.weights.items():
        task = scheme.tasks[tid]
        parts = task.computed
        np.add.at(c, parts, w * (1.0 if task.coeffs is None else task.coeffs[:len(parts)]))
    return c


@dataclass
class Outcome:
    decoding: Decoding
    summary: dict
    t_end: float
    arrivals: list[int]      # task ids in the order the scheme saw them
    ticks: list[float]       # times of on_tick calls
    dispatched: list[tuple[float, Task]]
    cancelled: list[tuple[float, Task]]


def _run_time(task: Task, d: float, cut: dict) -> float:
    """A task's run time: ``d``, or, with a time limit, as far as the worker's rule lets it
    (partitions of equal time; :func:`cut_short`), noting the partitions done in ``cut``."""
    if task.time_limit == math.inf:
        return d
    done, d = cut_short(task.n, 0.0, d, task.time_limit)
    if done < task.n:
        cut[task.task_id] = done
    return d


class _Workers:
    """Virtual workers running their tasks one after another: a heap of (time, seq, task
    id) of the results to come, and of the deaths in ``failures`` (worker -> time) as task
    id -1 - worker with seq -1 (before a result due at the same time)."""

    def __init__(self, n_workers: int, duration, failures: dict[int, float] | None):
        self.heap = sorted((tf, -1, -1 - w) for w, tf in (failures or {}).items())
        self.free_at = np.zeros(n_workers)
        self.seq = 0
        self.duration = duration
        self.out = Outcome(Decoding({}), {}, 0.0, [], [], [], [])
        self.took, self.cut = {}, {}  # task id -> run time; -> partitions done (time limit)

    def dispatch(self, tasks, t: float) -> None:
        for task in tasks:
            d = _run_time(task, float(self.duration(task)), self.cut)
            start = max(t, self.free_at[task.worker])
            self.free_at[task.worker] = start + d
            self.took[task.task_id] = d
            heapq.heappush(self.heap, (start + d, self.seq, task.task_id))
            self.seq += 1
            self.out.dispatched.append((t, task))

    def apply(self, acts, t: float) -> None:
        self.dispatch(acts.dispatch, t)
        self.out.cancelled += [(t, c) for c in acts.cancel]


def run_iteration(scheme: Scheme, iteration: int, duration: Callable[[Task], float], *,
                  deliver_cancelled: bool = False, max_events: int = 100_000,
                  failures: dict[int, float] | None = None) -> Outcome:
    """Drive one iteration of ``scheme`` in virtual time.

    Parameters
    ----------
    duration : callable
        Task -> seconds it runs on its worker (once started).
    deliver_cancelled : bool
        Still deliver the results of cancelled tasks (a CANCEL that raced with the send);
        the scheme must ignore them.
    failures : dict, optional
        Worker -> time it dies: ``on_failure`` then; none of its results arrives.
    """
    vw = _Workers(scheme.N, duration, failures)
    out, heap, took, cut, dispatch = vw.out, vw.heap, vw.took, vw.cut, vw.dispatch
    apply, dead = vw.apply, set()
    t = 0.0
    dispatch(scheme.begin(iteration).dispatch, t)
    for _ in range(max_events):
        if scheme.done():
            break
        deadline = scheme.next_deadline()
        t_next = heap[0][0] if heap else math.inf
        if deadline is not None and deadline <= t_next:
            t = max(t, deadline)
            out.ticks.append(t)
            apply(scheme.on_tick(t), t)
            continue
        if not heap:
            raise RuntimeError(f"{scheme.name}: stuck, nothing pending and not done")
        t, _, tid = heapq.heappop(heap)
        if tid < 0:  # a worker dies
            dead.add(-1 - tid)
            apply(scheme.on_failure(-1 - tid, t), t)
            continue
        task = scheme.tasks[tid]
        if task.worker in dead or task.state == "cancelled" and not deliver_cancelled:
            continue
        out.arrivals.append(tid)
        apply(scheme.on_result(tid, t, took[tid], n_done=cut.get(tid)), t)
    else:
        raise RuntimeError(f"{scheme.name}: no decision after {max_events} events")
    out.decoding = scheme.decode()
    out.cancelled += [(t, c) for c in scheme.outstanding(t)]
    out.summary = scheme.end(t)
    out.t_end = t
    return out

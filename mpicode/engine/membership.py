"""Who is alive: workers that die mid-run, ``--on-failure abort|continue`` (pure; the MPI
coordinator and the simulator apply the same rules; docs/design.md §2.7).

A failure reaches the run in one of three ways:

* the MPI runtime detects a dead rank (ULFM: ``MPI_ERR_PROC_FAILED`` on a receive or a
  probe) and reports it at the time it noticed (cause ``failed``);
* the failure model (:mod:`mpicode.models.failures`, ``--fail``, ``--failure-model``) kills
  a worker in virtual time: its tasks stop at once, and rank 0 learns of it ``--detect-s``
  seconds later (cause ``simulated``);
* ``--dead-after M`` under ``--on-failure continue`` (cause ``silent``): a worker that had
  work and delivered nothing for M median iterations (within an iteration), or M iterations
  in a row, is treated as dead: a stopped or hung process is a failure too.

With ``abort`` (the default, and the behaviour of an MPI without fault tolerance) the first
failure ends the run: status ``failed``, the last checkpoint kept, resumable. With
``continue`` the scheme treats the worker as a permanent straggler (``Scheme.on_failure``,
then ``Scheme.set_members`` for the next iterations); the run ends ``failed`` only when no
worker is left.
"""

from __future__ import annotations

import math

import numpy as np

from mpicode.models.failures import FailurePlan

ON_FAILURE = ("abort", "continue")


class WorkerFailed(Exception):
    """A worker failed and ``--on-failure abort`` (or no worker is left): the run stops."""


class Membership:
    """The run's live workers and its record of failures (``/events``)."""

    def __init__(self, n_workers: int, *, mode: str = "abort", plan=None,
                 detect_s: float = 0.0, dead_after: int = 0):
        if mode not in ON_FAILURE:
            raise ValueError(f"on_failure must be one of {ON_FAILURE}, got {mode!r}")
        self.N = int(n_workers)
        self.mode = mode
        self.plan = plan                       # FailurePlan or None
        self.detect_s = float(detect_s)
        self.dead_after = int(dead_after)
        self.alive = np.ones(self.N, bool)
        self.records: list[dict] = []          # failures not yet logged (taken per iteration)
        self.n_failed = 0
        self.durations: list[float] = []       # the iterations' waits (the silence rule)

    @property
    def elastic(self) -> bool:
        return self.mode == "continue"

    def n_alive(self) -> int:
        return int(self.alive.sum())

    def planned(self, iteration: int, t0: float) -> list[tuple[float, int]]:
        """Deaths the failure model has in store for the live workers (see
        :meth:`FailurePlan.due`)."""
        return self.plan.due(iteration, t0, self.alive) if self.plan else []

    def fail(self, iteration: int, worker: int, *, t_fail: float, t_detect: float,
             t0: float, cause: str) -> dict | None:
        """Worker ``worker`` died at ``t_fail`` and rank 0 knows since ``t_detect`` (seconds
        since iteration ``iteration`` began at run time ``t0``). Returns the record (None if
        it was already dead); raises :class:`WorkerFailed` under ``abort`` or when it was
        the last worker."""
        worker = int(worker)
        if not self.alive[worker]:
            return None
        where = (f"worker {worker} (rank {worker + 1}) "
                 + {"failed": "failed", "simulated": "failed",
                    "silent": "went silent"}.get(cause, cause)
                 + f" in iteration {iteration}")
        if self.mode == "abort":
            raise WorkerFailed(f"{where}: the run stops (--on-failure abort); resume it from "
                               "its checkpoint with --resume, or run with --on-failure "
                               "continue (needs an MPI with fault tolerance: mpicode info)")
        if self.n_alive() <= 1:
            raise WorkerFailed(f"{where} and no worker is left: the run stops; resume it "
                               "from its checkpoint with --resume and more ranks")
        self.alive[worker] = False
        self.n_failed += 1
        rec = {"iteration": int(iteration), "worker": worker, "rank": worker + 1,
               "t_fail": t0 + t_fail, "t_detect": t0 + t_detect,
               "detect_s": float(t_detect - t_fail), "cause": cause,
               "n_alive": self.n_alive()}
        self.records.append(rec)
        return rec

    def take(self) -> list[dict]:
        """The failures recorded since the last call (for the run log)."""
        out, self.records = self.records, []
        return out

    # ---- --dead-after under continue: silence within an iteration -----------------------------
    def silence_limit(self) -> float:
        """Seconds without a delivery, while having work, after which a worker is treated
        as dead within an iteration: ``dead_after`` x the median iteration (inf when the
        rule is off, before the first iteration, or under ``abort``)."""
        if not self.elastic or not self.dead_after or not self.durations:
            return math.inf
        return self.dead_after * float(np.median(self.durations))

    def iteration_done(self, t_wait: float) -> None:
        if math.isfinite(t_wait):
            self.durations.append(float(t_wait))
            del self.durations[:-64]  # the median of the recent past

    def silent(self, scheme, last_arrival: dict, t: float, limit: float):
        """(workers silent for ``limit`` seconds at ``t``, the next time to look, the tasks
        scanned). A worker is silent since the later of its oldest pending
        task's dispatch and its last arrival of this iteration. O(tasks) per call;
        a call happens only when a silence deadline passed (``limit`` is ``--dead-after``
        median iterations: none in an iteration that does not overrun it), and each either
        finds a silent worker (at most N - 1 in a run) or one that delivered since."""
        since: dict[int, float] = {}
        scanned = len(scheme.tasks)  # (pending() looks at every task of the iteration)
        for x in scheme.pending():
            if self.alive[x.worker]:
                a = max(x.t_dispatch, last_arrival.get(x.worker, -math.inf))
                since[x.worker] = min(since.get(x.worker, math.inf), a)
        gone = sorted(w for w, a in since.items() if t - a >= limit)
        rest = [a + limit for w, a in since.items() if w not in gone]
        return gone, min(rest, default=math.inf), scanned

    # ---- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"alive": self.alive.astype(np.int8), "n_failed": int(self.n_failed),
                "durations": np.asarray(self.durations, np.float64)}

    def load_state_dict(self, state: dict) -> None:
        if "alive" in state:
            self.alive = np.asarray(state["alive"]).astype(bool).reshape(self.N)
        if "n_failed" in state:
            self.n_failed = int(state["n_failed"])
        if "durations" in state:
            self.durations = [float(x) for x in np.asarray(state["durations"]).ravel()]


def make_membership(cfg, n_workers: int) -> Membership:
    """The membership of a run configured by ``cfg`` (``--on-failure``, ``--fail``,
    ``--failure-model``, ``--detect-s``, ``--dead-after``)."""
    seed = cfg.failure_seed if getattr(cfg, "failure_seed", None) is not None else cfg.seed
    plan = FailurePlan(n_workers, getattr(cfg, "fail", ""),
                       getattr(cfg, "failure_model", "none"),
                       getattr(cfg, "lifetime_mean", 600.0), seed)
    return Membership(n_workers, mode=getattr(cfg, "on_failure", "abort"), plan=plan or None,
                      detect_s=getattr(cfg, "detect_s", 0.0), dead_after=cfg.dead_after)

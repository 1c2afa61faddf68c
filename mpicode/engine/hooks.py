"""Handlers on the run loop, each with its own schedule (pure; docs/design.md §2.2).

What the run loop does besides iterating is not written into it: evaluation, dead workers,
the run log, progress and checkpoints are *hooks* handed to the :class:`~mpicode.engine.loop.
Trainer` at construction, in the manner of pySDC's hooks (``pre_run``, ``post_step``, ...)
and Dedalus's file handlers (each with ``iter=`` or ``wall_dt=``). A hook is called at every
point of the loop; its ``schedule`` says at which iterations it acts:

* :class:`Every` ``(k)``: iterations ``k-1, 2k-1, ...`` (``k = 0``: never), and with
  ``last=True`` the run's last iteration too;
* :class:`WallEvery` ``(s)``: the first iteration that ends ``s`` seconds (of a monotonic
  clock) after the last one it acted on.

The points, in the order of one iteration (:meth:`Trainer.run`)::

    start(trainer, first, last)   before the first iteration (the clock has started)
    -- each iteration it: --
    complete_row(trainer, it, out)   the row is built; a hook may add to it before it is
                                     final (the evaluation: loss, eval_s, a later t_end)
    post_step(trainer, it, out)      the row is final and the iteration counts
                                     (dead workers; observers such as the comm study's)
    log(trainer, it, out)            rank 0's bookkeeping, charged as its ``log`` action
                                     (§2.6): the run log, progress
    post_log(trainer, it)            after the bookkeeping: snapshot, checkpoint
    -- then --
    end(trainer)                  after the last iteration (or a stop): the final checkpoint
    heartbeat(it, events)         inside a long virtual-time iteration
    state_dict() / load_state_dict(state)   the hook's part of a checkpoint's ``runtime``

A hook that cannot go on raises :class:`RunFailed` (the run stops, status ``failed``). The
built-in hooks, in the order the assembly (:mod:`mpicode.engine.assembly`) hands them in:
:class:`Evaluation` (``--eval-every``), :class:`DeadWorkerWatch` (``--dead-after``), the
caller's own, :class:`RunLogWriter`, :class:`ShowProgress`, :class:`Checkpoints`
(``--checkpoint-every``).
"""

from __future__ import annotations

import json
import time

from mpicode.engine import faults
from mpicode.engine.divergence import DivergenceWatch
from mpicode.engine.liveness import DeadWorkers
from mpicode.engine.signals import write_error
from mpicode.io.runlog import DiskFull


class RunFailed(Exception):
    """A hook cannot go on (a write to the run log failed): the run stops with status
    ``failed`` and this one line. ``broken``: the log was left half-written, write nothing
    more to it (not even the final checkpoint)."""

    def __init__(self, line: str, broken: bool = False):
        super().__init__(line)
        self.broken = broken


# ---- schedules ------------------------------------------------------------------------------
class Every:
    """Every ``k``-th iteration (``(it + 1) % k == 0``; ``k = 0``: never) and, with
    ``last``, the run's last iteration."""

    def __init__(self, k: int, *, last: bool = False):
        self.k, self.last = int(k), last

    def begin(self, first: int) -> None:
        pass

    def due(self, it: int, last: int) -> bool:
        return (self.k > 0 and (it + 1) % self.k == 0) or (self.last and it == last)

    def __repr__(self) -> str:
        return f"Every({self.k}{', last=True' if self.last else ''})"


class WallEvery:
    """The first iteration that ends ``seconds`` after the last one this schedule was due
    (and the first of the run). ``clock``: seconds of a monotonic clock."""

    def __init__(self, seconds: float, *, clock=time.monotonic):
        self.seconds, self.clock = float(seconds), clock
        self.t_last: float | None = None

    def begin(self, first: int) -> None:
        self.t_last = None

    def due(self, it: int, last: int) -> bool:
        now = self.clock()
        if self.t_last is not None and now - self.t_last < self.seconds:
            return False
        self.t_last = now
        return True

    def __repr__(self) -> str:
        return f"WallEvery({self.seconds:g})"


# ---- the hook interface -----------------------------------------------------------------------
class Hook:
    """A handler on the run loop: override the points it needs (see the module docstring).
    ``schedule`` says at which iterations it acts; a hook asks it itself
    (``self.due(it)``), so that one that must see every row (to learn from it) can."""

    schedule = Every(1)

    def start(self, trainer, first: int, last: int) -> None:
        self.last = last
        self.schedule.begin(first)

    def due(self, it: int) -> bool:
        return self.schedule.due(it, self.last)

    def complete_row(self, trainer, it: int, out: dict) -> None:
        pass

    def post_step(self, trainer, it: int, out: dict) -> None:
        pass

    def log(self, trainer, it: int, out: dict) -> None:
        pass

    def post_log(self, trainer, it: int) -> None:
        pass

    def end(self, trainer) -> None:
        pass

    def heartbeat(self, it: int, events: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# ---- the built-in hooks -------------------------------------------------------------------
class Evaluation(Hook):
    """Rank 0 evaluates the model (train/test loss and metric) at its schedule's iterations
    (``--eval-every E``: every E and the last), and warns once when the loss diverges.

    On the wall clock the evaluation is part of the row's time (``eval_s``, a later
    ``t_end``); in virtual time it takes the cost model's ``coord_eval_s`` (0 by default),
    charged even without a model (``--compute none``), so that a simulated row lasts what
    the real one would. ``schedule``: :class:`Every` ``(E, last=True)``, or an adaptive one
    (``begin``, ``due``, and ``observe(it, row)`` for every finished row, ``state_dict``:
    what ``--eval-every auto`` needs)."""

    def __init__(self, schedule, *, runlog=None, log=None):
        self.schedule = schedule
        self.runlog, self.logger = runlog, log
        self.divergence: DivergenceWatch | None = None

    def start(self, trainer, first, last):
        bind = getattr(self.schedule, "bind", None)
        if bind is not None:  # auto: in virtual time the cost is the clock's charge
            bind(trainer.events.costs.coord_eval_s if trainer.clock.virtual else None)
        super().start(trainer, first, last)
        self.divergence = DivergenceWatch(trainer.problem, trainer.w)  # warns once, says why
        # its one evaluation (the zero model's loss) now, not inside the first row's eval_s,
        # which --eval-every auto takes as the cost of an evaluation
        self.divergence.prepare()

    def complete_row(self, trainer, it, out):
        self._evaluate(trainer, it, out)
        observe = getattr(self.schedule, "observe", None)
        if observe is not None:  # an adaptive schedule learns from every finished row
            self._chosen(observe(it, out["row"]))

    def _chosen(self, every) -> None:
        """``--eval-every auto`` has just chosen its interval: say so (log, run log)."""
        if every is None:
            return
        if self.logger is not None and every > 1:
            self.logger.info("--eval-every auto: evaluating every %d iterations (evaluation "
                             "%.3g s, an iteration %.3g s)", every, self.schedule.eval_cost,
                             self.schedule.iteration_cost)
        if self.runlog is not None:
            self.runlog.set_attrs(eval_every_auto=every)

    def state_dict(self):  # an adaptive schedule's choice survives a resume
        f = getattr(self.schedule, "state_dict", None)
        return f() if f is not None else {}

    def load_state_dict(self, state):
        f = getattr(self.schedule, "load_state_dict", None)
        if f is not None:
            f(state)

    def _evaluate(self, trainer, it, out):
        if not self.due(it):
            if trainer.problem is not None:
                self.divergence.check(it, out["row"])  # on the workers' train_loss
            return
        row, clock = out["row"], trainer.clock
        eval_s = trainer.events.costs.coord_eval_s
        if clock.virtual and eval_s:  # the model's cost of the evaluation the real run does
            clock.vt += eval_s
            row["eval_s"], row["t_end"] = eval_s, clock.vt
        if trainer.problem is None:
            return
        row.update(trainer.problem.evaluate(trainer.w))
        self.divergence.check(it, row)
        if not clock.virtual:  # evaluation is part of the row's time
            t_end = clock.now()
            row["eval_s"] = t_end - row["t_end"]
            row["t_end"] = t_end


class DeadWorkerWatch(Hook):
    """``--dead-after M`` (:class:`~mpicode.engine.liveness.DeadWorkers`): a worker that had
    work but delivered nothing M iterations running is left out of planning
    (``scheme.active``), logged (``log``: a warning) and listed in the run log's
    ``dead_workers`` attribute. Counts every iteration (its schedule: every one)."""

    def __init__(self, n_workers: int, after: int, *, runlog=None, log=None):
        self.dead = DeadWorkers(n_workers, after)
        self.runlog, self.logger = runlog, log

    def post_step(self, trainer, it, out):
        gone = self.dead.update(it, out, trainer.scheme.active)
        for w in gone:
            if self.logger is not None:
                self.logger.warning("iteration %d: worker %d (rank %d) missed %d iterations "
                                    "in a row: left out of planning", it, w, w + 1,
                                    int(self.dead.missed[w]))
        if gone and self.runlog is not None:
            self.runlog.set_attrs(dead_workers=json.dumps(self.dead.left))

    def state_dict(self):
        return self.dead.state_dict()

    def load_state_dict(self, state):
        self.dead.load_state_dict(state)


class RunLogWriter(Hook):
    """Appends each iteration's rows (and the scheme's notes) to the run log (which writes
    them in blocks, every ``--flush-every`` seconds). A failed write stops the run."""

    def __init__(self, runlog):
        self.runlog = runlog

    def log(self, trainer, it, out):
        if not self.due(it):
            return
        try:
            self.runlog.add_notes(out["row"]["iteration"], out.get("notes", ()))
            self.runlog.append(out["row"], out["workers"], out["tasks"])  # (n_done last)
        except (OSError, RuntimeError) as e:  # disk full, quota: stop cleanly
            raise RunFailed(write_error(e), broken=not isinstance(e, DiskFull)) from e


class ShowProgress(Hook):
    """The progress display on stderr (:mod:`mpicode.engine.progress`): each row, and a
    heartbeat inside a long iteration. The display prints at its own pace (a line every
    few seconds, or a bar)."""

    def __init__(self, display):
        self.display = display

    def log(self, trainer, it, out):
        if self.due(it):
            self.display.update(out["row"])

    def heartbeat(self, it, events):
        beat = getattr(self.display, "heartbeat", None)
        if beat is not None:
            beat(it, events)


class Checkpoints(Hook):
    """Checkpoints of the run (``/checkpoint``, :mod:`mpicode.io.checkpoint`): a snapshot of
    the run's state after every iteration's bookkeeping (cheap: the model into a reused
    buffer), written to the run log at the schedule's iterations (``--checkpoint-every K``:
    ``Every(K)``; a ``WallEvery(s)`` writes every s seconds) and at the end, unless a write
    left the log half-written. Without a run log (``runlog=None``) it only keeps the last
    snapshot (:attr:`snap`)."""

    def __init__(self, runlog=None, schedule=None):
        self.runlog = runlog
        self.schedule = schedule if schedule is not None else Every(0)
        self.snap: dict | None = None

    def _n_tasks(self) -> int:
        return self.runlog.n_tasks if self.runlog is not None else 0

    def start(self, trainer, first, last):
        super().start(trainer, first, last)
        self.snap = trainer.take_snapshot(first, self._n_tasks())

    def post_log(self, trainer, it):
        self.snap = trainer.take_snapshot(it + 1, self._n_tasks())
        if self.runlog is not None and self.due(it):
            self.write()

    def end(self, trainer):
        if not trainer.log_broken:  # after a clean stop (even a full disk) one may fit
            self.write()

    def write(self) -> None:
        if self.runlog is None or self.snap is None:
            return
        faults.pause("checkpoint")  # fault tests: a signal during a checkpoint
        try:
            self.runlog.checkpoint(self.snap)
        except (OSError, RuntimeError) as e:
            raise RunFailed(write_error(e)) from e


def runtime_state(hooks) -> dict:
    """The hooks' parts of a checkpoint's ``runtime``, merged in their order."""
    out: dict = {}
    for h in hooks:
        out.update(h.state_dict())
    return out


__all__ = ["Hook", "Every", "WallEvery", "RunFailed", "Evaluation", "DeadWorkerWatch",
           "RunLogWriter", "ShowProgress", "Checkpoints", "runtime_state"]

"""The run loop of every driver (MPI coordinator, simulator): iterations with decoding, the
model update and clean interruption; evaluation, the run log, progress, checkpoints and
``--dead-after`` are hooks on it (:mod:`mpicode.engine.hooks`), handed in at construction.
Pure: what is real (MPI messages, computed gradients) comes in through the backend's hooks
and the event loop's sources.

One iteration::

    backend.begin(it, w, info)          # MPI: broadcast the model
    t_wait = events.run(it, info, t0)   # events until the scheme can decode
    decode -> backend.after_decode(info) -> cancel the late tasks -> scheme.end(t_wait)
    gradient step -> rows for the log

In virtual time (simulator, ``--delay-mode virtual``) an iteration lasts ``t_wait`` plus the
cost model's coordinator phases (:mod:`mpicode.engine.costs`; zero by default); on the
wall clock every row's phases (``log_s`` for the previous row's bookkeeping, ``wait_s``,
``decode_s``, ``update_s``, ``eval_s``) tile the time from its ``t_start`` to its ``t_end``,
and consecutive rows tile training time with no gap.
"""

from __future__ import annotations

import math
import time

import numpy as np

from mpicode.engine import faults
from mpicode.engine.clock import RunClock
from mpicode.engine.divergence import DivergenceWatch
from mpicode.engine.hooks import RunFailed, runtime_state
from mpicode.engine.rows import IterationInfo, collect_rows, combine
from mpicode.engine.signals import Interrupted, Stalled, stop_requested, write_error
from mpicode.errors import PluginError
from mpicode.io import checkpoint
from mpicode.models.oracle import measured_partition_cost, oracle_row
from mpicode.numerics.optim import GD
from mpicode.registry import misbehaved, plugin_failure

# re-exported: drivers and tests import these from here
__all__ = ["Trainer", "Interrupted", "Stalled", "stop_requested", "write_error", "STOP"]
from mpicode.engine.signals import STOP  # noqa: E402  (re-exported)


class Trainer:
    """Runs iterations of ``scheme`` through ``events`` (an :class:`EventLoop`).

    Parameters
    ----------
    clock : RunClock
        The run's one clock (virtual, the default, or wall); the event loop's wall clock
        and the MPI coordinator read the same one.
    problem : Problem or None
        None: a timing-only simulation (no model).
    backend : object
        The driver's side: ``begin(it, w, info)`` (MPI: broadcast the model) and
        ``after_decode(info)``, both optional.
    hooks : sequence of Hook
        The handlers on the loop, called in this order at every point
        (:mod:`mpicode.engine.hooks`).
    ideal : IdealReplay or None
        The straggler-free replay of every iteration (``ideal_s``,
        :mod:`mpicode.engine.ideal`); None: ``ideal_s`` is NaN.
    """

    status = "complete"
    error: str | None = None
    exc: BaseException | None = None  # a plugin's exception (its traceback, for --verbose)
    log_broken = False  # a write to the run log failed half-way: write nothing more

    def __init__(self, scheme, events, *, n_workers: int, problem=None, lr: float = 0.0,
                 backend=None, clock: RunClock | None = None, hooks=(), optimizer=None,
                 ideal=None):
        self.scheme, self.events, self.backend = scheme, events, backend
        self.uplink = events.uplink
        self.N = n_workers
        self.problem = problem
        self.dim = problem.dim if problem is not None else 0
        self.lr = lr
        self.clock = clock if clock is not None else RunClock()
        self.hooks = tuple(hooks)
        self.w = problem.initial_w() if problem is not None else np.zeros(0)
        if optimizer is None:
            optimizer = GD(lr)
        self.optimizer = optimizer  # rank 0's update rule (its state is checkpointed)
        self.history: list[dict] = []
        self._t_mark = 0.0     # wall clock: where the next row's interval begins
        self._bufs: list[np.ndarray] | None = None
        self._grad_norm = math.nan
        self._snap_w: np.ndarray | None = None  # the snapshot's copy of the model
        self._last_tasks = 0   # tasks of the last iteration (the work of its bookkeeping)
        self._log_charge = 0.0  # virtual time: the model's cost of that bookkeeping
        self._busy = 0.0       # rank 0's busy seconds in the current row (coord_busy)
        self.ideal = ideal  # ideal_s: the straggler-free what-if (None: not logged, NaN)

    # ---- clocks -------------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds of training so far on the run's clock (virtual or wall)."""
        return self.clock.now()

    @property
    def vt(self) -> float:
        """Virtual seconds so far (the run clock's)."""
        return self.clock.vt

    @vt.setter
    def vt(self, value: float) -> None:
        self.clock.vt = value

    def _backend(self, name, *a):
        f = getattr(self.backend, name, None)
        return None if f is None else f(*a)

    # ---- one iteration ------------------------------------------------------------------------
    def iteration(self, it: int) -> dict:
        scheme, wall = self.scheme, not self.clock.virtual
        info = IterationInfo(self.N, msg_bytes=self.events.msg_bytes)
        costs, r0 = self.events.costs, self.events.rank0
        r0.new_iteration()
        idle0 = self._idle()
        t_start = self._t_mark if wall else self.vt
        if not wall:  # the model's cost of the previous row's bookkeeping (§2.6)
            r0.busy_s += self._log_charge
            self.vt += costs.coord_log_s + self._log_charge
        a = self.now()  # the previous row's bookkeeping ends here
        if self.ideal is not None:
            self.ideal.before(scheme)
        self._backend("begin", it, self.w, info)
        t_wait = self.events.run(it, info, a, heartbeat=self._heartbeat)
        t0 = time.perf_counter()
        dec, c_dec = r0.act(scheme.name, "decode", self._decode, count=_decode_work)
        sums = (combine(dec, info.msgs, self.dim, *self._buffers()[:2])
                if self.problem is not None else None)
        gsum = sums[0] if sums is not None else None
        # virtual time charges the cost model's decode, not the measured one: the file is a
        # function of the seed and the trace (bench scale measures the decode)
        decode_s = time.perf_counter() - t0 if wall else costs.coord_decode_s + c_dec
        self._backend("after_decode", info)

        def close():  # cancel the late tasks, learn, summarise
            late = scheme.outstanding(t_wait)
            return late, scheme.end(t_wait)

        (late, summary), c_end = r0.act(scheme.name, "end", close, count=_end_work,
                                         tasks=len(scheme.tasks))
        self.events.cancel(it, late, t_wait)
        info.cancelled += len(late)
        grad_norm = math.nan
        # issue 25: the workers' loss and metric of the broadcast model (self.w, before the
        # update replaces it), decoded with the gradient's weights: no pass over the data here
        train = self.problem.decoded(sums[1], sums[2], self.w) if sums is not None else {}
        if gsum is not None:
            self._update(gsum)
            grad_norm = self._grad_norm
        t_end = math.nan  # wall clock: once the rows are built (they are the update's cost)
        # the models' partition cost in virtual time, the measured one on the wall clock
        cost = measured_partition_cost(scheme, info) if wall else self.events.cost
        # the same iteration replayed without straggler delays (docs/design.md §8.1): an
        # observer of the run, not charged to rank 0 in virtual time (on the wall clock it is
        # real time, in update_s)
        ideal_s = self.ideal.wait(it, cost) if self.ideal is not None else math.nan

        def rows():
            # the clairvoyant oracle of this iteration's draws, and the replay's ideal_s
            oracle = oracle_row(self.events.stragglers, it, scheme, cost, info)
            oracle["ideal_s"] = ideal_s
            return collect_rows(scheme, it, info, t_start=t_start, t_end=t_end,
                                t_wait=t_wait, decode_s=decode_s, dec=dec, summary=summary,
                                grad_norm=grad_norm, oracle=oracle)

        self._last_tasks = len(scheme.tasks)
        out, c_rows = r0.act("engine", "rows", rows, policy_call=False,
                             tasks=self._last_tasks)
        row = out["row"]
        row.update(train)
        if not wall:
            update_s = c_end + costs.coord_update_s + c_rows
            self.vt += t_wait + decode_s + update_s
            row["t_end"] = self.vt
        if self.uplink is not None:
            self.uplink.drop_iteration(it)
            out["workers"].update(self.uplink.worker_rows())
        if wall:  # (building the rows was counted in the next row's log_s before)
            t_end = row["t_end"] = self.now()
            update_s = (t_end - a) - t_wait - decode_s
        # the phases tile [t_start, t_end]: what is not waiting or decoding is the update
        # (cancels, the scheme's end, the gradient step, the rows)
        log_s = a - t_start if wall else costs.coord_log_s + self._log_charge
        row.update(log_s=log_s, update_s=update_s, policy_s=r0.policy_s)
        # rank 0's busy time so far in the row (the evaluation adds to it): on the wall
        # clock what it did not sleep; in virtual time what was charged
        self._busy = ((t_end - t_start) - (self._idle() - idle0) if wall
                      else r0.busy_s + costs.coord_log_s + costs.coord_decode_s
                      + costs.coord_update_s)
        return out

    def _decode(self):
        """The scheme's decode, if the loop can use it: a ``Decoding`` whose weights name
        tasks of this iteration that arrived (else the error naming the scheme)."""
        scheme = self.scheme
        dec = scheme.decode()
        weights = getattr(dec, "weights", None)
        if not isinstance(weights, dict):
            raise misbehaved(scheme, "decode", f"returned {type(dec).__name__}, not a "
                             "Decoding with a dict of weights")
        tasks = scheme.tasks
        for tid in weights:
            task = tasks.get(tid)
            if task is None or task.state != "done":
                raise misbehaved(scheme, "decode", f"weighted task {tid}, which "
                                 + ("does not exist" if task is None else
                                    f"did not arrive (it is {task.state})"))
        return dec

    def _heartbeat(self, it: int, events: int) -> None:
        """Inside a long iteration: honour a stop request within moments, and let the hooks
        (the progress display) say the iteration is still running."""
        if stop_requested():
            raise Interrupted
        for h in self.hooks:
            h.heartbeat(it, events)

    def _idle(self) -> float:
        """Seconds rank 0 slept in the wall clock's waits so far (0 in virtual time)."""
        backoff = getattr(self.events.clock, "backoff", None)
        return backoff.slept if backoff is not None else 0.0

    def _buffers(self) -> list[np.ndarray]:
        """Rank 0's reused dim-vectors: the decoded sum (then the gradient, in place), a
        scratch and the spare model the update writes (no allocation per iteration)."""
        if self._bufs is None or self._bufs[0].shape != (self.dim,):
            self._bufs = [np.empty(self.dim) for _ in range(3)]
        return self._bufs

    def _update(self, gsum: np.ndarray) -> None:
        """The gradient step from the decoded sum (in place; the old model becomes the
        spare buffer, so the previous w stays intact until the next update)."""
        bufs = self._buffers()
        grad = self.problem.gradient(gsum, self.w, out=gsum, scratch=bufs[1])
        self._grad_norm = float(np.linalg.norm(grad))
        w = self.optimizer.step(self.w, grad, out=bufs[2])
        if w is bufs[2]:
            bufs[2] = self.w if self.w.shape == w.shape else np.empty(self.dim)
        self.w = w

    # ---- the run ------------------------------------------------------------------------------
    def run(self, iterations: int, start: int = 0) -> np.ndarray:
        """Run iterations ``start .. start + iterations - 1`` (fewer if the run stops);
        returns a copy of the model. The outcome is :attr:`status` (``complete``,
        ``interrupted``, ``failed``) and :attr:`error`. A plugin's exception ends the run
        ``failed`` with its one line (:func:`mpicode.registry.plugin_failure`); the original
        is :attr:`exc`."""
        self.clock.start()
        last = start + iterations - 1
        for h in self.hooks:
            h.start(self, start, last)
        self._t_mark = self.now()
        try:
            self._loop(start, last)
        except Exception as e:  # one try around the run: free while nothing raises
            line = str(e) if isinstance(e, PluginError) else plugin_failure(e)
            if line is None:  # mpicode's own bug: a traceback
                raise
            self.status, self.error, self.exc = "failed", line, e
        self._each("end")
        return self.w.copy()  # (the trainer reuses its buffers: the caller gets its own)

    def _loop(self, start: int, last: int) -> None:
        for it in range(start, last + 1):
            faults.kill_at(it)
            if stop_requested():
                self.status = "interrupted"
                break
            try:
                with np.errstate(over="ignore", invalid="ignore"):  # see diverged() below
                    out = self.iteration(it)
            except Interrupted:
                self.status = "interrupted"
                break
            except Stalled as e:
                self.status, self.error = "failed", str(e)
                break
            row = out["row"]
            row["eval_s"] = 0.0  # (the evaluation hook's, when one is due)
            for h in self.hooks:
                h.complete_row(self, it, out)
            # rank 0 was busy for its actions and the evaluation; the rest of the row it waited
            span = row["t_end"] - row["t_start"]
            busy = self._busy + row["eval_s"]
            row["coord_busy"] = min(1.0, max(0.0, busy / span)) if span > 0 else 0.0
            if self.problem is not None and diverged(self.w, row):
                hint = DivergenceWatch(self.problem, self.w).hint()
                self.status, self.error = "failed", divergence_error(it, self.lr, hint)
                break
            self._t_mark = row["t_end"]
            for h in self.hooks:
                h.post_step(self, it, out)
            self.history.append(row)
            if not self._bookkeeping(it, out):
                break

    def _bookkeeping(self, it: int, out: dict) -> bool:
        """The hooks' bookkeeping (run log, progress), rank 0's ``log`` action, then their
        snapshot and checkpoint; False: stop now."""
        _, self._log_charge = self.events.rank0.act(
            "engine", "log", self._each, "log", it, out, policy_call=False,
            tasks=self._last_tasks)
        if self.status == "failed":
            return False
        self._each("post_log", it)
        return True

    def _each(self, point: str, *args) -> None:
        """Call every hook's ``point``; a hook that cannot go on (:class:`RunFailed`) fails
        the run (the first line stays) and the others of this point are skipped."""
        try:
            for h in self.hooks:
                getattr(h, point)(self, *args)
        except RunFailed as e:
            self.status, self.error = "failed", self.error or str(e)
            self.log_broken = self.log_broken or e.broken

    # ---- checkpoints --------------------------------------------------------------------------
    def take_snapshot(self, next_iteration: int, n_tasks: int = 0) -> dict:
        """The run's state before ``next_iteration`` (``n_tasks``: task rows logged so far),
        for a checkpoint; the hooks' state is its ``runtime`` part."""
        # the model into a reused buffer (at 10^6 parameters a fresh copy costs ms a row)
        if self._snap_w is None or self._snap_w.shape != self.w.shape:
            self._snap_w = np.empty(self.w.shape)
        np.copyto(self._snap_w, self.w)
        return checkpoint.snapshot(
            w=self._snap_w, copy_w=False, iteration=next_iteration, n_tasks=n_tasks,
            vt=self.vt, t_offset=self.now(), scheme=self.scheme, uplink=self.uplink,
            runtime={**runtime_state(self.hooks), "log_charge": np.float64(self._log_charge)},
            optimizer=self.optimizer)

    def restore(self, snap: dict) -> int:
        """Continue from a checkpoint; returns the iteration to start at."""
        self.w = np.array(snap["w"], dtype=float)
        self.clock.vt = float(snap["vt"])
        self.clock.t_offset = float(snap["t_offset"])
        checkpoint.restore(snap, scheme=self.scheme, uplink=self.uplink, optimizer=self.optimizer)
        runtime = snap.get("runtime", {})
        for h in self.hooks:
            h.load_state_dict(runtime)
        self._log_charge = float(runtime.get("log_charge", 0.0))
        return int(snap["iteration"])


def diverged(w: np.ndarray, row: dict) -> bool:
    """The model or its loss is no longer finite (a too large learning rate)."""
    return not (np.isfinite(w).all() and math.isfinite(row.get("loss", 0.0))
                and math.isfinite(row.get("train_loss", 0.0)))


def divergence_error(it: int, lr: float, hint: str = "") -> str:
    """The one line of a diverged run; with unscaled features it says so too."""
    extra = f"; {hint}" if "standardized" in hint else ""
    return (f"the model diverged at iteration {it} (its loss or weights are no longer "
            f"finite): try a smaller --lr (now {lr:g}){extra}")


def _decode_work(dec) -> dict:
    """The decode's work: the messages it combines."""
    return {"msgs": len(dec.weights)}


def _end_work(out) -> dict:
    """The iteration's close: the late tasks cancelled (one CANCEL each)."""
    late, _ = out
    return {"sends": len(late)}

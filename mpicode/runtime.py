"""The MPI runtime: coordinator (rank 0) and worker (ranks 1..N) loops.

This is the only module of mpicode that imports mpi4py. Launch as::

    mpiexec -n 5 python -m mpi4py -m mpicode train --scheme uncoded --iterations 20

(``python -m mpi4py`` turns an exception on any rank into ``MPI_Abort``, so nothing hangs.)

Protocol (DESIGN section 8). Every message is a float64 buffer whose first element is the
iteration number; nothing on the hot path is pickled.

* ``MODEL``  0 -> i: ``[it, w...]`` at the start of iteration ``it``.
* ``TASK``   0 -> i: ``[it, task_id, stage, n, has_coeffs, delay_s, p_1..p_n, c_1..c_n]``.
* ``CANCEL`` 0 -> i: ``[it, task_id]`` (``task_id = -1``: every task of ``it``).
* ``RESULT`` i -> 0: ``[it, task_id, compute_s, delay_s, loss, g...]``.
* ``STOP``   0 -> i: ``[-1]``; the worker waits for its sends, answers ``ACK`` and returns.

Both sides poll with matched probes (``Improbe``) and an exponential sleep backoff, reset on
every arrival: MPICH's blocking calls spin, and a spinning rank steals a core from a worker
(manufacturing the very stragglers we study).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
from mpi4py import MPI

from mpicode.iteration import IterationInfo, collect_rows, combine
from mpicode.schemes.base import Task
from mpicode.vclock import VirtualWorkers

TAG_MODEL, TAG_TASK, TAG_CANCEL, TAG_STOP, TAG_RESULT, TAG_ACK = range(11, 17)
RESULT_HEADER = 5
TASK_HEADER = 6

log = logging.getLogger("mpicode")


class Backoff:
    """Exponential sleep backoff from ``lo`` to ``hi`` seconds (mpi4py.futures style)."""

    def __init__(self, lo: float = 1e-5, hi: float = 1e-3):
        self.lo, self.hi = lo, hi
        self.dt = lo

    def reset(self) -> None:
        self.dt = self.lo

    def sleep(self, limit: float | None = None) -> None:
        dt = self.dt if limit is None else max(0.0, min(self.dt, limit))
        time.sleep(dt)
        self.dt = min(self.hi, self.dt * 2)


class SendPool:
    """Nonblocking sends whose buffers stay alive (and untouched) until completed."""

    def __init__(self):
        self.pending: list[tuple[MPI.Request, np.ndarray]] = []

    def isend(self, comm: MPI.Comm, buf: np.ndarray, dest: int, tag: int) -> None:
        self.pending.append((comm.Isend(buf, dest=dest, tag=tag), buf))
        if len(self.pending) > 64:
            self.prune()

    def prune(self) -> None:
        self.pending = [(r, b) for r, b in self.pending if not r.Test()]

    def waitall(self) -> None:
        if self.pending:
            MPI.Request.Waitall([r for r, _ in self.pending])
        self.pending = []


def encode_task(iteration: int, task: Task, delay: float) -> np.ndarray:
    n = task.n
    has_c = task.coeffs is not None
    buf = np.empty(TASK_HEADER + n * (2 if has_c else 1))
    buf[:TASK_HEADER] = (iteration, task.task_id, task.stage, n, float(has_c), delay)
    buf[TASK_HEADER:TASK_HEADER + n] = task.partitions
    if has_c:
        buf[TASK_HEADER + n:] = task.coeffs
    return buf


def decode_task(buf: np.ndarray) -> dict:
    it, tid, stage, n, has_c, delay = buf[:TASK_HEADER]
    n = int(n)
    parts = buf[TASK_HEADER:TASK_HEADER + n].astype(np.int64)
    coeffs = buf[TASK_HEADER + n:TASK_HEADER + 2 * n] if has_c else None
    return {"it": int(it), "task_id": int(tid), "stage": int(stage), "partitions": parts,
            "coeffs": coeffs, "delay": float(delay)}


# ----------------------------------------------------------------------------------------
# worker
# ----------------------------------------------------------------------------------------
class Worker:
    """Rank i >= 1: receive model and tasks, compute partition by partition, inject the
    task's delay between partitions (so CANCEL cuts it short), send results."""

    def __init__(self, comm: MPI.Comm, problem):
        self.comm = comm
        self.problem = problem
        self.dim = problem.dim
        self.w = np.zeros(self.dim)
        self.model_it = -1
        self.queue: list[dict] = []
        self.sends = SendPool()
        self.stopped = False
        self.cancel_current = False
        self.current: dict | None = None
        self.model_buf = np.empty(self.dim + 1)

    def _handle(self, msg: MPI.Message, status: MPI.Status) -> None:
        tag = status.Get_tag()
        if tag == TAG_MODEL:
            msg.Recv(self.model_buf)
            it = int(self.model_buf[0])
            self.w = self.model_buf[1:].copy()
            self.model_it = it
            # a new iteration makes every older task stale
            self.queue = [t for t in self.queue if t["it"] >= it]
            if self.current is not None and self.current["it"] < it:
                self.cancel_current = True
        elif tag == TAG_TASK:
            buf = np.empty(status.Get_count(MPI.DOUBLE))
            msg.Recv(buf)
            task = decode_task(buf)
            if task["it"] >= self.model_it:
                self.queue.append(task)
        elif tag == TAG_CANCEL:
            buf = np.empty(2)
            msg.Recv(buf)
            it, tid = int(buf[0]), int(buf[1])

            def hit(t):
                return t["it"] == it and (tid < 0 or t["task_id"] == tid)

            self.queue = [t for t in self.queue if not hit(t)]
            if self.current is not None and hit(self.current):
                self.cancel_current = True
        elif tag == TAG_STOP:
            msg.Recv(np.empty(1))
            self.stopped = True
            self.cancel_current = True
        else:  # pragma: no cover - protocol error
            raise RuntimeError(f"worker {self.comm.rank}: unexpected tag {tag}")

    def poll(self) -> bool:
        """Handle every waiting message; True if there was one."""
        got = False
        status = MPI.Status()
        while True:
            msg = self.comm.Improbe(source=0, tag=MPI.ANY_TAG, status=status)
            if msg is None:
                return got
            self._handle(msg, status)
            got = True

    def _sleep(self, seconds: float) -> None:
        """Injected delay, interruptible by CANCEL/STOP (checked at least every ms)."""
        end = time.perf_counter() + seconds
        while not self.cancel_current:
            left = end - time.perf_counter()
            if left <= 0:
                return
            time.sleep(min(left, 1e-3))
            self.poll()

    def run_task(self, task: dict) -> None:
        self.current = task
        self.cancel_current = False
        parts, coeffs = task["partitions"], task["coeffs"]
        n = len(parts)
        out = np.zeros(RESULT_HEADER + self.dim)
        g = out[RESULT_HEADER:]
        loss = 0.0
        compute = 0.0
        slept = 0.0
        per_part = task["delay"] / max(1, n)
        for j in range(n):
            t0 = time.perf_counter()
            loss += self.problem.accumulate(int(parts[j]), self.w, g,
                                            1.0 if coeffs is None else float(coeffs[j]))
            t1 = time.perf_counter()
            compute += t1 - t0
            self.poll()
            if self.cancel_current:
                break
            if per_part > 0:
                self._sleep(per_part)
                slept += time.perf_counter() - t1
            if self.cancel_current:
                break
        self.current = None
        if self.cancel_current:
            return
        out[:RESULT_HEADER] = (task["it"], task["task_id"], compute, slept, loss)
        self.sends.isend(self.comm, out, 0, TAG_RESULT)

    def loop(self) -> None:
        backoff = Backoff()
        while not self.stopped:
            if self.poll():
                backoff.reset()
            if self.stopped:
                break
            ready = [t for t in self.queue if t["it"] == self.model_it]
            if ready:
                task = ready[0]
                self.queue.remove(task)
                self.run_task(task)
                self.sends.prune()
                backoff.reset()
            else:
                backoff.sleep()
        self.sends.waitall()
        self.comm.Send(np.zeros(1), dest=0, tag=TAG_ACK)


# ----------------------------------------------------------------------------------------
# coordinator
# ----------------------------------------------------------------------------------------
class Coordinator:
    """Rank 0: drives the scheme (a pure policy) with real messages and a real clock."""

    def __init__(self, comm: MPI.Comm, problem, scheme, stragglers, cfg, runlog=None,
                 progress=None):
        self.comm = comm
        self.N = comm.size - 1
        self.problem = problem
        self.scheme = scheme
        self.stragglers = stragglers
        self.cfg = cfg
        self.runlog = runlog
        self.progress = progress
        self.dim = problem.dim
        self.sends = SendPool()
        self.recv_buf = np.empty(RESULT_HEADER + self.dim)
        self.w = np.zeros(self.dim)
        self.clock0 = time.perf_counter()
        self.history: list[dict] = []
        self.vt = 0.0  # virtual clock (delay_mode virtual)
        self.partition_cost = getattr(cfg, "partition_cost", None) or 0.0
        self.vclock = VirtualWorkers(self.N) if getattr(cfg, "delay_mode", "sleep") == \
            "virtual" else None

    def now(self) -> float:
        return time.perf_counter() - self.clock0

    # -- sending ----------------------------------------------------------------------------
    def _dispatch(self, it: int, tasks: list[Task], t: float, info: IterationInfo) -> None:
        for task in tasks:
            delay = self.stragglers.delay(it, task.worker, info.next_index(task.worker), task.n)
            task.t_dispatch = t
            info.delay[task.task_id] = delay
            if self.vclock is not None:
                # virtual delays: the worker computes but does not sleep; the virtual clock
                # says when the task finishes
                self.vclock.add(task.worker, task.task_id, t,
                                task.n * self.partition_cost + delay)
                delay = 0.0
            self.sends.isend(self.comm, encode_task(it, task, delay), task.worker + 1, TAG_TASK)

    def _cancel(self, it: int, tasks: list[Task], t: float, info: IterationInfo) -> None:
        for task in tasks:
            if self.vclock is not None:
                self.vclock.cancel(task.task_id, t)
            self.sends.isend(self.comm, np.array([it, task.task_id], float), task.worker + 1,
                             TAG_CANCEL)
        info.cancelled += len(tasks)

    def _apply(self, it, acts, t, info) -> None:
        self._dispatch(it, acts.dispatch, t, info)
        self._cancel(it, acts.cancel, t, info)

    def _receive(self, it: int, info: IterationInfo, status: MPI.Status) -> int | None:
        """Receive one waiting result, if any; returns its task id (None: nothing, or a
        stale message, which is dropped)."""
        msg = self.comm.Improbe(source=MPI.ANY_SOURCE, tag=TAG_RESULT, status=status)
        if msg is None:
            return None
        buf = self.recv_buf
        msg.Recv(buf)
        tid = int(buf[1])
        task = self.scheme.tasks.get(tid)
        if int(buf[0]) != it or task is None or task.state != "pending" \
                or task.worker != status.Get_source() - 1 or tid in info.msgs:
            info.stale += 1
            return -1
        info.msgs[tid] = (buf[RESULT_HEADER:].copy(), float(buf[4]))
        info.measured[tid] = (float(buf[2]), float(buf[3]))
        return tid

    # -- one iteration ----------------------------------------------------------------------
    def iteration(self, it: int) -> dict:
        comm, scheme = self.comm, self.scheme
        t_start = self.now()
        model = np.empty(self.dim + 1)
        model[0] = it
        model[1:] = self.w
        for r in range(1, self.N + 1):
            self.sends.isend(comm, model, r, TAG_MODEL)
        info = IterationInfo(self.N, msg_bytes=8 * (RESULT_HEADER + self.dim))
        if self.vclock is not None:
            self.vclock.reset()
            t_wait = self._loop_virtual(it, info)
        else:
            t_wait = self._loop_real(it, info, t_start)
        t0 = time.perf_counter()
        dec = scheme.decode()
        gsum, _ = combine(dec, info.msgs, self.dim)
        decode_s = time.perf_counter() - t0
        self._cancel(it, scheme.outstanding(t_wait), t_wait, info)
        summary = scheme.end(t_wait)
        grad = self.problem.gradient(gsum, self.w)
        self.w = self.w - self.cfg.lr * grad
        self.sends.prune()
        if self.vclock is not None:  # virtual time: the iteration lasted t_wait
            t_start = self.vt
            self.vt += t_wait
            t_end = self.vt
        else:
            t_end = self.now()
        return collect_rows(scheme, it, info, t_start=t_start, t_end=t_end, t_wait=t_wait,
                            decode_s=decode_s, dec=dec, summary=summary,
                            grad_norm=float(np.linalg.norm(grad)))

    def _loop_real(self, it: int, info: IterationInfo, t_start: float) -> float:
        """Events in wall-clock order: each arrival goes to the scheme at once."""
        scheme = self.scheme
        self._apply(it, scheme.begin(it), 0.0, info)
        backoff = Backoff()
        status = MPI.Status()
        t = 0.0
        while not scheme.done():
            tid = self._receive(it, info, status)
            t = self.now() - t_start
            if tid is not None:
                backoff.reset()
                if tid >= 0:
                    comp, dl = info.measured[tid]
                    self._apply(it, scheme.on_result(tid, t, comp + dl), t, info)
                continue
            deadline = scheme.next_deadline()
            if deadline is not None and t >= deadline:
                self._apply(it, scheme.on_tick(t), t, info)
                backoff.reset()
            else:
                backoff.sleep(None if deadline is None else deadline - t)
        return t

    def _loop_virtual(self, it: int, info: IterationInfo) -> float:
        """Events in virtual-time order (``--delay-mode virtual``): the next event is the
        earliest virtual completion or deadline; a completion is handed to the scheme once
        its real result is here. Decisions are then independent of the machine's timing."""
        scheme, vc = self.scheme, self.vclock
        self._apply(it, scheme.begin(it), 0.0, info)
        backoff = Backoff()
        status = MPI.Status()
        t = 0.0
        while not scheme.done():
            ev = vc.peek()
            deadline = scheme.next_deadline()
            if deadline is not None and (ev is None or deadline <= ev[0]):
                t = max(t, deadline)
                self._apply(it, scheme.on_tick(t), t, info)
                continue
            if ev is None:
                raise RuntimeError(f"iteration {it}: scheme {scheme.name} cannot decode and "
                                   "no task is pending")
            while ev[1] not in info.msgs:  # wait for the real result of the next event
                if self._receive(it, info, status) is None:
                    backoff.sleep()
                else:
                    backoff.reset()
            t, tid = vc.pop()
            comp, _ = info.measured[tid]
            info.measured[tid] = (comp, info.delay[tid])
            task = scheme.tasks[tid]
            self._apply(it, scheme.on_result(tid, t, task.n * self.partition_cost
                                             + info.delay[tid]), t, info)
        return t

    def run(self, iterations: int, start: int = 0) -> np.ndarray:
        self.clock0 = time.perf_counter()
        for it in range(start, start + iterations):
            out = self.iteration(it)
            row = out["row"]
            if (it + 1) % self.cfg.eval_every == 0 or it == start + iterations - 1:
                row.update(self.problem.evaluate(self.w))
            self.history.append(row)
            if self.runlog is not None:
                self.runlog.append(row, out["workers"], out["tasks"])
            if self.progress is not None:
                self.progress.update(1)
                self.progress.set_postfix(loss=f"{row.get('loss', math.nan):.4g}",
                                          cov=f"{row['coverage']:.2f}",
                                          it_s=f"{row['t_end'] - row['t_start']:.3f}",
                                          refresh=False)
        return self.w

    def stop(self) -> None:
        """STOP every worker; drain stale results until every worker ACKed."""
        for r in range(1, self.N + 1):
            self.sends.isend(self.comm, np.array([-1.0]), r, TAG_STOP)
        acks = 0
        backoff = Backoff()
        status = MPI.Status()
        sink = np.empty(RESULT_HEADER + self.dim)
        while acks < self.N:
            msg = self.comm.Improbe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
            if msg is None:
                backoff.sleep()
                continue
            if status.Get_tag() == TAG_ACK:
                msg.Recv(np.empty(1))
                acks += 1
            else:
                msg.Recv(sink if status.Get_count(MPI.DOUBLE) == sink.size
                         else np.empty(status.Get_count(MPI.DOUBLE)))
            backoff.reset()
        self.sends.waitall()


def mpi_library() -> str:
    return MPI.Get_library_version().splitlines()[0].strip()


def world() -> MPI.Comm:
    return MPI.COMM_WORLD


def finalize() -> None:
    """Finalize MPI now (every rank), so a usage error exits without MPI_Abort noise."""
    if MPI.Is_initialized() and not MPI.Is_finalized():
        MPI.Finalize()

"""Rank i >= 1: the worker loop.

Launched by ``mpicode train`` on every rank but 0::

    mpiexec -n 5 python -m mpi4py -m mpicode train --scheme two-stage --iterations 20
"""

from __future__ import annotations

import math
import time

import numpy as np
from mpi4py import MPI

from mpicode.engine import faults
from mpicode.mpi.comm import Backoff, SendPool
from mpicode.wire import (
    IT,
    RESULT_HEADER,
    TAG_ACK,
    TAG_CANCEL,
    TAG_CHUNK,
    TAG_GRANT,
    TAG_MODEL,
    TAG_PARTIAL,
    TAG_READY,
    TAG_RESULT,
    TAG_STOP,
    TAG_TASK,
    Ready,
    chunk_range,
    decode_cancel,
    decode_grant,
    decode_task,
    encode_chunk,
    encode_partial,
    encode_ready,
    result_header,
)


class Worker:
    """Rank i >= 1: receive model and tasks, compute partition by partition, inject the
    task's delay between partitions (so CANCEL cuts it short), send results."""

    def __init__(self, comm: MPI.Comm, problem, uplink: bool = False):
        self.comm = comm
        self.problem = problem
        self.uplink = uplink                   # announce READY and send granted chunks
        self.outbox: dict[tuple[int, int], np.ndarray] = {}  # results waiting for grants
        self.dim = problem.dim
        self.w = np.zeros(self.dim)
        self.model_it = -1
        self.queue: list[dict] = []
        self.sends = SendPool()
        self.stopped = False
        self.exit_code = 0
        self.exit_now = False  # rank 0 says: leave without MPI_Finalize (a rank died)
        self.hung = False  # fault injection: stops answering (see mpicode.faults)
        self.cancel_current = False
        self.current: dict | None = None
        self.model_buf = np.empty(self.dim + 1)
        # result buffers whose send completed, reused (zeroed) instead of allocated: at 10^6
        # parameters a fresh 8 MB buffer costs its page faults on every task
        self.spent: list[tuple[np.ndarray, MPI.Request | None]] = []
        self._kills = any(f[0] in ("sigkill", "sigstop") for f in faults._items())  # (tests)
        self._computed = (-1, 0)  # (iteration, partitions computed in it): for _kills
        self._handlers = {TAG_MODEL: self._on_model, TAG_TASK: self._on_task,
                          TAG_CANCEL: self._on_cancel, TAG_GRANT: self._on_grant,
                          TAG_STOP: self._on_stop}

    def _handle(self, msg: MPI.Message, status: MPI.Status) -> None:
        handler = self._handlers.get(status.Get_tag())
        if handler is None:  # pragma: no cover - protocol error
            raise RuntimeError(f"worker {self.comm.rank}: unexpected tag {status.Get_tag()}")
        handler(msg, status)

    def _on_model(self, msg, status) -> None:
        msg.Recv(self.model_buf)
        it = int(self.model_buf[IT])
        if faults.worker_fault(self.comm.rank, it) == "hang":
            self.hung = True
        self.w[:] = self.model_buf[1:]  # in place: no allocation per iteration
        self.model_it = it
        # a new iteration makes every older task stale
        self.queue = [t for t in self.queue if t["it"] >= it]
        self.outbox = {k: v for k, v in self.outbox.items() if k[0] >= it}
        if self.current is not None and self.current["it"] < it:
            self.cancel_current = True

    def _on_task(self, msg, status) -> None:
        buf = np.empty(status.Get_count(MPI.DOUBLE))
        msg.Recv(buf)
        task = decode_task(buf)
        if task["it"] >= self.model_it:
            self.queue.append(task)

    def _on_cancel(self, msg, status) -> None:
        buf = np.empty(2)
        msg.Recv(buf)
        it, tid = decode_cancel(buf)

        def hit(t):
            return t["it"] == it and (tid < 0 or t["task_id"] == tid)

        self.queue = [t for t in self.queue if not hit(t)]
        self.outbox = {k: v for k, v in self.outbox.items()
                       if not (k[0] == it and (tid < 0 or k[1] == tid))}
        if self.current is not None and hit(self.current):
            self.cancel_current = True

    def _on_grant(self, msg, status) -> None:
        buf = np.empty(5)
        msg.Recv(buf)
        g = decode_grant(buf)
        key = (g.it, g.task_id)
        out = self.outbox.get(key)
        if out is None:  # cancelled or stale: nothing to send
            return
        e0, e1 = chunk_range(g.offset, g.nbytes, g.last, out.size)
        if g.last:
            del self.outbox[key]
        if e1 > e0 or g.last:
            self.sends.isend(self.comm, encode_chunk(g.it, g.task_id, e0, out[e0:e1]), 0,
                             TAG_CHUNK)

    def _on_stop(self, msg, status) -> None:
        buf = np.empty(status.Get_count(MPI.DOUBLE))
        msg.Recv(buf)
        self.exit_code = max(0, int(buf[0]))  # the job's exit code, as rank 0 decided
        self.exit_now = len(buf) > 1 and buf[1] > 0
        self.stopped = True
        self.cancel_current = True

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
        out = self._result_buffer()
        g = out[RESULT_HEADER:]
        loss = metric = 0.0
        compute = 0.0
        slept = 0.0
        per_part = task["delay"] / max(1, n)
        limit = task.get("time_limit", math.inf)   # DropCompute's compute budget (inf: none)
        t_task = time.perf_counter()
        n_done = n
        for j in range(n):
            t0 = time.perf_counter()
            if j and t0 - t_task >= limit:  # no partition starts past the budget
                n_done = j
                break
            lo, me = self.problem.accumulate(int(parts[j]), self.w, g,
                                             1.0 if coeffs is None else float(coeffs[j]),
                                             it=task["it"])
            loss += lo
            metric += me
            t1 = time.perf_counter()
            compute += t1 - t0
            if self._kills:  # (counted over the iteration's tasks: chunked schemes too)
                it, k = self._computed
                self._computed = (task["it"], (k if it == task["it"] else 0) + 1)
                faults.signal_mid_task(self.comm.rank, task["it"], self._computed[1])
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
            self._spend(out, None)
            return
        result_header(out, task["it"], task["task_id"], compute, slept, loss, metric)
        if n_done < n:  # cut short: say how much the sum covers, before the result itself
            self.sends.isend(self.comm, encode_partial(task["it"], task["task_id"], n_done),
                             0, TAG_PARTIAL)
        if self.uplink:
            self.outbox[(task["it"], task["task_id"])] = out
            ready = Ready(task["it"], task["task_id"], out.nbytes, compute, slept, loss, metric)
            self.sends.isend(self.comm, encode_ready(ready), 0, TAG_READY)
        else:
            self._spend(out, self.sends.isend(self.comm, out, 0, TAG_RESULT))

    def _result_buffer(self) -> np.ndarray:
        """A zeroed result buffer: a spent one whose send completed, else a new one."""
        for i, (buf, req) in enumerate(self.spent):
            if req is None or req.Test():
                del self.spent[i]
                buf.fill(0.0)
                return buf
        return np.zeros(RESULT_HEADER + self.dim)

    def _spend(self, buf: np.ndarray, req) -> None:
        if len(self.spent) < 4:
            self.spent.append((buf, req))

    def loop(self) -> None:
        backoff = Backoff()
        while not self.stopped:
            if self.poll():
                backoff.reset()
            if self.stopped:
                break
            if self.hung:
                self.queue = []
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

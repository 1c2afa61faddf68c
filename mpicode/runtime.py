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

from mpicode.schemes.base import Task

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

    def now(self) -> float:
        return time.perf_counter() - self.clock0

    # -- sending ----------------------------------------------------------------------------
    def _dispatch(self, it: int, tasks: list[Task], t: float, info: dict) -> None:
        for task in tasks:
            k = info["task_index"][task.worker]
            info["task_index"][task.worker] += 1
            delay = self.stragglers.delay(it, task.worker, k, task.n)
            task.t_dispatch = t
            info["delay"][task.task_id] = delay
            self.sends.isend(self.comm, encode_task(it, task, delay), task.worker + 1, TAG_TASK)

    def _cancel(self, it: int, tasks: list[Task]) -> None:
        for task in tasks:
            self.sends.isend(self.comm, np.array([it, task.task_id], float), task.worker + 1,
                             TAG_CANCEL)

    # -- one iteration ----------------------------------------------------------------------
    def iteration(self, it: int) -> dict:
        comm, scheme = self.comm, self.scheme
        t_start = self.now()
        model = np.empty(self.dim + 1)
        model[0] = it
        model[1:] = self.w
        for r in range(1, self.N + 1):
            self.sends.isend(comm, model, r, TAG_MODEL)
        info = {"task_index": np.zeros(self.N, np.int64), "delay": {}, "msgs": {},
                "compute": {}, "stale": 0, "cancelled": 0}

        def clock():
            return self.now() - t_start

        acts = scheme.begin(it)
        self._dispatch(it, acts.dispatch, 0.0, info)
        backoff = Backoff()
        status = MPI.Status()
        while not scheme.done():
            msg = comm.Improbe(source=MPI.ANY_SOURCE, tag=TAG_RESULT, status=status)
            if msg is not None:
                buf = self.recv_buf
                msg.Recv(buf)
                t = clock()
                tid = int(buf[1])
                task = scheme.tasks.get(tid)
                if int(buf[0]) != it or task is None or task.state != "pending" \
                        or task.worker != status.Get_source() - 1:
                    info["stale"] += 1
                    continue
                info["msgs"][tid] = (buf[RESULT_HEADER:].copy(), float(buf[4]))
                info["compute"][tid] = (float(buf[2]), float(buf[3]))
                acts = scheme.on_result(tid, t, float(buf[2] + buf[3]))
                self._dispatch(it, acts.dispatch, t, info)
                self._cancel(it, acts.cancel)
                info["cancelled"] += len(acts.cancel)
                backoff.reset()
                continue
            t = clock()
            deadline = scheme.next_deadline()
            if deadline is not None and t >= deadline:
                acts = scheme.on_tick(t)
                self._dispatch(it, acts.dispatch, t, info)
                self._cancel(it, acts.cancel)
                info["cancelled"] += len(acts.cancel)
                backoff.reset()
            else:
                backoff.sleep(None if deadline is None else deadline - t)
        t_wait = clock()
        t0 = time.perf_counter()
        dec = scheme.decode()
        gsum = np.zeros(self.dim)
        lsum = 0.0
        for tid, wgt in dec.weights.items():
            g, loss = info["msgs"][tid]
            gsum += wgt * g
            lsum += wgt * loss
        decode_s = time.perf_counter() - t0
        late = scheme.outstanding(t_wait)
        self._cancel(it, late)
        info["cancelled"] += len(late)
        summary = scheme.end(t_wait)
        grad = self.problem.gradient(gsum, self.w)
        self.w = self.w - self.cfg.lr * grad
        t_end = self.now()
        self.sends.prune()
        return self._rows(it, t_start, t_end, t_wait, decode_s, dec, summary, info, grad)

    def _rows(self, it, t_start, t_end, t_wait, decode_s, dec, summary, info, grad):
        N = self.N
        tasks = list(self.scheme.tasks.values())
        row = {"iteration": it, "t_start": t_start, "t_end": t_end, "wait_s": t_wait,
               "decode_s": decode_s, "coverage": dec.coverage, "load": summary["load"],
               "stage2": summary.get("stage2", 0), "n_stage2": summary.get("n_stage2", 0),
               "n_cancelled": info["cancelled"], "n_stale": info["stale"],
               "bytes_up": 8 * (RESULT_HEADER + self.dim) * len(info["msgs"]),
               "grad_norm": float(np.linalg.norm(grad))}
        workers = {"stage": np.zeros(N, np.int8), "partitions": np.zeros(N, np.int32),
                   "compute_s": np.zeros(N), "delay_s": np.zeros(N),
                   "finish_s": np.full(N, np.nan), "used": np.zeros(N, np.int8)}
        tk = {k: [] for k in ("iteration", "worker", "stage", "n_partitions", "first_partition",
                              "t_dispatch", "t_done", "used", "cancelled", "compute_s",
                              "delay_s")}
        for task in tasks:
            i = task.worker
            if workers["stage"][i] == 0:
                workers["stage"][i] = task.stage
            workers["partitions"][i] += task.n
            comp, dl = info["compute"].get(task.task_id, (math.nan, math.nan))
            if task.state == "done":
                workers["compute_s"][i] += comp
                workers["delay_s"][i] += dl
                workers["finish_s"][i] = np.fmax(workers["finish_s"][i], task.t_done)
            workers["used"][i] |= task.used
            for k, v in (("iteration", it), ("worker", i), ("stage", task.stage),
                         ("n_partitions", task.n),
                         ("first_partition", int(task.partitions[0]) if task.n else -1),
                         ("t_dispatch", task.t_dispatch), ("t_done", task.t_done),
                         ("used", int(task.used)), ("cancelled", int(task.state == "cancelled")),
                         ("compute_s", comp), ("delay_s", info["delay"].get(task.task_id, 0.0))):
                tk[k].append(v)
        return {"row": row, "workers": workers,
                "tasks": {k: np.asarray(v) for k, v in tk.items()}}

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

"""Rank 0: the coordinator drives a scheme (a pure policy) with real messages and a clock.

Launched by ``mpicode train`` on rank 0::

    mpiexec -n 5 python -m mpi4py -m mpicode train --scheme two-stage --iterations 20
"""

from __future__ import annotations

import json
import logging
import math
import time

import numpy as np
from mpi4py import MPI

from mpicode.engine.events import VirtualIteration
from mpicode.engine.loop import Interrupted, IterationLoop, stop_requested
from mpicode.engine.rows import IterationInfo, collect_rows, combine
from mpicode.engine.uplink import make_uplink
from mpicode.engine.vworkers import VirtualWorkers
from mpicode.mpi import bounds
from mpicode.mpi.comm import Backoff, SendPool
from mpicode.mpi.protocol import (
    CHUNK_HEADER,
    RESULT_HEADER,
    TAG_CANCEL,
    TAG_CHUNK,
    TAG_GRANT,
    TAG_MODEL,
    TAG_READY,
    TAG_RESULT,
    TAG_TASK,
    encode_task,
)
from mpicode.schemes.base import Task

log = logging.getLogger("mpicode")


class Coordinator(IterationLoop):
    """Rank 0: drives the scheme (a pure policy) with real messages and a real clock; with an
    emulated uplink it also runs the slot clock and the scheduler."""

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
        self.size = RESULT_HEADER + self.dim
        self.sends = SendPool()
        self.free: list[np.ndarray] = []  # result buffers to reuse (no page faults)
        self.w = np.zeros(self.dim)
        self.clock0 = time.perf_counter()
        self.t_offset = 0.0  # wall time of the run before a resume
        self.history: list[dict] = []
        self.vt = 0.0  # virtual clock (delay_mode virtual)
        self.eval_every = cfg.eval_every
        self.checkpoint_every = cfg.checkpoint_every
        self.missed = np.zeros(self.N, np.int64)
        self.uplink = make_uplink(cfg, self.N, scheme)
        self.partial: dict[int, list] = {}  # task id -> [buffer, elements still to come]
        self.virtual = None
        if cfg.delay_mode == "virtual":
            self.virtual = VirtualIteration(
                scheme, stragglers, VirtualWorkers(self.N),
                partition_cost=cfg.partition_cost or 0.0, uplink=self.uplink,
                msg_bytes=8 * self.size, hooks=_MPIHooks(self))

    def now(self) -> float:
        return time.perf_counter() - self.clock0 + self.t_offset

    # -- messages out -----------------------------------------------------------------------
    def send_task(self, it: int, task: Task, delay: float) -> None:
        self.sends.isend(self.comm, encode_task(it, task, delay), task.worker + 1, TAG_TASK)

    def send_cancel(self, it: int, task: Task) -> None:
        if self.uplink is not None and self.virtual is None:
            self.uplink.sched.drop({(it, task.task_id)})  # its message is no longer needed
        self.sends.isend(self.comm, np.array([it, task.task_id], float), task.worker + 1,
                         TAG_CANCEL)

    def send_grant(self, g) -> None:
        it, tid = g.msg_id
        buf = np.array([it, tid, g.offset, g.nbytes, float(g.last)])
        self.sends.isend(self.comm, buf, g.worker + 1, TAG_GRANT)

    def _apply(self, it, acts, t, info: IterationInfo) -> None:
        """Real-time mode: dispatch with the delay drawn for each task, send cancels."""
        for task in acts.dispatch:
            delay = self.stragglers.delay(it, task.worker, info.next_index(task.worker), task.n)
            task.t_dispatch = t
            info.delay[task.task_id] = delay
            self.send_task(it, task, delay)
        for task in acts.cancel:
            self.send_cancel(it, task)
        info.cancelled += len(acts.cancel)

    # -- messages in ------------------------------------------------------------------------
    def receive(self, it: int, info: IterationInfo, status: MPI.Status):
        """Handle one waiting message from a worker, if any. Returns (kind, task id) with kind
        "result" (a whole result arrived), "ready" (announced), "chunk" (a chunk; tid >= 0 when
        it completed its result), "stale" (dropped), or None when nothing waits."""
        msg = self.comm.Improbe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
        if msg is None:
            return None
        tag, src, count = status.Get_tag(), status.Get_source(), status.Get_count(MPI.DOUBLE)
        # results land in a pooled buffer that the decode reads in place (no copy); the pool
        # is refilled after each decode, so steady state allocates nothing
        buf = self.free.pop() if count == self.size and self.free else np.empty(count)
        msg.Recv(buf)
        tid = int(buf[1])
        task = self.scheme.tasks.get(tid)
        if int(buf[0]) != it or task is None or task.worker != src - 1:
            info.stale += 1
            self.release(buf)
            return "stale", -1
        now = self.now() - self._t_start
        if tag == TAG_RESULT:
            if task.state != "pending" or tid in info.msgs:
                info.stale += 1
                return "stale", -1
            info.msgs[tid] = (buf[RESULT_HEADER:], float(buf[4]))
            if self.virtual is None:  # in virtual time the models say when and how long
                info.measured[tid] = (float(buf[2]), float(buf[3]))
                info.ready[tid] = now
            return "result", tid
        if tag == TAG_READY:
            if self.virtual is None:
                info.measured[tid] = (float(buf[3]), float(buf[4]))
                info.ready[tid] = now
            self.partial[tid] = [np.empty(self.size), self.size, float(buf[5])]
            return "ready", tid
        if tag == TAG_CHUNK:
            p = self.partial.get(tid)
            if p is None:
                info.stale += 1
                return "stale", -1
            e0 = int(buf[2])
            n = count - CHUNK_HEADER
            p[0][e0:e0 + n] = buf[CHUNK_HEADER:]
            p[1] -= n
            if p[1] == 0:
                del self.partial[tid]
                info.msgs[tid] = (p[0][RESULT_HEADER:], p[2])
                return "chunk", tid
            return "chunk", -1
        raise RuntimeError(f"coordinator: unexpected tag {tag} from rank {src}")

    def release(self, buf: np.ndarray) -> None:
        """Give a result buffer back to the pool (its data is no longer needed)."""
        if buf.base is not None:
            buf = buf.base
        if buf.size == self.size and len(self.free) < 4 * self.N + 8:
            self.free.append(buf)

    def wait_for(self, it: int, info: IterationInfo, done) -> None:
        """Virtual mode: receive (and file) messages until ``done()``; sleeps with backoff."""
        backoff = Backoff()
        status = MPI.Status()
        while not done():
            if stop_requested():
                raise Interrupted
            bounds.overdue(self, it, self.now() - self._t_start)  # --max-wait
            if self.receive(it, info, status) is None:
                backoff.sleep()
            else:
                backoff.reset()

    # -- one iteration ----------------------------------------------------------------------
    def iteration(self, it: int) -> dict:
        comm, scheme = self.comm, self.scheme
        t_start = self._t_start = self.now()
        model = np.empty(self.dim + 1)
        model[0] = it
        model[1:] = self.w
        for r in range(1, self.N + 1):
            self.sends.isend(comm, model, r, TAG_MODEL)
        info = IterationInfo(self.N, msg_bytes=8 * self.size)
        self.partial = {}
        if self.virtual is not None:
            self._info = info
            info.n_msgs = 0  # counted by _MPIHooks.computed, in virtual time
            t_wait = self.virtual.run(it, info, self.vt)
        else:
            t_wait = self._loop_real(it, info, t_start)
        t0 = time.perf_counter()
        dec = scheme.decode()
        gsum, _ = combine(dec, info.msgs, self.dim)
        # virtual time charges nothing for the decode: log 0 so the file is a function of
        # the seed and the trace (bench scale measures the decode's real cost)
        decode_s = time.perf_counter() - t0 if self.virtual is None else 0.0
        for g, _ in info.msgs.values():
            self.release(g)
        late = scheme.outstanding(t_wait)
        for task in late:
            self.send_cancel(it, task)
        info.cancelled += len(late)
        summary = scheme.end(t_wait)
        grad = self.problem.gradient(gsum, self.w)
        self.w = self.w - self.cfg.lr * grad
        self.sends.prune()
        if self.virtual is not None:  # virtual time: the iteration lasted t_wait
            t_start = self.vt
            self.vt += t_wait
            t_end = self.vt
        else:
            t_end = self.now()
        out = collect_rows(scheme, it, info, t_start=t_start, t_end=t_end, t_wait=t_wait,
                           decode_s=decode_s, dec=dec, summary=summary,
                           grad_norm=float(np.linalg.norm(grad)))
        if self.uplink is not None:
            self.uplink.drop_iteration(it)
            out["workers"].update(self.uplink.worker_rows())
        return out

    def _loop_real(self, it: int, info: IterationInfo, t_start: float) -> float:
        """Events in wall-clock order: each arrival goes to the scheme at once; with an
        uplink, the slot clock runs here too."""
        scheme, up = self.scheme, self.uplink
        self._apply(it, scheme.begin(it), 0.0, info)
        backoff = Backoff()
        status = MPI.Status()
        deliveries: dict[int, float] = {}  # task id -> end of the slot that completed it
        t = 0.0
        while not scheme.done():
            if stop_requested():
                raise Interrupted
            got = self.receive(it, info, status)
            now = self.now()
            t = now - t_start
            bounds.overdue(self, it, t)  # --max-wait: a worker that never answers
            if got is not None:
                backoff.reset()
                kind, tid = got
                if kind == "result":
                    comp, dl = info.measured[tid]
                    self._apply(it, scheme.on_result(tid, t, comp + dl), t, info)
                elif kind == "ready" and scheme.tasks[tid].state == "pending":
                    up.offer(scheme.tasks[tid].worker, (it, tid), 8 * self.size, now)
                continue
            if up is not None:
                while up.next_slot_time() <= now:
                    grants, done = up.step()
                    for g in grants:
                        self.send_grant(g)
                    for (i, tid), t_end in done:
                        if i == it:
                            deliveries[tid] = t_end
                for tid, t_end in list(deliveries.items()):
                    if t_end <= now and tid in info.msgs:
                        del deliveries[tid]
                        if scheme.tasks[tid].state == "pending":
                            comp, dl = info.measured[tid]
                            self._apply(it, scheme.on_result(tid, t, comp + dl), t, info)
                if scheme.done():
                    break
            deadline = scheme.next_deadline()
            if deadline is not None and t >= deadline:
                self._apply(it, scheme.on_tick(t), t, info)
                backoff.reset()
                continue
            wake = [] if deadline is None else [deadline + t_start]
            if up is not None:
                wake.append(up.next_slot_time())
                wake += [te for tid, te in deliveries.items() if tid in info.msgs]
            nxt = min(wake, default=math.inf)
            backoff.sleep(None if nxt == math.inf else nxt - now)
        return t

    def elapsed(self) -> float:
        return self.vt if self.virtual is not None else self.now()

    def runtime_state(self) -> dict:
        return {"missed": self.missed}

    def set_runtime_state(self, state: dict) -> None:
        if "missed" in state:
            self.missed = np.asarray(state["missed"], np.int64)

    def after_iteration(self, it: int, out: dict) -> None:
        """--dead-after M: a worker that had work but delivered nothing M iterations running
        is left out of planning (``scheme.active``); coded schemes carry on without it."""
        M = self.cfg.dead_after
        if not M:
            return
        tk = out["tasks"]
        had = np.zeros(self.N, bool)
        had[tk["worker"]] = True
        done = np.isfinite(out["workers"]["finish_s"])
        self.missed = np.where(had & ~done, self.missed + 1, np.where(done, 0, self.missed))
        for w in np.flatnonzero((self.missed >= M) & self.scheme.active):
            if self.scheme.active.sum() <= 1:
                break
            self.scheme.active[w] = False
            out["workers"]["active"][w] = 0
            log.warning("iteration %d: worker %d (rank %d) missed %d iterations in a row: "
                        "left out of planning", it, w, w + 1, int(self.missed[w]))
            if self.runlog is not None:
                left = json.loads(self.runlog.f.attrs.get("dead_workers", "[]"))
                self.runlog.set_attrs(dead_workers=json.dumps(left + [
                    {"worker": int(w), "rank": int(w) + 1, "iteration": it}]))

    def stop(self, timeout: float = 60.0) -> list[int]:
        """STOP every worker; drain stale results until every worker ACKed, for at most
        ``timeout`` seconds. Returns the ranks that did not ACK (the caller aborts)."""
        return bounds.stop_workers(self.comm, self.sends, self.N, timeout,
                                   bounds.exit_code(self.status, self.error))


class _MPIHooks:
    """What is real in ``--delay-mode virtual``: tasks and cancels go to the workers with no
    delay to sleep; an event waits for the worker's real message before the scheme sees it."""

    def __init__(self, coord: Coordinator):
        self.c = coord

    def dispatch(self, task, delay):
        self.c.send_task(self.c.scheme.iteration, task, 0.0)

    def cancel(self, task):
        self.c.send_cancel(self.c.scheme.iteration, task)

    def computed(self, task):
        c, info, tid = self.c, self.c._info, task.task_id
        it = c.scheme.iteration
        info.n_msgs += 1
        if c.uplink is None:
            c.wait_for(it, info, lambda: tid in info.msgs)
        else:
            c.wait_for(it, info, lambda: tid in c.partial or tid in info.msgs)

    def grant(self, g):
        self.c.send_grant(g)

    def delivered(self, task):
        c, info, tid = self.c, self.c._info, task.task_id
        c.wait_for(c.scheme.iteration, info, lambda: tid in info.msgs)

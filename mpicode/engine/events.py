"""One iteration in virtual time: the event loop shared by the simulator and by the MPI
coordinator in ``--delay-mode virtual`` (pure; the driver plugs in what is real).

Events, earliest first: a result delivered through the uplink, a task's compute finishing
(``n * partition_cost + delay`` after it starts on its worker), the next uplink slot, the
scheme's deadline. Ties go in that order. With the ``ideal`` channel a finished task's result
arrives at once. Because the order and the times come from the models only, decisions do not
depend on the machine, and a run is reproducible bit for bit.

The driver's hooks (all optional):

* ``dispatch(task, delay)``, ``cancel(task)``: MPI sends TASK/CANCEL; the simulator nothing;
* ``computed(task)``: the task's compute finished in virtual time: MPI waits for the worker's
  RESULT (ideal) or READY (uplink); the simulator computes the message;
* ``grant(grant)``: MPI sends GRANT; ``delivered(task)``: MPI waits for the last chunk.
"""

from __future__ import annotations

import heapq
import math

from mpicode.engine.rows import IterationInfo


class VirtualIteration:
    def __init__(self, scheme, stragglers, vworkers, *, partition_cost: float,
                 uplink=None, msg_bytes: int = 8, hooks=None):
        self.scheme = scheme
        self.stragglers = stragglers
        self.vw = vworkers
        self.cost = float(partition_cost)
        self.uplink = uplink
        self.msg_bytes = int(msg_bytes)
        self.hooks = hooks

    def _hook(self, name, *a):
        f = getattr(self.hooks, name, None)
        if f is not None:
            f(*a)

    def _apply(self, it, acts, t, info: IterationInfo) -> None:
        for task in acts.dispatch:
            delay = self.stragglers.delay(it, task.worker, info.next_index(task.worker), task.n)
            task.t_dispatch = t
            info.delay[task.task_id] = delay
            self.vw.add(task.worker, task.task_id, t, task.n * self.cost + delay)
            self._hook("dispatch", task, delay)
        for task in acts.cancel:
            self.vw.cancel(task.task_id, t)
            if self.uplink is not None:  # its message, if on the way, is no longer needed
                self.uplink.sched.drop({(it, task.task_id)})
            self._hook("cancel", task)
        info.cancelled += len(acts.cancel)

    def run(self, it: int, info: IterationInfo, t0: float = 0.0) -> float:
        """Run iteration ``it`` (beginning at run time ``t0``) until the scheme can decode;
        returns the time (since ``t0``) at which it could."""
        scheme, vw, up = self.scheme, self.vw, self.uplink
        vw.reset()
        deliveries: list[tuple[float, int]] = []  # (time since t0, task id)
        self._apply(it, scheme.begin(it), 0.0, info)
        t = 0.0
        while not scheme.done():
            t_del = deliveries[0][0] if deliveries else math.inf
            ev = vw.peek()
            t_comp = ev[0] if ev is not None else math.inf
            t_slot = up.next_slot_time() - t0 if up is not None else math.inf
            deadline = scheme.next_deadline()
            t_dl = deadline if deadline is not None else math.inf
            t_next = min(t_del, t_comp, t_slot, t_dl)
            if t_next == math.inf:
                raise RuntimeError(f"iteration {it}: scheme {scheme.name} cannot decode and "
                                   "nothing is pending")
            t = max(t, t_next)
            if t_del == t_next:
                _, tid = heapq.heappop(deliveries)
                self._deliver(it, tid, t, info)
            elif t_comp == t_next:
                _, tid = vw.pop()
                task = scheme.tasks[tid]
                info.measured[tid] = (task.n * self.cost, info.delay[tid])
                info.ready[tid] = t
                self._hook("computed", task)
                if up is None:
                    self._deliver(it, tid, t, info)
                elif task.state == "pending":
                    up.offer(task.worker, (it, tid), self.msg_bytes, t0 + t)
            elif t_slot == t_next:
                grants, done = up.step()
                for g in grants:
                    self._hook("grant", g)
                for (i, tid), t_end in done:
                    if i == it:
                        heapq.heappush(deliveries, (t_end - t0, tid))
            else:
                self._apply(it, scheme.on_tick(t), t, info)
        return t

    def _deliver(self, it, tid, t, info) -> None:
        task = self.scheme.tasks[tid]
        if task.state != "pending":  # cancelled while its message was on the way
            return
        self._hook("delivered", task)
        comp, dl = info.measured[tid]
        self._apply(it, self.scheme.on_result(tid, t, comp + dl), t, info)

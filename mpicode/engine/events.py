"""One iteration as a stream of events from sources, earliest first (pure: no MPI).

The one event loop of the simulator and of the MPI coordinator, in both delay modes. Sources,
in the order that breaks ties:

1. a result *delivered* through the uplink (its slot ended; with MPI, its last chunk is here),
2. a task's compute finishing in virtual time (``n * partition_cost + delay`` after it starts
   on its worker; virtual delay mode and the simulator), or a result that *arrived* over MPI
   (real delays: arrivals are pushed by the receiver as they come),
3. the next uplink slot,
4. the scheme's deadline.

With the ``ideal`` channel a finished task's result reaches the scheme at once. The clock
(:mod:`mpicode.engine.clock`) decides how time passes: virtually (the next event's time), or
on the wall clock, waiting for it while the MPI receiver files messages. In virtual time the
order and the times come from the models only, so decisions do not depend on the machine and a
run is reproducible bit for bit.

The driver's hooks (all optional):

* ``dispatch(task, delay)``, ``cancel(task)``: MPI sends TASK/CANCEL; the simulator nothing;
* ``computed(task)``: the task's compute finished in virtual time: MPI waits for the worker's
  RESULT (ideal) or READY (uplink); the simulator computes the message;
* ``grant(grant)``: MPI sends GRANT; ``delivered(task)``: MPI waits for the last chunk;
* ``present(task_id)``: is the delivered message really here (MPI, real time)? default True.
"""

from __future__ import annotations

import math
from collections import deque

from mpicode.engine.clock import VirtualClock
from mpicode.engine.rows import IterationInfo

INF = math.inf


class EventLoop:
    def __init__(self, scheme, stragglers, *, partition_cost: float = 0.0, uplink=None,
                 msg_bytes: int = 8, vworkers=None, clock=None, hooks=None):
        self.scheme = scheme
        self.stragglers = stragglers
        self.cost = float(partition_cost)
        self.uplink = uplink
        self.msg_bytes = int(msg_bytes)
        self.vw = vworkers             # None: real delays, results arrive over MPI
        self.clock = clock or VirtualClock()
        self.hooks = hooks
        self.arrivals: deque = deque()  # (time, task id) of results that arrived (real time)

    def _hook(self, name, *a):
        f = getattr(self.hooks, name, None)
        return None if f is None else f(*a)

    # ---- actions of the scheme --------------------------------------------------------------
    def apply(self, it, acts, t, info: IterationInfo) -> None:
        for task in acts.dispatch:
            delay = self.stragglers.delay(it, task.worker, info.next_index(task.worker), task.n)
            task.t_dispatch = t
            info.delay[task.task_id] = delay
            if self.vw is not None:
                self.vw.add(task.worker, task.task_id, t, task.n * self.cost + delay)
            self._hook("dispatch", task, delay)
        self.cancel(it, acts.cancel, t)
        info.cancelled += len(acts.cancel)

    def cancel(self, it, tasks, t) -> None:
        for task in tasks:
            if self.vw is not None:
                self.vw.cancel(task.task_id, t)
            if self.uplink is not None:  # its message, if on the way, is no longer needed
                self.uplink.sched.drop({(it, task.task_id)})
            self._hook("cancel", task)

    # ---- events -------------------------------------------------------------------------------
    def arrived(self, tid: int, t: float) -> None:
        """The receiver's report (real time): the result of ``tid`` is here at ``t``."""
        self.arrivals.append((t, tid))

    def _present(self):
        """The hooks' ``present(tid)`` (MPI in real time: the last chunk is here), if any."""
        return getattr(self.hooks, "present", None)

    def _earliest(self):
        up = self.uplink
        t_del = up.next_delivery(self._present()) - self.t0 if up is not None else INF
        if self.vw is not None:
            ev = self.vw.peek()
            t_comp = ev[0] if ev is not None else INF
        else:
            t_comp = self.arrivals[0][0] if self.arrivals else INF
        t_slot = up.next_slot_time() - self.t0 if up is not None else INF
        deadline = self.scheme.next_deadline()
        t_dl = deadline if deadline is not None else INF
        return min((t_del, 0), (t_comp, 1), (t_slot, 2), (t_dl, 3))

    def run(self, it: int, info: IterationInfo, t0: float = 0.0) -> float:
        """Run iteration ``it`` (beginning at run time ``t0``) until the scheme can decode;
        returns the time (since ``t0``) at which it could."""
        scheme, clock = self.scheme, self.clock
        self.t0 = t0
        if self.vw is not None:
            self.vw.reset()
        self.arrivals.clear()
        if self.uplink is not None:
            self.uplink.new_iteration(it)
        clock.start(t0)
        self.apply(it, scheme.begin(it), 0.0, info)
        t = 0.0
        while not scheme.done():
            t_next, kind = self._earliest()
            if t_next == INF and clock.virtual:
                raise RuntimeError(f"iteration {it}: scheme {scheme.name} cannot decode and "
                                   "nothing is pending")
            now = clock.wait_until(t_next)
            if now < t_next:
                continue  # (wall clock) a message came in first
            t = max(t, now)
            if kind == 0:
                self._deliver(it, self.uplink.pop_delivery(self._present()), t, info)
            elif kind == 1:
                self._computed(it, t, info)
            elif kind == 2:
                grants = self.uplink.step()
                for g in grants:
                    self._hook("grant", g)
            else:
                self.apply(it, scheme.on_tick(t), t, info)
        return t

    def _computed(self, it, t, info) -> None:
        if self.vw is None:  # real time: the result is already here
            _, tid = self.arrivals.popleft()
            self._deliver(it, tid, t, info, hook=False)
            return
        _, tid = self.vw.pop()
        task = self.scheme.tasks[tid]
        info.measured[tid] = (task.n * self.cost, info.delay[tid])
        info.ready[tid] = t
        self._hook("computed", task)
        if self.uplink is None:
            self._deliver(it, tid, t, info)
        elif task.state == "pending":
            self.uplink.offer(task.worker, (it, tid), self.msg_bytes, self.t0 + t)

    def _deliver(self, it, tid, t, info, hook: bool = True) -> None:
        task = self.scheme.tasks[tid]
        if task.state != "pending":  # cancelled while its message was on the way
            return
        if hook:
            self._hook("delivered", task)
        comp, dl = info.measured[tid]
        self.apply(it, self.scheme.on_result(tid, t, comp + dl), t, info)

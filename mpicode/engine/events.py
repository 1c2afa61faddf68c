"""One iteration as a stream of events from sources, earliest first (pure: no MPI).

The one event loop of the simulator and of the MPI coordinator, in both delay modes. Sources,
in the order that breaks ties:

1. a result *delivered* through the uplink (its slot ended; with MPI, its last chunk is here),
2. a result that *arrived*: over MPI (real delays: arrivals are pushed by the receiver as
   they come), or in virtual time a message whose modelled cost has passed,
3. a task's compute finishing in virtual time (``n * partition_cost + delay`` after it starts
   on its worker; virtual delay mode and the simulator),
4. the next uplink slot,
5. the scheme's deadline.

In virtual time the cost model (:mod:`mpicode.engine.costs`) starts a task ``dispatch_s``
after it was decided and, with the ``ideal`` channel, has its result arrive ``msg_latency_s +
bytes / msg_bandwidth`` after its compute finished, seen at rank 0's next poll (``poll_s``);
with the zero model (the default) a finished task's result reaches the scheme at once. The clock
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

import heapq
import itertools
import math

from mpicode.engine.clock import VirtualClock
from mpicode.engine.costs import ZERO
from mpicode.engine.rows import IterationInfo
from mpicode.engine.signals import stalled

INF = math.inf


class EventLoop:
    def __init__(self, scheme, stragglers, *, partition_cost: float = 0.0, uplink=None,
                 msg_bytes: int = 8, vworkers=None, clock=None, hooks=None, costs=None):
        self.scheme = scheme
        self.stragglers = stragglers
        self.cost = float(partition_cost)
        self.uplink = uplink
        self.msg_bytes = int(msg_bytes)
        self.vw = vworkers             # None: real delays, results arrive over MPI
        self.clock = clock or VirtualClock()
        self.hooks = hooks
        self.costs = costs or ZERO
        # --max-wait (wall seconds) for a scheme that cannot give up by itself: an iteration
        # that waits longer raises Stalled, naming the silent workers (real time only)
        self.max_wait: float | None = None
        self.t_event = 0.0              # rank 0's last event (virtual time: its backoff)
        self.arrivals: list = []        # heap of (time, seq, task id) of results that arrived
        self._seq = itertools.count()   # ties: first come, first served

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
                self.vw.add(task.worker, task.task_id, t + self.costs.dispatch_at(t),
                            task.n * self.cost + delay)
            self._hook("dispatch", task, delay)
        self.cancel(it, acts.cancel, t)
        info.cancelled += len(acts.cancel)

    def cancel(self, it, tasks, t) -> None:
        for task in tasks:
            if self.vw is not None:
                self.vw.cancel(task.task_id, t)
            if self.uplink is not None:  # its message, if on the way, is no longer needed
                self.uplink.drop({(it, task.task_id)})
            self._hook("cancel", task)

    # ---- events -------------------------------------------------------------------------------
    def arrived(self, tid: int, t: float) -> None:
        """The receiver's report (real time): the result of ``tid`` is here at ``t``."""
        heapq.heappush(self.arrivals, (t, next(self._seq), tid))

    def _present(self):
        """The hooks' ``present(tid)`` (MPI in real time: the last chunk is here), if any."""
        return getattr(self.hooks, "present", None)

    def _earliest(self):
        up = self.uplink
        t_del = up.next_delivery(self._present()) - self.t0 if up is not None else INF
        t_arr = INF
        if self.arrivals:
            t_arr = self.arrivals[0][0]
            if self.vw is not None:  # virtual time: seen at rank 0's next poll
                t_arr = self.costs.noticed(self.t_event, t_arr)
        ev = self.vw.peek() if self.vw is not None else None
        t_comp = ev[0] if ev is not None else INF
        t_slot = up.next_slot_time() - self.t0 if up is not None else INF
        deadline = self.scheme.next_deadline()
        t_dl = deadline if deadline is not None else INF
        return min((t_del, 0), (t_arr, 1), (t_comp, 2), (t_slot, 3), (t_dl, 4))

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
        t = self.t_event = 0.0
        while not scheme.done():
            t_next, kind = self._earliest()
            if t_next == INF and clock.virtual:
                raise RuntimeError(f"iteration {it}: scheme {scheme.name} cannot decode and "
                                   "nothing is pending")
            now = clock.wait_until(t_next)
            if self.max_wait is not None and now > self.max_wait:
                raise stalled(scheme, it, self.max_wait)
            if now < t_next:
                continue  # (wall clock) a message came in first
            t = max(t, now)
            if kind == 0:
                self._deliver(it, self.uplink.pop_delivery(self._present()), t, info)
            elif kind == 1:
                _, _, tid = heapq.heappop(self.arrivals)
                self._deliver(it, tid, t, info, hook=False)  # (the message is here)
            elif kind == 2:
                self._computed(it, t, info)
            elif kind == 3:
                grants = self.uplink.step()
                for g in grants:
                    self._hook("grant", g)
            else:
                self.apply(it, scheme.on_tick(t), t, info)
            if kind != 2:  # rank 0's backoff restarts at what it sees (not a worker's compute)
                self.t_event = t
        return t

    def _computed(self, it, t, info) -> None:
        _, tid = self.vw.pop()
        task = self.scheme.tasks[tid]
        info.measured[tid] = (task.n * self.cost, info.delay[tid])
        info.ready[tid] = t
        self._hook("computed", task)
        if self.uplink is None:
            msg_s = self.costs.message_s(self.msg_bytes)
            if msg_s > 0 or self.costs.poll_s > 0:  # on its way: the worker is free
                heapq.heappush(self.arrivals, (t + msg_s, next(self._seq), tid))
            else:
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

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
* ``present(task_id)``: is the delivered message really here (MPI, real time)? default True;
* ``poll()``: file every message waiting (MPI, real time), True if there was one: the wall
  clock calls it while it waits.

Results that arrived wait in an :class:`Inbox`, which the loop and the driver's hooks are both
given at construction (the MPI receiver files what comes in; the loop takes it out, earliest
first). What a scheme returns is checked where the loop receives it (a task for a worker that
does not exist): a plugin that breaks the contract is named in one line
(:func:`mpicode.registry.misbehaved`), never a failure deep in the engine.
"""

from __future__ import annotations

import heapq
import itertools
import math

from mpicode import registry
from mpicode.engine.clock import VirtualClock
from mpicode.engine.costs import ZERO, Work
from mpicode.engine.rank0 import Rank0
from mpicode.engine.rows import IterationInfo
from mpicode.engine.signals import stalled
from mpicode.engine.vworkers import cut_short

INF = math.inf
HEARTBEAT_EVENTS = 2048  # virtual time: events between two heartbeats (~ms of wall time)


class Inbox:
    """Results that arrived and wait for rank 0: a heap of (time since the iteration began,
    seq, task id), earliest first, ties first come first served. Filed by the MPI receiver
    in real time (:meth:`arrived`) and by the event loop in virtual time (a message whose
    modelled cost has passed); taken out by the event loop."""

    def __init__(self):
        self.heap: list = []
        self._seq = itertools.count()

    def arrived(self, tid: int, t: float) -> None:
        """The result of task ``tid`` is here at ``t``."""
        heapq.heappush(self.heap, (t, next(self._seq), tid))

    def clear(self) -> None:
        self.heap.clear()


class EventLoop:
    def __init__(self, scheme, stragglers, *, partition_cost: float = 0.0, uplink=None,
                 msg_bytes: int = 8, vworkers=None, clock=None, hooks=None, costs=None,
                 rank0=None, inbox: Inbox | None = None, max_wait: float | None = None):
        self.scheme = scheme
        self.stragglers = stragglers
        self.cost = float(partition_cost)
        self.uplink = uplink
        self.msg_bytes = int(msg_bytes)
        self.vw = vworkers             # None: real delays, results arrive over MPI
        self.clock = clock or VirtualClock()
        self.hooks = hooks
        self.costs = costs or ZERO
        # rank 0's actions: measured on the wall clock, charged in virtual time (§2.6)
        self.rank0 = rank0 or Rank0(self.costs.rank0, scheme.N, virtual=vworkers is not None)
        # --max-wait (wall seconds) for a scheme that cannot give up by itself: an iteration
        # that waits longer raises Stalled, naming the silent workers (real time only)
        self.max_wait = max_wait
        self.t_event = 0.0              # rank 0's last event (virtual time: its backoff)
        self.busy = 0.0                 # virtual time: rank 0 is busy until then
        self.inbox = inbox if inbox is not None else Inbox()  # results that arrived
        self.effects: list = []         # heap of (time, seq, Actions, first): decisions made
        self._seq = itertools.count()   # ties: first come, first served
        self.N = scheme.N

    def _hook(self, name, *a):
        f = getattr(self.hooks, name, None)
        return None if f is None else f(*a)

    # ---- actions of the scheme --------------------------------------------------------------
    def apply(self, it, acts, t, info: IterationInfo, first: bool | None = None) -> None:
        """Carry out a decision at ``t``: dispatch and cancel its tasks. ``first``: the
        stage-1 plan (dispatch latency ``dispatch_s``; later tasks ``redispatch_s``);
        default: decided at t = 0."""
        latency = self.costs.dispatch_at(0.0 if first or (first is None and t <= 0.0) else t)
        for task in acts.dispatch:
            delay = self.stragglers.delay(it, task.worker, info.next_index(task.worker), task.n)
            task.t_dispatch = t
            info.delay[task.task_id] = delay
            if self.vw is not None:
                dur = task.n * self.cost + delay
                if task.time_limit < INF:  # a compute budget: the model says how far it gets
                    done, dur = cut_short(task.n, self.cost, delay, task.time_limit)
                    if done < task.n:
                        info.cut[task.task_id] = done
                self.vw.add(task.worker, task.task_id, t + latency, dur)
            self._hook("dispatch", task, delay)
        self.cancel(it, acts.cancel, t)
        info.cancelled += len(acts.cancel)

    def cancel(self, it, tasks, t) -> None:
        for task in tasks:
            self._hook("cancel", task)  # (before the model forgets it: a test driver's
            # hook may still see when it would have finished)
            if self.vw is not None:
                self.vw.cancel(task.task_id, t)
            if self.uplink is not None:  # its message, if on the way, is no longer needed
                self.uplink.drop({(it, task.task_id)})

    def check(self, acts, callback: str):
        """``acts``, a scheme's answer to ``callback``, if the loop can carry it out: an
        ``Actions`` whose tasks go to workers 0..N-1; else the error that names the scheme
        (a plugin's one line)."""
        try:
            dispatch, cancel = acts.dispatch, acts.cancel
        except AttributeError:
            raise registry.misbehaved(self.scheme, callback, f"returned {type(acts).__name__}"
                                      ", not Actions(dispatch, cancel)") from None
        N = self.N
        for task in dispatch:
            if not 0 <= task.worker < N:
                raise registry.misbehaved(self.scheme, callback, f"dispatched task "
                                          f"{task.task_id} to worker {task.worker} (the "
                                          f"workers are 0..{N - 1})")
        for task in cancel:
            if task.state == "pending":
                raise registry.misbehaved(self.scheme, callback, f"cancelled task "
                                          f"{task.task_id} but left it pending")
        return acts

    # ---- events -------------------------------------------------------------------------------
    def arrived(self, tid: int, t: float) -> None:
        """The receiver's report (real time): the result of ``tid`` is here at ``t``."""
        self.inbox.arrived(tid, t)

    def _present(self):
        """The hooks' ``present(tid)`` (MPI in real time: the last chunk is here), if any."""
        return getattr(self.hooks, "present", None)

    def _earliest(self):
        """(time, kind) of the next event. In virtual time with a coordinator cost, an event
        of rank 0's is handled when rank 0 is free (messages that land meanwhile wait, in
        arrival order) and a decision (kind -1) takes effect when it was made; a worker's
        compute (kind 2) is the worker's, not rank 0's."""
        up = self.uplink
        busy = self.busy if self.rank0.charging else -INF
        t_del = up.next_delivery(self._present()) - self.t0 if up is not None else INF
        t_arr = INF
        if self.inbox.heap:
            t_arr = self.inbox.heap[0][0]
            if self.vw is not None:  # virtual time: seen at rank 0's next poll
                t_arr = self.costs.noticed(self.t_event, t_arr)
        ev = self.vw.peek() if self.vw is not None else None
        t_comp = ev[0] if ev is not None else INF
        t_slot = up.next_slot_time() - self.t0 if up is not None else INF
        deadline = self.scheme.next_deadline()
        t_dl = deadline if deadline is not None else INF
        t_eff = self.effects[0][0] if self.effects else INF
        return min((t_eff, -1), (max(t_del, busy), 0), (max(t_arr, busy), 1), (t_comp, 2),
                   (max(t_slot, busy), 3), (max(t_dl, busy), 4))

    def _decided(self, it, acts, c: float, t: float, info, first: bool | None = None) -> None:
        """Rank 0 decided ``acts`` at ``t`` and was busy ``c`` seconds doing so: the decision
        takes effect at ``t + c`` (at once when rank 0 costs nothing)."""
        self.busy = t + c
        if c > 0.0:
            heapq.heappush(self.effects, (t + c, next(self._seq), acts, first))
        else:
            self.apply(it, acts, t, info, first)

    def run(self, it: int, info: IterationInfo, t0: float = 0.0, heartbeat=None) -> float:
        """Run iteration ``it`` (beginning at run time ``t0``) until the scheme can decode;
        returns the time (since ``t0``) at which it could: in virtual time with a
        coordinator cost, when rank 0 has handled the message that completed it.

        ``heartbeat(it, events)``, if given, is called every :data:`HEARTBEAT_EVENTS` events
        of a virtual-time iteration (one that can take long in wall time at large N): it
        may show progress and raise :class:`~mpicode.engine.signals.Interrupted` on a stop
        request (the wall clock's waits check the stop flag themselves)."""
        scheme, clock, r0 = self.scheme, self.clock, self.rank0
        poll = getattr(self.hooks, "poll", None)  # the MPI receiver (real time)
        n_events = 0
        self.t0 = t0
        if self.vw is not None:
            self.vw.reset()
        self.inbox.clear()
        self.effects.clear()
        if self.uplink is not None:
            self.uplink.new_iteration(it)
        clock.start(t0)
        acts, c = r0.act(scheme.name, "begin", scheme.begin, it, sends=scheme.N)  # + MODEL
        self._decided(it, self.check(acts, "begin"), c, 0.0, info, first=True)
        t = 0.0
        self.t_event = self.busy
        while not scheme.done():
            t_next, kind = self._earliest()
            if t_next == INF and clock.virtual:
                raise RuntimeError(f"iteration {it}: scheme {scheme.name} cannot decode and "
                                   "nothing is pending")
            now = clock.wait_until(t_next, poll)
            if self.max_wait is not None and now > self.max_wait:
                raise stalled(scheme, it, self.max_wait)
            if now < t_next:
                continue  # (wall clock) a message came in first
            t = max(t, now)
            n_events += 1
            if heartbeat is not None and n_events % HEARTBEAT_EVENTS == 0:
                heartbeat(it, n_events)
            if kind == -1:
                te, _, acts, first = heapq.heappop(self.effects)
                self.apply(it, acts, te, info, first)
                continue
            if kind == 0:
                self._deliver(it, self.uplink.pop_delivery(self._present()), t, info)
            elif kind == 1:
                _, _, tid = heapq.heappop(self.inbox.heap)
                self._deliver(it, tid, t, info, hook=False)  # (the message is here)
            elif kind == 2:
                self._computed(it, t, info)
            elif kind == 3:
                grants, c = r0.act(self.uplink.sched.name, "slot", self.uplink.step,
                                   count=_slot_work)
                self.busy = t + c
                for g in grants:
                    self._hook("grant", g)
            else:
                acts, c = r0.act(scheme.name, "tick", scheme.on_tick, t)
                self._decided(it, self.check(acts, "on_tick"), c, t, info)
            if kind != 2:  # rank 0's backoff restarts at what it sees (not a worker's compute)
                self.t_event = max(t, self.busy) if r0.charging else t
        while self.effects:  # the last decision (its cancels) takes effect
            te, _, acts, first = heapq.heappop(self.effects)
            self.apply(it, acts, te, info, first)
        return max(t, self.busy) if r0.charging else t

    def _computed(self, it, t, info) -> None:
        _, tid = self.vw.pop()
        task = self.scheme.tasks[tid]
        done = info.cut.get(tid)
        if done is None:  # (not delay * n / n: that is not always delay in floating point)
            info.measured[tid] = (task.n * self.cost, info.delay[tid])
        else:             # a time limit cut it short: the share of its delay it ran
            info.measured[tid] = (done * self.cost, info.delay[tid] * done / task.n)
        info.ready[tid] = t
        self._hook("computed", task)
        if self.uplink is None:
            msg_s = self.costs.message_s(self.msg_bytes)
            if msg_s > 0 or self.costs.poll_s > 0 or self.rank0.charging:
                # on its way (the worker is free); rank 0 sees it when it polls and is free
                self.inbox.arrived(tid, t + msg_s)
            else:
                self._deliver(it, tid, t, info)
        elif task.state == "pending":
            self.uplink.offer(task.worker, (it, tid), self.msg_bytes, self.t0 + t)

    def _deliver(self, it, tid, t, info, hook: bool = True) -> None:
        task = self.scheme.tasks[tid]
        if task.state != "pending":  # cancelled while its message was on the way
            if self.rank0.charging:  # received and dropped all the same
                self.busy = t + self.rank0.charge("engine", Work("result", self.scheme.N,
                                                                 recvs=1))
            return
        if hook:
            self._hook("delivered", task)
        comp, dl = info.measured[tid]
        cut = info.cut.get(tid)  # a time limit cut it short: its message sums a prefix
        args = (tid, t, comp + dl) if cut is None else (tid, t, comp + dl, cut)
        acts, c = self.rank0.act(self.scheme.name, "result", self.scheme.on_result, *args,
                                 recvs=1)
        self._decided(it, self.check(acts, "on_result"), c, t, info)


def _slot_work(grants) -> dict:
    """A slot step's work: the grants it made (each a GRANT sent and a CHUNK received)."""
    n = len(grants)
    return {"msgs": n, "sends": n, "recvs": n}

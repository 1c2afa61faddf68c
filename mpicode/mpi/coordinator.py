"""Rank 0's side of the wire: messages out, the receiver, result buffers, shutdown.

The :class:`Coordinator` is the MPI backend of the one run loop
(:class:`mpicode.engine.loop.Trainer`) and of the one event loop
(:class:`mpicode.engine.events.EventLoop`); the delay mode only picks which hooks plug in:
:class:`RealTime` (delays are real sleeps on the workers, results are events when they
arrive) or :class:`VirtualTime` (the models say when a task finishes; the loop waits for the
worker's real message before the scheme sees it). Launched by ``mpicode train`` on rank 0::

    mpiexec -n 5 python -m mpi4py -m mpicode train --scheme two-stage --iterations 20

Dead ranks (``--on-failure continue`` under ULFM, docs/design.md §2.7): a receive or probe
that fails with ``MPI_ERR_PROC_FAILED`` is acknowledged (``Ack_failed``, so wildcard
receives go on), the failed ranks (``Get_failed``) are filed in the event loop's inbox
(:meth:`mpicode.engine.events.Inbox.failed`), and nothing is sent to them again; a worker
left out by ``--dead-after`` gets nothing either, but STOP at the end. The communicator is
not shrunk: ``Shrink`` is collective over the survivors, which would have to learn of the
failure first (``Revoke``), while rank 0 alone talks to each worker and only needs to stop
addressing the dead.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from mpicode.engine.clock import Backoff
from mpicode.engine.signals import Interrupted, stalled, stop_requested
from mpicode.mpi import bounds
from mpicode.mpi.comm import PROC_FAILED, SendPool, failed_ranks
from mpicode.wire import (
    CHUNK_HEADER,
    IT,
    RESULT_HEADER,
    TAG_CANCEL,
    TAG_CHUNK,
    TAG_GRANT,
    TAG_MODEL,
    TAG_PARTIAL,
    TAG_READY,
    TAG_RESULT,
    TAG_TASK,
    TASK,
    Chunk,
    Grant,
    Result,
    decode_partial,
    decode_ready,
    encode_cancel,
    encode_grant,
    encode_model,
    encode_task,
)


@dataclass
class Partial:
    """A result arriving chunk by chunk through the emulated uplink."""

    buf: np.ndarray
    missing: int     # elements still to come
    loss: float
    metric: float


class Coordinator:
    """Rank 0's side of the wire for one run of ``scheme`` on ``comm``.

    Built by the assembly (:func:`mpicode.engine.assembly.build`) with what it needs: the
    run's clock (``clock.now``: seconds of training, the uplink's time base), the event
    loop's clock (``events_clock``: seconds since the iteration began, when a result
    arrived), the ``inbox`` the receiver files arrivals in, the ``uplink`` (or None) and
    the delay mode (``virtual``); it builds its own hooks for the event loop
    (:attr:`hooks`: :class:`VirtualTime` or :class:`RealTime`). ``max_wait``: ``--max-wait``
    while it waits for the real message of a virtual event (virtual time only)."""

    def __init__(self, comm: MPI.Comm, dim: int, scheme=None, *, clock=None,
                 events_clock=None, inbox=None, uplink=None, virtual: bool = False,
                 max_wait: float | None = None, real_link: bool = False):
        self.comm = comm
        self.N = comm.size - 1
        self.dim = dim
        self.size = RESULT_HEADER + dim      # elements of a RESULT message
        self.now = clock.now if clock is not None else time.perf_counter  # run clock (s)
        self.sends = SendPool()
        self.free: list[np.ndarray] = []     # result buffers to reuse (no page faults)
        self.status = MPI.Status()
        self.scheme = scheme
        self.it = -1
        self.info = None
        self.partial: dict[int, Partial] = {}
        self.max_wait = max_wait             # --max-wait of a scheme without its own
        self.now_wall = time.perf_counter
        self.t_begin = 0.0
        self.dead: set[int] = set()       # ranks MPI reported failed (never addressed again)
        self.excluded: set[int] = set()   # ranks out of the run (dead, or left out): no work
        # where a failed rank is reported: the event loop's inbox, at the time of its clock
        self.inbox, self.events_clock = inbox, events_clock
        # the event loop's hooks, by delay mode (the receiver reports to them)
        self.mode = (VirtualTime(self, uplink=uplink) if virtual
                     else RealTime(self, events_clock, inbox, uplink, real_link=real_link))

    @property
    def hooks(self):
        """The event loop's hooks of this coordinator (its delay mode)."""
        return self.mode

    # ---- the run loop's backend ---------------------------------------------------------------
    def expect(self, it: int, info) -> None:
        """Iteration ``it`` begins: its messages are filed in ``info``, others are stale."""
        self.it, self.info, self.partial = it, info, {}
        self.t_begin = self.now_wall()

    def begin(self, it: int, w: np.ndarray, info) -> None:
        """A new iteration: send the model to every worker."""
        self.expect(it, info)
        model = encode_model(it, w)  # a new buffer: the last one may still be in flight
        for r in range(1, self.N + 1):
            if r not in self.excluded:
                self._isend(model, r, TAG_MODEL)

    def after_decode(self, info) -> None:
        for msg in info.msgs.values():
            self.release(msg[0])
        self.sends.prune()

    # ---- messages out -------------------------------------------------------------------------
    def send_task(self, task, delay: float, n: int | None = None,
                  time_limit: float | None = None) -> None:
        self._isend(encode_task(self.it, task, delay, n, time_limit), task.worker + 1, TAG_TASK)

    def send_cancel(self, task) -> None:
        self._isend(encode_cancel(self.it, task.task_id), task.worker + 1, TAG_CANCEL)

    def send_grant(self, g) -> None:
        it, tid = g.msg_id
        self._isend(encode_grant(Grant(it, tid, g.offset, g.nbytes, g.last)), g.worker + 1,
                    TAG_GRANT)

    def _isend(self, buf, rank: int, tag: int) -> None:
        """Send, unless ``rank`` is out of the run; a send that finds it dead reports it."""
        if rank in self.excluded:
            return
        try:
            self.sends.isend(self.comm, buf, rank, tag)
        except MPI.Exception as e:
            self._mpi_error(e)

    # ---- dead ranks (ULFM) --------------------------------------------------------------------
    def _mpi_error(self, e: MPI.Exception) -> None:
        """A failed rank (``MPI_ERR_PROC_FAILED``): acknowledge it and file the newly failed
        in the event loop's inbox; any other MPI error is raised."""
        if e.Get_error_class() not in PROC_FAILED:
            raise e
        for r in failed_ranks(self.comm):
            if r != 0 and r not in self.dead:
                self.dead.add(r)
                self.excluded.add(r)
                self.sends.forget(r)
                if self.inbox is not None:
                    now = getattr(self.events_clock, "now", None)
                    self.inbox.failed(r - 1, now() if now is not None else 0.0)

    def exclude(self, worker: int) -> None:
        """The run goes on without ``worker`` (it failed, or went silent): send it nothing
        but STOP."""
        self.excluded.add(worker + 1)

    # ---- messages in --------------------------------------------------------------------------
    def poll(self) -> bool:
        """Handle every waiting message; True if there was one."""
        got = False
        while self.receive():
            got = True
        return got

    def receive(self) -> bool:
        """Handle one waiting message from a worker, if any (False: nothing waits). Stale
        messages (another iteration, an unknown task) are dropped and counted."""
        try:
            msg = self.comm.Improbe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=self.status)
        except MPI.Exception as e:  # a dead rank (ULFM): reported, then the others go on
            self._mpi_error(e)
            return True
        if msg is None:
            return False
        st, info = self.status, self.info
        tag, src, count = st.Get_tag(), st.Get_source(), st.Get_count(MPI.DOUBLE)
        # results land in a pooled buffer that the decode reads in place (no copy); the pool
        # is refilled after each decode, so steady state allocates nothing
        buf = self.free.pop() if count == self.size and self.free else np.empty(count)
        msg.Recv(buf)
        if src in self.excluded:  # a worker left out (it went silent, then came back)
            self._stale(buf)
            return True
        tid = int(buf[TASK])
        task = self.scheme.tasks.get(tid) if info is not None else None
        if int(buf[IT]) != self.it or task is None or task.worker != src - 1:
            self._stale(buf)
        elif tag == TAG_RESULT:
            if task.state != "pending" or tid in info.msgs:
                self._stale(None)
            else:
                info.msgs[tid] = (buf[RESULT_HEADER:], float(buf[Result.LOSS]),
                                  float(buf[Result.METRIC]))
                self.mode.result(task, buf)
        elif tag == TAG_READY:
            ready = decode_ready(buf)
            self.partial[tid] = Partial(np.empty(self.size), self.size, ready.loss,
                                        ready.metric)
            self.mode.ready(task, ready)
        elif tag == TAG_CHUNK:
            self._chunk(tid, buf, count)
        elif tag == TAG_PARTIAL:  # the RESULT/READY that follows sums a prefix (real time)
            info.cut[tid] = decode_partial(buf)[2]
        else:
            raise RuntimeError(f"coordinator: unexpected tag {tag} from rank {src}")
        return True

    def _chunk(self, tid: int, buf: np.ndarray, count: int) -> None:
        p = self.partial.get(tid)
        if p is None:
            self._stale(buf)
            return
        e0, n = int(buf[Chunk.FIRST]), count - CHUNK_HEADER
        p.buf[e0:e0 + n] = buf[CHUNK_HEADER:]
        p.missing -= n
        if p.missing == 0:
            del self.partial[tid]
            self.info.msgs[tid] = (p.buf[RESULT_HEADER:], p.loss, p.metric)
            self.mode.assembled(self.scheme.tasks[tid])

    def _stale(self, buf) -> None:
        if self.info is not None:
            self.info.stale += 1
        if buf is not None:
            self.release(buf)

    def release(self, buf: np.ndarray) -> None:
        """Give a result buffer back to the pool (its data is no longer needed)."""
        if buf.base is not None:
            buf = buf.base
        if buf.size == self.size and len(self.free) < 4 * self.N + 8:
            self.free.append(buf)

    def wait_for(self, done) -> None:
        """Receive (and file) messages until ``done()``; sleeps with backoff. Bounded by
        ``--max-wait`` (``max_wait`` wall seconds since the iteration began; then Stalled)
        or, without it, by a signal."""
        backoff = Backoff()
        while not done():
            if stop_requested():
                raise Interrupted
            if self.receive():
                backoff.reset()
            elif self.max_wait is not None and self.now_wall() - self.t_begin > self.max_wait:
                raise stalled(self.scheme, self.it, self.max_wait)
            else:
                backoff.sleep()

    # ---- shutdown -----------------------------------------------------------------------------
    def stop(self, timeout: float = 60.0, code: int = 0) -> list[int]:
        """STOP every worker (with the job's exit ``code``, which they exit with); drain
        stale results until every worker ACKed, for at most ``timeout`` seconds. Returns the
        ranks that did not ACK (the caller aborts the job: MPI_Finalize would hang)."""
        return bounds.stop_workers(self.comm, self.sends, self.N, timeout, code,
                                   dead=self.dead)


class RealTime:
    """Hooks of ``--delay-mode sleep``: tasks carry their delay (the worker sleeps it); a
    result is an event when it arrives (filed in the event loop's ``inbox`` at the time of
    ``clock``, seconds since the iteration began); with an uplink, READY offers the message
    at once. With ``real_link`` (``--link-timing real``) a granted message is an event when
    its last chunk arrives, whatever the slot clock says: the real network's time."""

    def __init__(self, coord: Coordinator, clock=None, inbox=None, uplink=None,
                 real_link: bool = False):
        self.c, self.clock, self.inbox, self.uplink = coord, clock, inbox, uplink
        self.real_link = real_link

    def poll(self) -> bool:
        return self.c.poll()

    def dispatch(self, task, delay):
        self.c.send_task(task, delay)

    def cancel(self, task):
        self.c.send_cancel(task)

    def grant(self, g):
        self.c.send_grant(g)

    def present(self, tid) -> bool:
        return tid in self.c.info.msgs

    def failed(self, worker):
        self.c.exclude(worker)

    def _measured(self, task, compute_s, delay_s) -> float:
        t = self.clock.now()
        self.c.info.measured[task.task_id] = (compute_s, delay_s)
        self.c.info.ready[task.task_id] = t
        return t

    def result(self, task, buf):
        t = self._measured(task, float(buf[Result.COMPUTE_S]), float(buf[Result.DELAY_S]))
        self.inbox.arrived(task.task_id, t)

    def ready(self, task, ready):
        self._measured(task, ready.compute_s, ready.delay_s)
        if task.state == "pending":
            self.uplink.offer(task.worker, (self.c.it, task.task_id), 8 * self.c.size,
                              self.c.now())

    def assembled(self, task):
        """The last chunk of ``task``'s result is here: with a real link, that is its
        delivery (with an emulated one, the end of its last slot is)."""
        if self.real_link:
            self.inbox.arrived(task.task_id, self.clock.now())


class VirtualTime(RealTime):
    """Hooks of ``--delay-mode virtual``: what is real are the messages (tasks go out with no
    delay to sleep); an event waits for the worker's real message before the scheme sees it,
    and the times are the models' (not the messages'). A task with a time limit goes out as
    the prefix of partitions the model says the limit leaves, with no limit of its own."""

    def __init__(self, coord: Coordinator, uplink=None):
        super().__init__(coord, None, None, uplink)

    poll = None  # the virtual clock does not poll: it waits in computed() and delivered()

    def dispatch(self, task, delay):
        self.c.send_task(task, 0.0, self.c.info.cut.get(task.task_id), math.inf)

    def present(self, tid) -> bool:
        return True

    def computed(self, task):
        tid, c = task.task_id, self.c
        c.info.n_msgs = (c.info.n_msgs or 0) + 1  # bytes_up in virtual time, as simulate
        # (a task lost meanwhile, its worker dead, is waited for no more)
        if self.uplink is None:
            c.wait_for(lambda: tid in c.info.msgs or task.lost)
        else:
            c.wait_for(lambda: tid in c.partial or tid in c.info.msgs or task.lost)

    def delivered(self, task):
        self.c.wait_for(lambda: task.task_id in self.c.info.msgs or task.lost)

    def result(self, task, buf):
        pass

    def ready(self, task, ready):
        pass

    def assembled(self, task):
        pass

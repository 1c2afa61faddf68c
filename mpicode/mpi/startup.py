"""``mpicode train``'s start-up steps, bounded and interruptible, naming who did not answer.

Start-up is a few collective steps (rank 0's verdict on the input, every rank's own, the
numba warm-up, the agreement on a signal). A blocking collective waits in C for the slowest
rank: a worker stopped there (``kill -STOP``) held rank 0, SIGTERM to ``mpiexec`` included,
until ``MPIEXEC_TIMEOUT`` killed the job without a word. Here every step is:

1. a *hello* from each worker to rank 0 (a one-number buffer message, ``TAG_STARTUP``,
   carrying the step's number), which rank 0 collects with ``Improbe`` and a backoff, so that
   it knows who reached the step;
2. the step's collective, nonblocking (``Ibcast``/``Iallreduce``/``Ibarrier``) and polled.

Rank 0 waits at most ``--startup-timeout`` seconds a step, and answers SIGTERM/SIGINT within a
couple of seconds when a silent worker cannot answer (it never said hello, or it is stopped
or gone on this host): it prints one line naming the workers that did not answer (worker w is
rank w + 1), and the job ends (``MPI_Abort`` without MPICH's banner; nothing was written).
Workers that are merely busy (loading, compiling) got the signal too: the step completes and
the job stops cleanly after it, as before.
A worker that was told to stop and hears nothing from rank 0 leaves after a grace period.
No pickle: texts and the stored configuration travel as UTF-8/JSON bytes::

    mpiexec -n 5 python -m mpi4py -m mpicode train --startup-timeout 120 ...
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpicode.engine import faults
from mpicode.engine.signals import STOP
from mpicode.mpi import bounds
from mpicode.mpi.comm import Backoff
from mpicode.mpi.protocol import TAG_STARTUP

GRACE_S = 2.0  # after a stop signal: the wait for workers that cannot answer (stopped, gone)
WORKER_GRACE_S = 60.0  # a worker told to stop, whose rank 0 says nothing: then it leaves


def _host_crc() -> int:
    import socket
    import zlib
    return zlib.crc32(socket.gethostname().encode())


class Startup:
    """``Startup(comm, timeout)``; then ``bcast_text``, ``reduce_buffer``, ``wait_all`` in the same
    order on every rank (each is one step)."""

    def __init__(self, comm, timeout: float):
        self.comm, self.timeout = comm, float(timeout)
        self.step = 0
        self.peers: dict[int, tuple[int, int]] = {}  # rank 0: rank -> (pid, host crc32)

    def same_host_pids(self) -> dict[int, int]:
        """Rank 0: the pid of every worker on this host (from the first step's hellos)."""
        mine = _host_crc()
        return {r: pid for r, (pid, crc) in self.peers.items() if crc == mine}

    # -- the steps -------------------------------------------------------------------------
    def bcast_text(self, text: str | None, what: str) -> str | None:
        """Rank 0's ``text`` (or None) on every rank."""
        self._hello(what)
        data = b"" if text is None else text.encode("utf-8")
        n = np.array([-1 if text is None else len(data)], np.int64)
        self._wait(self.comm.Ibcast(n, root=0), what)
        if n[0] < 0:
            return None
        buf = (np.frombuffer(data, np.uint8).copy() if self.comm.rank == 0
               else np.empty(int(n[0]), np.uint8))
        self._wait(self.comm.Ibcast(buf, root=0), what)
        return buf.tobytes().decode("utf-8")

    def bcast_json(self, obj, what: str):
        """Rank 0's JSON-safe ``obj`` on every rank."""
        text = self.bcast_text(json.dumps(obj) if self.comm.rank == 0 else None, what)
        return None if text is None else json.loads(text)

    def reduce_buffer(self, send: np.ndarray, what: str, op=MPI.SUM) -> np.ndarray:
        self._hello(what)
        out = np.zeros_like(send)
        self._wait(self.comm.Iallreduce(send, out, op=op), what)
        return out

    def wait_all(self, what: str) -> None:
        self._hello(what)
        self._wait(self.comm.Ibarrier(), what)

    # -- the waits -------------------------------------------------------------------------
    def _hello(self, what: str) -> None:
        """Every worker tells rank 0 it reached this step; rank 0 waits for all of them."""
        self.step += 1
        comm = self.comm
        if comm.rank != 0:
            if self.step == 1:
                faults.stop_at_startup(comm.rank)  # fault tests: a kill -STOP right here
            msg = np.array([self.step, os.getpid(), _host_crc()], np.int64)
            self._wait(comm.Isend(msg, 0, TAG_STARTUP), what)
            return
        waiting = set(range(1, comm.size))
        status = MPI.Status()
        buf = np.empty(3, np.int64)
        self._poll(lambda: self._take_hello(waiting, status, buf), what, waiting)

    def _take_hello(self, waiting: set, status, buf) -> bool:
        msg = self.comm.Improbe(source=MPI.ANY_SOURCE, tag=TAG_STARTUP, status=status)
        while msg is not None:
            msg.Recv(buf)
            if int(buf[0]) == self.step:
                waiting.discard(status.Get_source())
                self.peers[status.Get_source()] = (int(buf[1]), int(buf[2]))
            msg = self.comm.Improbe(source=MPI.ANY_SOURCE, tag=TAG_STARTUP, status=status)
        return not waiting

    def _wait(self, req, what: str) -> None:
        self._poll(req.Test, what, set())

    def _poll(self, done, what: str, waiting: set) -> None:
        """Poll ``done()`` with a backoff until it holds; rank 0 gives up after the timeout
        or GRACE_S after a stop signal, naming ``waiting`` (the workers that did not answer);
        a worker gives up WORKER_GRACE_S after a stop signal."""
        backoff = Backoff()
        t0 = time.monotonic()
        stopped_at = None
        while not done():
            now = time.monotonic()
            if STOP["signal"] is not None and stopped_at is None:
                stopped_at = now
            if self.comm.rank == 0:
                if (stopped_at is not None and now - stopped_at > GRACE_S
                        and not any(self._may_answer(r) for r in waiting)):
                    self._give_up(what, waiting, STOP["signal"])
                if now - t0 > self.timeout:
                    self._give_up(what, waiting, None)
            elif stopped_at is not None and now - stopped_at > WORKER_GRACE_S:
                sys.stderr.flush()
                os._exit(3)  # rank 0 never said a word: it is stopped or gone
            backoff.sleep()

    def _may_answer(self, rank: int) -> bool:
        """Rank 0, after a stop signal: may this silent worker still reach the step (busy
        loading or compiling, as every worker got the signal too and will stop there)? Not
        if it never said hello (stopped or stuck before the first step) or if it is on this
        host and stopped or gone; a worker on another host is given the benefit of the
        doubt (until --startup-timeout)."""
        if rank not in self.peers:
            return False
        pid, crc = self.peers[rank]
        if crc != _host_crc():
            return True
        try:  # a read of /proc (the MPI package writes no file)
            stat = Path(f"/proc/{pid}/stat").read_text()
            return stat.rsplit(")", 1)[1].split()[0] not in ("T", "t", "Z", "X")
        except OSError:
            return False

    def _give_up(self, what: str, waiting: set, signum: int | None) -> None:
        """Rank 0: one line naming who did not answer at step ``what``, then end the job."""
        who = ", ".join(f"worker {r - 1} (rank {r})" for r in sorted(waiting))
        silent = (f"no answer from {who}" if who else
                  "a worker answered, then stopped before the step completed")
        if signum is not None:
            line = (f"mpicode: interrupted (signal {signum}) during start-up ({what}): "
                    f"{silent}; nothing written")
            code = 3
        else:
            line = (f"mpicode: error: start-up ({what}) waited more than --startup-timeout "
                    f"{self.timeout:g} s: {silent} (stopped, or still loading?); nothing "
                    "written")
            code = 1
        print(line, file=sys.stderr, flush=True)
        bounds.abort_quietly(self.comm, code)

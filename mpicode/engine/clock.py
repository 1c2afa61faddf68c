"""The run's one clock (docs/design.md §2.4), and how time passes in the event loop:
virtual (jump to the next event) or wall (wait for it).

Pure: the wall clock polls a callable (the MPI receiver) and sleeps with an exponential
backoff, mpi4py.futures style, so a waiting rank 0 gives its core to the workers.
"""

from __future__ import annotations

import math
import time

from mpicode.engine.signals import Interrupted

# the backoff's first sleep, growth factor and longest sleep (the simulator's poll model,
# mpicode.engine.costs, uses the same three)
BACKOFF_LO, BACKOFF_GROWTH, BACKOFF_HI = 1e-5, 1.25, 1e-3


class Backoff:
    """Exponential sleep backoff from ``lo`` to ``hi`` seconds (mpi4py.futures style), after
    a few yields (``sleep(0)``): a message that is about to land costs no sleep, and an idle
    rank still gives its core away within microseconds. Each interval is ``growth`` times
    the last: with 1.25 a sleep is about a quarter of the time waited so far, so a message
    is noticed at most ~25% late (doubling made it up to 100%: on 2 oversubscribed cores a
    no-straggler demo cycle took 4.1 ms instead of 2.9 in a ping-pong of the same shape),
    while a long wait still sleeps ``hi`` per poll."""

    def __init__(self, lo: float = BACKOFF_LO, hi: float = BACKOFF_HI, yields: int = 4,
                 growth: float = BACKOFF_GROWTH):
        self.lo, self.hi, self.yields, self.growth = lo, hi, yields, growth
        self.dt = lo
        self.n = 0
        self.slept = 0.0  # seconds spent in sleep() (rank 0: the time it was not busy)

    def reset(self) -> None:
        self.dt = self.lo
        self.n = 0

    def sleep(self, limit: float | None = None) -> None:
        t0 = time.perf_counter()
        if self.n < self.yields:
            self.n += 1
            time.sleep(0)
        else:
            dt = self.dt if limit is None else max(0.0, min(self.dt, limit))
            time.sleep(dt)
            self.dt = min(self.hi, self.dt * self.growth)
        self.slept += time.perf_counter() - t0


class RunClock:
    """Seconds of training so far: virtual (``vt``, advanced by the run loop with each
    iteration's modelled time) or wall (``wall()`` since :meth:`start`, plus ``t_offset``,
    the wall time spent before a resume). Built first, so that everything that reads the
    run's time (the coordinator, the event loop's wall clock, the run loop, its hooks) is
    handed it at construction.

    Parameters
    ----------
    wall : callable or None
        Seconds of a monotonic clock (``time.perf_counter``), or None for virtual time.
    """

    def __init__(self, wall=None):
        self.wall = wall
        self.vt = 0.0          # virtual time
        self.t_offset = 0.0    # wall time of the run before a resume
        self.clock0 = time.perf_counter()

    @property
    def virtual(self) -> bool:
        return self.wall is None

    def start(self) -> None:
        """Training starts (again) now: the wall clock counts from here."""
        self.clock0 = time.perf_counter()

    def now(self) -> float:
        """Seconds of training so far on the run's clock (virtual or wall)."""
        if self.wall is None:
            return self.vt
        return self.wall() - self.clock0 + self.t_offset


class VirtualClock:
    """Time is what the models say: the loop jumps to the next event at once."""

    virtual = True

    def start(self, t0: float) -> None:
        self.t0 = t0

    def wait_until(self, t_next: float, poll=None) -> float:
        if t_next == math.inf:
            raise RuntimeError("cannot decode and nothing is pending")
        return t_next


class WallClock:
    """Seconds since the iteration began on the run's wall clock (``now``: the run clock's).
    The event loop hands :meth:`wait_until` its receiver's ``poll()``, which handles every
    waiting message and returns True if there was one; ``stop()`` returns True when a stop
    was requested (the loop then raises)."""

    virtual = False

    def __init__(self, now, stop=lambda: False):
        self.now_abs, self.stop = now, stop
        self.backoff = Backoff()
        self.t0 = 0.0

    def start(self, t0: float) -> None:
        self.t0 = t0
        self.backoff.reset()

    def now(self) -> float:
        return self.now_abs() - self.t0

    def wait_until(self, t_next: float, poll=None) -> float:
        """Return the time now, once a message came in (``poll()`` True) or ``t_next`` is
        reached (whichever first); sleeps at most until ``t_next``."""
        if self.stop():
            raise Interrupted
        if poll is not None and poll():
            self.backoff.reset()
            return self.now()
        t = self.now()
        if t < t_next:
            self.backoff.sleep(None if t_next == math.inf else t_next - t)
            t = self.now()
        else:
            self.backoff.reset()
        return t

"""Two-stage's seconds per partition within an iteration, and the predicted finish of a task.

The speed estimates of the iteration (:meth:`TwoStage.speeds`: the history, shrunk by its
reliability) are fixed once it begins; a worker one of whose tasks arrived (or whose running
task was cut short: a lower bound) has this iteration's *measured* rate instead. Without any
history (the first iteration), a worker not measured yet gets the mean of the measured ones
(1 s a partition before any).

Everything here is O(1) per measure and per look-up: the rates are kept up to date as a list,
and the mean of the measured rates as an exact sum (so the mean is the correctly rounded one,
whatever the order of the measures), never recomputed over the N workers.
"""

from __future__ import annotations

import math

import numpy as np

from mpicode.schemes.base import Task

_SCALE = 1074  # every finite double is an integer multiple of 2**-1074


def _scaled(x: float) -> int:
    """x * 2**1074 as an exact integer."""
    p, q = x.as_integer_ratio()
    return p << (_SCALE - q.bit_length() + 1)


class Rates:
    """This iteration's seconds per partition of every worker (pure).

    Parameters
    ----------
    speeds : numpy.ndarray
        The iteration's estimates (not modified).
    history : bool
        Some worker has an estimate (else the unmeasured get the measured ones' mean).
    """

    def __init__(self, speeds: np.ndarray, history: bool):
        self.history = history
        self.speeds = speeds
        self.tl: list[float] = speeds.tolist()  # with history: every worker's rate
        self.now: list[float] = [math.nan] * len(self.tl)  # measured in this iteration
        self.changed: list[int] = []      # workers whose rate changed (IdlePool's heap)
        self._sum = 0                     # no history: exact sum of the measured rates
        self._n = 0
        self.mean = math.nan              # ... and their mean (NaN before any)

    def measured(self, w: int) -> bool:
        r = self.now[w]
        return r == r

    def measure(self, w: int, rate: float) -> None:
        old = self.now[w]
        self.now[w] = rate
        self.changed.append(w)
        if self.history:
            self.tl[w] = rate
            return
        if old == old:
            self._sum -= _scaled(old)
        else:
            self._n += 1
        self._sum += _scaled(rate)
        self.mean = self._sum / (self._n << _SCALE)  # correctly rounded

    def rate(self, w: int) -> float:
        """Worker w's seconds per partition now."""
        if self.history:
            return self.tl[w]
        r = self.now[w]
        if r == r:
            return r
        return self.mean if self._n else self.tl[w]

    def take(self, workers) -> np.ndarray:
        """The rates of ``workers`` as an array."""
        rate = self.rate
        return np.array([rate(w) for w in workers], np.float64)

    def __getitem__(self, w) -> float:  # (shares.assign looks rates up by worker)
        return self.rate(int(w))


def predicted_finish(x: Task, t: float, rate: float, start: float | None = None) -> float:
    """Predicted finish of a pending task whose worker runs ``rate`` seconds a partition:
    from its start (dispatch, or the end of the task before it on its worker), or, overdue,
    as long again from now as it has run (with heavy tails an overdue worker is no closer
    to done)."""
    s = x.t_dispatch if start is None else max(start, x.t_dispatch)
    a = rate * x.n
    f = s + a
    return f if f >= t else t + max(a, t - s)

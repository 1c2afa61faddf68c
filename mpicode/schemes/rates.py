"""Two-stage's seconds per partition within an iteration, and the predicted finish of a task.

The speed estimates of the iteration (:meth:`TwoStage.speeds`: the history, shrunk by its
reliability) are fixed once it begins; a worker one of whose tasks arrived (or whose running
task was cut short: a lower bound) has this iteration's *measured* rate instead. Without any
history (the first iteration), a worker not measured yet gets the mean of the measured ones
(1 s a partition before any).
"""

from __future__ import annotations

import numpy as np

from mpicode.schemes.base import Task


class Rates:
    """This iteration's seconds per partition of every worker (pure)."""

    def __init__(self, speeds: np.ndarray, history: bool):
        self.speeds = speeds           # the iteration's estimates (not modified)
        self.history = history         # some worker has an estimate
        self.now = np.full(len(speeds), np.nan)  # measured in this iteration
        self._array: np.ndarray | None = None
        self._list: list[float] | None = None

    def measured(self, w: int) -> bool:
        return bool(np.isfinite(self.now[w]))

    def measure(self, w: int, rate: float) -> None:
        self.now[w] = rate
        self._array = self._list = None

    def array(self) -> np.ndarray:
        """Every worker's rate (cached until a rate is measured: do not modify)."""
        if self._array is None:
            tau = self.speeds.copy()
            ok = np.isfinite(self.now)
            if not self.history and ok.any():  # no history: this iteration's mean
                tau[:] = self.now[ok].mean()
            tau[ok] = self.now[ok]
            self._array = tau
        return self._array

    def list(self) -> list[float]:
        """:meth:`array` as Python floats (a numpy scalar per look-up is 10x slower)."""
        if self._list is None:
            self._list = self.array().tolist()
        return self._list


def predicted_finish(x: Task, t: float, tau, start: float | None = None) -> float:
    """Predicted finish of a pending task: its rate from its start (dispatch, or the end of
    the task before it on its worker), or, overdue, as long again from now as it has run
    (with heavy tails an overdue worker is no closer to done)."""
    s = x.t_dispatch if start is None else max(start, x.t_dispatch)
    f = s + tau[x.worker] * x.n
    return f if f >= t else t + max(tau[x.worker] * x.n, t - s)

"""A warning, once per run, when the training loss diverges: non-finite, or above 100x the
loss of the zero model (log 2 for logistic, log C for softmax, mean(y^2)/2 for least squares;
the first evaluated loss of an unscaled import is already past that). It names the likely
cause: unscaled features (re-import the dataset with ``mpicode data import ...
--standardize``) or a learning rate too large. The hard stop on a non-finite loss is the run
loop's; this only explains. Rank 0 (or the simulator) only."""

from __future__ import annotations

import math
import sys

import numpy as np

GROWTH = 100.0  # loss above GROWTH x the zero model's loss: diverging
UNSCALED = 100.0  # a feature column with a standard deviation above this is "not scaled"


class DivergenceWatch:
    def __init__(self, problem, w):
        self.problem = problem
        self.w0 = np.zeros_like(w) if problem is not None and w is not None else None
        self.base: float | None = None
        self.warned = False

    def prepare(self) -> None:
        """Evaluate the zero model's loss now (the reference of :meth:`check`) rather than
        at the first check, inside a timed row."""
        if self.base is None and self.w0 is not None:
            self.base = float(self.problem.evaluate(self.w0)["loss"])

    def check(self, it: int, row: dict) -> str | None:
        """The warning (also printed to stderr) the first time the loss diverges, else None.
        The loss is rank 0's evaluation, else (not evaluated) the workers' ``train_loss``."""
        loss = row.get("loss")
        if loss is None or (isinstance(loss, float) and math.isnan(loss)):
            loss = row.get("train_loss")
        if self.warned or loss is None or self.w0 is None:
            return None
        loss = float(loss)
        if self.base is None:
            self.base = float(self.problem.evaluate(self.w0)["loss"])
        if not math.isfinite(loss):  # the run loop stops with one line (and this hint)
            return None
        if not loss > GROWTH * self.base:
            return None
        self.warned = True
        msg = (f"mpicode: warning: training diverges: loss {loss:.3g} at iteration {it} "
               f"(the zero model's is {self.base:.3g}); {self.hint()}")
        print(msg, file=sys.stderr, flush=True)
        return msg

    def hint(self) -> str:
        X = getattr(self.problem, "X", None)
        if X is not None and X.size:
            sd = float(np.max(np.std(X, axis=0)))
            if sd > UNSCALED:
                return (f"the features are not standardized (largest column std {sd:.3g}): "
                        "re-import the dataset with mpicode data import ... --standardize, "
                        "or use a much smaller --lr")
        return "use a smaller --lr"

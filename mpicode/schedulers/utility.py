"""Utilities of the communication phase (docs/design.md §4): concave U, the auxiliary argmax,
Jain's fairness index.

U is applied to rates **measured in messages** (per slot, or per offered message), never in
bytes, so V does not depend on the gradient's size.

* ``alpha-fair``: U(x) = x^(1-a) / (1-a) (a != 1), log x at a = 1; a -> inf is max-min fair.
* ``log``: U(x) = log x (proportional fairness, alpha-fair with a = 1).
* ``log1p``: U(x) = log(1 + x), finite at 0 (no worker is forced to get a positive rate).

Each utility gives the closed form of the auxiliary decision of item 1,
``gamma = argmax_{0 <= x <= x_max} V*U(x) - Z*x``: the unconstrained maximiser solves
V*U'(x) = Z, then it is clipped to [0, x_max].
"""

from __future__ import annotations

import numpy as np


class Utility:
    """A concave, increasing utility of a rate in messages."""

    name = "base"

    def value(self, x):
        raise NotImplementedError

    def deriv(self, x):
        raise NotImplementedError

    def inv_deriv(self, w):
        """x with U'(x) = w (w > 0), as an array; inf where U' never gets that small."""
        raise NotImplementedError

    def gamma(self, Z, V, x_max):
        """argmax over 0 <= x <= x_max of V*U(x) - Z*x, elementwise (auxiliary variable)."""
        Z = np.asarray(Z, float)
        x_max = np.broadcast_to(np.asarray(x_max, float), Z.shape)
        if V <= 0:
            return np.zeros_like(Z)
        with np.errstate(divide="ignore"):
            x = self.inv_deriv(Z / V)  # Z = 0 -> inf -> clipped to x_max
        return np.clip(x, 0.0, x_max)

    def __call__(self, x):
        return self.value(x)


class AlphaFair(Utility):
    name = "alpha-fair"

    def __init__(self, alpha: float = 4.0):
        if alpha <= 0:
            raise ValueError("alpha must be > 0")
        self.alpha = float(alpha)

    def value(self, x):
        x = np.asarray(x, float)
        a = self.alpha
        with np.errstate(divide="ignore"):
            if a == 1.0:
                return np.log(x)
            return np.power(x, 1.0 - a) / (1.0 - a)

    def deriv(self, x):
        with np.errstate(divide="ignore"):
            return np.power(np.asarray(x, float), -self.alpha)

    def inv_deriv(self, w):
        with np.errstate(divide="ignore"):
            return np.power(np.asarray(w, float), -1.0 / self.alpha)


class Log(AlphaFair):
    name = "log"

    def __init__(self):
        super().__init__(1.0)


class Log1p(Utility):
    name = "log1p"

    def value(self, x):
        return np.log1p(np.asarray(x, float))

    def deriv(self, x):
        return 1.0 / (1.0 + np.asarray(x, float))

    def inv_deriv(self, w):
        with np.errstate(divide="ignore"):
            return np.maximum(1.0 / np.asarray(w, float) - 1.0, 0.0)


def make_utility(name: str = "alpha-fair", alpha: float = 4.0) -> Utility:
    if name == "alpha-fair":
        return AlphaFair(alpha)
    if name == "log":
        return Log()
    if name == "log1p":
        return Log1p()
    raise ValueError(f"unknown utility {name!r} (alpha-fair, log, log1p)")

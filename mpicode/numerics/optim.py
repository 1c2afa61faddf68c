"""Optimizers of rank 0 (and of the simulator): pure numpy, no MPI, checkpointable.

``--optimizer gd|momentum|nesterov|adam`` (see :func:`make_optimizer`). Each optimizer has
``step(w, grad, out=None) -> w`` (a new array, or ``out`` for ``gd``; ``w`` is not modified)
and ``state_dict()`` / ``load_state_dict()`` whose values are plain numbers and float64
arrays, so a checkpoint stores them in HDF5 without pickle and a resumed run continues bit
for bit. ``grad`` is the
full gradient the decode produced (L2 term included, see ``Problem.gradient``).

Updates (``g`` the gradient, ``lr`` the learning rate):

* ``gd``: ``w - lr g``;
* ``momentum`` (heavy ball): ``v = mu v + g``, ``w - lr v``;
* ``nesterov``: ``v = mu v + g``, ``w - lr (g + mu v)`` (the look-ahead form of PyTorch and
  of the gradient-coding reference's accelerated method);
* ``adam``: ``m = b1 m + (1-b1) g``, ``s = b2 s + (1-b2) g^2``, ``t += 1``,
  ``w - lr (m / (1-b1^t)) / (sqrt(s / (1-b2^t)) + eps)``.
"""

from __future__ import annotations

import numpy as np

OPTIMIZERS = ("gd", "momentum", "nesterov", "adam")


class GD:
    name = "gd"

    def __init__(self, lr: float):
        self.lr = float(lr)

    def step(self, w: np.ndarray, grad: np.ndarray, out: np.ndarray | None = None):
        """``w - lr grad``; into ``out`` when given (not ``w`` or ``grad``; no allocation:
        rank 0 at 10^6 parameters), with the same values."""
        if out is None:
            return w - self.lr * grad
        np.multiply(grad, self.lr, out=out)
        return np.subtract(w, out, out=out)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Momentum(GD):
    name = "momentum"
    nesterov = False

    def __init__(self, lr: float, dim: int, momentum: float = 0.9):
        super().__init__(lr)
        self.mu = float(momentum)
        self.v = np.zeros(int(dim))

    def step(self, w, grad, out=None):  # (a new array: ``out`` is GD's)
        self.v *= self.mu
        self.v += grad
        if self.nesterov:
            return w - self.lr * (grad + self.mu * self.v)
        return w - self.lr * self.v

    def state_dict(self):
        return {"v": self.v.copy()}

    def load_state_dict(self, state):
        if "v" in state:
            self.v = np.array(state["v"], np.float64).reshape(self.v.shape)


class Nesterov(Momentum):
    name = "nesterov"
    nesterov = True


class Adam(GD):
    name = "adam"

    def __init__(self, lr: float, dim: int, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        super().__init__(lr)
        self.b1, self.b2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = np.zeros(int(dim))
        self.s = np.zeros(int(dim))
        self.t = 0

    def step(self, w, grad, out=None):  # (a new array: ``out`` is GD's)
        self.t += 1
        self.m *= self.b1
        self.m += (1.0 - self.b1) * grad
        self.s *= self.b2
        self.s += (1.0 - self.b2) * (grad * grad)
        mhat = self.m / (1.0 - self.b1 ** self.t)
        shat = self.s / (1.0 - self.b2 ** self.t)
        return w - self.lr * mhat / (np.sqrt(shat) + self.eps)

    def state_dict(self):
        return {"m": self.m.copy(), "s": self.s.copy(), "t": int(self.t)}

    def load_state_dict(self, state):
        if "m" in state:
            self.m = np.array(state["m"], np.float64).reshape(self.m.shape)
            self.s = np.array(state["s"], np.float64).reshape(self.s.shape)
            self.t = int(state["t"])


def make_optimizer(cfg, dim: int):
    """The optimizer ``cfg`` names (``gd`` when the configuration predates the option)."""
    name = getattr(cfg, "optimizer", "gd") or "gd"
    if name == "gd":
        return GD(cfg.lr)
    if name in ("momentum", "nesterov"):
        cls = Momentum if name == "momentum" else Nesterov
        return cls(cfg.lr, dim, momentum=cfg.momentum)
    if name == "adam":
        return Adam(cfg.lr, dim, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps)
    raise ValueError(f"unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})")

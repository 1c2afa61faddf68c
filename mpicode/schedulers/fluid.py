"""Fluid (time-average) optima of the shared uplink, for benchmarks and tests.

On a channel realisation R (slots x workers, bytes/slot) the TDMA capacity region is
Lambda = {x : x_i = mean_s R_i(s) phi_i(s), phi(s) in the simplex}: any time-sharing of each
slot, chosen knowing the slot's rates. Its support function is E max_i w_i R_i(s), and the
optimal policies for any weighted objective rank workers by w_i R_i(s). Both solvers below
find such weights by minimising the dual with the ranking smoothed by a softmax (so rates move
continuously with w; damped Newton with the smoothing shrunk step by step) and bound the
answer from both sides:

* :func:`max_equal_rate`: c* = max{c : (c, ..., c) in Lambda}, the largest rate every worker
  can get at once (lower bound: the smallest rate of a feasible policy; upper bound:
  E max_i w_i R_i / sum w for any w >= 0);
* :func:`fluid_optimum`: max sum_i U(x_i) over x in Lambda, x <= lam (lower bound: a feasible
  policy's utility; upper bound: the Lagrange dual
  E max_i w_i R_i + sum_i sup_{0 <= x <= lam_i} (U(x) - w_i x)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _softmax(R: np.ndarray, w: np.ndarray, tau: float):
    """Per-slot shares softmax(w_i R_i / tau) and tau * mean log-sum-exp (smoothed support)."""
    a = R * w / tau
    m = a.max(axis=1, keepdims=True)
    a -= m
    np.exp(a, out=a)
    z = a.sum(axis=1, keepdims=True)
    a /= z
    return a, tau * float(np.mean(m[:, 0] + np.log(z[:, 0])))


def _support(R: np.ndarray, w: np.ndarray) -> float:
    return float(np.max(R * w, axis=1).mean())


@dataclass
class FluidResult:
    x: np.ndarray          # rates of the best feasible policy found
    lower: float           # objective of x (feasible): a lower bound of the optimum
    upper: float           # dual bound: an upper bound of the optimum
    w: np.ndarray          # the weights (optimal policy: argmax_i w_i R_i(s))

    @property
    def value(self) -> float:
        return 0.5 * (self.lower + self.upper)


def _newton(R, w, phi, tau_steps, equality=False, inner=30):
    """Minimise tau*E[LSE(w R / tau)] + phi(w) over w > 0 (and sum w = 1 if ``equality``) by
    damped Newton, for each tau in ``tau_steps`` (relative to the support's scale).
    ``phi(w) -> (value, gradient, hessian diagonal)``. Yields (w, shares) after each tau."""
    N = R.shape[1]
    for rel in tau_steps:
        tau = rel * _support(R, w)

        def f(w, tau=tau):
            p, v = _softmax(R, w, tau)
            pv, pg, ph = phi(w)
            return v + pv, p, pg, ph

        fv, p, pg, ph = f(w)
        for _ in range(inner):
            Rp = R * p
            g = Rp.mean(axis=0) + pg
            H = (np.diag((R * Rp).mean(axis=0)) - Rp.T @ Rp / len(R)) / tau + np.diag(ph)
            H += np.eye(N) * 1e-12 * max(np.trace(H), 1e-300)
            if equality:
                K = np.zeros((N + 1, N + 1))
                K[:N, :N] = H
                K[:N, N] = K[N, :N] = 1.0
                step = -np.linalg.solve(K, np.concatenate([g, [0.0]]))[:N]
            else:
                step = -np.linalg.solve(H, g)
            dec = -float(g @ step)
            if dec <= 1e-13 * max(abs(fv), 1e-300):
                break
            t = 1.0
            while np.any(w + t * step <= 0):
                t *= 0.5
            while True:
                wn = w + t * step
                fn, pn, pgn, phn = f(wn)
                if fn <= fv - 0.25 * t * dec or t < 1e-10:
                    break
                t *= 0.5
            w, fv, p, pg, ph = wn, fn, pn, pgn, phn
        yield w, p


TAUS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)


def max_equal_rate(R: np.ndarray, tol: float = 1e-4) -> FluidResult:
    """c*: the largest rate all workers can get at once on realisation R (same unit as R)."""
    R = np.asarray(R, float)
    N = R.shape[1]
    scale = float(R.mean())
    Rn = R / scale
    w = 1.0 / np.maximum(Rn.mean(axis=0), 1e-12)
    w /= w.sum()
    best = FluidResult(np.zeros(N), 0.0, np.inf, w.copy())
    zero = (0.0, np.zeros(N), np.zeros(N))
    for wk, p in _newton(Rn, w, lambda _: zero, TAUS, equality=True):
        x = (Rn * p).mean(axis=0) * scale
        if x.min() > best.lower:
            best.x, best.lower, best.w = x, float(x.min()), wk.copy()
        best.upper = min(best.upper, _support(Rn, wk) / wk.sum() * scale)
        if best.upper - best.lower <= tol * best.upper:
            break
    return best


def fluid_optimum(R: np.ndarray, utility, lam=None, tol: float = 1e-6) -> FluidResult:
    """max sum_i U(x_i) over the capacity region of R, with x_i <= lam_i (rates in the unit U
    is applied to: pass R / message size for messages per slot)."""
    R = np.asarray(R, float)
    S, N = R.shape
    lam = np.full(N, np.inf) if lam is None else np.broadcast_to(np.asarray(lam, float), (N,))
    c = np.minimum(lam, R.mean(axis=0))  # no worker can get more than its mean rate

    def demand(w):
        with np.errstate(divide="ignore", over="ignore"):
            return np.clip(utility.inv_deriv(w), 0.0, c)

    def phi(w):
        d = demand(w)
        h = 1e-4
        dd = (demand(w * (1 + h)) - demand(w * (1 - h))) / (2 * h * w)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = float(np.sum(utility.value(d) - w * d))
        return v, -d, -dd

    def dual(w):
        return _support(R, w) + phi(w)[0]

    x0 = np.minimum(max_equal_rate(R, tol=1e-2).lower, c)
    w = utility.deriv(np.maximum(x0, 1e-12))
    best = FluidResult(np.zeros(N), -np.inf, np.inf, w.copy())
    for wk, p in _newton(R, w, phi, TAUS):
        x = np.minimum((R * p).mean(axis=0), lam)
        with np.errstate(divide="ignore"):
            lo = float(np.sum(utility.value(x)))
        if lo > best.lower:
            best.x, best.lower, best.w = x, lo, wk.copy()
        best.upper = min(best.upper, dual(wk))
        if best.upper - best.lower <= tol * abs(best.upper):
            break
    return best


def time_sharing_equal_rate(mean_rates) -> float:
    """Equal rate reachable without opportunism: 1 / sum_i 1 / E[R_i]."""
    m = np.asarray(mean_rates, float)
    return float(1.0 / np.sum(1.0 / m))

"""``lyapunov``: perturbed-Lyapunov admission and transmission with coding-aware admission
(docs/design.md §4, items 1-4).

Units: Q_i and theta are bytes; Z_i, gamma_i and the utility's argument are **messages** (a
message is ``unit`` bytes: the size of the first message offered, or ``unit_bytes``); so the
admission test compares Z_i*unit with Q_i - theta. Per slot s, with R_i = R_i(s):

1. gamma_i = argmax_{0 <= x <= x_max_i} V*U(x) - Z_i*x, with x_max_i = min(offered backlog of
   worker i in messages, x_cap) (nothing offered: gamma_i = 0, so Z does not grow for idle
   workers); x_cap = max_i E[R_i] / unit by default, no rate can exceed it;
2. admission: worker i's offered messages are admitted, oldest first, while
   Z_i*unit >= Q_i - theta (Q_i counting what was just admitted; at most ceil(x_cap) messages
   per slot); the others stay offered (deferred);
3. transmission: ranked by max(Q_i - theta, 0)*R_i; workers whose perturbed weight is 0 but
   have data come after, ranked by Q_i*R_i (so the link never idles while data waits and never
   serves them while a positive-weight worker has data); slot sharing is work-conserving
   (:meth:`Scheduler._serve`); under ``ofdma`` the top min(m, #positive) share the slot;
4. Q_i <- max(Q_i - mu_i, 0) + r_i (done by the bookkeeping), Z_i <- max(Z_i - r_i + gamma_i, 0)
   with r_i the messages admitted in the slot.

**Coding-aware admission** (with :meth:`set_decodable`): let C be the delivered and queued
messages, O the offered ones. If C + O decodes, the offered messages are visited from the
largest airtime (bytes / E[R_i]) down, and each one whose removal still leaves a decodable set
is held back, one per worker, provided the worker's **participation queue** P_i is empty.
P_i is a virtual queue per offered message: P_i <- max(P_i + p_min - a, 0) when the message
is resolved (a = 1 admitted, a = 0 dropped without admission). Holding back only when P_i = 0
keeps, at every point of the run, admitted >= p_min*resolved - p_min messages per worker
(P_i <= p_min): the long-run participation floor. Held-back messages stay offered and are
admitted as soon as they are needed again (C shrank by a drop) or the worker's P_i > 0.
P_i, like Z_i, is never reset between iterations.

Z and P are separate because they answer different questions: Z_i measures congestion
fairness (rate of admitted messages against the utility's target, item 1), which in the
gradient regime stays at 0 since every message is admitted at once; P_i measures how often
worker i was left out by coding, which a utility of rates cannot pin to a floor.
"""

from __future__ import annotations

import math

import numpy as np

from mpicode.options import Option, finite_float, nonneg, positive, unit_closed
from mpicode.registry import register_scheduler
from mpicode.schedulers.base import Scheduler, SlotResult
from mpicode.schedulers.utility import make_utility

EPS = 1e-9


@register_scheduler
class Lyapunov(Scheduler):
    name = "lyapunov"
    options = (
        Option("theta", finite_float, 0.0, "lyapunov: queue perturbation theta (bytes)",
               check=nonneg, group="comm"),
        Option("V", finite_float, 64.0, "lyapunov: utility weight V", check=nonneg,
               group="comm"),
        Option("utility", str, "alpha-fair", "lyapunov: utility of admitted messages",
               choices=("alpha-fair", "log", "log1p"), group="comm"),
        Option("alpha", finite_float, 4.0, "alpha-fair utility exponent", check=positive,
               group="comm"),
        Option("min_participation", finite_float, 0.85,
               "coding-aware admission: long-run participation floor per worker",
               check=unit_closed, group="comm"),
        Option("queue_weights", str, "bytes",
               "lyapunov: weigh a data queue by its bytes (the design) or by the airtime it "
               "needs (bytes / E[R_i])", choices=("bytes", "airtime"), group="comm"),
    )
    STATE = Scheduler.STATE + ("P", "gamma", "_r")

    def __init__(self, n_workers, channel, *, V: float = 64.0, theta: float = 0.0,
                 utility: str = "alpha-fair", alpha: float = 4.0,
                 min_participation: float = 0.85, x_max: float | None = None,
                 unit_bytes: float | None = None, queue_weights: str = "bytes", **kw):
        super().__init__(n_workers, channel, **kw)
        if V < 0 or theta < 0:
            raise ValueError("V and theta must be >= 0")
        self.V = float(V)
        self.theta = float(theta)
        self.U = make_utility(utility, alpha)
        self.p_min = float(min_participation)
        self._x_cap = x_max
        if unit_bytes is not None:
            self.unit = float(unit_bytes)
        if queue_weights not in ("bytes", "airtime"):
            raise ValueError("queue_weights must be 'bytes' or 'airtime'")
        self.queue_weights = queue_weights
        # c_i of the Lyapunov function sum c_i Q_i^2 / 2: 1 (bytes), or mean(E[R]) / E[R_i]
        # (airtime: a queue weighs by the slots it needs to drain)
        self.c = (np.ones(self.N) if queue_weights == "bytes"
                  else self.mean_rate.mean() / self.mean_rate)
        self.P = np.zeros(self.N)
        self.gamma = np.zeros(self.N)
        self.held: set = set()   # msg_ids held back as redundant (coding-aware admission)
        self._r = np.zeros(self.N)

    @property
    def x_cap(self) -> float:
        if self._x_cap is not None:
            return float(self._x_cap)
        unit = self.unit or 1.0
        return max(1.0, float(self.mean_rate.max()) / unit)

    # ---- item 1: auxiliary variables ----------------------------------------------------
    def _before(self, R):
        unit = self.unit or 1.0
        xmax = self.offered_bytes.copy()
        for mid in self.held:
            m = self.msgs.get(mid)
            if m is not None:
                xmax[m.worker] -= m.nbytes
        if not (xmax > 0).any():
            self.gamma = np.zeros(self.N)
            return
        xmax /= unit
        np.minimum(xmax, self.x_cap, out=xmax)
        self.gamma = np.where(xmax > 0, self.U.gamma(self.Z, self.V, xmax), 0.0)

    # ---- item 2: admission ------------------------------------------------------------------
    def _admit(self, out: SlotResult):
        if self.decodable is not None and self._dirty:
            self.held = self._plan_holds()
        self._dirty = False
        unit = self.unit or 1.0
        cap = max(1, math.ceil(self.x_cap))
        self._r[:] = 0.0
        for i in range(self.N):
            q = self.offered_q[i]
            if not q:
                continue
            n = 0
            skipped = []
            while q and n < cap:
                msg = q[0]
                if msg.msg_id in self.held:
                    msg.deferred = True
                    skipped.append(q.popleft())
                    continue
                if self.Z[i] * unit < self.c[i] * (self.Q[i] - self.theta):
                    break
                q.popleft()
                self._admit_msg(msg, out)
                self._r[i] += msg.nbytes / unit
                n += 1
            q.extendleft(reversed(skipped))
        if out.admitted:
            self._dirty = True

    def _plan_holds(self) -> set:
        """Offered messages to hold back as redundant (see the module docstring)."""
        offered = [m for q in self.offered_q for m in q]
        if not offered:
            return set()
        base = set(self.delivered_ids)
        for q in self.queued_q:
            base.update(m.msg_id for m in q)
        cand = {m.msg_id for m in offered}
        if not self.decodable(base | cand):
            return set()
        held, workers = set(), set()
        for m in sorted(offered, key=lambda m: -m.remaining / self.mean_rate[m.worker]):
            if m.worker in workers or self.P[m.worker] > EPS:
                continue
            if self.decodable(base | (cand - held - {m.msg_id})):
                held.add(m.msg_id)
                workers.add(m.worker)
        return held

    def _resolve(self, msg, admitted):
        super()._resolve(msg, admitted)
        self.P[msg.worker] = max(self.P[msg.worker] + self.p_min - (1.0 if admitted else 0.0),
                                 0.0)
        if not admitted:
            self.held.discard(msg.msg_id)

    # ---- item 3: transmission -----------------------------------------------------------------
    def weights(self, R) -> np.ndarray:
        """Perturbed weights c_i * max(Q_i - theta, 0) * R_i(s)."""
        pos = self.Q > self.theta
        with np.errstate(invalid="ignore"):
            return np.where(pos, self.c * (self.Q - self.theta) * R, 0.0)

    def _order(self, R):
        has = self.Q > 0
        if not has.any():
            return [], 1
        if self.theta == 0 and np.isfinite(R).all():
            # the common case in one stable sort (a slot step is rank 0's time on the wall
            # clock): with theta = 0 the weight is c*Q*R for every worker with data, and the
            # fallback's key for the rest (R = 0) is the same, so the order is the same
            idx = np.flatnonzero(has)
            w = self.c[idx] * self.Q[idx] * R[idx]
            order = idx[np.argsort(-w, kind="stable")].tolist()
            n_pos = int(np.count_nonzero(w > 0))
        else:
            w = self.weights(R)
            ip = np.flatnonzero(w > 0)
            order = ip[np.argsort(-w[ip], kind="stable")].tolist()
            n_pos = len(order)
            ir = np.flatnonzero(has & (w <= 0))
            if len(ir):
                with np.errstate(invalid="ignore"):
                    fb = self.c[ir] * self.Q[ir] * R[ir]
                order += ir[np.argsort(-fb, kind="stable")].tolist()
        if self.access != "ofdma":
            k = 1
        else:
            k = min(self.m, n_pos) if n_pos else self.m
        return order, k

    # ---- item 4: virtual queue ----------------------------------------------------------------
    def _after(self, R, out, sent):
        self.Z = np.maximum(self.Z - self._r + self.gamma, 0.0)

    def stats(self):
        d = super().stats()
        d["P"] = self.P.copy()
        return d

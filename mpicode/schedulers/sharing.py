"""How one slot's capacity is shared among the workers a policy put in order (pure).

The policy (:meth:`Scheduler._order`) ranks the workers and says how many share first (k);
the access mode says what a slot is:

* :func:`share_airtime` (``tdma``, ``ofdma``): one radio, shared in *time*. The first ``k``
  workers get 1/k of the slot each and send at their own rate R_i(s) during it; time a worker
  cannot fill (its queue is shorter than its share) is pooled and goes to the next workers in
  order. Capacity region: sum_i x_i / R_i <= 1.
* :func:`share_wired` (``wired``): links of their own into a shared bottleneck (a switch port
  into rank 0's node). In one slot every worker may send up to its own rate R_i(s), and all
  together at most ``capacity`` bytes; the first ``k`` share the capacity equally, what they
  leave goes to the next workers in order. Capacity region: x_i <= R_i, sum_i x_i <= capacity.

Both are work-conserving and return whole bytes per worker (an N-vector).
"""

from __future__ import annotations

import math

import numpy as np


def share_airtime(elig: list[int], k: int, Q: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Bytes each eligible worker (data waiting, a positive rate; in the policy's order)
    sends when the slot is shared in time."""
    sent = np.zeros(len(Q))
    if not elig:
        return sent
    rem = {i: Q[i] for i in elig}

    def take(i, share):  # bytes sent and slot fraction used by worker i given ``share``
        if not math.isfinite(R[i]):
            b = rem[i]
            rem[i] = 0.0
            return b, 0.0
        cap = math.floor(share * R[i] + 1e-9)
        if cap < 1:  # not even one byte fits: leave the time to the others
            return 0, 0.0
        b = min(rem[i], cap)
        rem[i] -= b
        return b, (b / R[i] if b < cap else share)

    k = max(1, min(k, len(elig)))
    pool = 0.0
    for i in elig[:k]:
        b, used = take(i, 1.0 / k)
        sent[i] += b
        pool += 1.0 / k - used
    for i in elig:
        if pool <= 1e-12:
            break
        if rem[i] > 0:
            b, used = take(i, pool)
            sent[i] += b
            pool -= used
    return sent


def _whole(x: float) -> float:
    """Whole bytes (an unlimited amount stays unlimited)."""
    return float(math.floor(x + 1e-9)) if math.isfinite(x) else x


def share_wired(elig: list[int], k: int, Q: np.ndarray, R: np.ndarray,
                capacity: float) -> np.ndarray:
    """Bytes each eligible worker sends when every worker has its own link of rate R_i and
    all share ``capacity`` bytes per slot."""
    sent = np.zeros(len(Q))
    if not elig:
        return sent
    room = {i: _whole(min(Q[i], R[i])) for i in elig}
    left = float(capacity)
    k = max(1, min(k, len(elig)))
    share = _whole(left / k)
    for i in elig[:k]:
        b = min(room[i], share)
        sent[i] += b
        left -= b
    for i in elig:
        if left < 1:
            break
        b = min(room[i] - sent[i], _whole(left))
        if b > 0:
            sent[i] += b
            left -= b
    return sent

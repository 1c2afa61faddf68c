"""Integer shares and data placement, shared by ``speed-aware`` and ``two-stage``."""

from __future__ import annotations

import math

import numpy as np

from mpicode.errors import UsageError
from mpicode.options import Option


def largest_remainder(total: int, weights, minimum: int = 1) -> np.ndarray:
    """Split ``total`` units in proportion to ``weights``, every entry at least ``minimum``.

    The floor is met by water-filling: entries whose proportional share would fall below
    ``minimum`` are pinned to it and the rest is re-split among the others, so a very slow
    worker does not steal rounding units from the fast ones. The integer parts then follow
    the largest-remainder (Hamilton) rule, ties broken by index. When ``total`` is smaller
    than ``minimum * len(weights)`` the floor cannot hold and is dropped (plain rounding).

    Parameters
    ----------
    total : int
        Units to split (partitions), >= 0.
    weights : array_like
        Positive weights (speeds 1/tau).
    minimum : int
        Floor of every share while ``total >= minimum * len(weights)``.

    Returns
    -------
    numpy.ndarray
        int64 shares summing exactly to ``total``.
    """
    w = np.asarray(weights, dtype=np.float64)
    n = len(w)
    if n == 0:
        if total:
            raise ValueError("cannot split a positive total among nobody")
        return np.zeros(0, np.int64)
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"weights must be finite and positive, got {w}")
    if total < minimum * n:
        minimum = 0
    pinned = np.zeros(n, bool)
    while True:
        free = ~pinned
        rest = total - minimum * pinned.sum()
        quota = np.zeros(n)
        quota[free] = rest * w[free] / w[free].sum()
        low = free & (quota < minimum)
        if not low.any():
            break
        pinned |= low
    counts = np.where(pinned, minimum, np.floor(quota)).astype(np.int64)
    left = total - int(counts.sum())
    frac = np.where(pinned, -1.0, quota - np.floor(quota))
    order = np.lexsort((np.arange(n), -frac))  # largest remainder first, then lowest index
    counts[order[:left]] += 1
    return counts


def shrink(tau: np.ndarray, reliability: float) -> np.ndarray:
    """Speed estimates pulled toward their geometric mean: log tau' = m + c (log tau - m),
    c = ``reliability`` in [0, 1] (NaN: unknown yet, kept as they are)."""
    if not np.isfinite(reliability) or reliability >= 1 or len(tau) < 2:
        return tau
    lt = np.log(tau)
    m = lt.mean()
    return np.exp(m + max(0.0, reliability) * (lt - m))


def update_reliability(old: float, before: np.ndarray, measured: np.ndarray,
                       weight: float = 0.5) -> float:
    """Smoothed correlation (clipped to [0, 1]) of the log estimates ``before`` an iteration
    with the log speeds measured in it, over the workers with both; ``old`` if fewer than
    3 such workers or no spread."""
    ok = np.isfinite(before) & np.isfinite(measured) & (before > 0) & (measured > 0)
    n = int(np.count_nonzero(ok))
    if n < 3:
        return old
    c = correlation(np.log(before[ok]), np.log(measured[ok]))
    if c is None:
        return old
    c = min(max(c, 0.0), 1.0)
    return c if not np.isfinite(old) else (1 - weight) * old + weight * c


def measured_rates(tasks, n_workers: int) -> np.ndarray:
    """Per worker, this iteration's seconds per partition over its arrived tasks (NaN: none).
    (Sums on Python floats: the same values as in numpy, in task order.)"""
    busy, n = [0.0] * n_workers, [0.0] * n_workers
    for x in tasks:
        if x.state == "done" and x.n and math.isfinite(x.duration):
            busy[x.worker] += x.duration
            n[x.worker] += x.n
    busy, n = np.array(busy), np.array(n)
    out = np.full(n_workers, np.nan)
    out[n > 0] = busy[n > 0] / n[n > 0]
    return out


def correlation(a: np.ndarray, b: np.ndarray, spread: float = 1e-12) -> float | None:
    """Pearson's r of two vectors, bit for bit ``np.corrcoef(a, b)[0, 1]`` (the same
    centring, dot product and divisions) at a fifth of its cost (it runs on rank 0 every
    iteration); None if either standard deviation is below ``spread``."""
    X = np.empty((2, a.size))
    X[0], X[1] = a, b
    X -= X.mean(axis=1)[:, None]
    c = np.dot(X, X.T)
    n = a.size
    if math.sqrt(c[0, 0] / n) < spread or math.sqrt(c[1, 1] / n) < spread:
        return None
    f = 1.0 / (n - 1)
    r = float(c[0, 1] * f) / math.sqrt(float(c[0, 0] * f)) / math.sqrt(float(c[1, 1] * f))
    return min(max(r, -1.0), 1.0)


def contiguous(counts, start: int = 0) -> list[np.ndarray]:
    """Consecutive index ranges of the given lengths, starting at ``start``."""
    edges = start + np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return [np.arange(a, b, dtype=np.int64) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _placement_check(x):
    return None if x == "shared" or (x.startswith("replicated:") and x[11:].isdigit()
                                     and int(x[11:]) >= 1) \
        else "must be 'shared' or 'replicated:R' with R >= 1"


# the option of every scheme that honours data placement (speed-aware, two-stage)
PLACEMENT = Option("placement", str, "shared", "data placement: shared | replicated:R",
                   group="two-stage", check=_placement_check)


def check_placement_size(placement: str, n_workers: int) -> None:
    """The size check of ``--placement``: R <= N."""
    if placement.startswith("replicated:") and int(placement[11:]) > n_workers:
        raise UsageError(f"--placement {placement}: R must be <= number of workers "
                         f"{n_workers}")


class Placement:
    """Which workers hold which micro-partitions (docs/design.md §3, ``placement``).

    ``shared``: every worker can read every partition. ``replicated:R``: partition k lives on
    workers (b + j) mod N for j < R, with b = k*N // K its home block, as in Tandon's cyclic
    layout. :meth:`holders` lists them in that order, nearest home first: that is the order in
    which their windows of blocks end, which the greedy assignment below relies on.
    """

    def __init__(self, spec: str, n_workers: int, n_partitions: int):
        self.spec = spec or "shared"
        self.N, self.K = int(n_workers), int(n_partitions)
        if self.spec == "shared":
            self.R = self.N
            self.shared = True
        elif self.spec.startswith("replicated:") and self.spec[11:].isdigit():
            self.R = int(self.spec[11:])
            if not 1 <= self.R <= self.N:
                raise ValueError(f"placement {spec!r}: R must be in 1..{self.N}")
            self.shared = self.R == self.N
        else:
            raise ValueError(f"unknown placement {spec!r} (shared | replicated:R)")

    def holders(self, k: int) -> list[int]:
        if self.shared:
            return list(range(self.N))
        b = k * self.N // self.K
        return [(b + j) % self.N for j in range(self.R)]

    def holds(self, worker: int, k: int) -> bool:
        if self.shared:
            return True
        b = k * self.N // self.K
        return (worker - b) % self.N < self.R

    def survivors_for(self, parts, members) -> np.ndarray:
        """The members (boolean N-vector) that may compute all of ``parts`` after failures:
        those holding every one of them; if every holder failed, the R members nearest
        after the home block of the first partition, in cyclic order: they load the
        partitions from the dataset file (every rank can read it). Never empty while some
        member is."""
        alive = np.flatnonzero(np.asarray(members, bool))
        if self.shared or len(alive) == 0:
            return alive
        parts = np.asarray(parts, np.int64)
        b = parts * self.N // self.K                      # home blocks
        held = ((alive[:, None] - b[None, :]) % self.N < self.R).all(axis=1)
        if held.any():
            return alive[held]
        b0 = int(b[0]) if len(b) else 0
        order = sorted(alive.tolist(), key=lambda w: ((w - b0) % self.N, w))
        return np.asarray(order[:self.R], np.int64)


def add_holders(s1: set[int], order: list[int], placement: Placement) -> list[tuple[int, int]]:
    """Under replicated placement, add to the worker set ``s1`` (in place) the fastest live
    holder (earliest in ``order``, the live workers fastest first) of every partition that no
    worker of ``s1`` holds; the (partition, worker) pairs added. A partition with no live
    holder (every one failed) is skipped: the caller gives it to a survivor that loads it."""
    rank = {w: i for i, w in enumerate(order)}
    added = []
    for k in range(placement.K):
        hs = placement.holders(k)
        if any(h in s1 for h in hs):
            continue
        live = [h for h in hs if h in rank]
        if not live:
            continue
        h = min(live, key=rank.__getitem__)
        s1.add(h)
        added.append((k, h))
    return added


def to_loaders(orphans, parts: dict, tau, placement: Placement, live, notes: list) -> dict:
    """The partitions ``orphans`` (none of whose holders lives: they failed) added to the
    assignment ``parts`` (worker -> partitions), each to the one of the R ``live`` workers
    nearest after its home block that would finish first, ``(assigned + 1) * tau``: it
    loads them from the dataset file, as every rank can (a line each in ``notes``). Returns
    the assignment, each worker's partitions sorted."""
    for k in orphans:
        cands = placement.survivors_for([k], live).tolist()
        w = min(cands, key=lambda v: ((len(parts.get(v, ())) + 1) * tau[v], v))
        parts.setdefault(w, []).append(int(k))
        notes.append(f"stage 1: every holder of partition {k} failed; worker {w} loads it")
    return {w: sorted(p) for w, p in parts.items()}


def assign(parts, workers, quotas, tau, placement: Placement) -> dict[int, list[int]]:
    """Give each partition of ``parts`` to one worker of ``workers`` that holds it.

    Shared placement: ``parts`` are cut in order into consecutive runs of ``quotas`` along
    ``workers`` (contiguous ranges). Replicated placement: each partition goes to the first of
    its holders, nearest home first, that still has quota (earliest-deadline-first, which is
    optimal for interval-shaped holder sets); when every holder in ``workers`` has used its
    quota, to the holder that would then finish first, ``(assigned + 1) * tau``. A partition
    none of ``workers`` holds is left out (key ``-1``).

    Returns
    -------
    dict
        worker -> list of partitions (in the order of ``parts``); ``-1`` -> unassigned.
    """
    out: dict[int, list[int]] = {w: [] for w in workers}
    left = {w: int(q) for w, q in zip(workers, quotas, strict=True)}
    if placement.shared:
        i = 0
        parts = list(parts)
        for w in workers:
            out[w] = parts[i:i + left[w]]
            i += left[w]
        if i < len(parts):  # quotas short of the total: the rest by finish time
            for k in parts[i:]:
                w = min(workers, key=lambda v: ((len(out[v]) + 1) * tau[v], v))
                out[w].append(k)
        return out
    member = set(workers)
    for k in parts:
        hs = [h for h in placement.holders(k) if h in member]
        if not hs:
            out.setdefault(-1, []).append(k)
            continue
        for h in hs:
            if left[h] > 0:
                left[h] -= 1
                out[h].append(k)
                break
        else:
            h = min(hs, key=lambda v: ((len(out[v]) + 1) * tau[v], v))
            out[h].append(k)
    return out

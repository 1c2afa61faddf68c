"""``cyclic``: cyclic repetition gradient coding (Tandon et al., ICML 2017, Algorithm 2).

Worker i holds blocks i, i+1, ..., i+s (mod N) of the N equal blocks and sends
sum_j B[i, j] g_j. The rows of B span the null space of a random s x N matrix H whose rows
sum to zero, so the all-ones vector lies in the span of any N - s rows (with probability 1):
from any N - s messages the coordinator finds a with a^T B_F = 1 and sums a_i * message_i.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from mpicode.registry import register_scheme
from mpicode.schemes.base import Decoding, Scheme, multiple_of_workers


def tandon_cyclic_B(n: int, s: int, rng: np.random.Generator) -> np.ndarray:
    """Tandon et al.'s Algorithm 2: an n x n matrix with s+1 cyclic non-zeros per row.

    H is s x n Gaussian with its last column set so each row sums to zero (H @ 1 = 0). Row i of
    B has support {i, ..., i+s} (mod n), B[i, i] = 1, and the other s entries solve
    H[:, rest] x = -H[:, i], so H @ B[i] = 0: every row of B lies in null(H), an (n-s)-dim
    space that holds the all-ones vector.
    """
    if not 0 <= s < n:
        raise ValueError(f"cyclic needs 0 <= s < N, got s={s}, N={n}")
    H = rng.standard_normal((s, n))
    H[:, -1] = -H[:, :-1].sum(axis=1)
    B = np.zeros((n, n))
    for i in range(n):
        supp = (i + np.arange(s + 1)) % n
        B[i, supp[0]] = 1.0
        if s:
            B[i, supp[1:]] = np.linalg.solve(H[:, supp[1:]], -H[:, supp[0]])
    return B


def worst_decode_residual(B: np.ndarray, s: int) -> float:
    """max over every set F of N - s workers of |a^T B_F - 1| with a from least squares."""
    n = len(B)
    worst = 0.0
    for F in itertools.combinations(range(n), n - s):
        BF = B[list(F)]
        a, *_ = np.linalg.lstsq(BF.T, np.ones(n), rcond=None)
        worst = max(worst, float(np.abs(a @ BF - 1.0).max()))
    return worst


def conditioned_cyclic_B(n: int, s: int, seed: int, tries: int = 8,
                         max_work: float = 2e7) -> np.ndarray:
    """Algorithm 2, drawn up to ``tries`` times from a generator seeded by ``seed``, keeping
    the draw whose worst decode (over all N - s worker sets) is most accurate.

    Why: a single Gaussian draw is exact only in exact arithmetic. For N <= 12 a draw's worst
    residual |a^T B_F - 1| reached 1e-9 (s = 2) to 5e-9 (s = 6) over 30 seeds; the best of 8
    stayed below 6e-12. The search runs only while C(N, s) * N^3 <= ``max_work`` (one
    least-squares solve per worker set: about 0.1 s at N = 12, 0.4 s at N = 64, s = 1);
    beyond that the first draw is used as is.
    """
    rng = np.random.default_rng(seed)
    if math.comb(n, s) * n ** 3 > max_work:
        return tandon_cyclic_B(n, s, rng)
    best, best_err = None, math.inf
    for _ in range(tries):
        B = tandon_cyclic_B(n, s, rng)
        err = worst_decode_residual(B, s)
        if err < best_err:
            best, best_err = B, err
        if err < 1e-12:
            break
    return best


@register_scheme
class CyclicRepetition(Scheme):
    """Cyclic repetition code; ``B`` may be given (e.g. Tandon's worked example)."""

    name = "cyclic"

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        super().validate_size(cfg, n_workers, n_partitions)
        multiple_of_workers(cls.name, n_workers, n_partitions)

    def __init__(self, n_workers, n_partitions, *, B=None, **kw):
        super().__init__(n_workers, n_partitions, **kw)
        if self.K % self.N:
            raise ValueError(f"cyclic needs K={self.K} to be a multiple of N={self.N}")
        if not 0 <= self.s < self.N:
            raise ValueError(f"cyclic needs 0 <= s < N, got s={self.s}, N={self.N}")
        self.support = [(i + np.arange(self.s + 1)) % self.N for i in range(self.N)]
        if B is None:
            B = conditioned_cyclic_B(self.N, self.s, self.seed)
        B = np.array(B, dtype=np.float64)
        if B.shape != (self.N, self.N):
            raise ValueError(f"B must be {self.N} x {self.N}, got {B.shape}")
        for i, supp in enumerate(self.support):
            off = np.ones(self.N, bool)
            off[supp] = False
            if np.any(B[i, off] != 0):
                raise ValueError(f"row {i} of B is non-zero outside blocks {list(supp)}")
        self.B = B
        self.block = np.arange(self.K) // (self.K // self.N)  # block of each micro-partition
        self._a_cache: dict[frozenset, np.ndarray] = {}

    @classmethod
    def tandon_example(cls, n_partitions: int = 3, **kw) -> CyclicRepetition:
        """The published example: N = 3, s = 1, B = [[1/2, 1, 0], [0, 1, -1], [1/2, 0, 1]]."""
        B = [[0.5, 1.0, 0.0], [0.0, 1.0, -1.0], [0.5, 0.0, 1.0]]
        kw["tolerance"] = 1
        return cls(3, n_partitions, B=B, **kw)

    def plan(self):
        tasks = []
        for i, supp in enumerate(self.support):
            parts = np.concatenate([np.flatnonzero(self.block == b) for b in supp])
            tasks.append(self.new_task(i, 1, parts, coeffs=self.B[i, self.block[parts]]))
        return tasks

    def done(self):
        return len(self._arrived) >= self.N - self.s  # one task per worker

    def decodable_with(self, task_ids):
        workers = {self.tasks[i].worker for i in task_ids if i in self.tasks}
        return len(workers) >= self.N - self.s

    def coefficients(self, workers) -> np.ndarray:
        """a with a^T B_F = 1 for the worker set F (least squares, cached per F)."""
        F = frozenset(int(w) for w in workers)
        a = self._a_cache.get(F)
        if a is None:
            rows = sorted(F)
            BF = self.B[rows]
            a, *_ = np.linalg.lstsq(BF.T, np.ones(self.N), rcond=None)
            err = np.abs(a @ BF - 1.0).max()
            if err > 1e-8:
                shown = rows if len(rows) <= 12 else rows[:12] + ["..."]
                raise RuntimeError(f"cyclic: the {len(rows)} workers {shown} cannot decode "
                                   f"(residual {err:.2e}): B is too ill-conditioned at "
                                   f"N={self.N}")
            self._a_cache[F] = a
        return a

    def decode(self):
        got = sorted(self.arrived(), key=lambda t: (t.t_done, t.task_id))[: self.N - self.s]
        rows = sorted(t.worker for t in got)
        a = self.coefficients(rows)
        by_worker = {t.worker: t for t in got}
        for t in got:
            t.used = True
        return Decoding({by_worker[w].task_id: float(x) for w, x in zip(rows, a, strict=True)}, 1.0)

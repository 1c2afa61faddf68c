"""The learning problem: model + dataset + micro-partitions, shared by workers, the
coordinator, the simulator and the serial reference.

The objective is ``f(w) = (1/n) sum_i loss_i(w) + (l2/2) ||w||^2``. A partition's message is
its *sum* of per-row gradients (and loss), so decoded messages add up to the full sum.
"""

from __future__ import annotations

import numpy as np

from mpicode import kernels
from mpicode.data import Dataset, partition_bounds


class Problem:
    def __init__(self, data: Dataset, n_partitions: int, model: str = "logistic",
                 l2: float = 0.0):
        self.data = data
        self.model = model
        self.l2 = float(l2)
        self.K = int(n_partitions)
        self.bounds = partition_bounds(data.X.shape[0], self.K)
        self.n = data.X.shape[0]
        self.dim = data.X.shape[1]
        self._parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def part(self, k: int):
        """Rows of partition k, loaded on first use and kept (contiguous, C order)."""
        p = self._parts.get(k)
        if p is None:
            a, b = self.bounds[k], self.bounds[k + 1]
            p = (np.ascontiguousarray(self.data.X[a:b]), np.ascontiguousarray(self.data.y[a:b]))
            self._parts[k] = p
        return p

    def part_rows(self, k: int) -> int:
        return int(self.bounds[k + 1] - self.bounds[k])

    def accumulate(self, k: int, w: np.ndarray, g: np.ndarray, scale: float = 1.0) -> float:
        """``g += scale * grad-sum of partition k``; returns ``scale * loss-sum``."""
        X, y = self.part(k)
        return kernels.logistic_grad(X, y, w, g, scale)

    def gradient(self, gsum: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Full gradient from the decoded sum over all partitions."""
        return gsum / self.n + self.l2 * w

    def evaluate(self, w: np.ndarray) -> dict:
        """Train loss (objective) and test loss/accuracy at ``w``."""
        d = self.data
        lsum, correct = kernels.logistic_eval(d.X, d.y, w)
        tsum, tcorrect = kernels.logistic_eval(d.X_test, d.y_test, w)
        reg = 0.5 * self.l2 * float(w @ w)
        return {
            "loss": lsum / self.n + reg,
            "train_accuracy": correct / self.n,
            "test_loss": tsum / max(1, d.X_test.shape[0]),
            "accuracy": tcorrect / max(1, d.X_test.shape[0]),
        }


def reference_gd(problem: Problem, lr: float, iterations: int) -> np.ndarray:
    """Serial numpy gradient descent (the reference the distributed runs must reproduce).

    Returns the models w_0..w_T as rows.
    """
    X, y = problem.data.X, problem.data.y
    w = np.zeros(problem.dim)
    out = [w.copy()]
    for _ in range(iterations):
        z = X @ w
        r = 1.0 / (1.0 + np.exp(-z)) - y
        g = X.T @ r / problem.n + problem.l2 * w
        w = w - lr * g
        out.append(w.copy())
    return np.array(out)

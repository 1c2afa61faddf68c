"""The learning problem: model + dataset + micro-partitions, shared by workers, the
coordinator, the simulator and the serial reference.

The objective is ``f(w) = (1/n) sum_i loss_i(w) + (l2/2) ||w||^2``. A partition's message is
its *sum* of per-row gradients (and loss), so decoded messages add up to the full sum.

Models: ``logistic`` (labels 0/1), ``softmax`` (labels 0..C-1; ``w`` is the (d x C) weight
matrix flattened in C order, so ``dim = d*C``), ``least-squares`` (loss ``0.5 (x.w - y)^2``)
and ``mlp`` (labels 0..C-1; one or two hidden layers, all weights and biases flattened into
``w``, see :mod:`mpicode.numerics.mlp`; the L2 term covers every parameter). The metric is
accuracy for the classifiers and RMSE for regression (:attr:`Problem.metric`).

With ``batch_size`` B, each iteration's gradient is that of a mini-batch of B rows, B/K from
every partition, drawn from (seed, iteration, partition) (:mod:`mpicode.numerics.batches`):
``accumulate`` then sums the sampled rows only and :meth:`Problem.gradient` divides by B.
"""

from __future__ import annotations

import math

import numpy as np

from mpicode.errors import UsageError
from mpicode.io.datasets import Dataset, load, partition_rows
from mpicode.numerics import batches, kernels, mlp

CLASSIFIERS = ("logistic", "softmax", "mlp")
MODELS = (*kernels.GRAD, "mlp")


class Problem:
    """Model, data and the K micro-partitions.

    Parameters
    ----------
    data : Dataset
        Training and test data (labels already checked against ``model``).
    n_partitions : int
        K, the number of micro-partitions.
    model : {"logistic", "softmax", "least-squares", "mlp"}
    l2 : float
        L2 regularisation weight.
    dtype : {"float64", "float32"}
        Dtype of the data and of the dot products; gradient sums are float64.
    partitioning : str
        ``iid``, ``sorted`` or ``dirichlet:ALPHA`` (see :func:`mpicode.io.datasets.partition_rows`).
    seed : int
        Seed of the Dirichlet partitioning, of the mini-batches and of the MLP's weights.
    hidden, activation : str
        ``mlp`` only: ``"H"`` or ``"H1,H2"``, and ``relu`` or ``tanh``.
    batch_size : int or None
        Mini-batch B (None: full batch).
    """

    def __init__(self, data: Dataset, n_partitions: int, model: str = "logistic",
                 l2: float = 0.0, dtype: str = "float64", partitioning: str = "iid",
                 seed: int = 0, hidden: str = "64", activation: str = "relu",
                 batch_size: int | None = None):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}")
        self.data = data
        self.model = model
        self.l2 = float(l2)
        self.K = int(n_partitions)
        self.dtype = np.dtype(dtype)
        self.partitioning = partitioning
        self.X = np.ascontiguousarray(data.X, self.dtype)
        self.y = np.ascontiguousarray(data.y, self.dtype)
        self.X_test = np.ascontiguousarray(data.X_test, self.dtype)
        self.y_test = np.ascontiguousarray(data.y_test, self.dtype)
        self.rows = partition_rows(data.y, self.K, partitioning, seed)
        self.n = self.X.shape[0]
        self.d = self.X.shape[1]
        self.seed = int(seed)
        if model in ("softmax", "mlp"):
            self.n_classes = max(int(data.n_classes),
                                 int(max(data.y.max(), data.y_test.max(initial=0))) + 1)
        else:
            self.n_classes = 2 if model == "logistic" else 0
        self.dim = self.d * self.n_classes if model == "softmax" else self.d
        self.metric = "accuracy" if model in CLASSIFIERS else "rmse"
        self._parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if model == "mlp":
            self._setup_mlp(hidden, activation)
        else:
            self._pass = kernels.PASS[model]
            self._eval = kernels.EVAL[model]
        # the model in the data's dtype, refilled per call (no allocation per partition)
        self._wcast = np.empty(self.dim, self.dtype)
        self.iteration = 0
        self._setup_batches(batch_size)

    def _setup_mlp(self, hidden: str, activation: str) -> None:
        self.hidden = tuple(int(h) for h in str(hidden).split(","))
        self.activation = activation
        self.sizes = mlp.layer_sizes(self.d, self.hidden, self.n_classes)
        self.dim = mlp.n_params(self.sizes)
        kind = mlp.ACTIVATIONS[activation]
        ws = mlp.workspace(self.sizes, self.dtype)  # kept: every call reuses it
        sizes = self.sizes
        self._pass = lambda X, y, w, g, scale: mlp.mlp_pass(X, y, w, g, scale, sizes, kind, *ws)
        self._eval = lambda X, y, w: mlp.mlp_eval(X, y, w, sizes, kind, ws[0])

    def _setup_batches(self, batch_size: int | None) -> None:
        self.batch_size = None if batch_size is None else int(batch_size)
        self._batch: dict[int, tuple[int, np.ndarray]] = {}  # partition -> (it, rows)
        if self.batch_size is None:
            return
        if self.batch_size < self.K:
            raise UsageError(f"--batch-size {self.batch_size} must be >= --partitions {self.K}")
        msg = batches.check(self.batch_size, [r.size for r in self.rows])
        if msg:
            raise UsageError(msg)
        self.batch_split = batches.split(self.batch_size, self.K)
        m = int(self.batch_split.max())
        self._xb = np.empty((m, self.d), self.dtype)
        self._yb = np.empty(m, self.dtype)

    def initial_w(self) -> np.ndarray:
        """w_0: zeros for the linear models, seeded Glorot weights for the MLP (float64)."""
        if self.model == "mlp":
            return mlp.init_params(self.sizes, self.seed)
        return np.zeros(self.dim)

    def begin_iteration(self, it: int) -> None:
        """The iteration whose mini-batch :meth:`accumulate` samples when not told."""
        self.iteration = int(it)

    def batch_rows(self, k: int, it: int) -> np.ndarray:
        """Offsets (within partition k) of the rows of iteration ``it``'s batch."""
        hit = self._batch.get(k)
        if hit is None or hit[0] != it:
            idx = batches.sample(self.seed, it, k, self.part_rows(k), int(self.batch_split[k]))
            hit = self._batch[k] = (it, idx)
        return hit[1]

    @classmethod
    def from_config(cls, cfg, n_partitions: int, data: Dataset | None = None) -> Problem:
        """The problem a configuration describes (loads the dataset unless given)."""
        if data is None:
            data = load(cfg)
        _check_partitions(cfg, n_partitions, data.X.shape[0])
        return cls(data, n_partitions, model=cfg.model, l2=cfg.l2, dtype=cfg.dtype,
                   partitioning=cfg.partitioning, seed=cfg.seed,
                   hidden=getattr(cfg, "hidden", "64"),
                   activation=getattr(cfg, "activation", "relu"),
                   batch_size=getattr(cfg, "batch_size", None))

    def part(self, k: int):
        """(X, y) of partition k, gathered on first use and kept (contiguous, C order)."""
        p = self._parts.get(k)
        if p is None:
            r = self.rows[k]
            if r.size and r[-1] - r[0] + 1 == r.size:  # a range: slice, no fancy-index copy
                sl = slice(int(r[0]), int(r[-1]) + 1)
                p = (np.ascontiguousarray(self.X[sl]), np.ascontiguousarray(self.y[sl]))
            else:
                p = (np.ascontiguousarray(self.X[r]), np.ascontiguousarray(self.y[r]))
            self._parts[k] = p
        return p

    def part_rows(self, k: int) -> int:
        return int(self.rows[k].size)

    def accumulate(self, k: int, w: np.ndarray, g: np.ndarray, scale: float = 1.0,
                   it: int | None = None) -> tuple[float, float]:
        """``g += scale * grad-sum of partition k``; returns ``(scale * loss-sum, scale *
        metric-sum)`` from the same pass over the data (metric: correct predictions for the
        classifiers, squared errors for least squares).

        ``g`` is float64 of length :attr:`dim`; ``w`` any float dtype (cast to the data's).
        With mini-batches, the sums run over the rows of iteration ``it``'s batch (default:
        the one :meth:`begin_iteration` set).
        """
        X, y = self.part(k)
        if self.batch_size is not None:
            idx = self.batch_rows(k, self.iteration if it is None else int(it))
            m = idx.size
            X = np.take(X, idx, axis=0, out=self._xb[:m], mode="clip")
            y = np.take(y, idx, out=self._yb[:m], mode="clip")
        if w.dtype != self.dtype:
            np.copyto(self._wcast, w, casting="same_kind")
            w = self._wcast
        try:
            loss, metric = self._pass(X, y, w, g, scale)
        except ZeroDivisionError:  # fastmath kernels on a diverged model (inf - inf = NaN)
            g[:] = np.nan
            return float("nan"), float("nan")
        return float(loss), float(metric)

    def decoded(self, loss_sum: float, metric_sum: float, w: np.ndarray) -> dict:
        """``train_loss`` and ``train_metric`` of the model ``w`` the workers computed at,
        from the decoded sums of their messages: the objective ``loss_sum / B + l2/2 |w|^2``
        and the metric over the same B rows (accuracy, or RMSE for least squares), with
        ``B`` the rows one iteration's gradient sums (:attr:`batch_total`). For an exact
        decode these are the values :meth:`evaluate` gives on the training set (of the
        iteration's batch with mini-batches)."""
        B = self.batch_total
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged w: NaN, no warning
            reg = 0.5 * self.l2 * float(w @ w)
            m = metric_sum / B
            if self.metric == "rmse":
                m = math.sqrt(m) if m >= 0 else math.nan
        return {"train_loss": loss_sum / B + reg, "train_metric": float(m)}

    def partition_cost(self, repeats: int = 20) -> float:
        """Median seconds of :meth:`accumulate` on partition 0 (warmed up), at w_0."""
        import time

        w, g = self.initial_w(), np.zeros(self.dim)
        self.accumulate(0, w, g)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.accumulate(0, w, g)
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    @property
    def batch_total(self) -> int:
        """Rows one iteration's gradient sums: B, or n for full batch."""
        return self.n if self.batch_size is None else self.batch_size

    def gradient(self, gsum: np.ndarray, w: np.ndarray, out: np.ndarray | None = None,
                 scratch: np.ndarray | None = None) -> np.ndarray:
        """Gradient of the iteration's (mini-)batch objective from the decoded sum over all
        partitions: ``gsum / B + l2 w`` (B = n for full batch). ``out`` (may be ``gsum``)
        and ``scratch``: ``dim``-vectors to write into instead of allocating (same values)."""
        if out is None:
            return gsum / self.batch_total + self.l2 * w
        np.divide(gsum, self.batch_total, out=out)
        out += np.multiply(w, self.l2, out=np.empty_like(w) if scratch is None else scratch)
        return out

    def evaluate(self, w: np.ndarray) -> dict:
        """Train loss (objective), test loss and the metric at ``w``.

        Keys: ``loss``, ``test_loss``, ``accuracy`` (test accuracy; test RMSE for
        least-squares), ``train_accuracy`` (train accuracy or RMSE); least-squares adds
        ``rmse`` (= ``accuracy``).
        """
        wd = w.astype(self.dtype, copy=False)
        try:
            lsum, m = self._eval(self.X, self.y, wd)
            tsum, tm = self._eval(self.X_test, self.y_test, wd)
        except ZeroDivisionError:  # a diverged model: the run loop stops on the NaN loss
            lsum = m = tsum = tm = float("nan")
        n_test = max(1, self.X_test.shape[0])
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged w: NaN, no warning
            reg = 0.5 * self.l2 * float(w @ w)
        if self.metric == "accuracy":
            train_m, test_m = m / self.n, tm / n_test
        else:
            train_m, test_m = float(np.sqrt(m / self.n)), float(np.sqrt(tm / n_test))
        out = {
            "loss": float(lsum) / self.n + reg,
            "train_accuracy": float(train_m),
            "test_loss": float(tsum) / n_test,
            "accuracy": float(test_m),
        }
        if self.metric == "rmse":
            out["rmse"] = float(test_m)
        return out


def full_gradient(problem: Problem, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Objective and gradient at ``w`` in plain numpy (float64), for references and tests."""
    X = problem.X.astype(np.float64, copy=False)
    y = problem.y.astype(np.float64, copy=False)
    n = problem.n
    if problem.model == "mlp":
        loss, g = mlp.mlp_reference(X, y, w, problem.sizes, problem.activation)
    elif problem.model == "logistic":
        z = X @ w
        loss = np.sum(np.logaddexp(0.0, z) - y * z)
        g = X.T @ (0.5 * (1.0 + np.tanh(0.5 * z)) - y)
    elif problem.model == "least-squares":
        r = X @ w - y
        loss = 0.5 * float(r @ r)
        g = X.T @ r
    else:
        C = problem.n_classes
        Z = X @ w.reshape(problem.d, C)
        m = Z.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(Z - m).sum(axis=1))
        idx = y.astype(np.int64)
        loss = np.sum(lse - Z[np.arange(n), idx])
        P = np.exp(Z - lse[:, None])
        P[np.arange(n), idx] -= 1.0
        g = (X.T @ P).ravel()
    return (float(loss) / n + 0.5 * problem.l2 * float(w @ w),
            g / n + problem.l2 * w)


def reference_gd(problem: Problem, lr: float, iterations: int) -> np.ndarray:
    """Serial numpy gradient descent (the reference the distributed runs must reproduce).

    Returns the models w_0..w_T as rows.
    """
    w = problem.initial_w()
    out = [w.copy()]
    for _ in range(iterations):
        _, g = full_gradient(problem, w)
        w = w - lr * g
        out.append(w.copy())
    return np.array(out)


def _check_partitions(cfg, K: int, n_rows: int) -> None:
    """K <= training rows, saying so when K is the default 4N the user never chose."""
    if K <= n_rows:
        return
    msg = f"--partitions {K} exceeds the {n_rows} training rows"
    if getattr(cfg, "source", {}).get("partitions", "cli") == "default":
        N = getattr(cfg, "n_workers", K // 4)
        msg += (f" ({K} is the default 4N for N={N} workers, not given: pass --partitions K "
                f"with N <= K <= {n_rows}, or use a larger dataset)")
    raise UsageError(msg)

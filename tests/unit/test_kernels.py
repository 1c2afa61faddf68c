"""Fused kernels against numpy references; Problem dispatch and evaluate."""

import numpy as np
import pytest

from mpicode.io.datasets import Dataset
from mpicode.numerics import kernels
from mpicode.numerics.problem import Problem, full_gradient, reference_gd

TOL = {"float64": 1e-10, "float32": 1e-4}


def _data(n, d, model, seed=0, C=4, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if model == "logistic":
        y = (rng.random(n) < 0.5).astype(float)
    elif model == "softmax":
        y = rng.integers(0, C, n).astype(float)
    else:
        y = rng.standard_normal(n) * 3
    return X.astype(dtype), y.astype(dtype)


def _ref(model, X, y, w, C=4):
    X = X.astype(np.float64)
    y = y.astype(np.float64)
    w = w.astype(np.float64)
    n, d = X.shape
    if model == "logistic":
        z = X @ w
        return (np.sum(np.logaddexp(0, z) - y * z), X.T @ (1 / (1 + np.exp(-z)) - y),
                np.sum((z > 0) == (y > 0.5)))
    if model == "least-squares":
        r = X @ w - y
        return 0.5 * r @ r, X.T @ r, r @ r
    Z = X @ w.reshape(d, C)
    m = Z.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(Z - m).sum(1))
    idx = y.astype(int)
    P = np.exp(Z - lse[:, None])
    P[np.arange(n), idx] -= 1
    return (np.sum(lse - Z[np.arange(n), idx]), (X.T @ P).ravel(),
            np.sum(Z.argmax(1) == idx))


def _rel(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", ["logistic", "least-squares", "softmax"])
@pytest.mark.parametrize("n", [1, 3, 4, 37, 203])  # remainder loop: n % 4 = 1, 3, 0, 1, 3
def test_grad_kernel_matches_numpy(model, dtype, n):
    d, C = 13, 4
    X, y = _data(n, d, model, seed=n, C=C, dtype=dtype)
    dim = d * C if model == "softmax" else d
    w = (np.random.default_rng(1).standard_normal(dim) * 0.7).astype(dtype)
    g0 = np.random.default_rng(2).standard_normal(dim)
    g = g0.copy()
    scale = -2.5
    loss = kernels.GRAD[model](X, y, w, g, scale)
    lref, gref, _ = _ref(model, X, y, w, C)
    assert abs(loss - scale * lref) <= TOL[dtype] * abs(scale * lref)
    assert _rel(g - g0, scale * gref) <= TOL[dtype]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", ["logistic", "least-squares", "softmax"])
def test_eval_kernel_matches_numpy(model, dtype):
    d, C = 7, 4
    X, y = _data(101, d, model, C=C, dtype=dtype)
    dim = d * C if model == "softmax" else d
    w = np.random.default_rng(3).standard_normal(dim).astype(dtype)
    loss, metric = kernels.EVAL[model](X, y, w)
    lref, _, mref = _ref(model, X, y, w, C)
    assert abs(loss - lref) <= TOL[dtype] * abs(lref)
    if model == "least-squares":
        assert abs(metric - mref) <= TOL[dtype] * mref
    else:
        assert metric == mref


def test_logistic_extreme_margins_are_finite():
    X = np.array([[800.0], [-800.0], [0.0], [1e-3], [-40.0]])
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.0])
    g = np.zeros(1)
    loss = kernels.logistic_grad(X, y, np.ones(1), g, 1.0)
    assert np.isfinite(loss) and np.all(np.isfinite(g))
    assert loss == pytest.approx(1600 + np.log(2) + np.logaddexp(0, 1e-3) + np.log1p(np.exp(-40)))


def test_softmax_is_stable_for_huge_logits():
    X = np.array([[1000.0, -1000.0], [-5.0, 3.0]])
    y = np.array([1.0, 0.0])
    w = np.arange(4.0)
    g = np.zeros(4)
    loss = kernels.softmax_grad(X, y, w, g, 1.0)
    assert np.isfinite(loss) and np.all(np.isfinite(g))
    lref, gref, _ = _ref("softmax", X, y, w, C=2)
    assert loss == pytest.approx(lref, rel=1e-12)
    assert _rel(g, gref) < 1e-12


def test_read_once_is_the_sum():
    X = np.random.default_rng(0).standard_normal((9, 5))
    assert kernels.read_once(X) == pytest.approx(X.sum(), rel=1e-12)
    kernels.warmup()


def _dataset(model, n=60, d=5, C=3, seed=0):
    rng = np.random.default_rng(seed)
    X, Xt = rng.standard_normal((n, d)), rng.standard_normal((20, d))
    if model == "logistic":
        y, yt, task, nc = (rng.random(n) < .5) * 1.0, (rng.random(20) < .5) * 1.0, "binary", 2
    elif model == "softmax":
        y, yt, task, nc = (rng.integers(0, C, n) * 1.0, rng.integers(0, C, 20) * 1.0,
                           "multiclass", C)
    else:
        y, yt, task, nc = rng.standard_normal(n), rng.standard_normal(20), "regression", 0
    return Dataset("t", X, y, Xt, yt, task, nc)


@pytest.mark.parametrize("partitioning", ["iid", "sorted", "dirichlet:0.5"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", ["logistic", "least-squares", "softmax"])
def test_problem_partition_sum_is_full_gradient(model, dtype, partitioning):
    ds = _dataset(model)
    pb = Problem(ds, 7, model=model, l2=0.1, dtype=dtype, partitioning=partitioning, seed=3)
    assert pb.dim == (5 * 3 if model == "softmax" else 5)
    w = np.random.default_rng(5).standard_normal(pb.dim) * 0.3
    g = np.zeros(pb.dim)
    lsum = sum(pb.accumulate(k, w, g, 1.0)[0] for k in range(pb.K))
    f, gref = full_gradient(pb, w)
    tol = TOL[dtype] * 10
    assert _rel(pb.gradient(g, w), gref) <= tol
    ev = pb.evaluate(w)
    assert ev["loss"] == pytest.approx(f, rel=tol)
    assert lsum / pb.n + 0.5 * pb.l2 * w @ w == pytest.approx(f, rel=tol)
    assert set(ev) >= {"loss", "test_loss", "accuracy", "train_accuracy"}
    if model == "least-squares":
        assert pb.metric == "rmse" and ev["rmse"] == ev["accuracy"]
        r = ds.X_test @ w - ds.y_test
        assert ev["rmse"] == pytest.approx(np.sqrt(np.mean(r * r)), rel=tol)
    else:
        assert pb.metric == "accuracy" and 0 <= ev["accuracy"] <= 1
    # a part is gathered once and kept, contiguous
    X0, _ = pb.part(0)
    assert X0.flags.c_contiguous and pb.part(0)[0] is X0 and X0.dtype == np.dtype(dtype)


@pytest.mark.parametrize("model", ["logistic", "least-squares", "softmax"])
def test_reference_gd_decreases_the_objective(model):
    pb = Problem(_dataset(model), 4, model=model, l2=1e-3)
    W = reference_gd(pb, 0.1, 20)
    assert W.shape == (21, pb.dim)
    assert full_gradient(pb, W[-1])[0] < full_gradient(pb, W[0])[0]


def test_vectorized_link_matches_libm_to_float64_precision():
    """The link of the fused pass (exp and log1p in arithmetic, so it vectorizes) agrees
    with numpy's libm at every margin: loss to 1 ulp of |z| + 1 (the size of its terms),
    dloss/dz to 1 ulp absolute, exp(-|z|) itself to 1 ulp relative down to subnormals."""
    import numba

    @numba.njit
    def links(z, y):
        lo, r, hit = np.empty(z.size), np.empty(z.size), np.empty(z.size)
        kernels._links(kernels.LOGISTIC, z, y, 0, z.size, 1.0, lo, r, hit)
        return lo, r

    @numba.njit
    def exps(a):
        return np.array([kernels._exp_neg(v) for v in a])

    z = np.concatenate([np.linspace(-800, 800, 40001), np.linspace(-30, 30, 20001)])
    for yv in (0.0, 1.0):
        lo, r = links(z, np.full(z.size, yv))
        with np.errstate(over="ignore"):
            ref_lo = np.logaddexp(0.0, z) - yv * z
            ref_r = 1.0 / (1.0 + np.exp(-z)) - yv
        assert np.max(np.abs(lo - ref_lo) / (np.abs(z) + 1)) <= 2.3e-16
        assert np.max(np.abs(r - ref_r)) <= 2.3e-16
    a = np.linspace(0.0, 708.0, 100001)
    assert np.max(np.abs(exps(a) - np.exp(-a)) / np.exp(-a)) <= 2.3e-16
    assert exps(np.array([746.0, 1e300]))[0] == 0.0


# ---- the fused pass: gradient, loss and metric from one read (issue 25) ----------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(1, 70), d=st.integers(1, 40), seed=st.integers(0, 2**16),
       model=st.sampled_from(["logistic", "least-squares", "softmax"]),
       dtype=st.sampled_from(["float64", "float32"]), scale=st.sampled_from([1.0, -0.5, 3.0]))
def test_pass_returns_gradient_loss_and_metric(n, d, seed, model, dtype, scale):
    """``*_pass``: ``g += scale * grad``, ``(scale * loss, scale * metric)``: against numpy, and
    against the evaluation kernel on the same rows, which gives the same loss and metric bit
    for bit (rank 0 and a worker compute every row's margin and link the same way)."""
    C = 3
    X, y = _data(n, d, model, seed=seed, C=C, dtype=dtype)
    dim = d * C if model == "softmax" else d
    w = (np.random.default_rng(seed + 1).standard_normal(dim) * 0.4).astype(dtype)
    g = np.zeros(dim)
    loss, metric = kernels.PASS[model](X, y, w, g, scale)
    lref, gref, mref = _ref(model, X, y, w, C)
    tol = TOL[dtype]
    assert abs(loss - scale * lref) <= tol * max(1.0, abs(scale * lref))
    assert _rel(g, scale * gref) <= tol or np.max(np.abs(gref)) < 1e-12
    lev, mev = kernels.EVAL[model](X, y, w)
    assert loss == scale * lev and metric == scale * mev  # the same bits (scale exact here)
    if model == "least-squares":
        assert abs(metric - scale * mref) <= tol * max(1.0, abs(scale * mref))
    elif dtype == "float64":  # correct predictions: a count
        assert metric == scale * mref
    g2 = np.zeros(dim)
    assert kernels.GRAD[model](X, y, w, g2, scale) == loss  # the older signature: the loss
    np.testing.assert_array_equal(g2, g)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", ["logistic", "least-squares", "softmax", "mlp"])
def test_partition_sums_decode_to_the_evaluation(model, dtype):
    """The workers' sums of every partition, decoded as an uncoded scheme would (weights 1),
    give rank 0's evaluation of the training set: loss to 1e-12 relative, the metric
    (accuracy, or RMSE) equal, in float64 and float32 alike (the margins are the same bits)."""
    if model == "mlp":
        rng = np.random.default_rng(4)
        X, Xt = rng.standard_normal((203, 6)), rng.standard_normal((30, 6))
        y, yt = rng.integers(0, 3, 203) * 1.0, rng.integers(0, 3, 30) * 1.0
        ds = Dataset("t", X, y, Xt, yt, "multiclass", 3)
    else:
        ds = _dataset(model, n=203)
    pb = Problem(ds, 7, model=model, l2=0.1, dtype=dtype, hidden="5", seed=2)
    w = pb.initial_w() + np.random.default_rng(5).standard_normal(pb.dim) * 0.3
    g = np.zeros(pb.dim)
    sums = np.sum([pb.accumulate(k, w, g) for k in range(pb.K)], axis=0)
    dec = pb.decoded(sums[0], sums[1], w)
    ev = pb.evaluate(w)
    assert dec["train_loss"] == pytest.approx(ev["loss"], rel=1e-12)
    if model == "mlp" and dtype == "float32":  # BLAS blocks rows differently: float32 logits
        assert abs(dec["train_metric"] - ev["train_accuracy"]) <= 2 / pb.n
    else:
        assert dec["train_metric"] == pytest.approx(ev["train_accuracy"], rel=1e-12)


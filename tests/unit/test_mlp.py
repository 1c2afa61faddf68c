"""The fused MLP kernel against the numpy reference and finite differences; Problem(mlp)."""

import numpy as np
import pytest

from mpicode.io.datasets import Dataset
from mpicode.numerics import mlp
from mpicode.numerics.problem import Problem, full_gradient

TOL = {"float64": 1e-10, "float32": 1e-4}


def _net(hidden, d=9, C=4, seed=0):
    sizes = mlp.layer_sizes(d, hidden, C)
    rng = np.random.default_rng(seed)
    w = mlp.init_params(sizes, seed) + 0.05 * rng.standard_normal(mlp.n_params(sizes))
    return sizes, w


def _data(n, d=9, C=4, seed=0):
    rng = np.random.default_rng(seed + 100)
    return rng.standard_normal((n, d)), rng.integers(0, C, n).astype(float)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("hidden", [(7,), (6, 5)])
@pytest.mark.parametrize("n, block", [(1, 8), (8, 8), (37, 8), (300, 128)])
def test_grad_matches_numpy_reference(hidden, act, dtype, n, block):
    sizes, w = _net(hidden, seed=n)
    X, y = _data(n, seed=n)
    A, D, T = mlp.workspace(sizes, dtype, block)
    g0 = np.random.default_rng(5).standard_normal(w.size)
    g = g0.copy()
    scale = -1.5
    loss = mlp.mlp_grad(X.astype(dtype), y.astype(dtype), w.astype(dtype), g, scale, sizes,
                        mlp.ACTIVATIONS[act], A, D, T)
    lref, gref = mlp.mlp_reference(X, y, w, sizes, act)
    assert abs(loss - scale * lref) <= TOL[dtype] * abs(scale * lref)
    assert _rel(g - g0, scale * gref) <= TOL[dtype]
    lev, correct = mlp.mlp_eval(X.astype(dtype), y.astype(dtype), w.astype(dtype), sizes,
                                mlp.ACTIVATIONS[act], A)
    assert abs(lev - lref) <= TOL[dtype] * abs(lref)
    assert correct == int(np.sum(_logits(X, w, sizes, act).argmax(1) == y))


def _logits(X, w, sizes, act):
    out, o = X, 0
    s = [int(v) for v in sizes]
    for k, (a, b) in enumerate(zip(s[:-1], s[1:], strict=True)):
        out = out @ w[o:o + a * b].reshape(a, b) + w[o + a * b:o + a * b + b]
        o += a * b + b
        if k < len(s) - 2:
            out = np.maximum(out, 0) if act == "relu" else np.tanh(out)
    return out


@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("hidden", [(5,), (4, 3)])
def test_gradient_matches_finite_differences(hidden, act):
    sizes, w = _net(hidden, d=6, C=3, seed=2)
    X, y = _data(40, d=6, C=3, seed=2)
    A, D, T = mlp.workspace(sizes, np.float64, 16)
    kind = mlp.ACTIVATIONS[act]
    g = np.zeros(w.size)
    mlp.mlp_grad(X, y, w, g, 1.0, sizes, kind, A, D, T)
    h = 1e-6
    fd = np.empty(w.size)
    for i in range(w.size):
        e = np.zeros(w.size)
        e[i] = h
        fd[i] = (mlp.mlp_eval(X, y, w + e, sizes, kind, A)[0]
                 - mlp.mlp_eval(X, y, w - e, sizes, kind, A)[0]) / (2 * h)
    # central differences: O(h^2) truncation, O(eps/h) rounding; ReLU kinks are avoided
    # with probability 1 at random weights
    assert _rel(g, fd) < 1e-6


def test_init_is_seeded_glorot():
    sizes = mlp.layer_sizes(10, (20,), 5)
    a, b, c = mlp.init_params(sizes, 3), mlp.init_params(sizes, 3), mlp.init_params(sizes, 4)
    assert a.size == mlp.n_params(sizes) == 10 * 20 + 20 + 20 * 5 + 5
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    W1, b1 = a[:200], a[200:220]
    assert np.all(np.abs(W1) <= np.sqrt(6 / 30)) and np.all(b1 == 0)


def _problem(model="mlp", dtype="float64", n=203, d=6, C=3, **kw):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n + 50, d))
    y = rng.integers(0, C, n + 50).astype(float)
    ds = Dataset("t", X[:n], y[:n], X[n:], y[n:], task="multiclass", n_classes=C)
    return Problem(ds, 8, model=model, l2=1e-3, dtype=dtype, seed=1, **kw)


@pytest.mark.parametrize("hidden", ["8", "8,5"])
def test_problem_mlp_partitions_sum_to_the_full_gradient(hidden):
    p = _problem(hidden=hidden, activation="tanh")
    w = p.initial_w()
    g = np.zeros(p.dim)
    loss = sum(p.accumulate(k, w, g)[0] for k in range(p.K))
    ref_obj, ref_g = full_gradient(p, w)
    np.testing.assert_allclose(p.gradient(g, w), ref_g, rtol=1e-10, atol=1e-14)
    ev = p.evaluate(w)
    assert abs(ev["loss"] - ref_obj) <= 1e-10 * abs(ref_obj)
    assert abs(loss / p.n + 0.5 * p.l2 * w @ w - ref_obj) <= 1e-10 * abs(ref_obj)
    assert 0.0 <= ev["accuracy"] <= 1.0


def test_problem_mlp_float32_close_to_float64():
    p64, p32 = _problem(hidden="8"), _problem(hidden="8", dtype="float32")
    w = p64.initial_w()
    g64, g32 = np.zeros(p64.dim), np.zeros(p32.dim)
    for k in range(p64.K):
        p64.accumulate(k, w, g64)
        p32.accumulate(k, w, g32)  # w is cast into the problem's float32 buffer
    assert _rel(g32, g64) < 1e-4

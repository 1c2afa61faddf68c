"""Mini-batches: the split, the seeded sampling, the exact batch gradient, --epochs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpicode import config
from mpicode.io.datasets import Dataset
from mpicode.numerics import batches, mlp
from mpicode.numerics.problem import Problem


def _ds(n=211, d=5, C=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + 20, d))
    y = rng.integers(0, C, n + 20).astype(float)
    return Dataset("t", X[:n], y[:n], X[n:], y[n:], task="multiclass", n_classes=C)


def test_split_is_exact_and_balanced():
    m = batches.split(23, 5)
    assert m.tolist() == [5, 5, 5, 4, 4] and m.sum() == 23


def test_sample_is_seeded_distinct_sorted():
    a = batches.sample(3, 7, 2, 50, 10)
    assert np.array_equal(a, batches.sample(3, 7, 2, 50, 10))
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 50
    assert not np.array_equal(a, batches.sample(3, 8, 2, 50, 10))
    assert not np.array_equal(a, batches.sample(3, 7, 1, 50, 10))


@pytest.mark.parametrize("model", ["mlp", "softmax"])
def test_batch_gradient_is_the_exact_gradient_of_the_sampled_rows(model):
    ds = _ds()
    K, B, it = 6, 30, 4
    p = Problem(ds, K, model=model, l2=1e-2, seed=5, hidden="7", batch_size=B)
    w = p.initial_w() + 0.1 * np.random.default_rng(1).standard_normal(p.dim)
    g = np.zeros(p.dim)
    loss, metric = np.sum([p.accumulate(k, w, g, it=it) for k in range(K)], axis=0)
    rows = np.concatenate([p.rows[k][p.batch_rows(k, it)] for k in range(K)])
    assert rows.size == B and np.unique(rows).size == B
    full = Problem(Dataset("b", ds.X[rows], ds.y[rows], ds.X_test, ds.y_test, "multiclass", 3),
                   1, model=model, l2=1e-2, seed=5, hidden="7")
    g_ref = np.zeros(p.dim)
    loss_ref, metric_ref = full.accumulate(0, w, g_ref)
    np.testing.assert_allclose(p.gradient(g, w), full.gradient(g_ref, w), rtol=1e-12,
                               atol=1e-15)
    assert abs(loss - loss_ref) <= 1e-12 * abs(loss_ref)
    assert metric == metric_ref  # correct predictions of the same sampled rows
    # begin_iteration sets the default iteration; another iteration samples other rows
    p.begin_iteration(it)
    g2 = np.zeros(p.dim)
    for k in range(K):
        p.accumulate(k, w, g2)
    np.testing.assert_array_equal(g2, g)
    g3 = np.zeros(p.dim)
    for k in range(K):
        p.accumulate(k, w, g3, it=it + 1)
    assert not np.allclose(g3, g)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(40, 120), K=st.integers(1, 8), frac=st.floats(0.1, 1.0),
       seed=st.integers(0, 2**31), it=st.integers(0, 10**6))
def test_every_worker_computes_the_same_partition_batch(n, K, frac, seed, it):
    """Two independent problems (two workers) give bit-identical partition messages for
    any iteration, so an exact decode is the gradient of one well-defined batch."""
    ds = _ds(n, seed=seed % 1000)
    B = max(K, int(frac * (n // K) * K))
    a = Problem(ds, K, model="mlp", hidden="4", seed=seed, batch_size=B)
    b = Problem(ds, K, model="mlp", hidden="4", seed=seed, batch_size=B)
    w = a.initial_w()
    for k in range(K):
        ga, gb = np.zeros(a.dim), np.zeros(b.dim)
        b.accumulate((k + 1) % K, w, np.zeros(b.dim), it=it + 1)  # other work in between
        la, lb = a.accumulate(k, w, ga, 0.5, it=it), b.accumulate(k, w, gb, 0.5, it=it)
        assert la == lb and np.array_equal(ga, gb)
    assert sum(a.batch_rows(k, it).size for k in range(K)) == B


def test_batch_errors_are_one_line_usage_errors():
    ds = _ds(50)
    with pytest.raises(config.UsageError, match="must be >= --partitions"):
        Problem(ds, 10, model="mlp", batch_size=5)
    with pytest.raises(config.UsageError, match="partition .* has 5 rows but must give 6"):
        Problem(ds, 10, model="mlp", batch_size=51)


def _cfg(argv):
    from mpicode.cli import build_parser
    return config.resolve(build_parser().parse_args(["simulate", *argv]))


def test_epochs_gives_iterations_and_excludes_iterations():
    cfg = config.validate_for_size(_cfg(["--epochs", "2.5", "--batch-size", "64"]), 4)
    assert batches.with_epochs(cfg, 1000).iterations == 40  # ceil(2.5 * 1000 / 64)
    full = config.validate_for_size(_cfg(["--epochs", "3"]), 4)
    assert batches.with_epochs(full, 1000).iterations == 3
    plain = config.validate_for_size(_cfg(["--iterations", "7"]), 4)
    assert batches.with_epochs(plain, 1000).iterations == 7
    with pytest.raises(config.UsageError, match="not both"):
        config.validate_for_size(_cfg(["--epochs", "2", "--iterations", "5"]), 4)
    with pytest.raises(config.UsageError, match="--batch-size 8 must be >= --partitions 16"):
        config.validate_for_size(_cfg(["--batch-size", "8"]), 4)


@pytest.mark.parametrize("argv, msg", [
    (["--hidden", "0"], "--hidden: '0' must be H or H1,H2"),
    (["--hidden", "8,8,8"], "--hidden: '8,8,8' must be H or H1,H2"),
    (["--activation", "sigmoid"], "--activation: unknown value 'sigmoid'"),
    (["--optimizer", "sgd"], "--optimizer: unknown value 'sgd'"),
    (["--momentum", "1"], "--momentum: 1.0 must be in [0, 1)"),
    (["--beta2", "-0.1"], "--beta2: -0.1 must be in [0, 1)"),
    (["--eps", "0"], "--eps: 0.0 must be > 0"),
    (["--batch-size", "0"], "--batch-size: 0 must be > 0"),
    (["--epochs", "-1"], "--epochs: -1.0 must be > 0"),
])
def test_new_options_validate(argv, msg):
    with pytest.raises(config.UsageError) as e:
        _cfg(argv)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_mlp_layout_is_a_flat_float64_vector():
    p = Problem(_ds(), 4, model="mlp", hidden="6,4", seed=2)
    assert p.dim == mlp.n_params(p.sizes) == 5 * 6 + 6 + 6 * 4 + 4 + 4 * 3 + 3
    w = p.initial_w()
    assert w.dtype == np.float64 and w.shape == (p.dim,)


def test_epochs_without_batch_size_says_it_is_full_batch():
    """issue 27: --epochs 2 without --batch-size is 2 full-batch iterations, said in a line."""
    from mpicode.cli import build_parser
    cfg = config.resolve(build_parser().parse_args(["simulate", "--epochs", "2"]))
    note = batches.epochs_note(cfg, 1000)
    assert note.startswith("note: --epochs 2 without --batch-size is full-batch") and \
        "2 iterations of all 1000 rows" in note
    cfg = config.resolve(build_parser().parse_args(["simulate", "--epochs", "2",
                                                    "--batch-size", "100"]))
    assert batches.epochs_note(cfg, 1000) is None and batches.iterations(cfg, 1000) == 20

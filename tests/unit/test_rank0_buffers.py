"""Rank 0's reused buffers (decode sum, in-place gradient, GD into a spare model) give the
same values, bit for bit, as the allocating expressions they replace; the trainer's model
survives its own buffer swaps (the snapshot is a copy)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpicode.engine.rows import combine
from mpicode.io.datasets import synthetic
from mpicode.numerics.optim import GD
from mpicode.numerics.problem import Problem

floats = st.floats(-1e6, 1e6, allow_nan=False, width=64)
weights = st.sampled_from([1.0, 1, -1.0, 0.5, 2.0, -0.25, 3.0, 1e-3])


class _Dec:
    def __init__(self, w):
        self.weights = w


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 5), st.data())
def test_combine_into_buffers_is_bit_identical(dim, n_msgs, data):
    msgs = {t: (np.array(data.draw(st.lists(floats, min_size=dim, max_size=dim))),
                data.draw(floats), data.draw(floats)) for t in range(n_msgs)}
    dec = _Dec({t: data.draw(weights) for t in msgs})
    ref = np.zeros(dim)
    lref = mref = 0.0
    for t, wgt in dec.weights.items():  # the expression combine() used to evaluate
        ref += wgt * msgs[t][0]
        lref += wgt * msgs[t][1]
        mref += wgt * msgs[t][2]  # the metric: the same weights as the gradient
    out, scratch = np.full(dim, np.nan), np.full(dim, np.nan)  # stale contents must not leak
    g, loss, metric = combine(dec, msgs, dim, out, scratch)
    assert g is out
    np.testing.assert_array_equal(g, ref)
    assert loss == lref and metric == mref
    np.testing.assert_array_equal(combine(dec, msgs, dim)[0], ref)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.sampled_from([0.0, 1e-3, 0.5]), st.floats(1e-4, 2.0), st.data())
def test_gradient_and_gd_in_place_are_bit_identical(dim, l2, lr, data):
    p = Problem(synthetic(40, dim, 1), 4, l2=l2)
    gsum = np.array(data.draw(st.lists(floats, min_size=dim, max_size=dim)))
    w = np.array(data.draw(st.lists(floats, min_size=dim, max_size=dim)))
    ref_g = gsum / p.batch_total + l2 * w
    ref_w = w - lr * ref_g
    buf, scratch, spare = gsum.copy(), np.empty(dim), np.empty(dim)
    g = p.gradient(buf, w, out=buf, scratch=scratch)
    assert g is buf
    np.testing.assert_array_equal(g, ref_g)
    w_new = GD(lr).step(w, g, out=spare)
    assert w_new is spare
    np.testing.assert_array_equal(w_new, ref_w)
    np.testing.assert_array_equal(g, ref_g)  # the step leaves the gradient alone


def test_trainer_model_and_snapshot_survive_buffer_swaps():
    """A simulated uncoded run: the final w equals the serial reference (the buffer swaps
    alias nothing still read), and the snapshot is a copy of it, not the live buffer."""
    from mpicode.config import OPTIONS, Config, validate_for_size
    from mpicode.models.stragglers import make_straggler_model
    from mpicode.numerics.problem import reference_gd
    from mpicode.schemes import make_scheme
    from mpicode.simulator import Simulator
    N, lr, iters = 4, 0.5, 6
    v = {o.name: o.default for o in OPTIONS}
    v.update(scheme="uncoded", stragglers="none", samples=200, features=5, lr=lr)
    cfg = validate_for_size(Config(v), N)
    K = cfg.partitions
    problem = Problem(synthetic(200, 5, 1), K)
    from mpicode.engine.hooks import Checkpoints
    ck = Checkpoints()  # (no run log: it keeps the last snapshot)
    sim = Simulator(make_scheme(cfg, N, K), make_straggler_model(cfg, N, K), n_workers=N,
                    partition_cost=1e-3, problem=problem, lr=lr, hooks=[ck])
    w = sim.run(iters)
    np.testing.assert_allclose(w, reference_gd(problem, lr, iters)[-1], rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(ck.snap["w"], w)
    assert ck.snap["w"] is not w
    losses = [r["loss"] for r in sim.history]
    assert all(np.diff(losses) < 0)  # each row evaluated its own w


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(0, 40), st.data())
def test_small_oracle_is_bit_identical_to_numpy(n, K, data):
    from mpicode.models import oracle
    # seconds per partition: 0 (an infinitely fast worker) or from 0.1 ms (finitely many
    # partition finishing times to list)
    pos = st.just(0.0) | st.floats(1e-4, 5.0)
    c = np.array(data.draw(st.lists(pos, min_size=n, max_size=n)))
    d = np.array(data.draw(st.lists(st.floats(-1.0, 5.0), min_size=n, max_size=n)))
    active = data.draw(st.none() | st.lists(st.booleans(), min_size=n, max_size=n))
    try:
        ref = (oracle.continuous(c, d, K, active), oracle.granular(c, d, K, active))
    except ValueError:
        with pytest.raises(ValueError):
            oracle._small(c, d, K, active)
        return
    got = oracle._small(c, d, K, active)
    assert got == ref, (c, d, K, active)

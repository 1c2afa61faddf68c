"""Clairvoyant oracle, delay forms, per-task overhead, trace replay semantics, cyclic's
circulant construction.

    PYTHONPATH=$PWD python -m pytest -q tests/unit/test_oracle_delays.py
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpicode.config import Config, defaults
from mpicode.models import oracle
from mpicode.models.stragglers import MODELS, make_straggler_model
from mpicode.schemes.cyclic import CyclicRepetition, circulant_B, circulant_d, worst_on_random_sets

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARAMS = dict(shift=1.0, mu=1.0, delay_mean=2.0, slow_fraction=0.25, slowdown=5.0,
              pareto_shape=2.5, ge_p_bad=0.1, ge_p_good=0.5)


def cfg(**kw) -> Config:
    return Config(values=dict(defaults().values)).replace(**kw)


# ---- oracle ---------------------------------------------------------------------------------
def brute_granular(c, d, K):
    """K-th smallest d_i + k c_i by a heap: the definition, one partition at a time."""
    h = [(d[i] + c[i], i, 1) for i in range(len(c))]
    heapq.heapify(h)
    for _ in range(K - 1):
        t, i, k = heapq.heappop(h)
        heapq.heappush(h, (d[i] + (k + 1) * c[i], i, k + 1))
    return h[0][0]


workers = st.lists(st.tuples(st.floats(1e-3, 10), st.floats(0, 20)), min_size=1, max_size=30)


@FAST
@given(ws=workers, K=st.integers(1, 200))
def test_oracle_matches_its_definitions(ws, K):
    c, d = np.array([w[0] for w in ws]), np.array([w[1] for w in ws])
    T = oracle.continuous(c, d, K)
    assert np.sum(np.maximum(0, T - d) / c) == pytest.approx(K, rel=1e-9)
    # minimal: a little earlier is not enough
    assert np.sum(np.maximum(0, T * (1 - 1e-6) - d) / c) < K
    Tp = oracle.granular(c, d, K)
    assert Tp == pytest.approx(brute_granular(c, d, K), rel=1e-12)
    assert Tp >= T * (1 - 1e-12)  # whole partitions can only take longer
    assert Tp <= T + c.max() * (1 + 1e-12)


def test_oracle_simple_cases_and_active_mask():
    # two equal workers, no one-off: K/2 partitions each
    assert oracle.continuous([1.0, 1.0], [0.0, 0.0], 4) == pytest.approx(2.0)
    assert oracle.granular([1.0, 1.0], [0.0, 0.0], 5) == pytest.approx(3.0)
    # a worker stuck for 100 s is not waited for
    assert oracle.continuous([1.0, 1.0], [0.0, 100.0], 4) == pytest.approx(4.0)
    # a dead worker is left out
    assert oracle.continuous([1.0, 1.0], [0.0, 0.0], 4, active=[True, False]) == 4.0
    with pytest.raises(ValueError):
        oracle.continuous([1.0], [0.0], 3, active=[False])


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("form", ["worker", "task"])
def test_worker_profile_matches_one_task_per_worker(model, form):
    """An uncoded iteration (one task of K/N partitions per worker) takes exactly
    d_i + (K/N) c_i on worker i: the profile is the realised delay, not a mean."""
    N, K, cost = 6, 24, 1e-3
    m = MODELS[model](N, K, 3, unit=0.01, task_overhead=0.002, delay_form=form, **PARAMS)
    for it in range(4):
        c, d = m.worker_profile(it, cost)
        for w in range(N):
            took = K // N * cost + m.delay(it, w, 0, K // N)
            assert d[w] + K // N * c[w] == pytest.approx(took, rel=1e-12)


def test_delay_forms_and_overhead():
    N, K = 4, 16
    task = MODELS["shifted-exp"](N, K, 1, unit=0.01, delay_form="task", **PARAMS)
    work = MODELS["shifted-exp"](N, K, 1, unit=0.01, delay_form="worker", **PARAMS)
    # task 0 draws the same in both forms: one-task schemes are unaffected by the form
    assert task.delay(2, 1, 0, 4) == work.delay(2, 1, 0, 4)
    # worker form: every task of a worker in an iteration has the same rate per share
    rates = [work.delay(2, 1, k, n) / work.load(n) for k, n in enumerate((1, 3, 2, 5))]
    assert np.allclose(rates, rates[0])
    # task form: fresh draws per task
    rates_t = [task.delay(2, 1, k, 2) for k in range(4)]
    assert len(set(rates_t)) == 4
    over = MODELS["shifted-exp"](N, K, 1, unit=0.01, task_overhead=0.005, **PARAMS)
    assert over.delay(2, 1, 3, 4) == pytest.approx(work.delay(2, 1, 3, 4) + 0.005)
    none = MODELS["none"](N, K, 1, task_overhead=0.005)
    assert none.delay(0, 0, 7, 100) == 0.005
    with pytest.raises(ValueError):
        MODELS["pareto"](N, K, 1, delay_form="sometimes", **PARAMS)


def test_oracle_times_from_a_model():
    m = make_straggler_model(cfg(stragglers="bimodal", seed=0), 8, 32)
    cont, part = oracle.oracle_times(m, 0, 32, 1e-3)
    assert 0 < cont <= part
    assert math.isnan(oracle.oracle_times(m, 0, 32, math.nan)[0])


# ---- trace replay keeps each model's semantics ----------------------------------------------
def record(tmp_path, **kw):
    from mpicode.simulator import simulate
    out = str(tmp_path / f"rec-{kw['stragglers']}.h5")
    c = cfg(workers=4, iterations=3, compute="none", partition_cost=1e-4, quiet=True,
            out=out, force=True, scheme="uncoded", **kw)
    assert simulate(c) == 0
    return out


def test_trace_keeps_one_off_delays_one_off(tmp_path):
    rec = record(tmp_path, stragglers="exp-per-iteration", delay_mean=5.0, task_overhead=0.001)
    orig = make_straggler_model(cfg(stragglers="exp-per-iteration", delay_mean=5.0,
                                    task_overhead=0.001), 4, 16)
    tr = make_straggler_model(cfg(stragglers="trace:" + rec, iterations=3,
                                  task_overhead=0.001), 4, 16)
    assert tr.note == ""
    for it in range(3):
        for w in range(4):
            # the recording's own task is reproduced, a task twice the size pays the
            # one-off once (not twice), a second task pays no one-off at all
            assert tr.delay(it, w, 0, 4) == pytest.approx(orig.delay(it, w, 0, 4), rel=1e-9)
            assert tr.delay(it, w, 0, 8) == pytest.approx(orig.delay(it, w, 0, 8), rel=1e-9)
            assert tr.delay(it, w, 1, 4) == pytest.approx(orig.delay(it, w, 1, 4), rel=1e-9)
            assert tr.one_off(it, w) == pytest.approx(orig.one_off(it, w), rel=1e-9)


def test_trace_keeps_rates_rates(tmp_path):
    rec = record(tmp_path, stragglers="shifted-exp")
    orig = make_straggler_model(cfg(stragglers="shifted-exp"), 4, 16)
    tr = make_straggler_model(cfg(stragglers="trace:" + rec, iterations=3), 4, 16)
    for w in range(4):
        assert tr.one_off(1, w) == 0.0
        assert tr.delay(1, w, 0, 8) == pytest.approx(orig.delay(1, w, 0, 8), rel=1e-9)
        c1, d1 = tr.worker_profile(1, 1e-4)
        c0, d0 = orig.worker_profile(1, 1e-4)
        np.testing.assert_allclose(c1, c0, rtol=1e-9)


# ---- cyclic: the circulant construction -------------------------------------------------------
@pytest.mark.parametrize("N,s", [(64, 1), (64, 3), (256, 3), (1024, 5), (12, 3), (10, 1)])
def test_circulant_cyclic_exact_on_random_straggler_sets(N, s):
    sc = CyclicRepetition(N, N, tolerance=s, seed=0)
    assert sc.construction == "circulant"
    assert worst_on_random_sets(sc, 200 if N < 1024 else 40, seed=N + s) <= 1e-9
    B = circulant_B(N, s)
    np.testing.assert_array_equal(sc.B, B)  # the band the scheme keeps is that B
    assert np.allclose(B.sum(axis=1), B[0].sum())  # every row the same shifted coefficients
    assert math.gcd(circulant_d(N, s), N) == 1 and circulant_d(N, s) <= N / (s + 1)


def test_cyclic_construction_choice():
    assert CyclicRepetition(8, 8, tolerance=2, seed=0).construction == "tandon"  # even s
    assert CyclicRepetition(9, 9, tolerance=1, seed=0).construction == "tandon"  # odd N
    assert CyclicRepetition(8, 8, tolerance=1, seed=0, construction="tandon"
                            ).construction == "tandon"
    with pytest.raises(ValueError):
        CyclicRepetition(9, 9, tolerance=1, construction="circulant")

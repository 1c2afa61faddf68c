"""DropCompute (Giladi et al., NeurIPS 2023): the worker's cut-off rule, the threshold search,
the rescaled decode and its documented error bound, the wire format of the budget.

    .venv/bin/python -m pytest -q tests/unit/test_dropcompute.py
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpicode.mpi import protocol as p
from mpicode.schemes.base import Task, cut_short
from mpicode.schemes.dropcompute import DropCompute, best_threshold
from mpicode.schemes.replay import GradientOracle, effective_coeffs, run_iteration
from mpicode.testing import check_scheme

FAST = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("params", [{}, {"dc_tune_iterations": 1}, {"dc_threshold": 0.3},
                                    {"dc_threshold": 0.3, "dc_normalise": "nominal"}])
def test_conformance(params):
    """check_scheme's non-exact contract: every covered partition weighted alike, the
    reported coverage the covered fraction; a time limit is honoured as the worker would."""
    check_scheme(DropCompute, trials=20, **params)


@given(n=st.integers(1, 20), cost=st.floats(0, 1), delay=st.floats(0, 5),
       limit=st.floats(1e-3, 10))
def test_cut_short_is_the_workers_rule(n, cost, delay, limit):
    """Partition j starts at j * (cost + delay / n) and runs iff j == 0 or it starts before
    the limit: as mpicode.mpi.worker's loop, partition by partition."""
    done, secs = cut_short(n, cost, delay, limit)
    u = cost + delay / n
    t, want = 0.0, 0
    for j in range(n):
        if j and t >= limit:
            break
        t += u
        want += 1
    assert done == want
    assert secs == pytest.approx(want * u)


def test_cut_short_without_limit():
    assert cut_short(4, 0.5, 1.0, math.inf) == (4, 3.0)


def test_best_threshold_drops_a_persistent_straggler_tail():
    """One worker in eight 4x slower, 16 micro-partitions each, steps of 64 s compute plus
    40 s of everything else: cutting the straggler's tail where the others finish is the
    best trade (drop 12 of 128 partitions, the step 104 -> 56 s); cutting deeper drops more
    work than it saves time."""
    u = np.ones((10, 8))
    u[:, 3] = 4.0
    tau = best_threshold(u, np.full(10, 104.0), 16)
    assert 15.0 < tau <= 16.0
    kept = np.clip(np.ceil(tau / u), 1, 16)
    assert kept[0, 3] == 4 and (kept[0, np.arange(8) != 3] == 16).all()


def test_best_threshold_without_overhead_is_flat_and_takes_the_lowest():
    """With nothing but compute in a step, samples per second are the same for every cut at
    a multiple of the straggler's micro-batch up to the fast workers' finish (they are busy
    until it): of these ties the largest is kept, which drops least (the reference code's
    argmax kept the smallest, 7..8 s here: half the work)."""
    u = np.ones((4, 8))
    u[:, 3] = 4.0
    assert 15.0 < best_threshold(u, np.full(4, 64.0), 16) <= 16.0


def test_best_threshold_drops_nothing_when_workers_are_alike():
    u = np.ones((5, 6))
    assert best_threshold(u, np.full(5, 8.0), 8) == 8.0


def test_the_threshold_is_tuned_then_carried_by_every_task():
    sc = DropCompute(4, 32, dc_tune_iterations=2)
    speed = np.array([1.0, 1.0, 1.0, 5.0])
    for it in range(2):
        out = run_iteration(sc, it, lambda t: t.n * speed[t.worker])
        assert out.decoding.coverage == 1.0 and math.isnan(out.summary["threshold_s"])
    assert math.isfinite(sc.threshold)
    assert any("threshold tuned" in n for n in sc.log_notes)
    out = run_iteration(sc, 2, lambda t: t.n * speed[t.worker])
    assert all(t.time_limit == sc.threshold for t in sc.tasks.values())
    assert out.decoding.coverage < 1.0 and out.summary["dropped"] > 0
    assert out.t_end < 8 * 5.0        # the straggler no longer sets the step
    assert out.summary["load"] == out.decoding.coverage


@st.composite
def partial_runs(draw):
    N = draw(st.integers(1, 8))
    m = draw(st.integers(1, 6))
    speed = draw(st.lists(st.floats(0.1, 10), min_size=N, max_size=N))
    tau = draw(st.floats(0.05, 30))
    return N, m, speed, tau, draw(st.sampled_from(["computed", "nominal"])), draw(
        st.integers(0, 2**16))


@FAST
@given(partial_runs())
def test_decode_weights_and_the_documented_error_bound(case):
    """Every computed partition gets the same weight (K / computed, or 1 for ``nominal``),
    the coverage is the computed fraction, and with ``computed`` normalisation the decoded
    sum is within 2 (1 - coverage) K max_k |g_k| of the full sum (docs/design.md §3.4a)."""
    N, m, speed, tau, norm, seed = case
    K = N * m
    sc = DropCompute(N, K, dc_threshold=tau, dc_normalise=norm)
    out = run_iteration(sc, 0, lambda t: t.n * speed[t.worker])
    c = effective_coeffs(sc, out.decoding)
    covered = c > 0
    computed = sum(len(t.computed) for t in sc.tasks.values())
    assert covered.sum() == computed >= N       # every worker does at least one
    w = K / computed if norm == "computed" else 1.0
    np.testing.assert_allclose(c[covered], w, rtol=1e-12)
    assert out.decoding.coverage == pytest.approx(computed / K)
    if norm == "computed":
        o = GradientOracle(K, seed=seed)
        g, _ = o.combine(sc, out.decoding)
        full, _ = o.full()
        bound = 2 * (1 - out.decoding.coverage) * K * np.linalg.norm(o.g, axis=1).max()
        assert np.linalg.norm(g - full) <= bound + 1e-9


def test_task_budget_round_trips_on_the_wire():
    t = Task(3, 1, 1, np.array([4, 5, 6, 7]))
    t.time_limit = 0.25
    d = p.decode_task(p.encode_task(2, t, 0.5))
    assert d["time_limit"] == 0.25 and list(d["partitions"]) == [4, 5, 6, 7]
    d = p.decode_task(p.encode_task(2, t, 0.0, n=2, time_limit=math.inf))
    assert d["time_limit"] == math.inf and list(d["partitions"]) == [4, 5]
    assert p.decode_partial(p.encode_partial(2, 3, 2)) == (2, 3, 2)
    assert p.decode_task(p.encode_task(1, Task(0, 0, 1, np.array([1])), 0.0))["time_limit"] \
        == math.inf   # a task without a budget


def test_state_round_trips_with_the_samples():
    sc = DropCompute(3, 6, dc_tune_iterations=5)
    run_iteration(sc, 0, lambda t: t.n * (1 + t.worker))
    fresh = DropCompute(3, 6, dc_tune_iterations=5)
    fresh.load_state_dict(sc.state_dict())
    assert len(fresh.samples) == 1 and fresh.step_s == sc.step_s

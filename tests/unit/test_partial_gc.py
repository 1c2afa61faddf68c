"""``partial-gc`` (Ramamoorthy, Meng, Girimaji, NeurIPS 2024): exactness under any completion
order, the use of partial stragglers' chunks, and the chunk-ordering algorithm.

    .venv/bin/python -m pytest -q tests/unit/test_partial_gc.py
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schemes import SLOW, assert_exact  # the exactness check every scheme test uses

from mpicode.schemes.partial_gc import (
    PartialGC,
    check_biregular,
    cyclic_assignment,
    optimal_order,
    perfect_matching,
    q_max,
    q_max_lower_bound,
    random_regular_assignment,
)
from mpicode.schemes.replay import GradientOracle, run_iteration
from mpicode.testing import check_scheme

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])



def assert_stopped_at_first_decodable(sc, out):
    for i in range(len(out.arrivals)):
        assert not sc.decodable_with(set(out.arrivals[:i]))
    assert sc.decodable_with(set(out.arrivals))


@pytest.mark.parametrize("params", [
    {}, {"pgc_order": "random"}, {"pgc_assignment": "random"},
    {"pgc_assignment": "random", "pgc_order": "random"}, {"pgc_cancel_covered": True}])
def test_conformance(params):
    check_scheme(PartialGC, trials=20, **params)


@st.composite
def cases(draw):
    s = draw(st.integers(0, 4))
    N = draw(st.integers(s + 1, 10))
    K = N * draw(st.integers(1, 3))
    params = {"pgc_order": draw(st.sampled_from(["optimal", "random"])),
              "pgc_assignment": draw(st.sampled_from(["cyclic", "random"])),
              "pgc_cancel_covered": draw(st.booleans())}
    per = st.one_of(st.integers(1, 6), st.just(int(SLOW)))  # ties are common, some straggle
    iters = draw(st.integers(1, 3))
    durs = draw(st.lists(st.lists(per, min_size=N * (s + 1), max_size=N * (s + 1)),
                         min_size=iters, max_size=iters))
    return N, K, s, params, durs, draw(st.integers(0, 2**16))


@FAST
@given(cases())
def test_exact_under_any_completion_order(case):
    """Per-chunk durations drawn at random (ties, stragglers that never finish): the decode
    counts every partition once, equals the true sum to 1e-9, and happens at the first
    arrival after which every chunk has a copy."""
    N, K, s, params, durs, seed = case
    sc = PartialGC(N, K, tolerance=s, seed=seed, **params)
    oracle = GradientOracle(K, seed=seed)
    for it, d in enumerate(durs):
        # a straggler's chunk may never finish, but at most s whole workers may fail: keep
        # the draw feasible by letting worker 0..N-s-1 finish every chunk eventually
        def dur(t, d=d):
            x = d[t.task_id % len(d)]
            return min(x, 50) if t.worker < N - s else x
        out = run_iteration(sc, it, dur, deliver_cancelled=True)
        assert_exact(sc, out, oracle)
        assert_stopped_at_first_decodable(sc, out)


def test_a_partial_straggler_chunk_is_used():
    """N = 3, s = 1 (cyclic: worker 0 holds chunks 0, 1; worker 1 holds 1, 2; worker 2 holds
    2, 0). Worker 2 fails, worker 0 is slow: its first chunk (chunk 0) is done at 1.5, its
    second at 3. Worker 1 finishes chunk 1 at 1 and chunk 2 at 2. Every chunk has a copy at
    t = 2, using the slow worker's partial work; a protocol that waits for two whole
    workers (frc/cyclic) decodes at 3."""
    sc = PartialGC(3, 6, tolerance=1)
    assert sc.order == [[0, 1], [1, 2], [2, 0]]
    speed = {0: 1.5, 1: 1.0, 2: SLOW}
    out = run_iteration(sc, 0, lambda t: speed[t.worker])
    assert out.t_end == 2.0
    used = {sc.tasks[tid].worker for tid in out.decoding.weights}
    assert used == {0, 1}
    assert out.summary["partial_used"] == 1       # worker 0's chunk 0
    assert out.summary["chunks_in"] == 3
    assert_exact(sc, out, GradientOracle(6))


def test_cancel_covered_frees_the_other_copies():
    sc = PartialGC(3, 3, tolerance=1, pgc_cancel_covered=True)
    out = run_iteration(sc, 0, lambda t: {0: 1.0, 1: 1.0, 2: 3.0}[t.worker])
    # at t = 1 chunks 0 and 1 arrive (workers 0, 1 first positions): worker 1's queued
    # copy... every copy of a covered chunk still pending is cancelled at once
    cancelled_at_1 = [c for t, c in out.cancelled if t == 1.0]
    assert {sc._chunk[c.task_id] for c in cancelled_at_1} <= {0, 1}
    assert cancelled_at_1


# ---- the chunk-ordering algorithm ---------------------------------------------------------
@FAST
@given(n=st.integers(1, 24), gamma=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_optimal_order_reaches_the_lower_bound(n, gamma, seed):
    """On random biregular assignments the computed order puts every chunk at every position
    once, reaching q_max = gamma (n - gamma) + gamma (gamma - 1) / 2 + 1, which no order
    beats (a random order does not do better)."""
    gamma = min(gamma, n)
    rng = np.random.default_rng(seed)
    a = random_regular_assignment(n, gamma, rng)
    assert check_biregular(a, n) == gamma
    o = optimal_order(a, n)
    assert [sorted(x) for x in o] == [sorted(x) for x in a]
    for k in range(gamma):
        assert sorted(x[k] for x in o) == list(range(n))   # position k: a perfect matching
    assert q_max(o, n) == q_max_lower_bound(n, gamma)
    rand = [list(rng.permutation(x)) for x in a]
    assert q_max(rand, n) >= q_max_lower_bound(n, gamma)


def test_cyclic_natural_order_is_optimal_and_kept():
    for n, g in [(4, 2), (8, 3), (9, 9)]:
        a = cyclic_assignment(n, g)
        assert optimal_order(a, n) == a
        assert q_max(a, n) == q_max_lower_bound(n, g)


def brute_q_max(order, n):
    """The definition: one more than the most chunk computations possible (each worker done
    with a prefix of its order) while some chunk has no copy."""
    best = -1
    for prog in itertools.product(*[range(len(o) + 1) for o in order]):
        done = {c for o, p in zip(order, prog, strict=True) for c in o[:p]}
        if len(done) < n:
            best = max(best, sum(prog))
    return best + 1


@pytest.mark.parametrize("n,gamma,seed", [(3, 2, 0), (4, 2, 1), (4, 3, 2), (5, 2, 3),
                                          (5, 3, 4), (6, 2, 5)])
def test_q_max_matches_its_definition(n, gamma, seed):
    rng = np.random.default_rng(seed)
    a = random_regular_assignment(n, gamma, rng)
    for o in (a, optimal_order(a, n), [list(rng.permutation(x)) for x in a]):
        assert q_max(o, n) == brute_q_max(o, n)


def test_perfect_matching_needs_augmenting_paths():
    # greedy takes 0 -> 0, then 1 has only 0 left: Kuhn moves 0 to 1
    assert perfect_matching([[0, 1], [0]], 2) == [1, 0]
    with pytest.raises(ValueError):
        perfect_matching([[0], [0]], 2)


def test_irregular_assignments_are_refused():
    with pytest.raises(ValueError):
        check_biregular([[0, 1], [1]], 2)
    with pytest.raises(ValueError):
        check_biregular([[0, 1], [0, 1], [0, 1]], 3)


def test_simulator_at_n_1024():
    """The whole simulator at N = 1024 (the order algorithm on a random assignment at
    scale): every iteration decodes exactly (coverage 1) from at least N chunk messages."""
    from mpicode.config import defaults, validate_for_size
    from mpicode.models.stragglers import make_straggler_model
    from mpicode.schemes import make_scheme
    from mpicode.simulator import Simulator
    N = 1024
    cfg = validate_for_size(defaults().replace(
        scheme="partial-gc", stragglers="bimodal", compute="none", partition_cost=1e-3,
        stragglers_tolerated=2, pgc_assignment="random"), N)
    sc = make_scheme(cfg, N, cfg.partitions)
    assert sc.q_max == q_max_lower_bound(N, 3)
    sim = Simulator(sc, make_straggler_model(cfg, N, cfg.partitions), n_workers=N,
                    partition_cost=1e-3)
    for it in range(2):
        row = sim.iteration(it)["row"]
        assert row["coverage"] == 1.0 and row["chunks_in"] >= N

"""``hetero-gc`` (heterogeneity-aware binary fractional repetition): exactness under any
completion order and straggler set, loads proportional to the measured speeds.

    .venv/bin/python -m pytest -q tests/unit/test_hetero_gc.py
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schemes import SLOW, assert_exact  # the exactness check every scheme test uses

from mpicode.schemes.hetero_gc import HeteroGC, speed_groups
from mpicode.schemes.replay import GradientOracle, run_iteration
from mpicode.testing import check_scheme

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])



def test_conformance():
    check_scheme(HeteroGC, trials=30)


@st.composite
def cases(draw):
    s = draw(st.integers(0, 4))
    N = draw(st.integers(s + 1, 12))
    K = draw(st.integers(N, 4 * N))
    iters = draw(st.integers(1, 4))
    speed = st.floats(0.2, 5.0)
    speeds = draw(st.lists(st.lists(speed, min_size=N, max_size=N), min_size=iters,
                           max_size=iters))
    strag = draw(st.lists(st.sets(st.integers(0, N - 1), max_size=s), min_size=iters,
                          max_size=iters))
    return N, K, s, speeds, strag, draw(st.integers(0, 2**16))


@FAST
@given(cases())
def test_exact_under_any_completion_order_and_straggler_set(case):
    """Speeds drawn per iteration (the plan follows last iteration's estimates), up to s
    stragglers that never finish: exact to 1e-9, decoded at the first arrival that completes
    a group."""
    N, K, s, speeds, strag, seed = case
    sc = HeteroGC(N, K, tolerance=s, seed=seed, speed_alpha=1.0)
    oracle = GradientOracle(K, seed=seed)
    for it, (sp, bad) in enumerate(zip(speeds, strag, strict=True)):
        out = run_iteration(sc, it, lambda t, sp=sp, bad=bad: SLOW if t.worker in bad
                            else t.n / sp[t.worker], deliver_cancelled=True)
        assert out.t_end < SLOW
        assert_exact(sc, out, oracle)
        for i in range(len(out.arrivals)):
            assert not sc.decodable_with(set(out.arrivals[:i]))


@pytest.mark.parametrize("N,s", [(4, 1), (6, 2), (7, 3)])
def test_every_straggler_set_up_to_s(N, s):
    sc = HeteroGC(N, 3 * N, tolerance=s)
    oracle = GradientOracle(3 * N)
    subsets = itertools.chain.from_iterable(itertools.combinations(range(N), k)
                                            for k in range(s + 1))
    for it, bad in enumerate(subsets):
        out = run_iteration(sc, it, lambda t, bad=bad: SLOW if t.worker in bad else t.n)
        assert out.t_end < SLOW
        assert_exact(sc, out, oracle)


def test_shares_follow_the_measured_speeds():
    """After one iteration at known speeds (alpha = 1: the estimate is the sample), the s + 1
    groups have near-equal total speed and every member's share is within one partition of
    its speed-proportional quota: the slow workers get little, and every group finishes at
    about K / (its total speed)."""
    N, K, s = 8, 400, 1
    speed = np.array([4.0, 1.0, 1.0, 2.0, 1.0, 3.0, 2.0, 2.0])
    sc = HeteroGC(N, K, tolerance=s, speed_alpha=1.0)
    run_iteration(sc, 0, lambda t: t.n / speed[t.worker])
    out = run_iteration(sc, 1, lambda t: t.n / speed[t.worker])
    groups: dict[int, list] = {}
    for t in sc.tasks.values():
        groups.setdefault(sc._group_of[t.task_id], []).append(t)
    assert len(groups) == s + 1
    totals = [sum(speed[t.worker] for t in g) for g in groups.values()]
    assert max(totals) - min(totals) <= speed.max()
    for g, tot in zip(groups.values(), totals, strict=True):
        assert sum(t.n for t in g) == K
        for t in g:
            assert abs(t.n - K * speed[t.worker] / tot) < 1 + 1e-9
    assert out.summary["load"] == s + 1
    assert out.t_end <= K / min(totals) + 1e-9


def test_speed_groups():
    assert speed_groups([1, 1, 1, 1], 2) == [[0, 2], [1, 3]]
    assert speed_groups([5, 1, 1, 1, 1, 1], 2) == [[0], [1, 2, 3, 4, 5]]
    assert speed_groups([1.0], 1) == [[0]]


def test_dead_workers_are_not_planned():
    sc = HeteroGC(5, 10, tolerance=2)
    sc.active[[1, 3, 4]] = False
    out = run_iteration(sc, 0, lambda t: t.n)
    assert {t.worker for t in sc.tasks.values()} == {0, 2}
    assert out.summary["groups"] == 2 and any("only 2 active" in n for n in sc.log_notes)
    assert_exact(sc, out, GradientOracle(10))


def test_simulator_at_n_1024():
    from mpicode.config import defaults, validate_for_size
    from mpicode.models.stragglers import make_straggler_model
    from mpicode.schemes import make_scheme
    from mpicode.simulator import Simulator
    N = 1024
    cfg = validate_for_size(defaults().replace(
        scheme="hetero-gc", stragglers="bimodal", compute="none", partition_cost=1e-3,
        stragglers_tolerated=1), N)
    sc = make_scheme(cfg, N, cfg.partitions)
    sim = Simulator(sc, make_straggler_model(cfg, N, cfg.partitions), n_workers=N,
                    partition_cost=1e-3)
    for it in range(3):
        row = sim.iteration(it)["row"]
        assert row["coverage"] == 1.0 and row["load"] == 2.0

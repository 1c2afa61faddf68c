"""Computing-phase schemes: exactness, coverage, triggers, cancels, speed estimates.

Serial and fast (pure policies, virtual time through :mod:`mpicode.schemes.replay`)::

    PYTHONPATH=$PWD python -m pytest -q tests/test_schemes.py
"""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpicode.config import Config, add_options, defaults, resolve
from mpicode.schemes import SCHEMES, make_scheme
from mpicode.schemes.base import Scheme
from mpicode.schemes.cyclic import CyclicRepetition, tandon_cyclic_B, worst_decode_residual
from mpicode.schemes.frc import FractionalRepetition
from mpicode.schemes.replay import GradientOracle, effective_coeffs, run_iteration
from mpicode.schemes.shares import Placement, contiguous, largest_remainder
from mpicode.schemes.speed_aware import SpeedAware
from mpicode.schemes.two_stage import SELF, TwoStage
from mpicode.schemes.uncoded import IgnoreStragglers, Uncoded

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = 1e6  # duration of a straggler's task: it never arrives before the decode


def assert_exact(scheme: Scheme, out, oracle: GradientOracle):
    """Every partition counted exactly once, and the decoded gradient equals the sum."""
    c = effective_coeffs(scheme, out.decoding)
    np.testing.assert_allclose(c, 1.0, rtol=0, atol=1e-9)
    g, loss = oracle.combine(scheme, out.decoding)
    full_g, full_loss = oracle.full()
    assert np.linalg.norm(g - full_g) <= 1e-9 * np.linalg.norm(full_g)
    assert abs(loss - full_loss) <= 1e-9 * abs(full_loss)
    assert out.decoding.coverage == 1.0


def assert_stopped_at_first_decodable(scheme: Scheme, out):
    """``done`` == ``decodable_with(arrived)``: no shorter prefix of arrivals decodes."""
    for i in range(len(out.arrivals)):
        assert not scheme.decodable_with(set(out.arrivals[:i])), out.arrivals[:i]
    assert scheme.decodable_with(set(out.arrivals))


def run_with_stragglers(scheme, stragglers, rng, iteration=0):
    speed = rng.uniform(0.5, 2.0, scheme.N)
    return run_iteration(scheme, iteration, lambda t: SLOW if t.worker in stragglers
                         else t.n * speed[t.worker] + rng.uniform(0, 0.1))


def all_subsets(n, s):
    return itertools.chain.from_iterable(itertools.combinations(range(n), k)
                                         for k in range(s + 1))


# ---- shares and placement -------------------------------------------------------------------
def _water_fill(total, w):
    """The spec, independently: pin to 1 every share whose proportional part of what the
    unpinned ones share is below 1, until none is; the floor is dropped (plain proportional
    quotas) when ``total`` cannot give everyone 1. Returns (pinned mask, quotas)."""
    w = np.asarray(w, float)
    pinned = np.zeros(len(w), bool)
    if total < len(w):
        return pinned, total * w / w.sum()
    while True:
        quota = np.where(pinned, 1.0, (total - pinned.sum()) * w / w[~pinned].sum())
        low = ~pinned & (quota < 1)
        if not low.any():
            return pinned, quota
        pinned |= low


@FAST
@given(total=st.integers(0, 200), w=st.lists(st.floats(0.01, 100), min_size=1, max_size=20))
@example(total=5, w=[1.0, 1.0, 2.0, 2.0, 9.0, 1.5, 1.5])  # the floor dropped: ones not pinned
def test_largest_remainder(total, w):
    c = largest_remainder(total, w)
    assert c.sum() == total and c.dtype == np.int64 and c.min() >= 0
    if total >= len(w):
        assert c.min() >= 1
    pinned, quota = _water_fill(total, w)
    assert np.all(c[pinned] == 1)
    # every unpinned share is within one unit of its proportional quota
    assert np.all(np.abs(c[~pinned] - quota[~pinned]) < 1 + 1e-9)


def test_largest_remainder_ties_by_index_and_floor():
    assert list(largest_remainder(10, [1, 1, 1])) == [4, 3, 3]
    # a very slow worker is pinned to 1 and does not steal the fast ones' rounding
    assert list(largest_remainder(10, [1, 1, 0.001])) == [5, 4, 1]
    assert [list(r) for r in contiguous([2, 1], start=3)] == [[3, 4], [5]]


def test_placement_replicated_is_cyclic():
    p = Placement("replicated:2", 4, 8)
    assert p.holders(0) == [0, 1] and p.holders(7) == [3, 0]
    assert p.holds(0, 7) and not p.holds(1, 7)
    with pytest.raises(ValueError):
        Placement("replicated:9", 4, 8)


# ---- classic schemes ------------------------------------------------------------------------
def test_uncoded_and_ignore_stragglers_rules():
    u = Uncoded(4, 8)
    u.begin(0)
    assert not u.decodable_with({0, 1, 2}) and u.decodable_with({0, 1, 2, 3})
    ig = IgnoreStragglers(4, 8, tolerance=1)
    ig.begin(0)
    assert ig.decodable_with({0, 1, 3}) and not ig.decodable_with({0, 1, 99})
    rng = np.random.default_rng(0)
    out = run_with_stragglers(ig, {2}, rng)
    np.testing.assert_allclose(effective_coeffs(ig, out.decoding),
                               [4 / 3] * 4 + [0, 0] + [4 / 3] * 2)
    assert out.decoding.coverage == 0.75


def test_speed_aware_shares_proportional():
    N, K = 5, 40
    sa = SpeedAware(N, K)
    sa.tau[:] = [1.0, 2.0, 4.0, 1.0, 0.5]
    tasks = sa.begin(0).dispatch
    want = largest_remainder(K, 1 / sa.tau)
    assert [t.n for t in tasks] == list(want)
    assert np.array_equal(np.concatenate([t.partitions for t in tasks]), np.arange(K))
    out = run_with_stragglers(sa, set(), np.random.default_rng(1), iteration=1)
    assert_exact(sa, out, GradientOracle(K))


@pytest.mark.parametrize("N,s", [(2, 1), (4, 1), (6, 2), (8, 3), (9, 2), (12, 1), (12, 3),
                                 (12, 5)])
def test_frc_exact_for_every_straggler_set(N, s):
    check_every_straggler_set(FractionalRepetition(N, 2 * N, tolerance=s), N, s, seed=N)


def check_every_straggler_set(sc, N, s, seed):
    """Exhaustive: every straggler set of size <= s decodes exactly, as soon as it can, at
    load s + 1 (frc and cyclic)."""
    oracle, rng = GradientOracle(sc.K), np.random.default_rng(seed)
    for it, strag in enumerate(all_subsets(N, s)):
        out = run_with_stragglers(sc, set(strag), rng, it)
        assert_exact(sc, out, oracle)
        assert_stopped_at_first_decodable(sc, out)
        assert out.summary["load"] == s + 1


def test_frc_needs_multiple_of_s_plus_1():
    with pytest.raises(ValueError):
        FractionalRepetition(5, 10, tolerance=1)


def test_cyclic_B_is_tandon_algorithm_2():
    n, s = 7, 3
    B = tandon_cyclic_B(n, s, np.random.default_rng(0))
    for i in range(n):
        supp = set((i + np.arange(s + 1)) % n)
        assert set(np.flatnonzero(B[i])) <= supp and B[i, i] == 1
    assert np.linalg.matrix_rank(B) == n - s  # rows span the (n-s)-dim null space of H
    # seeded from the run seed: the same code on every rank and every run
    assert np.array_equal(CyclicRepetition(n, n, tolerance=s, seed=5).B,
                          CyclicRepetition(n, 2 * n, tolerance=s, seed=5).B)


def test_cyclic_picks_a_well_conditioned_draw():
    # seed 0, N = 10, s = 6: a single draw of Algorithm 2 decodes some worker sets only to
    # ~5e-9; the scheme keeps the best of a few seeded draws
    single = tandon_cyclic_B(10, 6, np.random.default_rng(0))
    assert worst_decode_residual(single, 6) > 1e-9
    assert worst_decode_residual(CyclicRepetition(10, 10, tolerance=6, seed=0).B, 6) < 1e-11


@pytest.mark.parametrize("N,s", [(2, 1), (3, 1), (5, 2), (6, 0), (8, 3), (10, 4), (12, 2),
                                 (12, 5)])
def test_cyclic_exact_for_every_straggler_set(N, s):
    check_every_straggler_set(CyclicRepetition(N, 2 * N, tolerance=s, seed=N + s), N, s, seed=s)


def test_tandon_published_example_each_single_straggler():
    sc = CyclicRepetition.tandon_example(n_partitions=3)
    np.testing.assert_array_equal(sc.B, [[0.5, 1, 0], [0, 1, -1], [0.5, 0, 1]])
    oracle = GradientOracle(3)
    for straggler in range(3):
        out = run_with_stragglers(sc, {straggler}, np.random.default_rng(straggler))
        assert_exact(sc, out, oracle)
        assert sc.tasks[straggler].state == "cancelled"
    # the paper's decoding vectors, e.g. g1 + g2 + g3 = 2 f1 - f2 with worker 3 straggling
    np.testing.assert_allclose(sc.coefficients([0, 1]), [2, -1])
    with pytest.raises(ValueError):
        CyclicRepetition(3, 3, tolerance=1, B=np.ones((3, 3)))


@pytest.mark.parametrize("N,s", [(3, 1), (6, 2), (10, 3)])
def test_ignore_stragglers_rule_for_every_straggler_set(N, s):
    K = 2 * N
    sc, rng = IgnoreStragglers(N, K, tolerance=s), np.random.default_rng(N)
    for it, strag in enumerate(all_subsets(N, s)):
        out = run_with_stragglers(sc, set(strag), rng, it)
        assert_stopped_at_first_decodable(sc, out)
        c = effective_coeffs(sc, out.decoding)
        used = sorted({sc.tasks[i].worker for i in out.decoding.weights})
        assert len(used) == N - s and not set(used) & set(strag)
        np.testing.assert_allclose(c[c > 0], N / (N - s))
        assert np.count_nonzero(c) == K * (N - s) // N


@st.composite
def classic_cases(draw):
    name = draw(st.sampled_from(["uncoded", "speed-aware", "frc", "cyclic"]))
    s = draw(st.integers(0, 4))
    N = draw(st.integers(1, 3)) * (s + 1) if name == "frc" else draw(st.integers(s + 1, 12))
    K = N * draw(st.integers(1, 3))
    iters = draw(st.integers(1, 3))
    durs = draw(st.lists(st.lists(st.integers(1, 8), min_size=N, max_size=N),
                         min_size=iters, max_size=iters))
    return name, N, K, s, durs, draw(st.integers(0, 2**16))


@FAST
@given(classic_cases())
def test_classic_schemes_exact_under_any_completion_order(case):
    """Random arrival orders (with ties) and speed histories: exact, and stops as soon as the
    arrived set is decodable."""
    name, N, K, s, durs, seed = case
    sc = SCHEMES[name](N, K, tolerance=s, seed=seed)
    oracle = GradientOracle(K, seed=seed)
    for it, d in enumerate(durs):
        out = run_iteration(sc, it, lambda t, d=d: d[t.worker] * t.n, deliver_cancelled=True)
        assert_exact(sc, out, oracle)
        assert_stopped_at_first_decodable(sc, out)


# ---- two-stage: the property test -----------------------------------------------------------
@st.composite
def two_stage_cases(draw):
    N = draw(st.integers(2, 10))
    K = draw(st.sampled_from([N, 2 * N, 4 * N, 3 * N + draw(st.integers(1, N))]))
    R = draw(st.integers(1, N))
    params = dict(
        rho=draw(st.sampled_from([0.5, 0.75, 1.0])),
        trigger=draw(st.sampled_from(["count", "deadline", "both"])),
        trigger_k=draw(st.none() | st.integers(1, N)),
        beta=draw(st.sampled_from([1.0, 1.5, 3.0])),
        stage2_tolerance=draw(st.integers(0, 1)),
        replan=draw(st.sampled_from([0, 1, 3, 64])),
        stage1_chunks=draw(st.integers(1, 4)),
        replan_load=draw(st.sampled_from([0.0, 0.3, 2.0])),
        replan_messages=draw(st.sampled_from([0.0, 3.0, 100.0])),
        placement=draw(st.sampled_from(["shared", f"replicated:{R}"])),
        tolerance=draw(st.integers(0, N - 1)),
        speed_alpha=draw(st.sampled_from([0.5, 1.0])),
    )
    iters = draw(st.integers(1, 3))
    # integer durations make ties (simultaneous arrivals) common; a few huge ones straggle
    per = st.one_of(st.integers(1, 6), st.just(1000))
    durs = draw(st.lists(st.lists(per, min_size=2 * N, max_size=2 * N),
                         min_size=iters, max_size=iters))
    return N, K, params, durs, draw(st.booleans())


def check_two_stage_iteration(sc: TwoStage, out, oracle):
    assert_exact(sc, out, oracle)
    assert_stopped_at_first_decodable(sc, out)
    # stage 1 (its live tasks: a stolen one moved to its thief) covers every partition
    # exactly once, only with holders
    parts = np.concatenate([t.partitions for t in sc.coverage.s1.values()])
    assert np.array_equal(np.sort(parts), np.arange(sc.K))
    for t in sc.tasks.values():
        assert all(sc.placement.holds(t.worker, int(k)) for k in t.partitions)
    # stage 2 only on reserve or finished stage-1 workers, only the stragglers' partitions
    order = {x.task_id: i for i, (_, x) in enumerate(out.dispatched)}
    for t_disp, task in out.dispatched:
        if task.stage != 2:
            continue
        # (a worker may steal a queued stage-1 task later, once this block is done or was
        # cancelled; one whose stage-1 task was cancelled, covered by others, is free again)
        own = [x for x in sc.coverage.s1.values() if x.worker == task.worker
               and order[x.task_id] < order[task.task_id]]
        assert all(x.state in ("done", "cancelled") and x.t_done <= t_disp for x in own)
        owner = sc.coverage.s1[sc.coverage.owner[task.task_id][0][1]]
        assert set(task.partitions.tolist()) <= set(owner.partitions.tolist())
        assert owner.t_done >= t_disp or owner.state == "cancelled"
    summ = out.summary
    n2 = sum(t.n for t in sc.tasks.values() if t.stage == 2)
    assert summ["load"] == pytest.approx(1.0 + n2 / sc.K)  # a stolen task never ran
    if not summ["stage2"]:
        assert summ["load"] == 1.0
    assert summ["coverage"] == 1.0 and summ["expired"] == 0
    # stage 2 re-issues U at most r2 times; each re-planning round at most one set again
    biggest = max(t.n for t in sc.coverage.s1.values())
    assert n2 <= max(summ["r2"], 1) * summ["u"] + summ["replans"] * biggest


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(two_stage_cases())
def test_two_stage_exact_under_any_completion_order(case):
    N, K, params, durs, deliver_cancelled = case
    sc = TwoStage(N, K, seed=1, **params)
    oracle = GradientOracle(K, seed=K)
    for it, d in enumerate(durs):
        out = run_iteration(sc, it, lambda t, d=d: d[t.worker + N * (t.stage - 1)] * (
            t.n if t.stage == 1 else 1), deliver_cancelled=deliver_cancelled)
        check_two_stage_iteration(sc, out, oracle)


# (with a reserve, rho < 1, the reserve steals queued stage-1 chunks at once; this harness
# does not free a worker whose queued task was cancelled, so it would see the victims late:
# the reserve case runs with one stage-1 task per worker)
@pytest.mark.parametrize("kw", [dict(tolerance=0), dict(tolerance=1, trigger="deadline"),
                                dict(tolerance=2, rho=0.5, trigger="deadline",
                                     stage1_chunks=1)])
def test_two_stage_load_is_one_when_nobody_straggles(kw):
    N, K = 6, 24
    sc = TwoStage(N, K, **kw)
    oracle = GradientOracle(K)
    for it in range(3):  # equal speeds: everyone reports together, before any trigger
        out = run_iteration(sc, it, lambda t: float(t.n))
        assert_exact(sc, out, oracle)
        assert out.summary["load"] == 1.0 and out.summary["stage2"] == 0
        assert out.summary["r2"] == 0 and out.summary["trigger"] == ""


# ---- two-stage: plan, triggers, cancels, speeds -----------------------------------------------
def test_two_stage_stage1_is_fastest_with_proportional_shares():
    N, K = 8, 64
    sc = TwoStage(N, K, rho=0.5, stage1_chunks=1, replan=0)
    sc.tau[:] = [3.0, 1.0, 2.0, 0.5, 4.0, 1.0, 8.0, 2.0]
    tasks = sc.begin(0).dispatch
    assert [t.worker for t in tasks] == [1, 2, 3, 5]  # 4 fastest (2 before 7 by index)
    assert [t.n for t in tasks] == list(largest_remainder(K, 1 / sc.tau[[1, 2, 3, 5]]))
    assert [t.n for t in tasks] == [14, 7, 29, 14]  # 64 * (1, 1/2, 2, 1) / 4.5, rounded
    assert np.array_equal(np.concatenate([t.partitions for t in tasks]), np.arange(K))
    for t in tasks:  # contiguous ranges
        assert np.array_equal(t.partitions, np.arange(t.partitions[0], t.partitions[-1] + 1))


def test_two_stage_count_trigger_fires_on_k1th_arrival():
    N, K = 8, 32
    sc = TwoStage(N, K, tolerance=2, trigger="count", stage1_chunks=1, replan=0)
    tasks = sc.begin(0).dispatch
    assert sc.stage2.k1 == 8 - math.ceil(2 * 8 / 8) and sc.next_deadline() is None
    for i, t in enumerate(tasks[:6]):
        acts = sc.on_result(t.task_id, 1.0 + i, 1.0)
        if i < 5:
            assert not acts.dispatch
    assert sc.stage2.fired == "count" and sc.stage2.t_trigger == 6.0
    s2 = acts.dispatch
    assert s2 and {t.worker for t in s2} <= {t.worker for t in tasks[:6]}
    assert sorted(np.concatenate([t.partitions for t in s2])) == \
        sorted(np.concatenate([tasks[6].partitions, tasks[7].partitions]))


def test_two_stage_trigger_k_override():
    sc = TwoStage(8, 32, tolerance=2, trigger_k=3, stage1_chunks=1, replan=0)
    sc.begin(0)
    assert sc.stage2.k1 == 3


def test_two_stage_deadline_trigger_fires_on_tick_without_arrival():
    N, K = 8, 32
    sc = TwoStage(N, K, rho=0.5, trigger="deadline", beta=1.5, stage1_chunks=1, replan=0)
    sc.begin(0)
    assert sc.next_deadline() is None  # no history, no prediction
    sc.tau[:] = 1.0
    tasks = sc.begin(1).dispatch
    pred = max(t.n * 1.0 for t in tasks)
    assert sc.next_deadline() == pytest.approx(1.5 * pred)
    assert not sc.on_tick(1.5 * pred - 1e-9).dispatch
    acts = sc.on_tick(1.5 * pred)
    assert sc.stage2.fired == "deadline" and acts.dispatch
    assert {t.worker for t in acts.dispatch} <= {0, 1, 2, 3, 4, 5, 6, 7} - {
        t.worker for t in tasks}  # only the reserve: nobody finished
    assert sc.next_deadline() is None


def test_two_stage_deadline_with_nobody_idle_waits_for_first_finisher():
    sc = TwoStage(4, 16, rho=1.0, trigger="deadline", stage2_tolerance=1, stage1_chunks=1,
                  replan=0)
    sc.tau[:] = 1.0
    tasks = sc.begin(0).dispatch
    assert not sc.on_tick(sc.stage2.deadline).dispatch  # everybody busy
    acts = sc.on_result(tasks[0].task_id, 10.0, 4.0)
    assert acts.dispatch and {t.worker for t in acts.dispatch} == {tasks[0].worker}
    assert sc.stage2.r2 == 1 and any("r2 shrunk" in n for n in sc.log_notes)


def test_two_stage_cancels_both_ways():
    N, K = 4, 16
    sc = TwoStage(N, K, trigger="count", trigger_k=2, stage1_chunks=1, replan=0)
    tasks = sc.begin(0).dispatch
    sc.on_result(tasks[0].task_id, 1.0, 1.0)
    acts = sc.on_result(tasks[1].task_id, 1.0, 1.0)
    blocks = acts.dispatch
    of2 = [b for b in blocks if sc.coverage.owner[b.task_id][0][1] == tasks[2].task_id]
    of3 = [b for b in blocks if sc.coverage.owner[b.task_id][0][1] == tasks[3].task_id]
    assert of2 and of3
    # straggler 2's own message first: its stage-2 blocks are cancelled
    acts = sc.on_result(tasks[2].task_id, 2.0, 2.0)
    assert {t.task_id for t in acts.cancel} == {b.task_id for b in of2}
    # straggler 3 tiled by the blocks first: the straggler is cancelled
    for b in of3[:-1]:
        assert not sc.on_result(b.task_id, 3.0, 0.1).cancel
    acts = sc.on_result(of3[-1].task_id, 3.0, 0.1)
    assert [t.task_id for t in acts.cancel] == [tasks[3].task_id]
    assert sc.done() and sc.decodable_with(sc.arrived_ids())
    # stale results (cancelled or unknown) are ignored
    assert not sc.on_result(tasks[3].task_id, 4.0, 4.0).cancel
    assert sc.tasks[tasks[3].task_id].state == "cancelled"
    assert not sc.on_result(10_000, 4.0).dispatch
    dec = sc.decode()
    assert set(dec.weights) == {tasks[i].task_id for i in range(3)} | {b.task_id for b in of3}


def test_two_stage_speeds_from_stage1_only_and_cancel_only_raises():
    N, K = 4, 16
    sc = TwoStage(N, K, trigger="count", trigger_k=3, speed_alpha=1.0, stage1_chunks=1,
                  replan=0)
    tasks = sc.begin(0).dispatch
    for t in tasks[:3]:
        acts = sc.on_result(t.task_id, 4.0, 4.0)  # 4 partitions in 4 s: tau = 1
    for b in acts.dispatch:  # stage-2 blocks take forever per partition: must not count
        sc.on_result(b.task_id, 5.0, 100.0)
    assert sc.done() and tasks[3].state == "cancelled"
    sc.decode()
    sc.outstanding(5.0)
    sc.end(5.0)
    # workers 0..2 learned tau = 1 from stage 1 only; the cut-short straggler's lower
    # bound 5/4 is its first observation
    np.testing.assert_allclose(sc.tau, [1.0, 1.0, 1.0, 1.25])
    # a cancelled task that says less than what we know does not lower the estimate
    sc.tau[3] = 10.0
    tasks = sc.begin(1).dispatch
    sc.tasks[tasks[-1].task_id].state = "cancelled"
    sc.tasks[tasks[-1].task_id].t_done = 0.1
    for t in tasks[:-1]:
        sc.tasks[t.task_id].state, sc.tasks[t.task_id].duration = "done", 1.0
    sc.end(1.0)
    assert sc.tau[3] == 10.0


def test_two_stage_stage2_uses_only_holders_under_replication():
    N, K = 6, 24
    sc = TwoStage(N, K, placement="replicated:2", trigger="count", trigger_k=4,
                  stage1_chunks=1, replan=0)
    tasks = sc.begin(0).dispatch
    for t in tasks:
        assert all(sc.placement.holds(t.worker, int(k)) for k in t.partitions)
    dispatched = []
    for t in tasks[:4]:
        dispatched += sc.on_result(t.task_id, 1.0, 1.0).dispatch
    assert dispatched
    for b in dispatched:
        assert all(sc.placement.holds(b.worker, int(k)) for k in b.partitions)


def test_two_stage_decode_does_no_linear_algebra(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("two-stage decode must not call np.linalg")

    for name in ("lstsq", "solve", "inv", "pinv"):
        monkeypatch.setattr(np.linalg, name, boom)
    N, K = 8, 32
    sc = TwoStage(N, K, rho=0.75, stage2_tolerance=1, stage1_chunks=1, replan=0)
    oracle = GradientOracle(K)
    rng = np.random.default_rng(0)
    tiled = 0
    for it in range(5):
        slow = set(rng.choice(N, 2, replace=False).tolist())
        out = run_iteration(sc, it, lambda t, slow=slow: (
            50.0 if t.worker in slow and t.stage == 1 else 1.0) * t.n)
        c = effective_coeffs(sc, out.decoding)
        assert np.all(c == 1.0)
        g, _ = oracle.combine(sc, out.decoding)
        assert np.allclose(g, oracle.g.sum(axis=0))
        tiled += sum(c != SELF for c in sc.coverage.cover.values())
    assert tiled  # some stage-1 sets really were decoded from stage-2 blocks


def test_two_stage_max_wait_partial_decode():
    N, K = 4, 16
    sc = TwoStage(N, K, trigger="count", max_wait=5.0, stage1_chunks=1, replan=0)
    assert not sc.exact
    out = run_iteration(sc, 0, lambda t: SLOW if t.worker == 3 else float(t.n))
    assert out.ticks == [5.0] and out.summary["expired"] == 1
    dec = out.decoding
    covered = 12 + sum(t.n for t in sc.tasks.values() if t.stage == 2 and t.state == "done")
    assert dec.coverage == covered / K < 1
    c = effective_coeffs(sc, dec)
    np.testing.assert_allclose(c[c > 0], K / covered)
    oracle = GradientOracle(K)
    g, _ = oracle.combine(sc, dec)
    np.testing.assert_allclose(g, K / covered * oracle.g[c > 0].sum(axis=0))


def test_two_stage_end_summary_keys():
    sc = TwoStage(4, 16, stage1_chunks=1, replan=0)
    out = run_iteration(sc, 0, lambda t: float(t.n))
    assert {"load", "stage2", "n_stage2", "coverage", "r2", "n1", "k1", "u", "trigger",
            "t_trigger", "deadline", "expired"} <= set(out.summary)


# ---- registry and configuration -------------------------------------------------------------
def default_config(**kw) -> Config:
    return Config(values=dict(defaults().values)).replace(**kw)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_make_scheme_from_config(name):
    sc = make_scheme(default_config(scheme=name), 4, 16)
    assert isinstance(sc, SCHEMES[name]) and sc.name == name and (sc.N, sc.K) == (4, 16)
    out = run_iteration(sc, 0, lambda t: float(t.n) + t.worker)
    if sc.exact:
        assert_exact(sc, out, GradientOracle(16))


def test_make_scheme_from_cli_namespace():
    parser = argparse.ArgumentParser()
    add_options(parser)
    args = parser.parse_args(["--scheme", "two-stage", "--rho", "0.75", "--trigger", "count",
                              "--stage2-tolerance", "1", "--placement", "replicated:2"])
    sc = make_scheme(resolve(args), 8, 32)
    assert isinstance(sc, TwoStage)
    assert (sc.rho, sc.trigger, sc.s2, sc.placement.R, sc.s) == (0.75, "count", 1, 2, 1)



def test_every_scheme_class_is_registered():
    """Derived, not pinned: each concrete Scheme subclass of mpicode.schemes is in the
    registry under its name, and the registry is what --scheme accepts."""
    import importlib
    import inspect
    import pkgutil

    import mpicode.schemes
    from mpicode.config import by_name
    classes = set()
    for m in pkgutil.iter_modules(mpicode.schemes.__path__):
        mod = importlib.import_module(f"mpicode.schemes.{m.name}")
        classes |= {c for _, c in inspect.getmembers(mod, inspect.isclass)
                    if issubclass(c, Scheme) and not inspect.isabstract(c)
                    and c.__module__.startswith("mpicode.schemes")}
    assert classes and {SCHEMES[c.name] for c in classes} == classes
    assert by_name()["scheme"].choices == tuple(SCHEMES)


def test_hypothesis_is_derandomized_by_default():
    """CI draws the same examples every run (tests/conftest.py's "ci" profile), unless
    HYPOTHESIS_PROFILE=random asks for fresh ones."""
    import os

    from hypothesis import settings as current
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
        assert current.default.derandomize and current.default.database is None
        assert FAST.derandomize  # the per-test settings inherit it

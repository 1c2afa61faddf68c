"""``self-scheduling``: exactness, each partition once, termination, placement, chunks, backups.

Serial and fast (virtual time through :mod:`mpicode.schemes.replay` and the engine)::

    PYTHONPATH=$PWD python -m pytest -q tests/unit/test_self_scheduling.py
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpicode.config import UsageError, add_options, by_name, resolve
from mpicode.schemes import SCHEMES, make_scheme
from mpicode.schemes.replay import GradientOracle, effective_coeffs, run_iteration
from mpicode.schemes.self_scheduling import SelfScheduling

SLOW = 1e6


def assert_exact(sc, out, oracle):
    c = effective_coeffs(sc, out.decoding)
    np.testing.assert_allclose(c, 1.0, rtol=0, atol=1e-9)  # every partition exactly once
    g, loss = oracle.combine(sc, out.decoding)
    full_g, full_loss = oracle.full()
    assert np.linalg.norm(g - full_g) <= 1e-9 * np.linalg.norm(full_g)
    assert abs(loss - full_loss) <= 1e-9 * abs(full_loss)
    assert out.decoding.coverage == 1.0


@st.composite
def cases(draw):
    N = draw(st.integers(1, 10))
    K = draw(st.sampled_from([N, 2 * N, 4 * N, 3 * N + draw(st.integers(1, N))]))
    R = draw(st.integers(1, N))
    params = dict(
        chunk=draw(st.sampled_from(["guided", "weighted", "fixed:1", "fixed:2", "fixed:5"])),
        backup=draw(st.booleans()),
        placement=draw(st.sampled_from(["shared", f"replicated:{R}", "replicated:2"
                                        if N >= 2 else "shared"])),
        speed_alpha=draw(st.sampled_from([0.5, 1.0])),
    )
    iters = draw(st.integers(1, 3))
    per = st.one_of(st.integers(1, 6), st.just(int(SLOW)))  # a few straggle "for ever"
    speeds = draw(st.lists(st.lists(per, min_size=N, max_size=N), min_size=iters,
                           max_size=iters))
    jitter = draw(st.lists(st.integers(0, 3), min_size=8, max_size=8))
    return N, K, params, speeds, jitter, draw(st.booleans())


def check_iteration(sc: SelfScheduling, out, oracle, speeds, first: bool):
    assert_exact(sc, out, oracle)
    # done == decodable_with(arrived): no shorter prefix of the arrivals decodes
    for i in range(len(out.arrivals)):
        assert not sc.decodable_with(set(out.arrivals[:i]))
    assert sc.decodable_with(set(out.arrivals))
    # the chunks are disjoint and cover every partition; copies repeat their chunk
    parts = np.concatenate(sc.chunks)
    assert np.array_equal(np.sort(parts), np.arange(sc.K))
    for t in sc.tasks.values():
        assert np.array_equal(t.partitions, sc.chunks[sc.chunk_of[t.task_id]])
        assert all(sc.placement.holds(t.worker, int(k)) for k in t.partitions)
    if sc.fixed:
        assert max(len(c) for c in sc.chunks) <= sc.fixed
    elif sc.weighted:  # never more than the guided size scaled by the fastest's share
        assert 1 <= len(sc.chunks[0]) <= sc.K
    elif sc.placement.shared:  # guided: the first chunk is ceil(K / N)
        assert len(sc.chunks[0]) == math.ceil(sc.K / sc.N)
    else:  # a worker's chunk never exceeds the guided size
        assert len(sc.chunks[0]) <= math.ceil(sc.K / sc.N)
    n_copies = sum(t.stage == 2 for t in sc.tasks.values())
    if not sc.backup:
        assert n_copies == 0 and out.summary["load"] == 1.0
    # a worker never runs two copies of one chunk, nor two tasks at once
    for cs in sc.copies:
        assert len({c.worker for c in cs}) == len(cs)
    if sc.placement.shared:  # backups only once nothing is unassigned
        last_pull = max(t_d for t_d, task in out.dispatched if task.stage == 1)
        assert all(t_d >= last_pull for t_d, task in out.dispatched if task.stage == 2)
    # with backups and shared data a straggler cannot hold the iteration (in the first one:
    # later, a worker the history calls slow is expected to be slow, and waited for longer)
    if first and sc.backup and sc.placement.shared and (np.asarray(speeds) < SLOW).any():
        assert out.t_end < SLOW


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_self_scheduling_exact_under_any_completion_order(case):
    N, K, params, speeds, jitter, deliver_cancelled = case
    sc = SelfScheduling(N, K, seed=1, **params)
    oracle = GradientOracle(K, seed=K)
    for it, sp in enumerate(speeds):
        out = run_iteration(sc, it, lambda t, sp=sp: sp[t.worker] * t.n
                            + jitter[t.task_id % len(jitter)],
                            deliver_cancelled=deliver_cancelled)
        check_iteration(sc, out, oracle, sp, it == 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(2, 12), mult=st.integers(1, 4), seed=st.integers(0, 2**16),
       placement=st.sampled_from(["shared", "replicated:2"]),
       chunk=st.sampled_from(["guided", "weighted", "fixed:2"]), backup=st.booleans(),
       model=st.sampled_from(["shifted-exp", "exp-per-iteration", "bimodal", "pareto"]))
def test_self_scheduling_exact_in_the_engine(N, mult, seed, placement, chunk, backup, model):
    """The virtual-time engine (cancels free workers, per-task delays from the models)."""
    from mpicode.engine.events import EventLoop
    from mpicode.engine.rows import IterationInfo
    from mpicode.engine.vworkers import VirtualWorkers
    from mpicode.models.stragglers import MODELS
    K = N * mult
    sc = SelfScheduling(N, K, seed=seed, chunk=chunk, backup=backup, placement=placement)
    params = dict(shift=1.0, mu=1.0, delay_mean=2.0, slow_fraction=0.25, slowdown=5.0,
                  pareto_shape=2.5, ge_p_bad=0.1, ge_p_good=0.5)
    strag = MODELS[model](N, K, seed, unit=0.01, **params)
    loop = EventLoop(sc, strag, vworkers=VirtualWorkers(N), partition_cost=1e-4)
    oracle = GradientOracle(K, seed=seed)
    for it in range(3):
        info = IterationInfo(N)
        t = loop.run(it, info)
        dec = sc.decode()
        np.testing.assert_allclose(effective_coeffs(sc, dec), 1.0, rtol=0, atol=1e-9)
        g, _ = oracle.combine(sc, dec)
        assert np.linalg.norm(g - oracle.full()[0]) <= 1e-9 * np.linalg.norm(oracle.full()[0])
        sc.outstanding(t)
        summ = sc.end(t)
        assert summ["load"] >= 1.0 and (backup or summ["load"] == 1.0)


def test_guided_chunks_shrink_and_backup_beats_a_straggler():
    N, K = 4, 32
    sc = SelfScheduling(N, K)
    speed = [1.0, 1.0, 1.0, 100.0]
    out = run_iteration(sc, 0, lambda t: speed[t.worker] * t.n)
    sizes = [len(c) for c in sc.chunks]
    assert sizes[0] == 8 and sizes == sorted(sizes, reverse=True)
    assert out.summary["n_stage2"] >= 1 and out.summary["backups_won"] >= 1
    slow = next(t for t in sc.tasks.values() if t.worker == 3)
    assert slow.state == "cancelled"  # its copy won; the straggler was told to stop
    assert out.t_end < 100.0 * slow.n
    off = SelfScheduling(N, K, backup=False)
    out_off = run_iteration(off, 0, lambda t: speed[t.worker] * t.n)
    assert out_off.t_end > out.t_end and out_off.summary["load"] == 1.0


def test_no_backup_when_everyone_is_on_time():
    N, K = 6, 24
    sc = SelfScheduling(N, K)
    for it in range(3):  # equal speeds: the predictions are right, nothing is copied
        out = run_iteration(sc, it, lambda t: float(t.n))
        assert out.summary["load"] == 1.0 and out.summary["n_stage2"] == 0


def test_replicated_only_holders_take_a_partition():
    N, K = 6, 24
    sc = SelfScheduling(N, K, placement="replicated:2")
    speed = [1.0, 50.0, 1.0, 1.0, 1.0, 1.0]
    out = run_iteration(sc, 0, lambda t: speed[t.worker] * t.n)
    for t in sc.tasks.values():
        assert all(sc.placement.holds(t.worker, int(k)) for k in t.partitions)
    assert_exact(sc, out, GradientOracle(K))
    with pytest.raises(RuntimeError, match="no live holder"):
        dead = SelfScheduling(N, K, placement="replicated:1")
        dead.active[2] = False
        dead.begin(0)


def test_rejects_bad_chunk():
    with pytest.raises(ValueError):
        SelfScheduling(4, 8, chunk="fixed:0")
    with pytest.raises(ValueError):
        SelfScheduling(4, 8, chunk="dynamic")


def parse(argv):
    p = argparse.ArgumentParser()
    add_options(p)
    return resolve(p.parse_args(argv))


def test_config_options_and_registry():
    assert SCHEMES["self-scheduling"] is SelfScheduling
    cfg = parse(["--scheme", "self-scheduling", "--chunk", "fixed:3", "--no-backup",
                 "--placement", "replicated:2"])
    sc = make_scheme(cfg, 8, 32)
    assert isinstance(sc, SelfScheduling)
    assert (sc.fixed, sc.backup, sc.placement.R) == (3, False, 2)
    assert parse(["--backup", "false"]).backup is False
    assert parse(["--backup"]).backup is True
    assert parse([]).backup is True and parse([]).chunk == "guided"
    with pytest.raises(UsageError, match="--chunk"):
        parse(["--chunk", "fixed:x"])
    with pytest.raises(UsageError, match="--backup"):
        parse(["--backup", "maybe"])
    # the class owns its options: they are the configuration's
    table = by_name()
    for o in SelfScheduling.options:
        assert table[o.name] == o



def test_weighted_chunks_follow_the_speeds():
    N, K = 4, 40
    sc = SelfScheduling(N, K, chunk="weighted")
    sc.tau[:] = [1.0, 1.0, 1.0, 5.0]  # worker 3 is known to be 5x slower
    first = {t.worker: t.n for t in sc.begin(0).dispatch}
    # fastest first: 40 * 1 / 3.2 -> 13; the slow worker's share of what is left is small
    assert first[0] == math.ceil(K / 3.2) and first[3] < first[2] < first[0]
    assert first[3] <= math.ceil(K / 16)
    out = run_iteration(sc, 1, lambda t: sc.speeds()[t.worker] * t.n)
    assert_exact(sc, out, GradientOracle(K))

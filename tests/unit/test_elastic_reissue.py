"""two-stage and self-scheduling under ``--on-failure continue`` (docs/design.md §2.7): the
specific re-issue paths of a dead worker's outstanding partitions, driven in virtual time
(:func:`mpicode.schemes.replay.run_iteration` with ``failures``), every decode checked
against the full sum (every partition exactly once). The random trials with failures are
``check_scheme``'s (tests/unit/test_registry.py)::

    .venv/bin/python -m pytest -q tests/unit/test_elastic_reissue.py
"""

from __future__ import annotations

import numpy as np
import pytest

from mpicode.schemes.replay import GradientOracle, effective_coeffs, run_iteration
from mpicode.schemes.self_scheduling import SelfScheduling
from mpicode.schemes.two_stage import TwoStage
from mpicode.testing import check_scheme


def _speeds(*s):
    return lambda x: s[x.worker] * x.n


def _exact(sc, out, failures=None):
    """Every partition exactly once, the decoded sum the full one, and no task dispatched
    to a worker after its death."""
    np.testing.assert_array_equal(effective_coeffs(sc, out.decoding), 1.0)
    oracle = GradientOracle(sc.K)
    g, loss = oracle.combine(sc, out.decoding)
    full_g, full_loss = oracle.full()
    np.testing.assert_allclose(g, full_g, rtol=1e-12, atol=1e-12)
    assert out.decoding.coverage == 1.0
    for w, tf in (failures or {}).items():
        assert not [x for t, x in out.dispatched if x.worker == w and t >= tf]
    assert not sc.pending()


def _after(out, t):
    """Tasks dispatched at time t (the answer to a failure then)."""
    return [x for s, x in out.dispatched if s == t]


def _two_stage(**kw):
    # one stage-1 task per worker, the paper's single stage 2 (count trigger k1 = 3)
    return TwoStage(4, 8, tolerance=1, stage1_chunks=1, replan=0, trigger="count", **kw)


# ---- two-stage ------------------------------------------------------------------------------
def test_two_stage_failure_in_stage1_before_stage2_reissues_the_set_at_once():
    sc = _two_stage()
    fail = {3: 0.5}
    out = run_iteration(sc, 0, _speeds(1, 1, 1, 1), failures=fail)
    _exact(sc, out, fail)
    lost = sc.tasks[3]
    assert lost.worker == 3 and lost.lost and lost.partitions.tolist() == [6, 7]
    new = _after(out, 0.5)
    assert sorted(k for x in new for k in x.partitions.tolist()) == [6, 7]
    assert {x.worker for x in new} <= {0, 1, 2} and all(x.stage == 2 for x in new)
    assert sc.coverage.cover[3] >= 0  # covered by the new group, not its own message
    assert out.t_end == 3.0           # behind the survivors' own 2 s share


def test_two_stage_failure_after_the_stage2_dispatch_needs_no_reissue():
    """Worker 3 straggles; stage 2 (at the third arrival, t = 2) gives its set to workers 0
    and 1; its death at 2.5 leaves that group live: nothing more is issued."""
    sc = _two_stage()
    fail = {3: 2.5}
    out = run_iteration(sc, 0, _speeds(1, 1, 1, 10), failures=fail)
    _exact(sc, out, fail)
    assert _after(out, 2.5) == [] and sc.stage2.fired == "count"
    assert out.t_end == 3.0


def test_two_stage_failure_of_a_stage2_worker_reissues_only_its_block():
    """Worker 0 dies holding a stage-2 block of the straggler's set: the set gets a new
    group, worker 1's running block plus worker 0's partition on the idle worker 2."""
    sc = _two_stage()
    fail = {0: 2.5}
    out = run_iteration(sc, 0, _speeds(1, 1, 1, 10), failures=fail)
    _exact(sc, out, fail)
    blocks = [x for _, x in out.dispatched if x.stage == 2]
    dead = [x for x in blocks if x.worker == 0]
    assert len(dead) == 1 and dead[0].lost
    new = _after(out, 2.5)
    assert [(x.worker, x.partitions.tolist()) for x in new] == [(2, dead[0].partitions.tolist())]
    kept = [x for x in blocks if x.worker == 1][0]
    assert kept.used  # the block that was still running counts in the new group
    assert out.t_end == 3.5


def test_two_stage_two_failures_reissue_a_reissued_piece_again():
    """Worker 3 dies in stage 1 (its set goes to workers 0 and 1), then worker 0 with its
    piece pending: the piece goes to worker 2, worker 1's piece is kept."""
    sc = _two_stage()
    fail = {3: 0.5, 0: 2.5}
    out = run_iteration(sc, 0, _speeds(1, 1, 1, 1), failures=fail)
    _exact(sc, out, fail)
    first, second = _after(out, 0.5), _after(out, 2.5)
    assert {x.worker for x in first} == {0, 1}
    lost_piece = [x for x in first if x.worker == 0][0]
    assert lost_piece.lost
    assert [(x.worker, x.partitions.tolist()) for x in second] == \
        [(2, lost_piece.partitions.tolist())]
    assert sc.end(out.t_end)["n_stage2"] == 3


def test_two_stage_last_holder_dies_under_replicated_2_a_survivor_loads_it():
    """replicated:2: partitions 2 and 3 live on workers 1 and 2 only. Worker 1 dies (its
    set goes to worker 2, the other holder), then worker 2 with it pending: no holder is
    left, so the survivors nearest the home block (3, then 0) load them from the dataset
    file. Next iteration, with the survivors as members, stage 1 gives them to a loader."""
    sc = _two_stage(placement="replicated:2")
    fail = {1: 0.5, 2: 2.5}
    out = run_iteration(sc, 0, _speeds(1, 1, 1, 1), failures=fail)
    _exact(sc, out, fail)
    first, second = _after(out, 0.5), _after(out, 2.5)
    assert [(x.worker, x.partitions.tolist()) for x in first] == [(2, [2, 3])]
    assert sorted(k for x in second for k in x.partitions.tolist()) == [2, 3]
    assert {x.worker for x in second} <= {0, 3}
    assert not any(sc.placement.holds(x.worker, int(k)) for x in second for k in x.partitions)
    sc.set_members(np.array([True, False, False, True]))
    out = run_iteration(sc, 1, _speeds(1, 1, 1, 1))
    _exact(sc, out)
    assert {x.worker for _, x in out.dispatched} <= {0, 3}
    loaded = [x for _, x in out.dispatched if x.stage == 1 and 2 in x.partitions.tolist()]
    assert len(loaded) == 1 and loaded[0].worker in (0, 3)
    assert any("every holder of partition 2 failed" in n for n in sc.log_notes)


@pytest.mark.parametrize("kw", [{}, {"placement": "replicated:2"}, {"stage1_chunks": 1},
                                {"replan": 0, "trigger": "deadline"},
                                {"rho": 0.75, "stage2_tolerance": 1}])
def test_two_stage_random_failures_stay_exact(kw):
    """check_scheme's trials (up to two failures in about half of them) on the variants."""
    check_scheme(TwoStage, trials=25, **kw)


def test_two_stage_dead_workers_are_left_out_of_later_plans():
    sc = TwoStage(5, 20, tolerance=1)
    out = run_iteration(sc, 0, _speeds(1, 2, 1, 1, 3), failures={1: 0.3})
    _exact(sc, out)
    sc.set_members(np.array([True, False, True, True, True]))
    for it in (1, 2):
        out = run_iteration(sc, it, _speeds(1, 2, 1, 1, 3), failures={4: 0.2} if it == 1
                            else None)
        _exact(sc, out)
        assert all(x.worker != 1 for _, x in out.dispatched)
        if it == 1:
            sc.set_members(np.array([True, False, True, True, False]))


# ---- self-scheduling ------------------------------------------------------------------------
def test_self_scheduling_orphaned_chunk_goes_to_the_first_idle_survivor():
    """Guided chunks 4, 3, 3, 2: worker 2 dies at t = 1 with chunk [7, 8, 9] and nobody is
    idle; worker 3, free at t = 2, takes it before any new chunk."""
    sc = SelfScheduling(4, 16)
    fail = {2: 1.0}
    out = run_iteration(sc, 0, _speeds(1, 1, 1, 1), failures=fail)
    _exact(sc, out, fail)
    assert _after(out, 1.0) == []
    took = _after(out, 2.0)
    assert [(x.worker, x.partitions.tolist()) for x in took] == [(3, [7, 8, 9])]
    assert not sc.orphans


def test_self_scheduling_a_running_backup_copy_needs_no_reissue():
    """Worker 3 is slow; once nothing is unassigned worker 2 backs its chunk up (t = 4);
    worker 3's death at t = 5 orphans nothing: the backup copy wins."""
    sc = SelfScheduling(4, 16)
    fail = {3: 5.0}
    out = run_iteration(sc, 0, _speeds(1, 1, 1, 10), failures=fail)
    _exact(sc, out, fail)
    assert _after(out, 5.0) == []
    backup = [x for _, x in out.dispatched if x.stage == 2]
    assert len(backup) == 1 and backup[0].partitions.tolist() == [10, 11] and backup[0].used


def test_self_scheduling_replicated_1_dead_block_is_pulled_by_the_next_survivor():
    """replicated:1, one partition a chunk: worker 1 dies holding partition 2 of its block
    [2, 3]; nobody else holds it, so worker 2 (next after it) takes the orphan and pulls
    the rest of the block, after its own."""
    sc = SelfScheduling(4, 8, chunk="fixed:1", placement="replicated:1")
    fail = {1: 0.5}
    out = run_iteration(sc, 0, _speeds(1, 1, 1, 1), failures=fail)
    _exact(sc, out, fail)
    done_by = {int(k): x.worker for x in sc.tasks.values() if x.used
               for k in x.partitions}
    assert done_by[2] == 2 and done_by[3] == 2


def test_self_scheduling_two_failures_last_holder_under_replicated_2():
    """replicated:2: worker 1 dies (its chunk [0] goes to worker 0, the other holder), then
    worker 2 with partition 3, whose holders (1, 2) are both dead: the survivors nearest its
    home block load it. Next iteration the survivors pull everything."""
    sc = SelfScheduling(4, 8, chunk="fixed:1", placement="replicated:2")
    fail = {1: 0.5, 2: 1.5}
    out = run_iteration(sc, 0, _speeds(1, 1, 1, 1), failures=fail)
    _exact(sc, out, fail)
    reissued = [x for x in sc.tasks.values() if x.used and x.t_dispatch in (1.0, 2.0)
                and int(x.partitions[0]) in (0, 3)]
    assert {(int(x.partitions[0]), x.worker) for x in reissued} >= {(0, 0)}
    three = [x for x in sc.tasks.values() if x.used and 3 in x.partitions.tolist()]
    assert len(three) == 1 and three[0].worker in (0, 3)
    sc.set_members(np.array([True, False, False, True]))
    out = run_iteration(sc, 1, _speeds(1, 1, 1, 1))
    _exact(sc, out)
    assert {x.worker for _, x in out.dispatched} == {0, 3}


@pytest.mark.parametrize("kw", [{}, {"placement": "replicated:2"},
                                {"placement": "replicated:1", "chunk": "fixed:1"},
                                {"chunk": "weighted"}, {"chunk": "fixed:2", "backup": False}])
def test_self_scheduling_random_failures_stay_exact(kw):
    check_scheme(SelfScheduling, trials=25, **kw)

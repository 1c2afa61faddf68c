"""Rank 0 as a server in virtual time (docs/design.md §2.6): its actions take time, messages
that land meanwhile wait, decisions take effect when made; ``policy_s`` and ``coord_busy``.

    python -m pytest -q tests/unit/test_rank0.py
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpicode.config import OPTIONS, Config, validate_for_size
from mpicode.engine.costs import FEATURES, CostModel, ModelCost, Work, rank0_cost
from mpicode.engine.rank0 import Rank0
from mpicode.models.stragglers import make_straggler_model
from mpicode.schemes import make_scheme
from mpicode.simulator import Simulator


def _cfg(N=4, **kw):
    v = {o.name: o.default for o in OPTIONS}
    v.update(kw)
    return validate_for_size(Config(v), N)


def _table(**calls):
    """A table charging every policy the given constant per call (seconds)."""
    row = {c: [v] + [0.0] * (len(FEATURES) - 1) for c, v in calls.items()}
    return {"default": row, "engine": row}


def _sim(cfg, N, rank0cost, cost=1e-3, iterations=4, record=None, hooks=()):
    K = cfg.partitions
    costs = CostModel(rank0=rank0cost)
    sim = Simulator(make_scheme(cfg, N, K), make_straggler_model(cfg, N, K), n_workers=N,
                    partition_cost=cost, msg_bytes=8000, costs=costs,
                    rank0=Rank0(rank0cost, N, virtual=True, record=record), hooks=hooks)
    sim.run(iterations)
    return sim


def test_results_that_land_together_are_handled_one_after_another():
    # uncoded, no stragglers: every worker's task takes 4 partitions x 1 ms and they all land
    # at once; rank 0 plans (b), then handles the four results one after another (c each)
    N, b, c = 4, 2e-4, 3e-4
    cfg = _cfg(N, scheme="uncoded", stragglers="none")
    sim = _sim(cfg, N, ModelCost(_table(begin=b, result=c)))
    for row in sim.history:
        assert row["wait_s"] == pytest.approx(b + 4e-3 + 4 * c, rel=1e-12)
        assert row["policy_s"] == pytest.approx(b + 4 * c, rel=1e-12)
    # the tasks reached the workers when the plan was made, not before
    assert all(t.t_dispatch == pytest.approx(b) for t in sim.scheme.tasks.values())
    # and the scheme saw each result when rank 0 got to it
    done = sorted(t.t_done for t in sim.scheme.tasks.values())
    assert done == pytest.approx([b + 4e-3 + k * c for k in range(4)], rel=1e-12)


def test_per_message_costs_add_to_the_plan_and_the_results():
    N, s, r = 4, 1e-5, 2e-5
    cfg = _cfg(N, scheme="uncoded", stragglers="none")
    sim = _sim(cfg, N, ModelCost(_table(), send_s=s, recv_s=r))
    # the plan: N MODEL + N TASK sends; each result: one receive
    expect = 2 * N * s + 4e-3 + N * r
    assert sim.history[-1]["wait_s"] == pytest.approx(expect, rel=1e-12)
    assert sim.history[-1]["policy_s"] == 0.0  # messaging is not the policy's time


def test_a_decision_takes_effect_when_rank_0_has_made_it():
    # two-stage under stragglers dispatches during the iteration: each such task goes out
    # the result (or tick) cost after the event that decided it
    N, c = 8, 5e-4
    cfg = _cfg(N, scheme="two-stage", stragglers="bimodal", seed=3)
    K = cfg.partitions
    live = make_scheme(cfg, N, K)
    seen: list[tuple[float, list]] = []  # (time of the event, tasks it dispatched)

    class Watched(type(live)):
        # (a subclass, not patched methods: the straggler-free replay deep-copies the
        # scheme, and only the live one's decisions are watched)
        def on_result(self, tid, t, *a, **kw):
            acts = super().on_result(tid, t, *a, **kw)
            if self is scheme:
                seen.append((t, list(acts.dispatch)))
            return acts

        def on_tick(self, t):
            acts = super().on_tick(t)
            if self is scheme:
                seen.append((t, list(acts.dispatch)))
            return acts

    scheme = make_scheme(cfg, N, K)
    scheme.__class__ = Watched
    cost = ModelCost(_table(result=c, tick=c))
    sim = Simulator(scheme, make_straggler_model(cfg, N, K), n_workers=N, partition_cost=1e-3,
                    msg_bytes=8000, costs=CostModel(rank0=cost), rank0=Rank0(cost, N))
    n = 0
    for it in range(6):
        seen.clear()
        sim.iteration(it)
        for t, tasks in seen:
            for task in tasks:
                assert task.t_dispatch == pytest.approx(t + c, rel=1e-12)
                n += 1
    assert n, "the scenario must make two-stage dispatch during an iteration"


def test_busy_rank_0_makes_iterations_longer_never_shorter():
    N = 16
    cfg = _cfg(N, scheme="two-stage", stragglers="shifted-exp", seed=5)
    zero = _sim(cfg, N, rank0_cost("zero"), iterations=5)
    paid = _sim(cfg, N, ModelCost(_table(begin=1e-4, result=2e-4, tick=2e-4, decode=1e-4,
                                         end=1e-4, rows=1e-4, log=1e-4)), iterations=5)
    assert sum(r["t_end"] - r["t_start"] for r in paid.history) > \
        sum(r["t_end"] - r["t_start"] for r in zero.history)
    for r in zero.history:
        assert r["policy_s"] == 0.0 and r["coord_busy"] == 0.0


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10**6), scheme=st.sampled_from(["uncoded", "two-stage", "cyclic",
                                                             "self-scheduling", "frc"]))
def test_phases_tile_the_row_and_busy_is_a_fraction(seed, scheme):
    N = 4
    cfg = _cfg(N, scheme=scheme, stragglers="pareto", seed=seed)
    sim = _sim(cfg, N, rank0_cost("model"), iterations=4)
    prev = 0.0
    for row in sim.history:
        assert row["t_start"] == prev
        phases = row["log_s"] + row["wait_s"] + row["decode_s"] + row["update_s"] + \
            row["eval_s"]
        assert row["t_end"] - row["t_start"] == pytest.approx(phases, rel=1e-12)
        assert 0.0 < row["coord_busy"] <= 1.0
        assert 0.0 < row["policy_s"] < row["t_end"] - row["t_start"]
        prev = row["t_end"]


def test_the_model_is_deterministic_and_measured_is_not_zero():
    N = 16
    cfg = _cfg(N, scheme="two-stage", stragglers="shifted-exp", seed=9)
    a = _sim(cfg, N, rank0_cost("model"))
    b = _sim(cfg, N, rank0_cost("model"))
    for ra, rb in zip(a.history, b.history, strict=True):
        for k in ra:
            assert np.asarray(ra[k]).tobytes() == np.asarray(rb[k]).tobytes(), k
    m = _sim(cfg, N, rank0_cost("measured"))
    assert all(r["policy_s"] > 0 for r in m.history)


def test_the_recorder_sees_every_action_with_its_work():
    N = 8
    rec: list = []
    cfg = _cfg(N, scheme="uncoded", stragglers="none")
    _sim(cfg, N, rank0_cost("zero"), iterations=2, record=rec)
    calls = [w.call for _, w, _, _ in rec]
    assert calls.count("begin") == 2 and calls.count("result") == 2 * N
    assert calls.count("decode") == 2 and calls.count("end") == 2 and calls.count("rows") == 2
    begin = next(w for _, w, _, _ in rec if w.call == "begin")
    assert (begin.tasks, begin.parts, begin.sends) == (N, cfg.partitions, 2 * N)
    assert all(cpu >= 0 and wall >= 0 for _, _, cpu, wall in rec)


def test_model_charges_follow_the_features():
    m = ModelCost({"p": {"result": [1e-6, 2e-6, 3e-9, 4e-7, 5e-8, 6e-8]}}, factor=2.0,
                  send_s=1e-6, recv_s=2e-6)
    w = Work("result", 1024, tasks=3, parts=10, msgs=2, sends=3, recvs=1)
    cpu = 1e-6 + 2e-6 * 10 + 3e-9 * 1024 + 4e-7 * 3 + 5e-8 * 10 + 6e-8 * 2
    assert m.split("p", w) == pytest.approx((2 * cpu, 3e-6 + 2e-6))
    # an unknown policy falls back to the table's default entry; with none, nothing
    assert ModelCost({"default": {"result": [1e-6]}}).cpu_s("other", w) == 1e-6
    assert ModelCost({}).cpu_s("other", w) == 0.0


def test_the_option_table_round_trips_through_json_and_rejects_nonsense():
    from mpicode.profile import rank0_table
    t = rank0_table({"two-stage": {"result": [1e-6, 0, 0]}})
    assert rank0_cost("model", t).cpu_s("two-stage", Work("result", 4)) == 1e-6
    for bad in ('{"x": {"nope": [1]}}', '{"x": {"result": [-1]}}', '[1]', "{oops"):
        with pytest.raises(ValueError):
            rank0_table(bad)


def test_a_stop_request_ends_a_long_simulated_iteration(monkeypatch):
    # SIGTERM is honoured inside an iteration, not only between iterations: the heartbeat
    # raises Interrupted and the run ends with status interrupted
    from mpicode.engine import events, signals
    N = 64
    cfg = _cfg(N, scheme="two-stage", stragglers="shifted-exp", seed=1)
    from mpicode.engine.hooks import Hook
    monkeypatch.setattr(events, "HEARTBEAT_EVENTS", 8)
    beats = []

    class Beat(Hook):
        def heartbeat(self, it, n):
            beats.append(n)
            signals.STOP["signal"] = 15

    sim = _sim(cfg, N, rank0_cost("model"), iterations=0, hooks=[Beat()])
    try:
        sim.run(3)
    finally:
        signals.STOP["signal"] = None
    assert beats and sim.status == "interrupted" and not sim.history


@pytest.mark.slow
def test_stage_2_waiting_for_an_idle_worker_does_not_rescan_every_arrival(monkeypatch):
    """A busy rank 0 makes two-stage's stage 2 wait (armed, nobody free of stage 1) through
    many stage-1 arrivals; each used to rescan all N workers and sort the stragglers (O(N)
    an arrival: 28,877 scans, 435 s at N = 2048). Only an arrival or steal that can free a
    worker looks again; the decisions are the decision corpus's."""
    from mpicode.schemes.stage2 import Stage2
    scans, waits = [0], [0]
    workers, still = Stage2._workers, Stage2._still_blocked

    def counting_workers(self, u, tau):
        scans[0] += 1
        return workers(self, u, tau)

    def counting_still(self, arrived):
        out = still(self, arrived)
        waits[0] += out
        return out

    monkeypatch.setattr(Stage2, "_workers", counting_workers)
    monkeypatch.setattr(Stage2, "_still_blocked", counting_still)
    N = 1024  # (smaller N: rank 0 keeps up and stage 2 finds an idle worker at once)
    cfg = _cfg(N, scheme="two-stage", stragglers="shifted-exp", seed=3)
    _sim(cfg, N, rank0_cost("model"), cost=1.4e-6, iterations=3)
    assert waits[0] > 0                  # stage 2 did wait, and the shortcut answered
    assert scans[0] < waits[0]           # far fewer full scans than arrivals while waiting

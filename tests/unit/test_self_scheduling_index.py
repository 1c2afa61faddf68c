"""The indexed ``self-scheduling`` decides exactly as the plain scan it replaced.

tests/unit/selfsched_reference.py is the scheme as it was before the index (O(N) work per idle
worker and event); every test here runs it and the registered scheme side by side on the same
seeded input and compares the task logs bit for bit: the same tasks (ids, workers, stages,
partitions), dispatched and ended at the same virtual times, the same cancellations::

    PYTHONPATH=$PWD python -m pytest -q tests/unit/test_self_scheduling_index.py
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from selfsched_reference import SelfSchedulingReference

from mpicode.schemes.replay import run_iteration
from mpicode.schemes.self_scheduling import SelfScheduling


def task_log(sc) -> list[tuple]:
    return [(t.task_id, t.worker, t.stage, tuple(t.partitions.tolist()), t.t_dispatch,
             t.state, t.t_done, t.duration) for t in sc.tasks.values()]


def same(a, b) -> None:
    """Equal, NaN included (a NaN time is a NaN time in both)."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert len(ra) == len(rb)
        for u, v in zip(ra, rb, strict=True):
            assert u == v or (isinstance(u, float) and np.isnan(u) and np.isnan(v)), (ra, rb)


@st.composite
def cases(draw):
    N = draw(st.integers(1, 12))
    K = draw(st.sampled_from([N, 2 * N, 4 * N, 3 * N + draw(st.integers(1, N))]))
    R = draw(st.integers(1, N))
    params = dict(chunk=draw(st.sampled_from(["guided", "weighted", "fixed:1", "fixed:3"])),
                  backup=draw(st.booleans()),
                  placement=draw(st.sampled_from(["shared", f"replicated:{R}"])),
                  speed_alpha=draw(st.sampled_from([0.5, 1.0])))
    iters = draw(st.integers(1, 3))
    per = st.one_of(st.integers(1, 6), st.floats(0.5, 6.0), st.just(1e6))
    speeds = draw(st.lists(st.lists(per, min_size=N, max_size=N), min_size=iters,
                           max_size=iters))
    jitter = draw(st.lists(st.sampled_from([0, 0, 1, 0.25, 3]), min_size=7, max_size=7))
    return N, K, params, speeds, jitter, draw(st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_indexed_decisions_equal_the_plain_scan(case):
    """Any completion order (ties included: integer durations), any placement and chunk."""
    N, K, params, speeds, jitter, deliver_cancelled = case
    new, old = SelfScheduling(N, K, seed=1, **params), SelfSchedulingReference(N, K, seed=1,
                                                                              **params)
    for it, sp in enumerate(speeds):
        outs = [run_iteration(sc, it, lambda t, sp=sp: sp[t.worker] * t.n
                              + jitter[t.task_id % len(jitter)],
                              deliver_cancelled=deliver_cancelled) for sc in (new, old)]
        same(task_log(new), task_log(old))
        assert outs[0].t_end == outs[1].t_end
        assert outs[0].arrivals == outs[1].arrivals
        assert outs[0].summary == outs[1].summary


def simulate(scheme, cfg, N, K, iterations):
    from mpicode.experiments.study import straggler_model
    from mpicode.simulator import Simulator, model_partition_cost
    sim = Simulator(scheme, straggler_model(cfg, N, K), n_workers=N,
                    partition_cost=model_partition_cost(cfg.samples / K, cfg.features))
    return [sim.iteration(it) for it in range(iterations)]


@pytest.mark.parametrize("N,placement,chunk,scenario", [
    (24, "shared", "guided", "shifted-exp"), (24, "replicated:2", "guided", "shifted-exp"),
    (40, "replicated:2", "guided", "bimodal"), (40, "replicated:3", "weighted", "pareto"),
    (40, "shared", "weighted", "bimodal"), (33, "replicated:2", "fixed:2", "exp-per-iteration"),
    (16, "replicated:5", "guided", "gilbert-elliott"), (64, "replicated:2", "guided", "pareto"),
    (48, "replicated:40", "guided", "shifted-exp"), (48, "replicated:47", "weighted", "bimodal"),
])
def test_seeded_simulations_log_the_same_tasks(N, placement, chunk, scenario):
    """The simulator's per-iteration task log (who ran what, when, cancelled or not) and rows
    are identical for the study's scenarios."""
    from mpicode.experiments.study import SCENARIOS, config
    cfg = config({**SCENARIOS[scenario], "scheme": "self-scheduling", "seed": N,
                  "placement": placement, "chunk": chunk}, N)
    K = cfg.partitions
    kw = dict(seed=cfg.seed, tolerance=cfg.stragglers_tolerated,
              **SelfScheduling.option_values(cfg))
    runs = [simulate(cls(N, K, **kw), cfg, N, K, 4)
            for cls in (SelfScheduling, SelfSchedulingReference)]
    for a, b in zip(*runs, strict=True):
        assert a["tasks"].keys() == b["tasks"].keys()
        for key in a["tasks"]:
            np.testing.assert_array_equal(a["tasks"][key], b["tasks"][key], err_msg=key)
        assert a["row"].keys() == b["row"].keys()
        for key in a["row"]:
            np.testing.assert_array_equal(a["row"][key], b["row"][key], err_msg=key)

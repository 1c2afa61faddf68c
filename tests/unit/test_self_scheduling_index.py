"""The indexed ``self-scheduling`` decides exactly as the plain scan it replaced.

tests/unit/selfsched_reference.py is the scheme as it was before the index (O(N) work per idle
worker and event); every test here runs it and the registered scheme side by side on the same
seeded input and compares the task logs bit for bit: the same tasks (ids, workers, stages,
partitions), dispatched and ended at the same virtual times, the same cancellations::

    PYTHONPATH=$PWD python -m pytest -q tests/unit/test_self_scheduling_index.py
"""

from __future__ import annotations

import pytest
from equivalence import drive, same_simulations, simulate, timings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from selfsched_reference import SelfSchedulingReference

from mpicode.schemes.self_scheduling import SelfScheduling


def task_log(sc) -> list[tuple]:
    return [(t.task_id, t.worker, t.stage, tuple(t.partitions.tolist()), t.t_dispatch,
             t.state, t.t_done, t.duration) for t in sc.tasks.values()]


@st.composite
def cases(draw):
    N = draw(st.integers(1, 12))
    K = draw(st.sampled_from([N, 2 * N, 4 * N, 3 * N + draw(st.integers(1, N))]))
    R = draw(st.integers(1, N))
    params = dict(chunk=draw(st.sampled_from(["guided", "weighted", "fixed:1", "fixed:3"])),
                  backup=draw(st.booleans()),
                  placement=draw(st.sampled_from(["shared", f"replicated:{R}"])),
                  speed_alpha=draw(st.sampled_from([0.5, 1.0])))
    return (N, K, params, *timings(draw, N))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_indexed_decisions_equal_the_plain_scan(case):
    """Any completion order (ties included: integer durations), any placement and chunk."""
    N, K, params, speeds, jitter, deliver_cancelled = case
    new, old = SelfScheduling(N, K, seed=1, **params), SelfSchedulingReference(N, K, seed=1,
                                                                              **params)
    drive(new, old, speeds, jitter, deliver_cancelled, task_log)


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
    same_simulations(runs)

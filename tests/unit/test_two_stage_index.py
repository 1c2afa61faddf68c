"""The indexed re-planning of ``two-stage`` decides exactly as the scans it replaced.

tests/unit/twostage_reference/ holds the re-planning mixin as it was before the index
(O(N) work per re-planning round: a sort of every idle worker, a copy of every late task);
every test here runs it and the registered scheme side by side on the same seeded input and
compares the task logs bit for bit (the same tasks: ids, workers, stages, partitions,
dispatched and ended at the same virtual times, the same cancellations), the per-iteration
rows and the log notes, for a fixed ``--replan R``::

    PYTHONPATH=$PWD python -m pytest -q tests/unit/test_two_stage_index.py
"""

from __future__ import annotations

import pytest
from equivalence import drive, same_simulations, simulate, timings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twostage_reference.two_stage import TwoStageReference

from mpicode.schemes.two_stage import TwoStage


def task_log(sc) -> list[tuple]:
    return [(t.task_id, t.worker, t.stage, tuple(t.partitions.tolist()), t.t_dispatch,
             t.state, t.t_done, t.duration, t.used) for t in sc.tasks.values()]


@st.composite
def cases(draw):
    N = draw(st.integers(1, 14))
    K = draw(st.sampled_from([N, 2 * N, 4 * N, 3 * N + draw(st.integers(1, N))]))
    R = draw(st.integers(1, N))
    params = dict(placement=draw(st.sampled_from(["shared", f"replicated:{R}"])),
                  replan=draw(st.sampled_from([0, 1, 2, 5, 64, N])),
                  stage1_chunks=draw(st.sampled_from([1, 2, 3])),
                  rho=draw(st.sampled_from([1.0, 0.75])),
                  trigger=draw(st.sampled_from(["both", "count", "deadline"])),
                  stage2_tolerance=draw(st.sampled_from([0, 1])),
                  replan_load=draw(st.sampled_from([0.3, 1.0])),
                  replan_messages=draw(st.sampled_from([3.0, 0.5])),
                  tolerance=draw(st.sampled_from([0, 1])))
    return (N, K, params, *timings(draw, N))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_indexed_decisions_equal_the_scans(case):
    """Any completion order (ties included: integer durations), placement, chunks, R."""
    N, K, params, speeds, jitter, deliver_cancelled = case
    new, old = (cls(N, K, seed=1, **params) for cls in (TwoStage, TwoStageReference))
    drive(new, old, speeds, jitter, deliver_cancelled, task_log, ticks=True)


@pytest.mark.parametrize("N,placement,scenario,replan", [
    (64, "shared", "exp-per-iteration", 64), (64, "replicated:2", "exp-per-iteration", None),
    (96, "shared", "exp-per-iteration", None), (96, "replicated:2", "shifted-exp", 64),
    (128, "shared", "shifted-exp", None), (128, "replicated:2", "exp-per-iteration", 128),
    (80, "shared", "bimodal", 16), (80, "replicated:3", "pareto", None),
    (48, "shared", "gilbert-elliott", None), (200, "shared", "exp-per-iteration", 200),
    (200, "replicated:2", "exp-per-iteration", None), (160, "replicated:2", "bimodal", 64),
])
def test_seeded_simulations_log_the_same_tasks(N, placement, scenario, replan):
    """The simulator's per-iteration task log (who ran what, when, cancelled or not), rows
    and notes are identical for the study's scenarios (``replan`` None: N groups)."""
    from mpicode.experiments.study import SCENARIOS, config
    cfg = config({**SCENARIOS[scenario], "scheme": "two-stage", "seed": N,
                  "stragglers_tolerated": 1, "placement": placement, "replan": replan}, N)
    K = cfg.partitions
    kw = dict(seed=cfg.seed, tolerance=cfg.stragglers_tolerated,
              **TwoStage.option_values(cfg))
    runs = [simulate(cls(N, K, **kw), cfg, N, K, 5) for cls in (TwoStage, TwoStageReference)]
    same_simulations(runs)

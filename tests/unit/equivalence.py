"""Helpers of the bit-for-bit equivalence tests of an indexed scheme against a reference copy
of the code it replaced (tests/unit/test_self_scheduling_index.py, test_two_stage_index.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from mpicode.schemes.replay import run_iteration


def same(a, b) -> None:
    """Equal, NaN included (a NaN time is a NaN time in both)."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert len(ra) == len(rb)
        for u, v in zip(ra, rb, strict=True):
            assert u == v or (isinstance(u, float) and np.isnan(u) and np.isnan(v)), (ra, rb)


def same_summary(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    same([tuple(a.values())], [tuple(b.values())])


def timings(draw, N: int):
    """Per-iteration worker speeds (ties included: integer durations; 1e6 = a dead-slow
    worker), per-task jitter and whether cancelled tasks still deliver."""
    iters = draw(st.integers(1, 3))
    per = st.one_of(st.integers(1, 6), st.floats(0.5, 6.0), st.just(1e6))
    speeds = draw(st.lists(st.lists(per, min_size=N, max_size=N), min_size=iters,
                           max_size=iters))
    jitter = draw(st.lists(st.sampled_from([0, 0, 1, 0.25, 3]), min_size=7, max_size=7))
    return speeds, jitter, draw(st.booleans())


def drive(new, old, speeds, jitter, deliver_cancelled, task_log, ticks=False) -> None:
    """Run both schemes through the same iterations; every task, end time, arrival (and
    tick), summary and log note must agree."""
    for it, sp in enumerate(speeds):
        outs = [run_iteration(sc, it, lambda t, sp=sp: sp[t.worker] * t.n
                              + jitter[t.task_id % len(jitter)],
                              deliver_cancelled=deliver_cancelled) for sc in (new, old)]
        same(task_log(new), task_log(old))
        assert outs[0].t_end == outs[1].t_end
        assert outs[0].arrivals == outs[1].arrivals
        if ticks:
            assert outs[0].ticks == outs[1].ticks
        same_summary(outs[0].summary, outs[1].summary)
        assert getattr(new, "log_notes", None) == getattr(old, "log_notes", None)


def simulate(scheme, cfg, N, K, iterations):
    """The simulator's (output, log notes) per iteration, on the study's delay model."""
    from mpicode.experiments.study import straggler_model
    from mpicode.simulator import Simulator, model_partition_cost
    sim = Simulator(scheme, straggler_model(cfg, N, K), n_workers=N,
                    partition_cost=model_partition_cost(cfg.samples / K, cfg.features))
    return [(sim.iteration(it), list(getattr(scheme, "log_notes", []))) for it in
            range(iterations)]


def same_simulations(runs) -> None:
    """Two :func:`simulate` results: equal task logs, rows and notes, iteration by iteration."""
    for (a, na), (b, nb) in zip(*runs, strict=True):
        assert a["tasks"].keys() == b["tasks"].keys()
        for key in a["tasks"]:
            np.testing.assert_array_equal(a["tasks"][key], b["tasks"][key], err_msg=key)
        assert a["row"].keys() == b["row"].keys()
        for key in a["row"]:
            np.testing.assert_array_equal(a["row"][key], b["row"][key], err_msg=key)
        assert na == nb

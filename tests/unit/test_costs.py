"""The simulator's cost model (dispatch latency, message cost, coordinator phases) and
calibrated profiles (``--profile``): parsing, layering, errors.

    PYTHONPATH=$PWD python -m pytest -q tests/unit/test_costs.py
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpicode.config import OPTIONS, Config, UsageError, add_options, resolve, validate_for_size
from mpicode.engine.costs import CostModel
from mpicode.engine.vworkers import VirtualWorkers
from mpicode.models.stragglers import make_straggler_model
from mpicode.profile import load_profile, render_profile
from mpicode.schemes import make_scheme
from mpicode.simulator import Simulator


def _cfg(N=4, **kw):
    v = {o.name: o.default for o in OPTIONS}
    v.update(kw)
    return validate_for_size(Config(v), N)


def _sim(cfg, N, costs=None, cost=1e-3, iterations=5):
    K = cfg.partitions
    sim = Simulator(make_scheme(cfg, N, K), make_straggler_model(cfg, N, K), n_workers=N,
                    partition_cost=cost, msg_bytes=8000, costs=costs,
                    eval_every=cfg.eval_every)
    sim.run(iterations)
    return sim


def test_finish_time_is_dispatch_plus_compute_plus_message():
    N, cost = 4, 1e-3
    cm = CostModel(dispatch_s=2e-4, msg_latency_s=5e-5, msg_bandwidth=8e6)
    sim = _sim(_cfg(N, scheme="uncoded"), N, cm, cost)
    expect = 2e-4 + 4 * cost + 5e-5 + 8000 / 8e6  # K/N = 4 partitions a task
    for row in sim.history:
        assert row["wait_s"] == pytest.approx(expect, rel=1e-12)
    tasks = sim.scheme.tasks.values()
    assert all(t.t_done == pytest.approx(expect, rel=1e-12) for t in tasks)


def test_messages_are_seen_at_rank_0s_next_poll():
    from mpicode.engine import costs
    from mpicode.engine.clock import Backoff
    b = Backoff()
    assert (costs.BACKOFF_LO, costs.BACKOFF_GROWTH, costs.BACKOFF_HI) == (b.lo, b.growth, b.hi)
    cm = CostModel(poll_s=1e-3)
    assert cm.noticed(0.0, 0.0) == 0.0 and cm.noticed(5.0, 4.0) == 4.0
    assert cm.noticed(0.0, 5e-6) == pytest.approx(1e-5)      # the ramp: 10 us, 12.5 us, ...
    assert cm.noticed(0.0, 2.0e-5) == pytest.approx(2.25e-5)
    steps = [1e-5 * 1.25**k for k in range(21)]               # 10 us .. 868 us
    assert steps[-1] < 1e-3 <= steps[-1] * 1.25
    ramp = sum(steps)
    assert cm.noticed(0.0, ramp + 1.5e-3) == pytest.approx(ramp + 2e-3)
    # a calibrated poll interval (the longest sleep + 60 us of overshoot): every sleep
    # of the ramp overshoots too
    cm = CostModel(poll_s=1.06e-3)
    assert cm.noticed(0.0, 5e-6) == pytest.approx(1e-5 + 6e-5)
    ramp = sum(s + 6e-5 for s in steps)
    assert cm.noticed(0.0, ramp + 1e-4) == pytest.approx(ramp + 1.06e-3)
    assert CostModel().noticed(0.0, 0.123) == 0.123


def test_results_are_seen_at_poll_times():
    """Uncoded, equal tasks: every result lands at the same moment and rank 0 sees them at
    its first poll after it."""
    N = 4
    cfg = _cfg(N, scheme="uncoded")
    fine = _sim(cfg, N, CostModel(dispatch_s=1e-3), cost=1e-3)
    cm = CostModel(dispatch_s=1e-3, poll_s=2e-3)
    polled = _sim(cfg, N, cm, cost=1e-3)
    for a, b in zip(fine.history, polled.history, strict=True):
        assert b["wait_s"] == cm.noticed(0.0, a["wait_s"]) > a["wait_s"]


def test_tasks_decided_during_an_iteration_start_after_redispatch_s():
    """Stage 1 (decided at t = 0) waits dispatch_s; stage 2 and re-plans, decided later
    for idle workers, redispatch_s; without redispatch_s both wait dispatch_s."""
    N, cost = 4, 1e-3
    cfg = _cfg(N, scheme="two-stage", stragglers="bimodal")
    for cm, later in ((CostModel(dispatch_s=1e-3, redispatch_s=2e-4), 2e-4),
                      (CostModel(dispatch_s=1e-3), 1e-3)):
        assert cm.dispatch_at(0.0) == 1e-3 and cm.dispatch_at(0.01) == later
        sim = _sim(cfg, N, cm, cost, iterations=1)
        used = [t for t in sim.scheme.tasks.values() if t.used and t.n]
        mid = [t for t in used if t.t_dispatch > 0]
        assert mid and any(t.t_dispatch == 0 for t in used)
        took = {t.task_id: t.t_done - t.t_dispatch - t.duration for t in used}  # latency
        for t in used:  # (a stage-1 chunk queued behind another waits longer)
            assert took[t.task_id] >= (1e-3 if t.t_dispatch == 0 else later) - 1e-12
        assert min(took[t.task_id] for t in mid) == pytest.approx(later, rel=1e-9)


def test_a_queued_task_starts_when_it_reaches_its_worker():
    vw = VirtualWorkers(1)
    assert vw.add(0, 1, 0.5, 1.0) == 1.5
    assert vw.add(0, 2, 2.0, 1.0) == 3.0     # arrives after task 1 finished: starts at 2.0
    assert vw.add(0, 3, 0.0, 1.0) == 4.0     # queued behind task 2
    vw.cancel(2, 1.8)                         # task 2 not started yet: task 3 moves up
    assert vw.pop() == (1.5, 1)
    assert vw.pop() == (2.5, 3)


def test_coordinator_phases_are_logged_and_rows_tile():
    N = 4
    cm = CostModel(coord_log_s=1e-4, coord_decode_s=2e-4, coord_update_s=3e-4,
                   coord_eval_s=4e-3)
    sim = _sim(_cfg(N, scheme="two-stage", stragglers="shifted-exp", eval_every=2), N, cm)
    prev = 0.0
    for row in sim.history:
        assert row["t_start"] == prev
        assert (row["log_s"], row["decode_s"], row["update_s"]) == (1e-4, 2e-4, 3e-4)
        due = (row["iteration"] + 1) % 2 == 0 or row["iteration"] == 4
        assert row["eval_s"] == (4e-3 if due else 0.0)
        phases = row["log_s"] + row["wait_s"] + row["decode_s"] + row["update_s"] + \
            row["eval_s"]
        assert row["t_end"] - row["t_start"] == pytest.approx(phases, rel=1e-12)
        prev = row["t_end"]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), scheme=st.sampled_from(["uncoded", "two-stage", "cyclic"]))
def test_zero_cost_model_is_bit_identical_to_none(seed, scheme):
    N = 4
    # every cost option at its default, rank 0's actions free (the default charges them)
    cfg = _cfg(N, scheme=scheme, stragglers="pareto", seed=seed, coordinator_cost="zero")
    a = _sim(cfg, N, None)
    b = _sim(cfg, N, CostModel.from_config(cfg))
    assert CostModel.from_config(cfg).is_zero
    for ra, rb in zip(a.history, b.history, strict=True):
        for k in ra:
            assert np.asarray(ra[k]).tobytes() == np.asarray(rb[k]).tobytes(), k


def test_costs_never_make_an_iteration_shorter():
    N = 8
    cfg = _cfg(N, scheme="two-stage", stragglers="bimodal")
    a = _sim(cfg, N, None)
    b = _sim(cfg, N, CostModel(dispatch_s=1e-3, msg_latency_s=1e-3))
    assert b.history[-1]["t_end"] > a.history[-1]["t_end"]


# ---- profiles ---------------------------------------------------------------------------------
def _resolve(argv):
    p = argparse.ArgumentParser()
    add_options(p)
    return resolve(p.parse_args(argv))


def _profile(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_profile_values_are_options_the_command_line_overrides(tmp_path):
    vals = {"dispatch_s": 1e-4, "msg_latency_s": 2e-5, "msg_bandwidth": 1e9,
            "coord_log_s": 1e-3, "kernel_elements_per_s": 1.5e9}
    path = _profile(tmp_path, render_profile(vals, {"workers": 4, "pingpong_bytes": [8, 80]},
                                             ["machine x", "command y"]))
    assert load_profile(path) == vals
    cfg = _resolve(["--profile", path, "--dispatch-s", "3e-4"])
    assert cfg.dispatch_s == 3e-4 and cfg.source["dispatch_s"] == "cli"
    assert cfg.msg_latency_s == 2e-5 and cfg.source["msg_latency_s"] == path
    assert cfg.kernel_elements_per_s == 1.5e9 and cfg.coord_decode_s == 0.0
    conf = _profile(tmp_path, f'profile = "{path}"\ncoord_log_s = 0.5\n', "c.toml")
    cfg = _resolve(["--config", conf])  # the job's file is above the profile too
    assert cfg.coord_log_s == 0.5 and cfg.dispatch_s == 1e-4
    cm = CostModel.from_config(cfg)
    assert cm.message_s(1000) == pytest.approx(2e-5 + 1e-6) and not cm.is_zero


@pytest.mark.parametrize("text, msg", [
    ("dispatch_s = ", "TOML syntax error"),
    ("dispatch = 1.0\n", "unknown key 'dispatch'"),
    ("dispatch_s = -1.0\n", "--dispatch-s: -1.0 must be >= 0"),
    ("dispatch_s = 'fast'\n", "--dispatch-s: invalid value 'fast'"),
    ("msg_bandwidth = 0.0\n", "--msg-bandwidth: 0.0 must be > 0"),
    ("calibration = 3\n", "'calibration' must be a table"),
    ("scheme = 'frc'\n", "unknown key 'scheme'"),
])
def test_bad_profiles_are_one_line_errors(tmp_path, text, msg):
    path = _profile(tmp_path, text)
    with pytest.raises(UsageError) as e:
        _resolve(["--profile", path])
    assert msg in str(e.value) and "\n" not in str(e.value)
    assert f"profile {path}" in str(e.value)


def test_missing_profile(tmp_path):
    with pytest.raises(UsageError, match="file not found"):
        _resolve(["--profile", str(tmp_path / "none.toml")])
    with pytest.raises(UsageError, match="not a file"):
        _resolve(["--profile", str(tmp_path)])


# ---- fitting a profile (mpicode calibrate) -----------------------------------------------------
def test_fit_message_recovers_latency_and_bandwidth():
    from mpicode.analysis.calibration import fit_message
    sizes = [8, 800, 8000, 80000]
    lat, bw = fit_message(sizes, [2e-5 + b / 4e9 for b in sizes])
    assert lat == pytest.approx(2e-5, rel=1e-6) and bw == pytest.approx(4e9, rel=1e-6)
    assert fit_message([8], [1e-5]) == (1e-5, None)


def test_fit_profile_from_rows():
    from mpicode import simulator
    from mpicode.analysis import calibration
    from mpicode.engine import costs
    # one constant, in the cost model (the old names are the same object)
    assert calibration.KERNEL_OVERHEAD_S is costs.KERNEL_OVERHEAD_S
    assert simulator.model_partition_cost is costs.model_partition_cost
    rows, feats, eps, N, T = 500.0, 100, 1e9, 4, 6
    cost = calibration.KERNEL_OVERHEAD_S + rows * feats / eps
    n = np.full(N * T, 4)
    tasks = {"iteration": np.repeat(np.arange(T), N), "n_partitions": n,
             "compute_s": n * cost, "t_dispatch": np.zeros(N * T)}
    msg, disp = 1e-5 + 800 / 1e9, 3e-4
    tasks["t_done"] = np.full(N * T, disp + 4 * cost + msg)
    run = {"rows": {"wait_s": np.full(T, disp + 4 * cost + msg), "log_s": np.full(T, 1e-3),
                    "decode_s": np.full(T, 2e-5), "update_s": np.full(T, 3e-5),
                    "eval_s": np.array([0, 4e-4] * (T // 2))}, "tasks": tasks}
    values, record = calibration.fit_profile(
        [run], {"bytes": [8, 8000], "one_way_s": [1e-5 + 8 / 1e9, 1e-5 + 8000 / 1e9]},
        rows=rows, features=feats, result_bytes=800)
    assert values["kernel_elements_per_s"] == pytest.approx(eps, rel=1e-6)
    assert values["dispatch_s"] == pytest.approx(disp, rel=1e-6)
    assert values["msg_latency_s"] == pytest.approx(1e-5, rel=1e-6)
    assert values["coord_log_s"] == pytest.approx(1e-3)
    assert values["coord_eval_s"] == pytest.approx(4e-4)  # over evaluated rows only
    assert record["result_bytes"] == 800 and values["poll_s"] == 0.0
    # with polling, the model's own polling delay is not counted twice
    polled, _ = calibration.fit_profile(
        [run], {"bytes": [8, 8000], "one_way_s": [1e-5 + 8 / 1e9, 1e-5 + 8000 / 1e9]},
        rows=rows, features=feats, result_bytes=800, poll_s=1e-3)
    t = polled["dispatch_s"] + 4 * cost + msg
    assert polled["dispatch_s"] < disp  # (the poll times are coarse: within one ramp step)
    assert abs(CostModel(poll_s=1e-3).noticed(0.0, t) - (disp + 4 * cost + msg)) <= 3.2e-4
    text = render_profile(values, record, ["h"])
    assert load_profile_text(text) == {k: v for k, v in values.items() if v is not None}
    assert values["redispatch_s"] is None  # no task was decided during an iteration


def test_fit_redispatch_from_tasks_decided_during_an_iteration():
    from mpicode.analysis.calibration import fit_redispatch
    cost, msg, redisp, T = 1e-4, 2e-5, 7e-4, 6
    it = np.repeat(np.arange(T), 3)
    n = np.tile([4, 1, 2], T)
    t_disp = np.tile([0.0, 3e-3, 5e-3], T)
    delay = np.tile([0.0, 1e-3, 0.0], T)
    tasks = {"iteration": it, "n_partitions": n, "t_dispatch": t_disp, "delay_s": delay,
             "t_done": t_disp + redisp + n * cost + delay + msg,
             "cancelled": np.zeros(3 * T, np.int8)}
    assert fit_redispatch([tasks], cost, msg, 0.0) == pytest.approx(redisp, rel=1e-9)
    tasks["t_done"][2::3] += 1.0  # a slow one in every iteration: the median holds
    tasks["cancelled"][2::3] = 1  # ... and cancelled ones are left out anyway
    assert fit_redispatch([tasks], cost, msg, 0.0) == pytest.approx(redisp, rel=1e-9)
    polled = fit_redispatch([tasks], cost, msg, 1e-3)
    assert 0.0 <= polled < redisp  # the model's own polling delay is not counted twice
    tasks["t_dispatch"][:] = 0.0
    assert fit_redispatch([tasks], cost, msg, 0.0) is None


def load_profile_text(text):
    import tomllib
    d = tomllib.loads(text)
    d.pop("calibration")
    return d


def test_bench_metrics_use_the_one_clock():
    from mpicode.bench.overhead import figures
    from mpicode.bench.twin import exact_schemes, metrics
    assert "ignore-stragglers" not in exact_schemes() and "two-stage" in exact_schemes()
    rows = {"t_start": np.array([0.0, 1.0, 3.0]), "t_end": np.array([1.0, 3.0, 4.0]),
            "loss": np.array([0.9, 0.5, 0.4]), "stage2": np.array([0, 1, 1]),
            "load": np.array([1.0, 1.5, 1.5]), "wait_s": np.ones(3), "log_s": np.zeros(3)}
    m = metrics(rows, 0.5)
    assert m["time_to_target_s"] == 3.0 and m["mean_iter_s"] == pytest.approx(4 / 3)
    assert m["stage2_frac"] == pytest.approx(2 / 3) and metrics(rows, 0.1)[
        "time_to_target_s"] == float("inf")
    c = {"rows": {k: np.ones(5) * v for k, v in (("t_start", 0), ("t_end", 10), ("wait_s", 6),
                                                  ("log_s", 1), ("decode_s", 1),
                                                  ("update_s", 1), ("eval_s", 1))},
         "compute_max": np.full(5, 4.0)}
    f = figures(c, 1.0)
    assert f["comm_extra_s"] == 2.0 and f["floor_s"] == 5.0 and f["ratio"] == 2.0

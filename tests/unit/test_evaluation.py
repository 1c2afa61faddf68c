"""Rank 0's evaluation schedule (``--eval-every E|auto``), the workers' training loss in the
run log, and the analysis that uses it between evaluations (issue 25)."""

import math

import numpy as np
import pytest

from mpicode.config import Config, defaults, validate_for_size
from mpicode.engine.evaluation import BUDGET, PROBE, EvalSchedule, interval


def test_interval_is_the_smallest_within_the_budget():
    for ev, itc in ((0.032, 0.0227), (1e-4, 0.01), (5.0, 0.1), (0.05, 0.05)):
        e = interval(ev, itc)
        assert ev / (e * itc + ev) <= BUDGET + 1e-12
        assert e == 1 or ev / ((e - 1) * itc + ev) > BUDGET
    assert interval(0.0, 0.1) == interval(math.nan, 0.1) == interval(0.1, 0.0) == 1


def test_fixed_schedule_is_every_e_and_the_last():
    s = EvalSchedule(3)
    s.begin(0)
    assert [it for it in range(10) if s.due(it, 9)] == [2, 5, 8, 9]
    s1 = EvalSchedule("1")
    s1.begin(0)
    assert all(s1.due(it, 9) for it in range(10))


def test_auto_evaluates_the_first_probes_then_chooses():
    s = EvalSchedule("auto")
    s.begin(5)  # a resumed run probes again from its first iteration
    rows = {5: {"t_start": 0.0, "t_end": 1.3, "eval_s": 0.3}}
    assert s.due(5, 100) and s.observe(5, rows[5]) is None
    chosen = None
    for k, it in enumerate(range(6, 6 + PROBE)):
        assert not s.due(it, 100)
        chosen = s.observe(it, {"t_start": 1.0 + k, "t_end": 2.0 + k, "eval_s": 0.0})
    assert chosen == interval(0.3, 1.0) == 6 and s.every == 6
    assert s.due(99, 100) is False and s.due(100, 100) and s.due(11, 100)


def test_auto_in_virtual_time_uses_the_model_cost():
    s = EvalSchedule("auto", model_eval_s=0.5)
    s.begin(0)
    s.observe(0, {"t_start": 0.0, "t_end": 9.0, "eval_s": 123.0})  # the model's, not this
    for it in range(1, 1 + PROBE):
        s.observe(it, {"t_start": float(it), "t_end": it + 0.5})
    assert s.every == interval(0.5, 0.5) == 19


def test_config_show_prints_eval_every_auto_and_what_it_means():
    from mpicode.config import show
    line = next(ln for ln in show(defaults()).splitlines() if ln.startswith("eval_every"))
    assert 'eval_every = "auto"' in line and "5%" in line and "eval_every_auto" in line
    v = dict(defaults().values)
    v["eval_every"] = 1
    line = next(ln for ln in show(Config(v)).splitlines() if ln.startswith("eval_every"))
    assert "eval_every = 1" in line and "5%" not in line


def test_the_schema_marks_an_inexact_decode_as_an_estimate():
    """docs/hdf5-schema.md: train_loss and train_metric of a row with coverage < 1
    (ignore-stragglers) are the decoded estimate, with its bound."""
    from pathlib import Path
    doc = (Path(__file__).parents[2] / "docs" / "hdf5-schema.md").read_text()
    rows = {ln.split("|")[1].strip(" `"): ln for ln in doc.splitlines()
            if ln.startswith("| `train_")}
    assert "ignore-stragglers" in rows["train_loss"] and "**estimate**" in rows["train_loss"]
    assert "(1 - coverage) x" in rows["train_loss"]
    assert "estimate when `coverage` < 1" in rows["train_metric"]


def test_eval_every_option_takes_auto_or_a_positive_integer():
    from mpicode.config import UsageError, _coerce, by_name
    o = by_name()["eval_every"]
    assert defaults().eval_every == "auto"
    assert _coerce(o, "auto", "") == "auto" and _coerce(o, "7", "") == 7 and _coerce(o, 7, "") == 7
    for bad in ("0", "x", 2.5, "-1"):
        with pytest.raises(UsageError):
            _coerce(o, bad, "")


def _simulate(tmp_path, name, **kw):
    from mpicode.simulator import simulate
    v = dict(defaults().values)
    v.update(workers=4, iterations=12, samples=400, features=8, out=str(tmp_path / name),
             quiet=True, seed=2, lr=0.5)
    v.update(kw)
    assert simulate(validate_for_size(Config(v), 4)) == 0
    import mpicode.analysis as analysis
    return analysis.read_run(str(tmp_path / name))


def test_train_loss_is_the_previous_rows_evaluated_loss(tmp_path):
    """Every row's train_loss (the workers', of the broadcast model) is the objective rank 0
    evaluated after the previous step, and train_metric its train accuracy."""
    run = _simulate(tmp_path, "a.h5", eval_every=1)
    it = run["iterations"]
    np.testing.assert_allclose(it["train_loss"][1:], it["loss"][:-1], rtol=1e-12)
    np.testing.assert_allclose(it["train_metric"][1:], it["train_accuracy"][:-1], rtol=1e-12)
    assert math.isclose(it["train_loss"][0], math.log(2), rel_tol=1e-12)  # w_0 = 0


def test_time_to_target_does_not_depend_on_eval_every(tmp_path):
    """With --eval-every 1000 the loss is evaluated at the last iteration only; time to
    target (and the filled loss) come from the workers' train_loss, the same values as with
    every iteration evaluated, never NaN before the last row."""
    import mpicode.analysis as analysis
    every = _simulate(tmp_path, "e1.h5", eval_every=1)
    rare = _simulate(tmp_path, "e1000.h5", eval_every=1000)
    assert np.isfinite(rare["iterations"]["loss"]).sum() == 1
    filled = analysis.loss_after_step(rare)
    assert np.isfinite(filled).all()
    np.testing.assert_allclose(filled, every["iterations"]["loss"], rtol=1e-12)
    target = float(every["iterations"]["loss"][4])
    t_every, t_rare = (analysis.time_to_loss(r, target) for r in (every, rare))
    assert t_rare == t_every == every["iterations"]["t_end"][4]


def test_report_iteration_time_leaves_evaluation_out(tmp_path):
    import mpicode.analysis as analysis
    run = _simulate(tmp_path, "c.h5", eval_every=1, coord_eval_s=0.5)
    it = run["iterations"]
    assert np.all(it["eval_s"] == 0.5)
    s = analysis.summary(run)
    dur = it["t_end"] - it["t_start"]
    assert s["mean_iter_s"] == pytest.approx(float(np.mean(dur - 0.5)))
    assert s["total_s"] == pytest.approx(float(it["t_end"][-1]))  # wall time: evaluation in


def test_vs_oracle_is_left_out_when_the_oracle_time_is_a_sliver():
    from mpicode.analysis.runs import ORACLE_MIN_SHARE, _ratio
    dur = np.full(5, 1.0)
    assert _ratio(dur, np.full(5, 0.5)) == 2.0
    assert math.isnan(_ratio(dur, np.full(5, 0.9 * ORACLE_MIN_SHARE)))


def test_inexact_decode_estimate_is_within_its_documented_bound():
    """ignore-stragglers leaves the slowest worker out: its train_loss is the covered
    blocks' mean loss, within (1 - coverage) x (max - min of the blocks' mean losses) of the
    exact objective of the same model (docs/hdf5-schema.md, train_loss)."""
    from mpicode.models.stragglers import make_straggler_model
    from mpicode.numerics.problem import Problem
    from mpicode.schemes import make_scheme
    from mpicode.simulator import Simulator
    N = 4
    v = dict(defaults().values)
    v.update(scheme="ignore-stragglers", stragglers_tolerated=1, stragglers="bimodal",
             slow_fraction=0.25, slowdown=20.0, samples=480, features=6, seed=3)
    cfg = validate_for_size(Config(v), N)
    K = cfg.partitions
    pb = Problem.from_config(cfg, K)
    sim = Simulator(make_scheme(cfg, N, K), make_straggler_model(cfg, N, K), n_workers=N,
                    partition_cost=1e-4, problem=pb, lr=0.5, eval_every=1)
    blocks = np.arange(K).reshape(N, K // N)
    partial = 0
    for it in range(6):
        w = sim.w.copy()
        sim.run(1, start=it)
        row = sim.history[-1]
        exact = pb.evaluate(w)["loss"] - 0.5 * pb.l2 * float(w @ w)
        sums = [pb.accumulate(int(k), w, np.zeros(pb.dim))[0] for k in range(K)]
        means = [sum(sums[k] for k in b) / sum(pb.part_rows(int(k)) for k in b)
                 for b in blocks]
        est = row["train_loss"] - 0.5 * pb.l2 * float(w @ w)
        c = row["coverage"]
        assert abs(est - exact) <= (1 - c) * (max(means) - min(means)) + 1e-12 * abs(exact)
        partial += c < 1
    assert partial >= 1  # the bound was exercised


def test_auto_interval_survives_a_checkpoint():
    """A resumed run keeps auto's interval (runtime/eval_every_auto in the checkpoint): it
    does not probe again, nor evaluate its first iteration."""
    s = EvalSchedule("auto", model_eval_s=0.5)
    s.begin(0)
    for it in range(1 + PROBE):
        s.observe(it, {"t_start": float(it), "t_end": it + 0.5})
    assert s.state_dict() == {"eval_every_auto": 19}
    r = EvalSchedule("auto", model_eval_s=0.5)
    assert r.state_dict() == {"eval_every_auto": -1}
    r.load_state_dict({"eval_every_auto": np.array(19)})
    r.begin(20)
    assert not r.due(20, 100) and r.due(37, 100) and r.observe(20, {}) is None
    fixed = EvalSchedule(4)
    assert fixed.state_dict() == {}
    fixed.load_state_dict({"eval_every_auto": 19})
    assert fixed.every == 4


def test_auto_in_virtual_time_without_an_evaluation_cost_evaluates_every_iteration():
    s = EvalSchedule("auto", model_eval_s=0.0)
    s.begin(0)
    assert all(s.due(it, 50) for it in range(51))
    assert s.observe(0, {}) == 1 and s.observe(1, {}) is None  # said once
    assert s.state_dict() == {"eval_every_auto": 1}

"""The plugin API: registry, options owned by classes, `mpicode schemes`, the conformance
check (mpicode.testing), explicit state, scheme log fields and notes in the run log."""

from __future__ import annotations

import argparse
import json

import h5py
import numpy as np
import pytest

import mpicode
from mpicode import registry
from mpicode.config import (
    Option,
    UsageError,
    add_options,
    all_options,
    by_name,
    defaults,
    resolve,
    show,
    validate_for_size,
)
from mpicode.schemes import SCHEMES, Scheme, make_scheme
from mpicode.schemes.uncoded import Uncoded
from mpicode.testing import check_scheme


# ---- registry -------------------------------------------------------------------------
def test_builtins_register_through_the_public_api():
    assert mpicode.register_scheme is not registry.register_scheme  # lazy wrapper
    assert list(SCHEMES) == list(registry.schemes()) and len(SCHEMES) >= 1
    assert registry.schemes()["two-stage"].__name__ == "TwoStage"
    assert "lyapunov" in registry.schedulers()
    assert set(registry.exact_schemes()) == {n for n, c in SCHEMES.items() if c.exact}


def test_duplicate_name_is_refused_unless_same_class():
    assert mpicode.register_scheme(Uncoded) is Uncoded  # the same class again: fine

    class Other(Uncoded):
        name = "uncoded"

    with pytest.raises(ValueError, match="already registered"):
        mpicode.register_scheme(Other)

    class Nameless(Uncoded):
        pass

    with pytest.raises(ValueError, match="class attribute `name`"):
        registry.register_scheme(Nameless)
    assert registry.schemes()["uncoded"] is Uncoded


def test_option_clash_with_core_is_refused():
    class Clash(Uncoded):
        name = "clash-test"
        options = (Option("seed", int, 0, "shadowing"),)

    with pytest.raises(ValueError, match="core option"):
        registry.register_scheme(Clash)
    assert "clash-test" not in registry.schemes()


def test_broken_plugin_is_one_warning_line(monkeypatch, capsys):
    class EP:
        name, value, group = "bad", "nowhere_pkg:Bad", "mpicode.schemes"

        def load(self):
            raise ImportError("No module named 'nowhere_pkg'")

    import importlib.metadata
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [EP()] if group == "mpicode.schemes" else [])
    registry._load_entry_points()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mpicode: warning: plugin 'bad'")
    assert "ImportError" in err[0]


# ---- options owned by the classes ------------------------------------------------------------
def test_scheme_and_scheduler_options_reach_flags_toml_and_show(tmp_path):
    names = [o.name for o in all_options()]
    assert len(names) == len(set(names))
    for cls in (*registry.schemes().values(), *registry.schedulers().values()):
        for o in cls.options:
            assert by_name()[o.name] == o
    p = argparse.ArgumentParser()
    add_options(p)
    toml = tmp_path / "c.toml"
    toml.write_text('[two-stage]\nrho = 0.5\n[comm]\nV = 8.0\n')
    cfg = resolve(p.parse_args(["--config", str(toml), "--beta", "2", "--scheme",
                                "two-stage"]))
    assert (cfg.rho, cfg.beta, cfg.V) == (0.5, 2.0, 8.0)
    assert cfg.source["rho"] == str(toml) and cfg.source["beta"] == "cli"
    assert "rho = 0.5" in show(cfg) and "min_participation = 0.85" in show(cfg)
    with pytest.raises(UsageError, match="--rho: 1.5 must be in"):
        resolve(p.parse_args(["--rho", "1.5"]))
    with pytest.raises(UsageError, match="unknown value 'nope'"):
        resolve(p.parse_args(["--scheme", "nope"]))


def test_make_scheme_passes_only_own_options():
    seen = {}

    class Spy(Uncoded):
        name = "spy-test"
        options = Scheme.options + (Option("spy_knob", int, 3, "a knob"),)

        def __init__(self, n, k, **kw):
            seen.update(kw)
            super().__init__(n, k, **{x: v for x, v in kw.items() if x != "spy_knob"})

    registry.register_scheme(Spy)
    try:
        make_scheme(defaults().replace(scheme="spy-test", spy_knob=5), 2, 4)
        assert seen == {"tolerance": 1, "seed": 0, "speed_alpha": 0.2, "spy_knob": 5}
        # two-stage's options are not handed to others (the base keeps extras in .params)
        assert make_scheme(defaults().replace(scheme="uncoded"), 2, 4).params == {}
    finally:
        del registry._SCHEMES["spy-test"]


def test_size_checks_are_classmethods():
    base = defaults()
    validate_for_size(base.replace(scheme="uncoded", stragglers_tolerated=7), 4)
    with pytest.raises(UsageError, match="multiple of s\\+1"):
        validate_for_size(base.replace(scheme="frc", stragglers_tolerated=2), 4)
    with pytest.raises(UsageError, match="--trigger-k 9 must be <="):
        validate_for_size(base.replace(scheme="two-stage", trigger_k=9), 4)
    with pytest.raises(UsageError, match="multiple of the number of workers"):
        validate_for_size(base.replace(scheme="cyclic", partitions=10), 4)


def test_schemes_command_lists_everything(capsys):
    from mpicode.cli import build_parser, dispatch
    assert dispatch(build_parser().parse_args(["schemes"])) == 0
    out = capsys.readouterr().out
    for n, c in registry.schemes().items():
        assert n in out
        for o in c.options:
            assert o.flag in out
    assert "--min-participation" in out and "not exact" in out
    dispatch(build_parser().parse_args(["schemes", "--json"]))
    data = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in data["schemes"]] == list(registry.schemes())
    assert {e["name"]: e["exact"] for e in data["schemes"]}["ignore-stragglers"] is False


# ---- conformance check -----------------------------------------------------------------------
@pytest.mark.parametrize("name", list(registry.schemes()))
def test_check_scheme_passes_on_every_registered_scheme(name):
    check_scheme(registry.scheme(name), trials=15)


def test_check_scheme_two_stage_variants():
    cls = registry.scheme("two-stage")
    check_scheme(cls, trials=10, rho=0.75, stage2_tolerance=1)
    check_scheme(cls, trials=10, max_wait=0.5, trigger="count")


class DoubleCount(Uncoded):
    """Broken on purpose: the first arrival's message is counted twice."""
    name = "double-count"

    def decode(self):
        dec = super().decode()
        first = min(dec.weights)
        dec.weights[first] = 2.0
        return dec


class GivesUp(Uncoded):
    """Broken on purpose: claims done before anything arrived (never finishes decoding)."""
    name = "gives-up"

    def done(self):
        return False

    def decodable_with(self, task_ids):
        return False


class Forgetful(Uncoded):
    """Broken on purpose: load_state_dict forgets the speed estimates."""
    name = "forgetful"

    def load_state_dict(self, state):
        super().load_state_dict({k: v for k, v in state.items() if k != "tau"})


class StrayWorker(Uncoded):
    """Broken on purpose: its plan sends a task to worker N, which does not exist."""
    name = "stray-worker"

    def plan(self):
        tasks = super().plan()
        tasks[-1].worker = self.N
        return tasks


class TicksForever(Uncoded):
    """Broken on purpose: a deadline that never moves (the event loop would never end)."""
    name = "ticks-forever"

    def next_deadline(self):
        return 0.0

    def done(self):
        return False


@pytest.mark.parametrize("cls, why", [(DoubleCount, "counted exactly once|off the true sum"),
                                      (GivesUp, "cannot finish|did not finish"),
                                      (Forgetful, "same state back"),
                                      (StrayWorker, "to worker \\d+ \\(the workers are 0"),
                                      (TicksForever, "did not finish within 100000 events")])
def test_check_scheme_catches_broken_schemes(cls, why):
    with pytest.raises(AssertionError, match=why):
        check_scheme(cls, trials=5)


# ---- explicit state -----------------------------------------------------------------------
def test_state_dicts_round_trip_through_a_checkpoint(tmp_path):
    from mpicode.engine.uplink import make_uplink
    from mpicode.io import checkpoint
    cfg = defaults().replace(scheme="two-stage", channel="rayleigh", scheduler="lyapunov",
                             log_slots=True)
    cfg = validate_for_size(cfg, 4)
    sc = make_scheme(cfg, 4, 16)
    up = make_uplink(cfg, 4)
    sc.tau[:] = [1.0, 2.0, 3.0, 4.0]
    sc.active[2] = False
    for i in range(3):
        up.offer(i, (0, i), 5000, 0.0)
    for _ in range(10_000):
        if not up.sched.waiting():
            break
        up.step()
    assert not up.sched.waiting()
    up.worker_rows()
    snap = checkpoint.snapshot(w=np.ones(3), iteration=5, n_tasks=9, vt=1.5, t_offset=2.0,
                               scheme=sc, uplink=up)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        checkpoint.write(f, snap)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        back = checkpoint.read(f)
    sc2 = make_scheme(cfg, 4, 16)
    up2 = make_uplink(cfg, 4)
    checkpoint.restore(back, scheme=sc2, uplink=up2)
    for a, b in ((sc, sc2), (up, up2), (up.sched, up2.sched)):
        s1, s2 = a.state_dict(), b.state_dict()
        assert set(s1) == set(s2)
        for k in s1:
            np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)
    assert up2.sched.slot_log()["slot"].tolist() == up.sched.slot_log()["slot"].tolist()
    assert sc2.active.tolist() == [True, True, False, True]


def test_checkpoint_uses_no_reflection():
    import inspect

    from mpicode.io import checkpoint
    src = inspect.getsource(checkpoint)
    assert "vars(" not in src and "._" not in src.replace("._last", "")
    assert "._last" not in src


# ---- scheme log fields and notes ----------------------------------------------------------
def test_two_stage_summary_and_notes_reach_the_run_log(tmp_path):
    from mpicode.io.runlog import RunLog
    from mpicode.models.stragglers import make_straggler_model
    from mpicode.simulator import Simulator
    cfg = validate_for_size(defaults().replace(
        scheme="two-stage", rho=0.75, stage2_tolerance=3, stage1_chunks=1, stragglers="shifted-exp",
        compute="none", partition_cost=1e-3, out=str(tmp_path / "r.h5")), 4)
    sc = make_scheme(cfg, 4, cfg.partitions)
    log = RunLog(cfg.out, config_json=cfg.to_json(), n_workers=4, n_partitions=cfg.partitions,
                 mode="simulated")
    sim = Simulator(sc, make_straggler_model(cfg, 4, cfg.partitions), n_workers=4,
                    partition_cost=1e-3, runlog=log)
    sim.run(6)
    log.close()
    with h5py.File(cfg.out, "r") as f:
        it = f["iterations"]
        for k in type(sc).log_fields:
            assert len(it[k]) == 6, k
        assert set(it["trigger"][:].tolist()) <= {b"", b"count", b"deadline"}
        assert (it["n1"][:] == 3).all()
        fired = it["trigger"][:] != b""
        assert fired.any() and (it["r2"][:][fired] >= 1).all()
        notes = f["notes/text"].asstr()[:].tolist()
        assert any("r2 shrunk" in n for n in notes)  # s2 + 1 = 4 > idle workers
        assert (np.diff(f["notes/iteration"][:]) >= 0).all()


def test_log_fields_may_not_clash_with_core_fields(tmp_path):
    from mpicode.io.runlog import RunLog
    with pytest.raises(ValueError, match="clash"):
        RunLog(str(tmp_path / "x.h5"), config_json="{}", n_workers=2, n_partitions=4,
               extra_fields={"loss": "f8"})


def test_the_scheduler_example_of_docs_extending_works():
    """docs/extending.md's scheduler, as written there: registered by its decorator, its
    option is a flag, it serves every byte, and its extra state survives a state_dict."""
    import re
    import types
    from pathlib import Path

    from mpicode.models.channels import Constant
    text = (Path(__file__).resolve().parents[2] / "docs" / "extending.md").read_text()
    code = re.search(r"<!-- example: mpicode_toysched/__init__.py -->\n```python\n(.*?)```",
                     text, re.S).group(1)
    mod = types.ModuleType("mpicode_toysched")
    try:
        exec(compile(code, "docs/extending.md", "exec"), mod.__dict__)
        cls = registry.scheduler("shortest-first")
        assert by_name()["sjf_bias"].flag == "--sjf-bias"
        assert "shortest-first" in by_name()["scheduler"].choices
        s = cls(3, Constant(3, [100.0, 300.0, 50.0]), sjf_bias=1.0)
        for i, n in enumerate((250, 900, 120)):
            s.offer(i, (0, i), n)
        done = []
        for slot in range(100):
            done += s.step(slot).completed
            if not s.waiting():
                break
        assert sorted(done) == [(0, 0), (0, 1), (0, 2)] and s.delivered.sum() == 1270
        assert s.served.sum() > 0
        again = cls(3, Constant(3, [100.0, 300.0, 50.0]))
        again.load_state_dict(s.state_dict())
        np.testing.assert_array_equal(again.served, s.served)
    finally:
        registry._SCHEDULERS.pop("shortest-first", None)


def test_extending_dispatch_example_passes_the_conformance_check():
    """issue 27: docs/extending.md shows dispatching during an iteration (new_task(..., t=t)
    in react); the class, as written there, is exact under the conformance check, and its
    backups carry the event's time as their dispatch time."""
    import re
    import types
    from pathlib import Path

    from mpicode.testing import check_scheme
    text = (Path(__file__).resolve().parents[2] / "docs" / "extending.md").read_text()
    code = re.search(r"<!-- example: dispatch -->\n```python\n(.*?)```", text, re.S).group(1)
    assert "new_task(task.worker, 2, self.blocks[m], t=t)" in code
    mod = types.ModuleType("doc_dispatch")
    exec(compile(code, "docs/extending.md", "exec"), mod.__dict__)
    check_scheme(mod.Backup, trials=10)
    s = mod.Backup(3, 6)
    first = s.begin(0).dispatch
    acts = s.on_result(first[0].task_id, 0.7, 0.7)
    assert [(t.worker, t.stage, t.t_dispatch) for t in acts.dispatch] == [(0, 2, 0.7)]

"""Straggler models and channels as plugins (registered like schemes, options on the class,
the shipped conformance checks), plugins loaded only when needed, and the one line that
names a misbehaving plugin (mpicode.registry.plugin_failure / blame)."""

from __future__ import annotations

import argparse
import sys
import types

import h5py
import numpy as np
import pytest

import mpicode
from mpicode import cli, registry
from mpicode.config import add_options, by_name, defaults, resolve
from mpicode.errors import PluginError, UsageError
from mpicode.io.replay import TraceChannel, TraceReplay
from mpicode.models.channels import Channel, make_channel
from mpicode.models.stragglers import StragglerModel, make_straggler_model
from mpicode.options import Option, positive
from mpicode.testing import check_channel, check_straggler_model


@pytest.fixture
def clean_registry():
    """Whatever a test registers or loads is gone afterwards."""
    tables = {k: dict(v.table) for k, v in registry.KINDS.items()}
    origins, state = dict(registry._ORIGINS), dict(registry._state)
    yield
    for k, v in registry.KINDS.items():
        v.table.clear()
        v.table.update(tables[k])
    registry._ORIGINS.clear()
    registry._ORIGINS.update(origins)
    registry._state.update(state)


# ---- registered like schemes ----------------------------------------------------------------
def test_builtin_models_and_channels_are_registered_with_their_options():
    models, chans = registry.straggler_models(), registry.channels()
    assert list(models)[:6] == ["none", "shifted-exp", "exp-per-iteration", "bimodal",
                                "pareto", "gilbert-elliott"] and "trace" in models
    assert list(chans) == ["ideal", "constant", "rayleigh", "gilbert-elliott", "trace"]
    assert [o.name for o in models["shifted-exp"].options] == ["shift", "mu"]
    assert models["trace"].argument == "RUN.h5" and "trace:RUN.h5" in registry.choices(
        "straggler_model")
    assert {o.name for o in chans["trace"].options} == {"channel_trace"}
    # every old flag and TOML key is still an option, in its old group
    opts = by_name()
    for name, group in (("shift", "stragglers"), ("ge_p_good", "stragglers"),
                        ("trace_map", "stragglers"), ("bandwidth", "comm"),
                        ("snr_db", "comm"), ("channel_trace", "comm")):
        assert opts[name].group == group
    assert opts["channel"].choices == tuple(chans)
    for origin in registry.origins():
        if origin.cls.__module__.startswith("mpicode."):
            assert origin.builtin and str(origin).startswith("built-in ")


@pytest.mark.parametrize("name", ["none", "shifted-exp", "exp-per-iteration", "bimodal",
                                  "pareto", "gilbert-elliott"])
def test_every_builtin_straggler_model_passes_the_conformance_check(name):
    check_straggler_model(registry.straggler_model(name))


@pytest.mark.parametrize("name", ["ideal", "constant", "rayleigh", "gilbert-elliott"])
def test_every_builtin_channel_passes_the_conformance_check(name):
    check_channel(registry.channel(name))


def test_the_file_replays_pass_their_checks(tmp_path):
    one = tmp_path / "one.csv"  # one column: every N
    one.write_text("1\n2\n0\n")
    check_channel(TraceChannel, channel_trace=str(one))
    two = tmp_path / "two.csv"
    two.write_text("100,200\n300,400\n50,0\n")
    check_channel(TraceChannel, channel_trace=str(two), n_workers=2)
    run = tmp_path / "run.h5"
    with h5py.File(run, "w") as f:  # a recorded run: 2 workers, 6 iterations, 2 tasks each
        f.attrs.update(n_workers=2, n_done=6, n_partitions=4, n_tasks=24)
        it, wk = np.repeat(np.arange(6), 4), np.tile([0, 0, 1, 1], 6)
        for k, v in (("iteration", it), ("worker", wk), ("n_partitions", np.ones(24)),
                     ("delay_s", np.linspace(0.1, 0.9, 24))):
            f.create_dataset(f"tasks/{k}", data=v)
    check_straggler_model(TraceReplay, n_workers=2, stragglers=f"trace:{run}", trials=4)


def test_the_checks_catch_draws_that_depend_on_call_order():
    class Stateful(StragglerModel):  # a generator stepped per call: order-dependent
        name = "stateful-test"

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.rng = np.random.default_rng(self.seed)

        def delay(self, iteration, worker, task_index, n_partitions):
            return float(self.rng.random())

    with pytest.raises(AssertionError, match="order of calls"):
        check_straggler_model(Stateful, trials=2)

    class Negative(StragglerModel):
        name = "negative-test"

        def delay(self, iteration, worker, task_index, n_partitions):
            return -1.0

    with pytest.raises(AssertionError, match="finite and >= 0"):
        check_straggler_model(Negative, trials=1)

    class Drifting(Channel):
        name = "drifting-test"

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.calls = 0

        def _block(self, block):  # fresh draws on every call, whatever the slot
            self.calls += 1
            return np.full((1024, self.N), float(self.calls))

        def mean_rates(self):
            return np.ones(self.N)

    with pytest.raises(AssertionError, match="order of calls"):
        check_channel(Drifting, trials=1)


def test_a_straggler_model_and_a_channel_registered_in_code(clean_registry):
    @mpicode.register_straggler_model
    class Slowest(StragglerModel):
        """Worker N-1 takes ``slowest_factor`` delay units per share, the others one."""

        name = "slowest-test"
        options = (Option("slowest_factor", float, 4.0, "slowest: factor", check=positive,
                          group="stragglers"),)

        def rate(self, iteration, worker, task_index=0):
            return self.unit * (self.p["slowest_factor"] if worker == self.N - 1 else 1.0)

        def delay(self, iteration, worker, task_index, n_partitions):
            return self.rate(iteration, worker) * self.load(n_partitions) + self.overhead

    @mpicode.register_channel
    class Flat(Channel):
        name = "flat-test"
        options = (Option("flat_rate", float, 1000.0, "flat: bytes per slot",
                          check=positive, group="comm"),)

        def __init__(self, n_workers, seed=0, slot_s=0.002, flat_rate=1000.0):
            super().__init__(n_workers, seed, slot_s)
            self.r = float(flat_rate)

        def _make_block(self, block):
            return np.full((1024, self.N), self.r)

        def mean_rates(self):
            return np.full(self.N, self.r)

    p = argparse.ArgumentParser()
    add_options(p)
    cfg = resolve(p.parse_args(["--stragglers", "slowest-test", "--slowest-factor", "3",
                                "--channel", "flat-test", "--flat-rate", "50"]))
    m = make_straggler_model(cfg, 4, 8)
    assert isinstance(m, Slowest) and m.delay(0, 3, 0, 2) == pytest.approx(3 * m.delay(0, 0, 0, 2))
    assert np.all(make_channel(cfg, 3).rates(7) == 50.0)
    check_straggler_model(Slowest)
    check_channel(Flat)
    with pytest.raises(UsageError, match="--slowest-factor: -1.0 must be > 0"):
        resolve(p.parse_args(["--slowest-factor", "-1"]))
    text = registry.describe(kinds=tuple(registry.KINDS))
    assert "straggler models:" in text and "slowest-test" in text and "--flat-rate" in text
    assert registry.origin(Slowest).source() == f"registered by {Slowest.__module__}"


def test_unknown_names_keep_their_one_line():
    p = argparse.ArgumentParser()
    add_options(p)
    with pytest.raises(UsageError, match=r"--stragglers: 'nope' unknown straggler model "
                                         r"\(choose from none, .*, trace:RUN.h5\)"):
        resolve(p.parse_args(["--stragglers", "nope"]))
    for bad in ("trace", "trace:", "shifted-exp:x"):
        with pytest.raises(UsageError, match="unknown straggler model"):
            resolve(p.parse_args(["--stragglers", bad]))
    with pytest.raises(UsageError, match="--channel: unknown value 'nope'"):
        resolve(p.parse_args(["--channel", "nope"]))
    with pytest.raises(UsageError, match="unknown channel 'nope'"):
        make_channel(defaults().replace(channel="nope"), 2)


# ---- plugins are loaded only when needed ----------------------------------------------------
PLUGIN_SOURCE = '''
from mpicode.models.stragglers import StragglerModel
from mpicode.options import Option, positive
from mpicode.schemes.uncoded import Uncoded


class FakeToy(Uncoded):
    name = "fake-toy"
    options = Uncoded.options + (Option("fake_knob", int, 1, "fake: a knob", check=positive,
                                        group="fake"),)

    def plan(self):
        if self.iteration == 1:
            raise ValueError("boom in plan")
        return super().plan()


class FakeSlow(StragglerModel):
    name = "fake-slow"

    def delay(self, iteration, worker, task_index, n_partitions):
        return helper(iteration)


def helper(it):
    raise ZeroDivisionError("deep inside")
'''


class _Dist:
    metadata = {"Name": "fake-dist"}
    version = "1.2"


class _EP:
    def __init__(self, name, value, group, log):
        self.name, self.value, self.group, self.dist, self.log = name, value, group, _Dist(), log

    def load(self):
        self.log.append(self.name)
        mod = sys.modules["mpicode_fakeplugin"]
        return getattr(mod, self.value.split(":")[1])


@pytest.fixture
def fake_plugin(monkeypatch, clean_registry):
    """An installed distribution (fake-dist 1.2) with entry points for a scheme and a
    straggler model, in a module that is not mpicode's; ``log`` records every load."""
    mod = types.ModuleType("mpicode_fakeplugin")
    exec(compile(PLUGIN_SOURCE, "mpicode_fakeplugin.py", "exec"), mod.__dict__)
    monkeypatch.setitem(sys.modules, "mpicode_fakeplugin", mod)
    log: list[str] = []
    eps = {"mpicode.schemes": [_EP("fake-toy", "mpicode_fakeplugin:FakeToy",
                                   "mpicode.schemes", log)],
           "mpicode.straggler_models": [_EP("fake-slow", "mpicode_fakeplugin:FakeSlow",
                                            "mpicode.straggler_models", log)]}
    import importlib.metadata
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: eps.get(group, []))
    registry._state["plugins"] = False
    return log


def test_a_run_of_builtins_loads_no_plugin(fake_plugin):
    args = cli.parse(["simulate", "--scheme", "two-stage", "--stragglers", "bimodal",
                      "--channel", "rayleigh", "--workers", "4"])
    cfg = resolve(args)
    registry.scheme(cfg.scheme), registry.straggler_model(cfg.stragglers)
    make_straggler_model(cfg, 4, 16)
    assert fake_plugin == []


def test_a_plugin_name_or_flag_loads_the_plugins_once(fake_plugin):
    cfg = resolve(cli.parse(["simulate", "--scheme", "fake-toy", "--fake-knob", "3"]))
    assert fake_plugin == ["fake-toy", "fake-slow"] and cfg.fake_knob == 3
    assert registry.scheme("fake-toy").__name__ == "FakeToy"
    assert fake_plugin == ["fake-toy", "fake-slow"]  # once


def test_a_plugin_value_in_a_config_file_loads_them(fake_plugin, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('stragglers = "fake-slow"\n')
    cfg = resolve(cli.parse(["simulate", "--config", str(toml)]))
    assert cfg.stragglers == "fake-slow" and fake_plugin


def test_listing_loads_them_and_shows_where_they_come_from(fake_plugin):
    text = registry.describe(kinds=tuple(registry.KINDS))
    assert fake_plugin == ["fake-toy", "fake-slow"]
    line = next(x for x in text.splitlines() if x.strip().startswith("fake-slow"))
    assert "entry point mpicode.straggler_models 'fake-slow = mpicode_fakeplugin:FakeSlow'" \
           " of fake-dist 1.2" in line
    o = registry.origin(registry.straggler_model("fake-slow"))
    assert not o.builtin and o.distribution == "fake-dist 1.2"


# ---- a misbehaving plugin gets one line -----------------------------------------------------
def test_an_exception_in_a_plugin_callback_names_the_plugin(fake_plugin):
    cls = registry.scheme("fake-toy")
    sc = cls(4, 8)
    sc.begin(0)
    with pytest.raises(ValueError) as e:
        sc.begin(1)  # the engine calls begin(); the plugin's plan() raises inside it
    line = registry.plugin_failure(e.value)
    assert line == ("plugin scheme 'fake-toy' (entry point mpicode.schemes 'fake-toy = "
                    "mpicode_fakeplugin:FakeToy' of fake-dist 1.2) failed in FakeToy.plan: "
                    "ValueError: boom in plan")
    assert "\n" not in line
    # the caller may name the callback it called; the plugin is then found from the object
    assert registry.plugin_failure(e.value, sc, "begin").endswith(
        "failed in FakeToy.begin: ValueError: boom in plan")
    with pytest.raises(PluginError) as pe, registry.blame(sc, "begin"):
        sc.begin(1)
    assert str(pe.value) == registry.plugin_failure(e.value, sc, "begin")
    assert isinstance(pe.value.__cause__, ValueError)  # the traceback, for --verbose


def test_the_line_names_the_plugin_function_that_was_called(fake_plugin):
    m = make_straggler_model(defaults().replace(stragglers="fake-slow"), 2, 4)
    with pytest.raises(ZeroDivisionError) as e:
        m.delay(0, 0, 0, 1)
    line = registry.plugin_failure(e.value)
    assert line.startswith("plugin straggler model 'fake-slow' (entry point "
                           "mpicode.straggler_models ")
    assert line.endswith("failed in FakeSlow.delay: ZeroDivisionError: deep inside")


def test_builtin_errors_are_not_blamed_on_plugins(fake_plugin):
    registry.scheme("fake-toy")  # plugins loaded: a built-in's error still is no plugin's
    m = make_straggler_model(defaults().replace(stragglers="bimodal"), 2, 4)
    with pytest.raises(IndexError) as e:
        m.delay(0, 5, 0, 1)  # worker 5 of 2
    assert registry.plugin_failure(e.value) is None
    assert registry.plugin_failure(e.value, m, "delay") is None
    with pytest.raises(IndexError), registry.blame(m, "delay"):
        m.delay(0, 5, 0, 1)


def test_a_plugin_that_raises_mid_run_fails_it_in_one_line(fake_plugin, tmp_path, capsys):
    # the engine's one try around the run: the plugin's line, status failed, exit 1, the
    # rows before it and a checkpoint kept; the original exception for --verbose
    from mpicode import simulator
    out = tmp_path / "r.h5"
    cfg = resolve(cli.parse(["simulate", "--scheme", "fake-toy", "--workers", "4",
                             "--iterations", "4", "--compute", "none", "--quiet",
                             "--out", str(out)]))
    assert simulator.simulate(cfg) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mpicode: error: plugin scheme 'fake-toy' (entry point mpicode.schemes "
                   f"'fake-toy = mpicode_fakeplugin:FakeToy' of fake-dist 1.2) failed in "
                   f"FakeToy.plan: ValueError: boom in plan; {out}: 1 iterations readable "
                   f"and a checkpoint at iteration 1 (--resume continues from there)"]
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "failed" and f.attrs["n_done"] == 1
        assert int(f["checkpoint/iteration"][()]) == 1


def test_a_scheme_answer_the_engine_cannot_use_names_the_plugin(fake_plugin):
    # what a plugin returns is checked where the engine receives it
    from mpicode.engine.events import EventLoop
    from mpicode.engine.rows import IterationInfo
    from mpicode.engine.vworkers import VirtualWorkers
    from mpicode.schemes.base import Actions
    cls = registry.scheme("fake-toy")
    sc = cls(4, 8)
    ev = EventLoop(sc, make_straggler_model(defaults(), 4, 8), vworkers=VirtualWorkers(4))
    sc.begin = lambda it: Actions(dispatch=[sc.new_task(7, 1, [0])])  # worker 7 of 4
    with pytest.raises(PluginError, match=r"^plugin scheme 'fake-toy' .* failed in "
                       r"FakeToy.begin: ValueError: dispatched task 0 to worker 7 \(the "
                       r"workers are 0..3\)$"):
        ev.run(0, IterationInfo(4))
    sc.begin = lambda it: None
    with pytest.raises(PluginError, match="FakeToy.begin: ValueError: returned NoneType"):
        ev.run(0, IterationInfo(4))

"""Workers that die (docs/design.md §2.7) in the simulator: the failure model, the
membership, exactness with every sample kept, the log, resume. Serial, in-process."""

import math

import h5py
import numpy as np
import pytest

from mpicode.config import Config, UsageError, defaults
from mpicode.engine.membership import Membership, WorkerFailed
from mpicode.models.failures import Failure, FailurePlan, parse_fail
from mpicode.simulator import simulate

SMALL = {"samples": 600, "features": 8, "quiet": True, "stragglers": "shifted-exp",
         "delay_unit": 0.01, "seed": 4}


def _sim(tmp_path, name, **opts):
    v = dict(defaults().values)
    v.update(SMALL, out=str(tmp_path / f"{name}.h5"), force=True)
    v.update(opts)
    code = simulate(Config(v))
    return code, tmp_path / f"{name}.h5"


def _read(path):
    with h5py.File(path, "r") as f:
        it = {k: f["iterations"][k][:] for k in f["iterations"]}
        ev = {k: f["events"][k][:] for k in f["events"]} if "events" in f else {}
        return it, ev, dict(f.attrs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    code, ref = _sim(tmp_path_factory.mktemp("ref"), "ref", workers=6, iterations=9,
                     scheme="uncoded")
    assert code == 0
    return _read(ref)[0]


def test_fail_specs_parse_and_bad_ones_are_one_line():
    assert parse_fail("3@2.5, 5@i40,1@i7+0.25") == [
        Failure(3, time=2.5), Failure(5, iteration=40), Failure(1, iteration=7, offset=0.25)]
    for bad in ("3", "x@1", "3@-1", "3@i-2", "3@inf", "3@i4+x"):
        with pytest.raises(UsageError, match="WORKER@SECONDS"):
            parse_fail(bad)
    with pytest.raises(UsageError, match="worker 9 is not one of the 4"):
        FailurePlan(4, "9@1")


def test_exponential_lifetimes_are_seeded_and_a_worker_dies_once():
    a = FailurePlan(16, "", "exponential", 10.0, seed=3)
    b = FailurePlan(16, "", "exponential", 10.0, seed=3)
    c = FailurePlan(16, "", "exponential", 10.0, seed=4)
    assert a.failures == b.failures and a.failures != c.failures
    assert sorted(f.worker for f in a.failures) == list(range(16))
    d = FailurePlan(4, "2@i3,2@i1,2@0.5")
    assert d.failures == [Failure(2, iteration=1)]
    alive = np.ones(4, bool)
    assert d.due(0, 0.0, alive) == [] and d.due(1, 0.0, alive) == [(0.0, 2)]
    alive[2] = False
    assert d.due(5, 0.0, alive) == []


def test_abort_raises_and_the_last_worker_is_never_lost():
    m = Membership(3, mode="abort")
    with pytest.raises(WorkerFailed, match="--on-failure abort"):
        m.fail(2, 1, t_fail=0.1, t_detect=0.1, t0=1.0, cause="failed")
    m = Membership(2, mode="continue")
    rec = m.fail(2, 1, t_fail=0.1, t_detect=0.2, t0=1.0, cause="simulated")
    assert rec["rank"] == 2 and rec["t_detect"] == 1.2 and math.isclose(rec["detect_s"], 0.1)
    assert m.fail(3, 1, t_fail=0, t_detect=0, t0=0, cause="failed") is None  # dead already
    with pytest.raises(WorkerFailed, match="no worker is left"):
        m.fail(3, 0, t_fail=0, t_detect=0, t0=0, cause="failed")
    assert [r["worker"] for r in m.take()] == [1] and m.take() == []


@pytest.mark.parametrize("scheme,extra", [
    ("uncoded", {}), ("speed-aware", {}), ("speed-aware", {"placement": "replicated:2"}),
    ("frc", {"stragglers_tolerated": 1}), ("cyclic", {"stragglers_tolerated": 1}),
    ("cyclic", {"stragglers_tolerated": 2}),
    # the dynamic schemes re-issue the dead worker's outstanding partitions
    ("two-stage", {"stragglers_tolerated": 1}), ("two-stage", {"placement": "replicated:2"}),
    ("self-scheduling", {}), ("self-scheduling", {"placement": "replicated:2"})])
@pytest.mark.parametrize("fail", ["1@i2+0.003,4@i2+0.006", "0@i1,3@i6+0.01"])
def test_failures_keep_every_exact_scheme_on_the_uninterrupted_trajectory(tmp_path, reference,
                                                                         scheme, extra, fail):
    """Two workers die (in one iteration, or apart): every iteration completes, the losses
    equal an uninterrupted uncoded run's to 1e-9, n_alive steps down, /events has both."""
    code, out = _sim(tmp_path, "x", workers=6, iterations=9, scheme=scheme,
                     on_failure="continue", fail=fail, **extra)
    assert code == 0
    it, ev, attrs = _read(out)
    it_ref = reference
    assert attrs["status"] == "complete" and len(it["loss"]) == 9
    np.testing.assert_allclose(it["loss"], it_ref["loss"], rtol=1e-9, atol=0)
    assert (it["coverage"] == 1).all() and it["n_alive"][-1] == 4
    assert sorted(ev["worker"]) == sorted(int(x.split("@")[0]) for x in fail.split(","))
    assert list(ev["cause"]) in ([b"simulated"] * 2, ["simulated"] * 2)


def test_abort_stops_with_a_checkpoint_and_continue_resumes_bit_identically(tmp_path):
    common = {"workers": 5, "iterations": 10, "scheme": "cyclic", "stragglers_tolerated": 1,
              "fail": "2@i6+0.004", "checkpoint_every": 2}
    code, a = _sim(tmp_path, "a", **common)
    it, ev, attrs = _read(a)
    assert code == 1 and attrs["status"] == "failed" and len(it["loss"]) == 6
    code, b = _sim(tmp_path, "b", on_failure="continue", **common)
    assert code == 0
    v = dict(defaults().values)
    v.update(SMALL, resume=str(a), on_failure="continue")
    src = {k: "default" for k in v}
    src.update(resume="cli", on_failure="cli")
    assert simulate(Config(v, src)) == 0
    ia, ea, _ = _read(a)
    ib, eb, _ = _read(b)
    for k in ("loss", "t_end", "n_alive", "load"):
        np.testing.assert_array_equal(ia[k], ib[k], k)
    for k in ("iteration", "worker", "t_detect"):
        np.testing.assert_array_equal(ea[k], eb[k], k)


def test_a_simulated_resume_keeps_the_membership(tmp_path):
    """Killed after the failure and resumed: the dead worker stays dead (bit-identical)."""
    common = {"workers": 5, "iterations": 10, "scheme": "uncoded", "fail": "3@i2",
              "on_failure": "continue", "checkpoint_every": 1}
    code, a = _sim(tmp_path, "a", **{**common, "iterations": 5})
    assert code == 0
    v = dict(defaults().values)
    v.update(SMALL, resume=str(a), iterations=10)
    src = {k: "default" for k in v}
    src.update(resume="cli", iterations="cli")
    assert simulate(Config(v, src)) == 0
    code, b = _sim(tmp_path, "b", **common)
    ia, ea, _ = _read(a)
    ib, eb, _ = _read(b)
    for k in ("loss", "t_end", "n_alive"):
        np.testing.assert_array_equal(ia[k], ib[k], k)
    assert list(ea["worker"]) == [3] == list(eb["worker"])


def test_silence_past_dead_after_is_a_failure_under_continue(tmp_path):
    """A death rank 0 would learn of only after 10 s: --dead-after 2 leaves the silent
    worker out after two median iterations (cause silent), and the run stays exact."""
    code, ref = _sim(tmp_path, "ref", workers=5, iterations=8, scheme="uncoded")
    code, out = _sim(tmp_path, "s", workers=5, iterations=8, scheme="uncoded",
                     on_failure="continue", fail="1@i4", detect_s=10.0, dead_after=2)
    assert code == 0
    it, ev, _ = _read(out)
    assert list(ev["worker"]) == [1] and ev["cause"][0] in (b"silent", "silent")
    assert ev["iteration"][0] == 4
    np.testing.assert_allclose(it["loss"], _read(ref)[0]["loss"], rtol=1e-9, atol=0)
    dur = it["t_end"] - it["t_start"]
    assert dur[4] < 10.0  # not the 10 s detection


def test_quorum_drops_the_share_and_says_so(tmp_path):
    code, out = _sim(tmp_path, "q", workers=4, iterations=6, scheme="quorum",
                     on_failure="continue", fail="1@i2")
    assert code == 0
    it, _, _ = _read(out)
    assert list(it["coverage"]) == [1, 1, 0.75, 0.75, 0.75, 0.75]


def test_continue_refuses_a_scheme_that_does_not_survive_a_failure():
    """Every built-in scheme is elastic or tolerant now (two-stage and self-scheduling since
    they re-issue): a plugin that declares neither is refused with one line."""
    from types import SimpleNamespace

    from mpicode.models.failures import check_failure_options
    from mpicode.schemes.uncoded import Uncoded

    class Plain(Uncoded):
        name = "plain"
        elastic = False

    cfg = SimpleNamespace(on_failure="continue", scheme="plain", fail="",
                          failure_model="none", lifetime_mean=60.0)
    with pytest.raises(UsageError, match="scheme plain does not survive"):
        check_failure_options(cfg, Plain, 4)
    check_failure_options(cfg, Uncoded, 4)
    check_failure_options(SimpleNamespace(**{**vars(cfg), "on_failure": "abort"}), Plain, 4)


def test_report_names_the_failures(tmp_path):
    from mpicode.analysis import report
    code, out = _sim(tmp_path, "r", workers=4, iterations=5, scheme="uncoded",
                     on_failure="continue", fail="2@i1")
    text = report.render([str(out)])
    assert "worker 2 (rank 3) failed (simulated) in iteration 1" in text
    rows, _ = report.build([str(out)])
    assert rows[0]["failures"] == 1 and rows[0]["n_alive"] == 3


def test_the_last_worker_dying_ends_the_run_cleanly_and_resumably(tmp_path, capsys):
    """Beyond recovery (no worker left): one line, status failed, the rows and a checkpoint
    kept (resumable with --resume)."""
    code, out = _sim(tmp_path, "last", workers=2, iterations=8, scheme="uncoded",
                     on_failure="continue", fail="0@i2,1@i4", checkpoint_every=1)
    it, ev, attrs = _read(out)
    assert code == 1 and attrs["status"] == "failed" and len(it["loss"]) == 4
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mpicode:")]
    assert len(err) == 1 and "no worker is left" in err[0] and "4 iterations readable" in err[0]
    with h5py.File(out, "r") as f:
        assert int(f["checkpoint/iteration"][()]) == 4
    assert list(ev["worker"]) == [0]


@pytest.mark.parametrize("scheme", ["partial-gc", "hetero-gc"])
def test_a_tolerant_rival_goes_around_a_dead_worker_exactly(tmp_path, reference, scheme):
    """partial-gc and hetero-gc re-issue nothing: within their tolerance (s = 1) the dead
    worker is a permanent straggler and every iteration stays exact."""
    code, out = _sim(tmp_path, "x", workers=6, iterations=9, scheme=scheme,
                     stragglers_tolerated=1, on_failure="continue", fail="4@i2+0.004")
    assert code == 0
    it, ev, attrs = _read(out)
    assert attrs["status"] == "complete" and len(it["loss"]) == 9
    np.testing.assert_allclose(it["loss"], reference["loss"], rtol=1e-9, atol=0)
    assert (it["coverage"] == 1).all() and it["n_alive"][-1] == 5 and list(ev["worker"]) == [4]


def test_a_tolerant_rival_beyond_its_tolerance_stops_with_one_line(tmp_path, capsys):
    """partial-gc with s = 1: workers 1 and 2 both hold chunk 2 (cyclic assignment), so
    once both are dead no decode exists: one line, status failed, the rows before kept."""
    code, out = _sim(tmp_path, "x", workers=6, iterations=9, scheme="partial-gc",
                     stragglers_tolerated=1, on_failure="continue", fail="1@i2,2@i4+0.002",
                     checkpoint_every=1)
    it, ev, attrs = _read(out)
    assert code == 1 and attrs["status"] == "failed" and len(it["loss"]) == 4
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mpicode:")]
    assert len(err) == 1 and "partial-gc cannot decode without the 2 failed workers [1, 2]" \
        in err[0]


def test_dropcompute_drops_a_dead_workers_block(tmp_path):
    """dropcompute (not exact by design) drops the dead worker's whole block: the decode
    rescales by the partitions computed, coverage 5/6 from the failure on."""
    code, out = _sim(tmp_path, "d", workers=6, iterations=6, scheme="dropcompute",
                     on_failure="continue", fail="3@i2")
    assert code == 0
    it, _, _ = _read(out)
    np.testing.assert_allclose(it["coverage"], [1, 1] + [5 / 6] * 4, rtol=1e-12)


def test_sigkill_and_sigstop_fault_items_parse_and_bad_ones_are_one_line(monkeypatch):
    """The elastic tests' fault items are valid with the test switch (they were refused
    by the item check once: every elastic e2e test failed before training)."""
    from mpicode.engine import faults
    monkeypatch.setenv(faults.SWITCH, "1")
    monkeypatch.setenv("MPICODE_FAULT", "sigkill:2:2,sigkill:4:6:2,sigstop:3:3")
    faults._items.cache_clear()
    try:
        assert faults._items() == (("sigkill", "2", "2"), ("sigkill", "4", "6", "2"),
                                   ("sigstop", "3", "3"))
        for bad in ("sigkill:0:2", "sigkill:2", "sigstop:2:1:0", "sigkill:2:1:2:3"):
            monkeypatch.setenv("MPICODE_FAULT", bad)
            faults._items.cache_clear()
            with pytest.raises(UsageError, match="sigkill:RANK:ITER"):
                faults.check()
    finally:
        faults._items.cache_clear()


# ---- where the membership lives in the assembled run (the merge onto issue 24's hooks) ----
def test_a_death_left_in_the_inbox_is_learnt_at_the_start_of_the_next_iteration():
    from mpicode.engine.events import Inbox
    inbox = Inbox()
    inbox.arrived(3, 0.5)
    inbox.failed(2, 0.7)                      # the MPI receiver's report: time of death unknown
    inbox.failed(4, 0.9, 0.8, "simulated")    # the model's, --detect-s later
    inbox.clear()                             # the iteration ended first
    assert inbox.heap == []
    assert [(t, w, c) for t, _, w, _, c in sorted(inbox.fails)] == [
        (0.0, 2, "failed"), (0.0, 4, "simulated")]
    assert math.isnan(sorted(inbox.fails)[0][3])


def _watch(virtual):
    from mpicode.engine.hooks import DeadWorkerWatch
    mem = Membership(4, mode="continue")
    return DeadWorkerWatch(4, 0, membership=mem, virtual=virtual), mem


class _Scheme:
    active = np.ones(4, bool)

    def __init__(self):
        self.members_set = []

    def set_members(self, alive):
        self.members_set.append(np.array(alive))


class _Trainer:
    def __init__(self):
        self.scheme = _Scheme()


@pytest.mark.parametrize("virtual", [True, False])
def test_the_watch_checkpoints_the_membership_and_restores_it_in_virtual_time_only(virtual):
    watch, mem = _watch(True)
    mem.fail(2, 1, t_fail=0.1, t_detect=0.1, t0=0.0, cause="simulated")
    state = watch.state_dict()
    assert state["alive"].tolist() == [1, 0, 1, 1]
    again, mem2 = _watch(virtual)
    again.load_state_dict(state)
    trainer = _Trainer()
    again.start(trainer, 3, 9)
    # virtual time: the failures are the model's, the run goes on without worker 1; the
    # wall clock: a resumed train is a new job whose ranks are all alive
    assert mem2.alive.tolist() == ([True, False, True, True] if virtual else [True] * 4)
    assert [a.tolist() for a in trainer.scheme.members_set] == [mem2.alive.tolist()]


def test_the_watch_logs_an_iterations_failures_and_replans():
    watch, mem = _watch(True)
    trainer = _Trainer()
    watch.start(trainer, 0, 9)
    assert trainer.scheme.members_set == []  # a fresh run: nothing to re-plan
    mem.fail(0, 3, t_fail=0.2, t_detect=0.25, t0=0.0, cause="simulated")
    out = {"row": {"wait_s": 0.5, "t_start": 0.0}, "workers": {}, "tasks": {}}
    watch.post_step(trainer, 0, out)
    assert out["row"]["n_alive"] == 3
    assert [a.tolist() for a in trainer.scheme.members_set] == [[True, True, True, False]]
    assert mem.take() == []  # taken by the watch (for /events)

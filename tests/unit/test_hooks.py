"""Hooks on the run loop (mpicode.engine.hooks): the points in order, each hook's own
schedule, a hook that cannot go on, the hooks' part of a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from mpicode.config import defaults, validate_for_size
from mpicode.engine.hooks import Checkpoints, Every, Hook, RunFailed, WallEvery
from mpicode.models.stragglers import make_straggler_model
from mpicode.schemes import make_scheme
from mpicode.simulator import Simulator


def _sim(hooks=(), N=4, **kw):
    cfg = validate_for_size(defaults().replace(scheme="uncoded", stragglers="shifted-exp"), N)
    K = cfg.partitions
    return Simulator(make_scheme(cfg, N, K), make_straggler_model(cfg, N, K), n_workers=N,
                     partition_cost=1e-3, hooks=hooks, **kw)


class Recorder(Hook):
    def __init__(self, schedule=None):
        if schedule is not None:
            self.schedule = schedule
        self.calls: list = []

    def start(self, trainer, first, last):
        super().start(trainer, first, last)
        self.calls.append(("start", first, last))

    def complete_row(self, trainer, it, out):
        assert "coord_busy" not in out["row"]  # not final yet
        self.calls.append(("complete_row", it))

    def post_step(self, trainer, it, out):
        assert "coord_busy" in out["row"] and trainer.history[-1:] != [out["row"]]
        self.calls.append(("post_step", it))

    def log(self, trainer, it, out):
        if self.due(it):
            self.calls.append(("log", it))

    def post_log(self, trainer, it):
        self.calls.append(("post_log", it))

    def end(self, trainer):
        self.calls.append(("end",))


def test_the_points_come_in_order_once_per_iteration():
    h = Recorder()
    sim = _sim([h])
    sim.run(2)
    assert h.calls == [("start", 0, 1),
                       ("complete_row", 0), ("post_step", 0), ("log", 0), ("post_log", 0),
                       ("complete_row", 1), ("post_step", 1), ("log", 1), ("post_log", 1),
                       ("end",)]


def test_each_hook_acts_at_its_own_schedule():
    every3, last = Recorder(Every(3)), Recorder(Every(0, last=True))
    _sim([every3, last]).run(7)
    assert [c[1] for c in every3.calls if c[0] == "log"] == [2, 5]
    assert [c[1] for c in last.calls if c[0] == "log"] == [6]
    assert Every(0).due(5, 5) is False and Every(1).due(0, 9) is True


def test_wall_every_is_due_once_per_interval():
    t = [0.0]
    s = WallEvery(2.0, clock=lambda: t[0])
    s.begin(0)
    due = []
    for it in range(8):
        due.append(s.due(it, 7))
        t[0] += 0.75
    assert due == [True, False, False, True, False, False, True, False]


class FakeLog:
    """What Checkpoints needs of a run log."""

    def __init__(self):
        self.n_tasks, self.written = 0, []

    def checkpoint(self, snap):
        self.written.append(int(snap["iteration"]))


def test_checkpoints_at_their_schedule_and_at_the_end():
    log = FakeLog()
    _sim([Checkpoints(log, Every(2))]).run(5)
    assert log.written == [2, 4, 5]
    t = [0.0]

    def tick():
        t[0] += 1.0
        return t[0]

    log = FakeLog()
    _sim([Checkpoints(log, WallEvery(3.0, clock=tick))]).run(7)  # every third iteration
    assert log.written == [1, 4, 7, 7]


def test_a_hook_that_cannot_go_on_fails_the_run():
    class Full(Hook):
        def log(self, trainer, it, out):
            if it == 2:
                raise RunFailed("the disk is full", broken=True)

    log = FakeLog()
    sim = _sim([Full(), Checkpoints(log, Every(1))])
    sim.run(6)
    assert sim.status == "failed" and sim.error == "the disk is full" and sim.log_broken
    assert len(sim.history) == 3 and log.written == [1, 2]  # no final checkpoint: broken


def test_a_hooks_state_is_its_part_of_a_checkpoint():
    class Counter(Hook):
        def __init__(self):
            self.n = 0

        def post_step(self, trainer, it, out):
            self.n += 1

        def state_dict(self):
            return {"counted": np.int64(self.n)}

        def load_state_dict(self, state):
            self.n = int(state.get("counted", 0))

    c, ck = Counter(), Checkpoints()
    _sim([c, ck]).run(3)
    assert int(ck.snap["runtime"]["counted"]) == 3 and ck.snap["iteration"] == 3
    again = Counter()
    sim = _sim([again])
    assert sim.restore(ck.snap) == 3 and again.n == 3


def test_a_heartbeat_reaches_the_hooks(monkeypatch):
    from mpicode.engine import events
    monkeypatch.setattr(events, "HEARTBEAT_EVENTS", 1)
    beats = []

    class Beat(Hook):
        def heartbeat(self, it, n):
            beats.append((it, n))

    _sim([Beat()]).run(1)
    assert beats and beats[0] == (0, 1)


@pytest.mark.parametrize("every, due", [(1, [1, 1, 1, 1, 1]), (2, [0, 1, 0, 1, 1]),
                                        (9, [0, 0, 0, 0, 1])])
def test_the_evaluation_hook_charges_its_schedules_iterations(every, due):
    # virtual time: an evaluation costs the model's coord_eval_s, inside its row, at
    # --eval-every E and the last iteration; coord_busy counts it
    from mpicode.engine.costs import CostModel
    sim = _sim(eval_every=every, costs=CostModel(coord_eval_s=0.5))
    sim.run(5)
    assert [r["eval_s"] for r in sim.history] == [0.5 * d for d in due]
    for r in sim.history:
        assert r["t_end"] - r["t_start"] == pytest.approx(r["wait_s"] + r["eval_s"])
        assert (r["coord_busy"] >= 0.5 / (r["t_end"] - r["t_start"]) - 1e-12) == bool(
            r["eval_s"])

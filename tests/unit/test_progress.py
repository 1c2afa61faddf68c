"""``--progress``: the compact line mode (with a fake clock), the mode choice, none."""

from __future__ import annotations

import io
import math

import pytest

from mpicode.engine.progress import LineProgress, NoProgress, make_progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _row(loss=0.5, acc=0.8):
    return {"loss": loss, "accuracy": acc, "t_start": 0.0, "t_end": 0.01, "coverage": 1.0}


def test_lines_every_interval_with_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    p = make_progress("lines", 500, "uncoded N=4", stream=out, clock=clock, interval=3.0)
    assert isinstance(p, LineProgress)
    for i in range(120):
        clock.t += 0.012
        p.update(_row(loss=0.3481 if i == 119 else 0.9, acc=0.836))
    assert out.getvalue() == ""  # 1.44 s: no line yet
    for _ in range(130):
        clock.t += 0.012
        p.update(_row(loss=0.3481, acc=0.836))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1  # 3.0 s passed at iteration 250
    assert lines[0] == "mpicode: it 250/500  loss 0.3481  acc 0.836  0.012 s/it  ETA 3.0 s"
    for _ in range(249):
        clock.t += 0.02
        p.update(_row(loss=0.25, acc=0.9))
    p.update(_row(loss=math.nan, acc=math.nan))  # not evaluated: the last finite ones stay
    p.close()  # a last line with the final state
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("mpicode: it 500/500  loss 0.2500  acc 0.900")
    assert lines[-1].endswith("ETA 0.0 s") and len(lines) == 3


def test_lines_start_at_the_resumed_iteration_and_a_short_run_prints_nothing():
    clock, out = Clock(), io.StringIO()
    p = make_progress("lines", 20, "", initial=10, stream=out, clock=clock, interval=3.0)
    for _ in range(5):
        clock.t += 0.1
        p.update({"loss": 1.0})
    p.close()
    assert out.getvalue() == ""
    clock.t += 5
    p.update({"loss": 0.5, "rmse": 0.7})
    assert out.getvalue().startswith("mpicode: it 16/20  loss 0.5000  rmse 0.700")


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_auto_is_a_bar_on_a_terminal_and_lines_elsewhere():
    assert isinstance(make_progress("auto", 5, "x", stream=io.StringIO()), LineProgress)
    bar = make_progress("auto", 5, "x", stream=Tty())
    assert not isinstance(bar, LineProgress) and hasattr(bar, "bar")
    bar.update(_row())
    bar.close()
    assert isinstance(make_progress("none", 5, "x"), NoProgress)
    with pytest.raises(ValueError):
        make_progress("fancy", 5, "x")


def test_a_long_iteration_gets_heartbeat_lines_between_iterations():
    import io

    from mpicode.engine.progress import LineProgress
    t = [0.0]
    out = io.StringIO()
    p = LineProgress(10, stream=out, clock=lambda: t[0], interval=3.0)
    p.heartbeat(0, 2048)
    assert out.getvalue() == ""            # not yet: the interval has not passed
    t[0] = 3.5
    p.heartbeat(0, 4096)
    t[0] = 4.0
    p.heartbeat(0, 6144)                   # within the interval of the last heartbeat
    assert out.getvalue().splitlines() == [
        "mpicode: it 0/10  iteration 0 still running (4096 events so far)"]
    t[0] = 7.0
    p.update({"loss": 0.5})                # the next regular line: rate from the start
    assert out.getvalue().splitlines()[-1].startswith("mpicode: it 1/10  loss 0.5000  7 s/it")

"""`mpicode report`, the plots and the `mpicode.analysis.runs` API, on synthetic run files written
with the real writer (fast) and on one small real run under mpiexec."""

from __future__ import annotations

import csv
import io
import json
import math

import h5py
import numpy as np
import pytest
from runfiles import OLD_KEYS, PNG, add_comm_fields, synth  # noqa: F401

import mpicode.analysis as analysis
from mpicode.analysis import report
from mpicode.config import UsageError
from mpicode.io.runlog import ITERATION_FIELDS, TASK_FIELDS, WORKER_FIELDS


# -- the table -------------------------------------------------------------------------------
def test_json_keeps_old_keys_and_adds_new(two_runs):
    rows = json.loads(report.render(list(two_runs), fmt="json", target_loss=0.3))
    assert [r["scheme"] for r in rows] == ["two-stage", "uncoded"]
    for r in rows:
        assert list(r)[:len(OLD_KEYS)] == OLD_KEYS
        for k in ("scheduler", "channel", "bytes_up", "bytes_delivered", "jain", "jain_of",
                  "final_test_loss", "target_reached"):
            assert k in r, k
    a, b = rows
    assert a["iterations"] == 6 and b["iterations"] == 4 and a["N"] == 3
    assert a["final_loss"] == pytest.approx(1 / 6) and a["test_accuracy"] == pytest.approx(0.75)
    assert a["mean_iter_s"] == pytest.approx(0.5) and a["p95_iter_s"] == pytest.approx(0.5)
    assert a["total_s"] == pytest.approx(5.5) and a["mean_load"] == pytest.approx(1.25)
    assert a["stage2_frac"] == 1.0 and a["bytes_up"] == 6 * 800
    # Jain: of used-result counts (worker 2 never used) without /workers/delivered ...
    assert a["jain_of"] == "used" and a["jain"] == pytest.approx(2 ** 2 / (3 * 2))
    assert a["bytes_delivered"] is None
    # ... of delivered bytes (100, 100, 400 per iteration) with it
    assert b["jain_of"] == "delivered" and b["jain"] == pytest.approx(600 ** 2 / (3 * 180000))
    assert b["bytes_delivered"] == 4 * 600 and b["scheduler"] == "lyapunov"


def test_time_to_target(two_runs):
    a = two_runs[0]
    # loss 1/(i+1) <= 0.3 first at i = 3, whose t_end is 3.5
    assert analysis.time_to_loss(a, 0.3) == pytest.approx(3.5)
    assert math.isinf(analysis.time_to_loss(a, 0.01))
    assert math.isnan(analysis.time_to_loss(a, None))
    rows = json.loads(report.render([a], fmt="json", target_loss=0.01))
    assert rows[0]["time_to_target_s"] is None and rows[0]["target_reached"] is False
    rows = json.loads(report.render([a], fmt="json", target_loss=0.3))
    assert rows[0]["time_to_target_s"] == pytest.approx(3.5) and rows[0]["target_reached"]
    table = report.render([a], target_loss=0.01, wide=True)
    assert "time_to_target_s" in table and "never" in table
    assert "time_to_target_s" not in report.render([a], wide=True)
    compact = report.render([a], target_loss=0.01).splitlines()
    assert "target_s" in compact[0].split() and compact[2].split()[-2] == "never"
    assert "target_s" not in report.render([a]).splitlines()[0].split()


def test_csv_and_table(two_runs):
    text = report.render(list(two_runs), fmt="csv", target_loss=0.3)
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    assert header[:len(OLD_KEYS)] == OLD_KEYS and "jain" in header and "jain_of" in header
    assert len(rows) == 2 and rows[1]["scheme"] == "uncoded"
    assert float(rows[0]["time_to_target_s"]) == pytest.approx(3.5)
    table = report.render(list(two_runs), wide=True)
    lines = table.splitlines()
    assert lines[0].split()[:len(OLD_KEYS) - 1] == OLD_KEYS[:-1]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].startswith("a.h5") and "two-stage" in lines[2]
    assert "note: jain (jain_of=delivered)" in table and "used-result" not in table
    assert "per-worker counts of results used" in table


# -- in progress -----------------------------------------------------------------------------


# -- the analysis API ------------------------------------------------------------------------
def test_structured_arrays(two_runs):
    a, b = two_runs
    it = analysis.iterations(a)
    assert len(it) == 6 and list(it.dtype.names) == list(ITERATION_FIELDS)
    for k, dt in ITERATION_FIELDS.items():
        assert it.dtype[k] == np.dtype(dt), k
    np.testing.assert_array_equal(it["iteration"], np.arange(6))
    wk = analysis.workers(a)
    assert len(wk) == 6 * 3 and list(wk.dtype.names)[:2] == ["iteration", "worker"]
    assert set(WORKER_FIELDS) <= set(wk.dtype.names)
    assert wk.dtype["stage"] == np.int8 and wk.dtype["finish_s"] == np.float64
    np.testing.assert_array_equal(wk["iteration"][:6], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(wk["worker"][:6], [0, 1, 2, 0, 1, 2])
    assert np.isnan(wk["finish_s"][wk["worker"] == 2]).all()
    tk = analysis.tasks(a)
    assert len(tk) == 6 * 4 and list(tk.dtype.names) == list(TASK_FIELDS)
    assert tk.dtype["t_dispatch"] == np.float64 and tk.dtype["cancelled"] == np.int8
    assert tk["stage"].tolist().count(2) == 6
    assert len(analysis.slots(a)) == 0
    # fields added by later features appear as columns
    wb = analysis.workers(b)
    for k in ("offered", "admitted", "delivered", "deferred", "dropped", "Q", "Z"):
        assert k in wb.dtype.names, k
    assert wb.dtype["delivered"] == np.int64 and len(wb) == 4 * 3
    sl = analysis.slots(b)
    assert len(sl) == 50 and {"slot", "worker", "Q_sum", "Z_sum"} <= set(sl.dtype.names)


def test_missing_and_cumulative_fields(tmp_path):
    p = tmp_path / "old.h5"
    synth(p, n=4)
    add_comm_fields(p, cumulative=True)
    with h5py.File(p, "a") as f:  # a log written before these fields existed
        del f["iterations/accuracy"], f["iterations/stage2"], f["workers/used"]
    s = analysis.summary(str(p))
    assert math.isnan(s["test_accuracy"]) and math.isnan(s["stage2_frac"])
    assert "accuracy" not in analysis.iterations(str(p)).dtype.names
    # a cumulative counter: its last row is the total
    assert s["bytes_delivered"] == 4 * 600 and s["jain_of"] == "delivered"
    with h5py.File(p, "a") as f:
        del f["workers/delivered"]
    assert analysis.fairness(str(p)) == (pytest.approx(math.nan, nan_ok=True), "none")


def test_as_frame(two_runs):
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"needs pandas.*pip install 'mpicode\[pandas\]'"):
            analysis.iterations(two_runs[0], as_frame=True)
        return
    df = analysis.workers(two_runs[0], as_frame=True)
    assert list(df.columns[:2]) == ["iteration", "worker"] and len(df) == 18


def test_jain():
    assert analysis.jain([1, 1, 1, 1]) == pytest.approx(1.0)
    assert analysis.jain([5, 0, 0, 0]) == pytest.approx(0.25)
    assert math.isnan(analysis.jain([0, 0])) and math.isnan(analysis.jain([]))


# -- plots -----------------------------------------------------------------------------------


# -- bad input: one line, exit 2 -------------------------------------------------------------
def _bad(tmp_path):
    (tmp_path / "text.h5").write_text("not hdf5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    (tmp_path / "dir.h5").mkdir()
    return [("nope.h5", "no such file"), ("text.h5", "cannot read run"),
            ("other.h5", "not an mpicode run"), ("dir.h5", "is a directory")]


def test_bad_paths_are_usage_errors(tmp_path):
    for name, msg in _bad(tmp_path):
        with pytest.raises(UsageError, match=msg):
            analysis.read_run(str(tmp_path / name))


def test_parse_range():
    assert report.parse_range(None, 10) == (0, 5)
    assert report.parse_range("3:7", 10) == (3, 7)
    assert report.parse_range("8:", 10) == (8, 10)
    assert report.parse_range(":20", 10) == (0, 10)
    assert report.parse_range("4", 10) == (4, 5)
    for bad in ("x", "5:5", "-1:3", "12:14"):
        with pytest.raises(UsageError):
            report.parse_range(bad, 10)


# -- a real run ------------------------------------------------------------------------------

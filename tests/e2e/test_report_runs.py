"""`mpicode report`, the plots and the `mpicode.analysis.runs` API, on synthetic run files written
with the real writer (fast) and on one small real run under mpiexec."""

from __future__ import annotations

import json

import h5py
import pytest
from conftest import mpicode, mpirun
from runfiles import OLD_KEYS, PNG, add_comm_fields, synth  # noqa: F401

import mpicode.analysis as analysis


def test_in_progress_part_file_is_read_and_flagged(tmp_path):
    out = tmp_path / "live.h5"
    log = synth(out, n=3, close=False)  # the writer still has it open
    log.f["iterations/loss"].resize((4,))  # a field resized ahead of n_done: not yet valid
    log.f.flush()
    try:
        r = mpicode(["report", out])  # another process, while the writer holds it
        assert r.returncode == 0, r.stderr
        assert "running" in r.stdout and "in progress" in r.stdout
        assert "showing its 3 completed iterations" in r.stdout
        r = mpicode(["report", log.part, "--format", "json"])
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["status"] == "running"
        assert "in progress" in r.stderr  # the note, off the machine-readable output
    finally:
        log.f.close()  # as if killed: no status update, no rename
    run = analysis.read_run(str(out))  # the final name falls back to .part
    assert run["file"] == str(out) + ".part" and run["in_progress"] and run["n"] == 3
    assert len(analysis.iterations(run)) == 3 and run["iterations"]["loss"].shape == (3,)


# -- the analysis API ------------------------------------------------------------------------


# -- plots -----------------------------------------------------------------------------------
def _png(path):
    data = path.read_bytes()
    assert data[:8] == PNG, path
    assert len(data) > 8000, (path, len(data))
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert w >= 600 and h >= 250, (path, w, h)


def test_plots_written(two_runs, tmp_path):
    pytest.importorskip("matplotlib")
    d = tmp_path / "plots"
    r = mpicode(["report", *two_runs, "--plots", d, "--gantt-run", "0", "--gantt-iterations",
                 "2:5", "--target-loss", "0.3"])
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in d.iterdir())
    assert names == ["backlog_b.png", "gantt_a_2-5.png", "load_coverage.png",
                     "loss_vs_iteration.png", "loss_vs_time.png", "metric_vs_time.png",
                     "slowdown_attribution.png", "straggler_scores.png"], names
    for p in d.iterdir():
        _png(p)
        assert f"wrote {p}" in r.stderr
    assert "two-stage" in r.stdout  # the table still goes to stdout


def test_plots_without_backlogs_say_so(two_runs, tmp_path):
    pytest.importorskip("matplotlib")
    runs = [analysis.read_run(two_runs[0])]
    from mpicode.analysis import plots
    written, notes = plots.write_all(runs, str(tmp_path / "p"), gantt_run=runs[0],
                                     gantt_span=(0, 6))
    assert len(written) == 7 and any("no backlog plot" in n for n in notes)


# -- bad input: one line, exit 2 -------------------------------------------------------------
def _bad(tmp_path):
    (tmp_path / "text.h5").write_text("not hdf5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    (tmp_path / "dir.h5").mkdir()
    return [("nope.h5", "no such file"), ("text.h5", "cannot read run"),
            ("other.h5", "not an mpicode run"), ("dir.h5", "is a directory")]


@pytest.mark.parametrize("case", range(7))
def test_cli_bad_input_one_line_exit_2(two_runs, tmp_path, case):
    bad = _bad(tmp_path)
    (tmp_path / "afile").write_text("")
    args = [[tmp_path / bad[0][0]], [tmp_path / bad[1][0]], [tmp_path / bad[2][0]],
            [two_runs[0], tmp_path / bad[3][0]],
            [two_runs[0], "--plots", tmp_path / "afile"],
            [two_runs[0], "--plots", tmp_path / "p", "--gantt-iterations", "9:12"],
            [two_runs[0], "--gantt-run", "5", "--plots", tmp_path / "p"]][case]
    r = mpicode(["report", *args])
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mpicode: error:"), r.stderr
    assert "Traceback" not in r.stderr and not r.stdout


# -- a real run ------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_real_run_report_and_gantt(tmp_path):
    out = tmp_path / "ign.h5"
    r = mpirun(3, ["train", "--scheme", "ignore-stragglers", "--stragglers", "shifted-exp",
                   "--iterations", 4, "--samples", 600, "--features", 8, "--delay-unit", 0.005,
                   "--out", out, "--quiet"], timeout=90)
    assert r.returncode == 0, r.stderr
    tk = analysis.tasks(str(out))
    assert len(tk) == 4 * 2 and tk["cancelled"].sum() == 4  # one of 2 workers, every time
    wk = analysis.workers(str(out))
    assert len(wk) == 8 and wk["used"].sum() == 4
    s = analysis.summary(str(out), target_loss=10.0)
    assert s["status"] == "complete" and s["mean_coverage"] == 0.5
    assert s["jain_of"] == "used" and 0.5 <= s["jain"] <= 1.0
    assert s["time_to_target_s"] > 0 and s["target_reached"]
    pytest.importorskip("matplotlib")
    r = mpicode(["report", out, "--plots", tmp_path / "p", "--gantt-iterations", "1:3"])
    assert r.returncode == 0, r.stderr
    _png(tmp_path / "p" / "gantt_ign_1-3.png")
    _png(tmp_path / "p" / "straggler_scores.png")
    r = mpicode(["report", out, "--workers", "--format", "json"])
    assert r.returncode == 0, r.stderr
    scores = json.loads(r.stdout)
    assert [w["rank"] for w in scores] == [1, 2] and all(w["score"] > 0 for w in scores)


# -- issue 27: unlike runs are never averaged silently ------------------------------------
def test_group_of_mpi_and_simulated_runs_is_refused(tmp_path):
    sim = tmp_path / "s.h5"
    r = mpicode(["simulate", "--workers", 2, "--iterations", 3, "--samples", 400, "--features",
                 5, "--out", sim, "--quiet"])
    assert r.returncode == 0, r.stderr
    mpi = tmp_path / "m.h5"
    r = mpirun(3, ["train", "--iterations", 3, "--samples", 400, "--features", 5, "--out", mpi,
                   "--quiet"])
    assert r.returncode == 0, r.stderr
    r = mpicode(["report", sim, mpi, "--group-by", "scheme"])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "differ in more than the seed: mode (mpi, simulate)" in lines[0], lines[0]
    r = mpicode(["report", sim, mpi, "--group-by", "scheme,mode"])
    assert r.returncode == 0, r.stderr
    r = mpicode(["report", sim, mpi, "--group-by", "scheme", "--allow-mixed"])
    assert r.returncode == 0 and " 2 " in r.stdout.splitlines()[2], r.stdout
    r = mpicode(["report", sim, mpi, "--columns", "run,mode,iters"])
    assert r.returncode == 0 and r.stdout.splitlines()[0].split() == ["run", "mode",
                                                                      "iterations"]

"""`mpicode report` views on small hand-made run files (in process): the compact table, --wide,
--columns, --group-by, the what-if view (vs_oracle, straggler scores), the plots' fixes, and
the pure parts of `mpicode sweep`."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from runfiles import add_comm_fields, synth  # noqa: F401

import mpicode.analysis as analysis
from mpicode.analysis import groups, plots, report, sweep, table, whatif
from mpicode.config import UsageError
from mpicode.io import safefile
from mpicode.stats import mean_ci


def scale_times(path, factor: float, seed: int | None = None, oracle: float | None = None):
    """Stretch a synthetic run's clock by ``factor`` (and store a seed, an oracle time)."""
    with h5py.File(path, "a") as f:
        for k in ("t_start", "t_end"):
            f["iterations"][k][...] = f["iterations"][k][...] * factor
        if seed is not None:
            f.attrs["config"] = json.dumps({"slot_ms": 2.0, "seed": seed})
        if oracle is not None:
            n = int(f.attrs["n_done"])
            if "oracle_s" in f["iterations"]:  # the writer creates it (NaN) up front
                del f["iterations/oracle_s"]
            f["iterations"].create_dataset("oracle_s", data=np.full(n, oracle))


@pytest.fixture
def seeds(tmp_path):
    """Two schemes x three seeds; mean iteration time 0.5 x (1, 1.2, 1.4) per seed."""
    paths = []
    for scheme in ("two-stage", "uncoded"):
        for s in range(3):
            p = tmp_path / f"{scheme}_{s}.h5"
            synth(p, scheme=scheme)
            scale_times(p, 1 + 0.2 * s, seed=s)
            paths.append(str(p))
    return paths


# -- the table -------------------------------------------------------------------------------
def test_compact_default_fits_and_marks_empty_values(tmp_path):
    paths = []
    for i, scheme in enumerate(["ignore-stragglers", "two-stage", "speed-aware"]):
        p = tmp_path / f"cell_{i:03d}_{scheme}_{i}.h5"
        synth(p, scheme=scheme)
        paths.append(str(p))
    with h5py.File(paths[0], "a") as f:
        del f["iterations/accuracy"]  # a missing field: one marker, never "nan"
    for target in (None, 0.3, 1e-6):
        lines = report.render(paths, target_loss=target).splitlines()[:2 + len(paths)]
        assert max(map(len, lines)) <= 100, lines  # the table (the notes below are prose)
        body = "\n".join(lines)
        assert "nan" not in body.lower() and "None" not in body
    lines = report.render(paths, target_loss=1e-6).splitlines()
    head = lines[0].split()
    assert head[:4] == ["run", "status", "scheme", "N"]
    assert "vs_oracle" in head and "target_s" in head
    row = dict(zip(head, lines[2].split(), strict=False))
    assert row["target_s"] == "never" and row["vs_oracle"] == table.EMPTY
    assert head[1] == "status" and lines[2].split()[1] == "complete"
    # names too long for everything: still 100 columns, and a note says what was left out
    long = tmp_path / "long"
    long.mkdir()
    names = [str(long / f"cell_{i:03d}_ignore-stragglers_shifted-exp_{i}_and_more.h5")
             for i in range(2)]
    for n in names:
        synth(n, scheme="ignore-stragglers")
    text = report.render(names, target_loss=0.3).splitlines()
    # what tells the cells apart stays (index and seed), what they share goes to a note
    assert max(map(len, text[:4])) <= 100 and text[2].split()[0] == "000_0"
    assert text[3].split()[0] == "001_1"
    assert "note: run names without what every run shares: ignore-stragglers_shifted-exp_and_more" \
        in text
    assert any(t.startswith("note: left out to fit 100 columns: p95_iter_s") for t in text)


def test_wide_and_machine_outputs_stay_complete(two_runs):
    valid = table.valid_columns([analysis.summary(two_runs[0])])
    wide = report.render(list(two_runs), wide=True).splitlines()[0].split()
    assert set(wide) >= set(valid) - {"file", "time_to_target_s", "final_test_loss"}
    header = report.render(list(two_runs), fmt="csv").splitlines()[0].split(",")
    for k in ("run", "stragglers", "jain_of", "throughput_Bps", "vs_oracle", "file",
              "final_test_loss", "participation_jain"):
        assert k in header, k
    rows = json.loads(report.render(list(two_runs), fmt="json"))
    assert rows[0]["vs_oracle"] is None and "stage2_frac" in rows[0]


def test_columns_chosen_and_unknown(two_runs):
    lines = report.render(list(two_runs), columns="scheme,jain,vs_oracle").splitlines()
    assert lines[0].split() == ["scheme", "jain", "vs_oracle"]
    assert lines[2].split() == ["two-stage", "0.667", "-"]
    text = report.render(list(two_runs), fmt="csv", columns="run,N")
    assert text.splitlines()[0] == "run,N"
    with pytest.raises(UsageError) as e:
        report.render(list(two_runs), columns="scheme,bogus")
    msg = str(e.value)
    assert "\n" not in msg and "bogus" in msg and "valid: run,status,scheme" in msg


def test_vs_oracle_from_oracle_s(tmp_path):
    p = tmp_path / "o.h5"
    synth(p)
    scale_times(p, 1.0, oracle=0.2)  # iterations last 0.5 s: 2.5x the oracle
    assert whatif.vs_oracle(str(p)) == pytest.approx(2.5)
    rows = json.loads(report.render([str(p)], fmt="json"))
    assert rows[0]["vs_oracle"] == pytest.approx(2.5)
    assert report.render([str(p)]).splitlines()[2].split()[-1] == "2.50"


# -- --group-by ------------------------------------------------------------------------------
def test_group_by_mean_and_ci(seeds):
    rows = json.loads(report.render(seeds, fmt="json", group_by="scheme", target_loss=0.3))
    assert [(r["scheme"], r["n"]) for r in rows] == [("two-stage", 3), ("uncoded", 3)]
    per_run = [0.5 * (1 + 0.2 * s) for s in range(3)]
    m, lo, hi = mean_ci(per_run)
    g = rows[0]
    assert g["mean_iter_s"] == pytest.approx(m) and g["mean_iter_s_ci_low"] == pytest.approx(lo)
    assert g["mean_iter_s_ci_high"] == pytest.approx(hi) and lo < m < hi
    assert len(g["runs"]) == 3 and g["target_reached"] == 1.0
    assert g["time_to_target_s"] == pytest.approx(np.mean([3.5 * (1 + 0.2 * s)
                                                           for s in range(3)]))
    text = report.render(seeds, group_by="scheme")
    assert "±" in text and max(map(len, text.splitlines()[:4])) <= 100
    csv_rows = list(csv.DictReader(io.StringIO(report.render(seeds, fmt="csv",
                                                             group_by="scheme"))))
    assert float(csv_rows[1]["mean_iter_s_ci_low"]) == pytest.approx(lo)
    assert "time_to_target_s" not in csv_rows[0]  # no target given


def test_group_by_config_key_and_errors(seeds):
    rows = json.loads(report.render(seeds, fmt="json", group_by="seed"))
    assert [r["seed"] for r in rows] == [0, 1, 2] and all(r["n"] == 2 for r in rows)
    # one run per group: the interval is the value itself
    rows = json.loads(report.render(seeds, fmt="json", group_by="scheme,seed"))
    assert len(rows) == 6 and rows[0]["final_loss_ci_low"] == rows[0]["final_loss"]
    with pytest.raises(UsageError, match="unknown key nope; valid: .*scheme"):
        report.render(seeds, group_by="nope")
    with pytest.raises(UsageError, match="expected KEY"):
        groups.parse_keys(" , ")


def test_group_never_when_no_run_reached(seeds):
    rows = json.loads(report.render(seeds, fmt="json", group_by="scheme", target_loss=1e-9))
    assert rows[0]["time_to_target_s"] is None and rows[0]["target_reached"] == 0.0
    assert "never" in report.render(seeds, group_by="scheme", target_loss=1e-9)


# -- what-if: straggler scores ---------------------------------------------------------------
def test_straggler_scores_by_hand(two_runs):
    # per partition: worker 0 (0.1 + 0.15) / 8, worker 1 0.2 / 4, worker 2 (cancelled at
    # 0.4) 0.4 / 4; the median is worker 1's
    s = whatif.straggler_scores(two_runs[0])
    assert [w["score"] for w in s] == pytest.approx([0.625, 1.0, 2.0])
    assert [w["censored"] for w in s] == [0, 0, 6] and [w["rank"] for w in s] == [1, 2, 3]
    assert [w["slow_frac"] for w in s] == [0.0, 0.0, 1.0]
    rows = json.loads(report.render([two_runs[0]], fmt="json", workers=True))
    assert len(rows) == 3 and rows[2]["score"] == pytest.approx(2.0)
    text = report.render([two_runs[0]], workers=True)
    assert text.splitlines()[0].split()[:4] == ["run", "worker", "rank", "score"]


@pytest.mark.parametrize("slow", [0, 1, 3])
def test_straggler_score_from_workers_fallback(slow):
    """No /tasks rows: compute_s + delay_s per partition; a worker k times slower than the
    others every iteration scores k, the others 1."""
    n, N, k = 5, 4, 3.0
    compute = np.full((n, N), 0.1)
    compute[:, slow] *= k
    run = {"path": "x", "n": n, "attrs": {"n_workers": N}, "iterations": {}, "tasks": {},
           "workers": {"compute_s": compute, "delay_s": np.zeros((n, N)),
                       "partitions": np.full((n, N), 2)}}
    s = [w["score"] for w in whatif.straggler_scores(run)]
    want = np.ones(N)
    want[slow] = k
    assert s == pytest.approx(want)


# -- plots -----------------------------------------------------------------------------------
@pytest.fixture
def captured(monkeypatch):
    """The figures the plot functions build, instead of PNG files."""
    pytest.importorskip("matplotlib")
    figs = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.setdefault(path.name, fig)
                        and str(path))
    return figs


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_gantt_legend_and_labels(tmp_path, captured):
    from pathlib import Path
    p = tmp_path / "u.h5"
    synth(p, n=40, scheme="uncoded")
    with h5py.File(p, "a") as f:  # an uncoded run: stage-1 tasks only, none cancelled
        f["tasks/stage"][...] = 1
        f["tasks/cancelled"][...] = 0
        f["tasks/used"][...] = 1
    run = analysis.read_run(str(p))
    plots.gantt(run, Path("g.png"), (0, 40))
    fig = captured["g.png"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "task" in legend and not any("stage" in t for t in legend)
    assert "cancelled" not in legend and "result not used" not in legend
    labels = [t for t in _texts(fig) if t.strip().startswith("it ")]
    assert 5 <= len(labels) <= 13  # thinned: at most ~12 of the 40
    run2 = analysis.read_run(synth(tmp_path / "t.h5", n=3).path)
    plots.gantt(run2, Path("g2.png"), (0, 3))
    legend = [t.get_text() for t in captured["g2.png"].axes[0].get_legend().get_texts()]
    assert {"stage 1 task", "stage 2 task", "cancelled"} <= set(legend)


def test_gantt_file_name_is_a_to_b(two_runs, tmp_path):
    pytest.importorskip("matplotlib")
    runs = [analysis.read_run(p) for p in two_runs]
    written, _ = plots.write_all(runs, str(tmp_path / "p"), gantt_run=runs[0],
                                 gantt_span=report.parse_range("2:5", runs[0]["n"]))
    names = sorted(p.rsplit("/", 1)[1] for p in written)
    assert "gantt_a_2-5.png" in names
    for want in ("loss_vs_iteration.png", "metric_vs_time.png", "straggler_scores.png",
                 "loss_vs_time.png", "load_coverage.png", "backlog_b.png"):
        assert want in names, want


def test_empty_backlogs_say_so(tmp_path, captured):
    from pathlib import Path
    p = tmp_path / "q.h5"
    synth(p, scheduler="lyapunov")
    add_comm_fields(p)
    with h5py.File(p, "a") as f:
        f["workers/Q"][...] = 0.0
        f["workers/Z"][...] = 0.0
    plots.backlogs(analysis.read_run(str(p)), Path("b.png"))
    texts = _texts(captured["b.png"])
    assert any("Q stayed empty" in t for t in texts) and any("Z stayed empty" in t
                                                             for t in texts)


def test_overlapping_series_styles_differ():
    st = [plots.style(i, 5, 40) for i in range(5)]
    assert len({s["markevery"] for s in st}) == 5  # markers at distinct offsets
    assert len({s["lw"] for s in st}) == 5 and st[0]["lw"] > st[-1]["lw"]


def test_band_matches_mean_ci():
    from mpicode.analysis.plots import band
    ys = [np.array([1.0, 2.0, np.nan]), np.array([2.0, 4.0, 3.0]), np.array([3.0, 3.0, 5.0])]
    m, lo, hi = band(ys)
    for j in range(3):
        want = mean_ci([y[j] for y in ys])
        assert (m[j], lo[j], hi[j]) == pytest.approx(want)


def test_group_plots_and_log_loss(seeds, tmp_path, captured):
    runs = [analysis.read_run(p) for p in seeds]
    rows = [analysis.summary(r) for r in runs]
    sets = [(groups.label(["scheme"], v), [runs[i] for i in idx])
            for v, idx in groups.partition(runs, rows, ["scheme"]).items()]
    plots.write_all(runs, str(tmp_path / "p"), groups=sets, log_loss=True)
    ax = captured["loss_vs_iteration.png"].axes[0]
    assert ax.get_yscale() == "log" and len(ax.collections) == 2  # a CI band per group
    assert "groups.png" in captured
    fig = captured["groups.png"]
    # the two schemes' mean iteration times are equal here: no panel, said at the bottom
    sup = fig.get_supxlabel()
    assert "mean iteration time 0.6" in (sup if isinstance(sup, str) else sup.get_text())
    bars = fig.axes[0]
    assert bars.get_title().startswith("time to target") or len(bars.patches) == 2
    assert any("slowdown vs clairvoyant oracle: no values" in t for t in _texts(fig))


# -- sweep (the pure parts; tests/e2e/test_sweep.py runs cells) ------------------------------
def test_sweep_cells_and_names(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("# header\n\n--scheme uncoded --stragglers shifted-exp --seed 0\n"
                 "  --scheme two-stage --stragglers bimodal --seed 2 --delay-unit=0.01\n")
    cells = sweep.read_cells(str(f))
    assert len(cells) == 2
    # the names jobs/sweep.sbatch gives (its sed: name=value joined by _): the seed and every
    # option can be read off the name
    assert sweep.out_path(tmp_path, 0, cells[0]).name == \
        "cell_000_scheme=uncoded_stragglers=shifted-exp_seed=0.h5"
    assert sweep.slug(cells[1]) == "scheme=two-stage_stragglers=bimodal_seed=2_delay-unit=0.01"
    # a sweep begun with the old names (values only) goes on under them
    old = tmp_path / "cell_001_two-stage_bimodal_2_0.01.h5.part"
    old.write_text("")
    assert sweep.out_path(tmp_path, 1, cells[1]).name == "cell_001_two-stage_bimodal_2_0.01.h5"
    f.write_text("--scheme uncoded --out x.h5\n")
    with pytest.raises(UsageError, match="cell 0: --out/--resume are set by the sweep"):
        sweep.read_cells(str(f))
    f.write_text("# nothing\n")
    with pytest.raises(UsageError, match="has no cells"):
        sweep.read_cells(str(f))
    with pytest.raises(UsageError, match="cannot read sweep file"):
        sweep.read_cells(str(tmp_path / "missing.txt"))


def test_sweep_state_and_command(tmp_path):
    out = tmp_path / "c.h5"
    assert sweep.state(out) == ("new", None)
    log = synth(out, n=2, close=False)  # a live run: its writer holds the .part
    assert sweep.state(out) == ("busy", tmp_path / "c.h5.part")
    log.f.close()  # killed: no status update, no rename, the lock gone with the process
    safefile.release(log._lock)
    assert sweep.state(out) == ("rerun", tmp_path / "c.h5.part")
    with h5py.File(tmp_path / "c.h5.part", "a", locking=False) as f:
        f.create_group("checkpoint")
    assert sweep.state(out) == ("resume", tmp_path / "c.h5.part")
    cmd = sweep.command(3, "--scheme uncoded", out, None, "resume", tmp_path / "c.h5.part")
    assert cmd[1:3] == ["-n", "3"] and "--resume" in cmd and "--out" not in cmd
    assert cmd[-1] == "--quiet" and cmd.index("train") < cmd.index("--scheme")
    cmd = sweep.command(3, "--scheme uncoded", out, "c.toml", "rerun", None)
    assert cmd[cmd.index("--config") + 1] == "c.toml" and "--force" in cmd
    (tmp_path / "c.h5.part").unlink()
    synth(out, n=2)
    assert sweep.state(out) == ("skip", out)


def test_sweep_bad_arguments(tmp_path, monkeypatch):
    f = tmp_path / "s.txt"
    f.write_text("--scheme uncoded\n")
    args = SimpleNamespace(file=str(f), np=1, config=None, out_dir=str(tmp_path / "o"),
                           dry_run=True)
    with pytest.raises(UsageError, match="--np 1"):
        sweep.main(args)
    args.np = 3
    monkeypatch.setenv("MPIEXEC_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="MPIEXEC_TIMEOUT"):
        sweep.main(args)
    monkeypatch.setenv("MPIEXEC_TIMEOUT", "60")
    assert sweep.main(args) == 0 and not (tmp_path / "o").exists()  # a dry run writes nothing


# -- issue 27: report never mixes unlike runs silently ------------------------------------
def _run(path, *, mode="mpi", N=3, seed=0, **conf):
    synth(path, N=N, scheme="uncoded", seed=seed)
    with h5py.File(path, "a") as f:
        f.attrs["mode"] = mode
        f.attrs["config"] = json.dumps({"slot_ms": 2.0, "seed": seed, "scheme": "uncoded",
                                        "out": str(path), **conf})
    return str(path)


def test_mode_column_says_how_the_times_were_made(tmp_path):
    paths = [_run(tmp_path / "a.h5"), _run(tmp_path / "b.h5", mode="simulated"),
             _run(tmp_path / "c.h5", delay_mode="virtual")]
    rows, _ = report.build(paths)
    assert [r["mode"] for r in rows] == ["mpi", "simulate", "virtual-delay"]
    head = report.render(paths).splitlines()[0].split()
    assert "mode" in head
    assert json.loads(report.render(paths, fmt="json"))[1]["mode"] == "simulate"


def test_group_of_unlike_runs_is_refused_naming_the_keys(tmp_path):
    paths = [_run(tmp_path / "m0.h5", seed=0), _run(tmp_path / "m1.h5", seed=1),
             _run(tmp_path / "s0.h5", mode="simulated", N=4, seed=0, dataset="a"),
             _run(tmp_path / "s1.h5", mode="simulated", N=4, seed=1, dataset="b")]
    with pytest.raises(UsageError) as e:
        report.render(paths, group_by="scheme")
    msg = str(e.value)
    assert "group scheme=uncoded differ in more than the seed" in msg
    for key in ("mode (mpi, simulate)", "N (3, 4)", "dataset"):
        assert key in msg, msg
    assert "--allow-mixed" in msg and "\n" not in msg
    # seeds and output names alone are no difference; the keys named split the groups
    assert "n" in report.render(paths[:2], group_by="scheme").splitlines()[0].split()
    text = report.render(paths, group_by="scheme,mode,N,dataset")
    assert len(text.split("\n\n")[0].splitlines()) >= 5  # header, rule, three groups
    # --allow-mixed averages them anyway
    assert " 4 " in report.render(paths, group_by="scheme", allow_mixed=True).splitlines()[2]


def test_grouped_table_keeps_vs_oracle_and_load_and_columns_take_headers(seeds, tmp_path):
    for p in seeds:
        with h5py.File(p, "a") as f:
            n = int(f.attrs["n_done"])
            f["iterations/oracle_s"].resize((max(n, f["iterations/oracle_s"].shape[0]),))
            f["iterations/oracle_s"][:n] = 0.25
    lines = report.render(seeds, group_by="scheme,stragglers,channel,scheduler",
                          target_loss=0.3).splitlines()
    head = lines[0].split()
    assert "vs_oracle" in head and "load" in head, lines  # (mean_load under its short header)
    # every header a table prints is a --columns name
    compact = report.render(seeds).splitlines()[0].split()
    for h in compact:
        report.render(seeds, columns=h)
    assert report.render(seeds, columns="iters").splitlines()[0].split() == ["iterations"]


# -- issue 27: figures fit for a paper -------------------------------------------------------
def _off_canvas(fig) -> list[str]:
    """Every drawn artist (axes with their titles, labels, tick labels and legends, colour
    bars, figure-level texts) whose tight bounding box leaves the figure: cut titles,
    labels, colour-bar labels, legends. Texts are named one by one."""
    from matplotlib.text import Text
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height

    def out(bb):
        return bb is not None and (bb.x0 < -0.5 or bb.y0 < -0.5 or bb.x1 > W + 0.5
                                   or bb.y1 > H + 0.5)
    bad = []
    for a in fig.get_children():
        if not a.get_visible() or not out(a.get_tightbbox(r)):
            continue
        texts = [t for t in a.findobj(Text) if t.get_visible() and t.get_text().strip()
                 and t.get_window_extent(r) is not None and out(t.get_window_extent(r))]
        ticks = {id(t) for ax in getattr(a, "_axis_map", {}).values()
                 for t in ax.get_ticklabels()}
        named = [t.get_text() for t in texts if id(t) not in ticks] or [repr(a)]
        bad.extend(named)
    return bad


def _long_runs(tmp_path, k=8, seeds=2):
    paths = []
    for i, scheme in enumerate(["two-stage", "uncoded", "cyclic", "frc"] * (k // 4)):
        seed = i % seeds
        p = tmp_path / f"cell_{i:03d}_scheme={scheme}_stragglers=bimodal_seed={seed}_x.h5"
        synth(p, n=30, N=6, scheme=scheme, seed=seed)
        with h5py.File(p, "a") as f:
            n = int(f.attrs["n_done"])
            f["iterations/oracle_s"][:n] = 0.3
        paths.append(str(p))
    return [analysis.read_run(p) for p in paths]


@pytest.mark.parametrize("grouped", [False, True])
def test_no_text_runs_off_any_figure(tmp_path, captured, grouped):
    runs = _long_runs(tmp_path)
    sets = None
    if grouped:
        rows = [analysis.summary(r) for r in runs]
        sets = [(plots.group_label(["scheme"], v), [runs[i] for i in idx])
                for v, idx in groups.partition(runs, rows, ["scheme"]).items()]
    plots.write_all(runs, str(tmp_path / "p"), gantt_run=runs[0], gantt_span=(2, 6),
                    target_loss=0.1, groups=sets)
    assert len(captured) >= 6
    for name, fig in captured.items():
        assert not _off_canvas(fig), (name, _off_canvas(fig))


def test_the_off_canvas_check_is_not_vacuous(captured):
    fig, (ax,) = plots._figure(w=3, h=2)
    ax.set_title("a title far too long for a three-inch figure " * 3)
    assert _off_canvas(fig)


def test_legends_say_scheme_names_and_groups_drop_empty_panels(tmp_path, captured):
    runs = _long_runs(tmp_path, 4, seeds=1)
    assert plots.run_labels(runs) == ["two-stage", "uncoded", "cyclic", "frc"]
    assert plots.run_labels(_long_runs(tmp_path / "s", 4))[:2] == ["two-stage, seed 0",
                                                                   "uncoded, seed 1"]
    rows = [analysis.summary(r) for r in runs * 2]
    sets = [(plots.group_label(["scheme"], v), [(runs * 2)[i] for i in idx])
            for v, idx in groups.partition(runs * 2, rows, ["scheme"]).items()]
    assert [n for n, _ in sets] == ["two-stage", "uncoded", "cyclic", "frc"]
    plots.write_all(runs * 2, str(tmp_path / "p"), groups=sets)
    fig = captured["groups.png"]
    titles = [ax.get_title() for ax in fig.axes]
    assert not any("final loss" in t for t in titles), titles  # equal for exact schemes
    sup = fig.get_supxlabel()
    assert "final loss" in (sup if isinstance(sup, str) else sup.get_text())
    # straggler scores follow --group-by: one bar series per group
    legend = [t.get_text() for t in captured["straggler_scores.png"].axes[0].get_legend()
              .get_texts()]
    assert legend == ["iteration median", "two-stage", "uncoded", "cyclic", "frc"]
    gantt = plots.gantt(runs[0], tmp_path / "g.png", (0, 3))
    assert ".h5" not in captured["g.png"].axes[0].get_title() and gantt


def test_sweep_cell_complete_but_nonzero_is_not_failed(tmp_path, monkeypatch, capsys):
    """issue 27: a cell whose job exits non-zero with its run complete in the file (e.g. a
    shutdown that timed out) is skipped by the next sweep, so this sweep does not fail it."""
    import sys
    script = ("import sys; sys.path.insert(0, {tests!r}); from runfiles import synth; "
              "synth(sys.argv[1]); sys.exit(1)")
    from pathlib import Path
    tests = str(Path(__file__).resolve().parents[1])
    monkeypatch.setattr(sweep, "command", lambda np_, line, out, config, action, found:
                        [sys.executable, "-c", script.format(tests=tests), str(out)])
    monkeypatch.setattr(sweep, "warmup", lambda timeout: None)
    f = tmp_path / "s.txt"
    f.write_text("--scheme uncoded --seed 0\n")
    args = SimpleNamespace(file=str(f), np=2, config=None, out_dir=str(tmp_path / "o"),
                           dry_run=False)
    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    assert "complete in" in out and "but the job ended with exit 1" in out
    assert "0 failed, 1 complete but their job exited non-zero" in out
    assert sweep.main(args) == 0 and "skipped (complete)" in capsys.readouterr().out


def test_sweep_relays_one_ctrl_c_and_waits_for_the_clean_stop(tmp_path):
    """issue 27: Ctrl-C during a cell reaches the cell's mpiexec once (a second SIGINT makes
    MPICH's mpiexec force an abort), and the sweep waits for its clean stop."""
    import os
    import signal
    import sys
    import threading
    child = ("import signal, sys, time\n"
             "n = []\n"
             "def h(s, f):\n"
             "    n.append(s)\n"
             "    time.sleep(0.5)  # a checkpoint being written: a second SIGINT would land\n"
             "    print(f'stopped cleanly after {len(n)} SIGINT', flush=True); sys.exit(3)\n"
             "signal.signal(signal.SIGINT, h)\n"
             f"open({str(tmp_path / 'ready')!r}, 'w').close()\n"
             "time.sleep(60)\n")
    log = tmp_path / "cell.log"

    def ctrl_c():  # the terminal's Ctrl-C, once the cell listens for it
        from conftest import wait_until
        wait_until((tmp_path / "ready").exists, 60, 0.05)
        os.kill(os.getpid(), signal.SIGINT)
    # Python's own SIGINT handler (KeyboardInterrupt), as in a terminal: an earlier test of
    # train/simulate in this process may have installed mpicode's stop handlers
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Thread(target=ctrl_c)
    timer.start()
    try:
        with pytest.raises(sweep.Interrupted):
            sweep.run_cell([sys.executable, "-c", child], log, 30)
    finally:
        timer.join()
        signal.signal(signal.SIGINT, old)
    assert "stopped cleanly after 1 SIGINT" in log.read_text(), log.read_text()

"""Imported straggler traces: mpicode traces import (long/wide CSV, Parquet) and their replay
(--stragglers trace:TRACE.h5, --trace-map). In-process, no MPI."""

import builtins
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from mpicode.config import UsageError
from mpicode.io.traces import import_trace, is_trace_file, read_trace
from mpicode.models.stragglers import make_straggler_model
from mpicode.models.trace_replay import ImportedTrace


def _long(tmp_path, rows, header="iteration,worker,duration", name="t.csv"):
    p = tmp_path / name
    p.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return str(p)


def _grid(T, N, f=lambda t, w: 1.0 + t + 10 * w):
    return [(t, w, f(t, w)) for t in range(T) for w in range(N)]


def test_long_csv_round_trip_and_attributes(tmp_path):
    src = _long(tmp_path, _grid(3, 2))
    out = tmp_path / "t.h5"
    a = import_trace(src, str(out), license="CC0", description="toy")
    with h5py.File(out, "r") as f:
        d, rel = f["durations"][()], f["relative"][()]
        attrs = dict(f.attrs)
    want = np.array([[1 + t + 10 * w for w in range(2)] for t in range(3)], float)
    np.testing.assert_array_equal(d, want)
    np.testing.assert_allclose(rel, want / np.median(want))
    assert attrs["format"] == "mpicode-trace" and attrs["units"] == "s"
    assert attrs["license"] == "CC0" and attrs["source"] == src and attrs["layout"] == "long"
    assert "global median" in attrs["normalisation"] and attrs["combine"] == "sum"
    assert a["n_iterations"] == 3 and a["n_workers"] == 2 and is_trace_file(str(out))
    assert attrs["source_format"] == "csv" and "license_text" not in attrs


def test_license_file_travels_in_the_trace(tmp_path):
    lic = Path(ROOT) / "data" / "traces" / "LICENSE-StragglerAnalysis.txt"
    out = tmp_path / "t.h5"
    import_trace(_long(tmp_path, _grid(2, 2)), str(out), license="Apache-2.0",
                 license_file=str(lic))
    with h5py.File(out, "r") as f:
        assert f.attrs["license_text"] == lic.read_text()
        assert f.attrs["license_file"] == "LICENSE-StragglerAnalysis.txt"
    with pytest.raises(UsageError, match="--license-file .*nope: cannot read"):
        import_trace(_long(tmp_path, _grid(2, 2)), str(tmp_path / "u.h5"),
                     license_file=str(tmp_path / "nope"))


@pytest.mark.parametrize("combine, want", [("sum", 5.0), ("max", 3.0), ("mean", 2.5)])
def test_long_csv_repeated_pairs_combine(tmp_path, combine, want):
    rows = _grid(2, 2) + [(1, 0, 3.0)]  # (1, 0) was 2.0: now 2.0 and 3.0
    out = tmp_path / "t.h5"
    import_trace(_long(tmp_path, rows), str(out), combine=combine)
    with h5py.File(out, "r") as f:
        assert f["durations"][1, 0] == want and f["durations"][0, 1] == 11.0


def test_repeats_refused_with_combine_error(tmp_path):
    src = _long(tmp_path, _grid(2, 2) + [(1, 0, 3.0)])
    with pytest.raises(UsageError, match="iteration 1, worker 0 appears 2 times"):
        import_trace(src, str(tmp_path / "t.h5"), combine="error")


def test_long_csv_other_names_offsets_units_and_extra_columns(tmp_path):
    # the shipped files' shape: an extra column (step), ids starting at 5 and 2, milliseconds
    rows = [(t + 5, 100 + t, w + 2, 1000.0 * (1 + w)) for t in range(2) for w in range(3)]
    src = _long(tmp_path, rows, header="it;step;rank;ms".replace(";", ","))
    a = import_trace(src, str(tmp_path / "t.h5"), cols=("it", "rank", "ms"), units="ms")
    rel, attrs = read_trace(str(tmp_path / "t.h5"))
    assert a["first_iteration"] == 5 and a["first_worker"] == 2 and a["source_units"] == "ms"
    with h5py.File(tmp_path / "t.h5", "r") as f:
        np.testing.assert_array_equal(f["durations"][0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(rel[0], [0.5, 1.0, 1.5])


def test_wide_csv_with_and_without_header(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("iteration,w0,w1,w2\n7,1,2,3\n8,2,2,2\n")
    a = import_trace(str(p), str(tmp_path / "a.h5"))
    assert a["layout"] == "wide" and a["first_iteration"] == 7 and a["n_workers"] == 3
    q = tmp_path / "w2.csv"
    q.write_text("1;2;3\n2;2;2\n")
    import_trace(str(q), str(tmp_path / "b.h5"))
    for n in ("a", "b"):
        with h5py.File(tmp_path / f"{n}.h5", "r") as f:
            np.testing.assert_array_equal(f["durations"][()], [[1, 2, 3], [2, 2, 2]])


BAD = [
    ("iteration,worker,time\n0,0,1\n", {}, "no column 'duration'"),
    ("iteration,worker,duration\n0,0,abc\n", {}, "not a number: 'abc'"),
    ("iteration,worker,duration\n0,0,-1\n", {}, "negative duration"),
    ("iteration,worker,duration\n0,0,nan\n", {}, "NaN or inf"),
    ("iteration,worker,duration\n0,0,\n", {}, "missing value"),
    ("", {}, "empty"),
    ("# only a comment\n\n", {}, "empty"),
    ("iteration,worker,duration\n", {}, "only a header"),
    ("iteration,worker,duration\n0,0,1\n2,0,1\n", {}, "gap in iterations: 0 is followed by 2"),
    ("iteration,worker,duration\n0,0,1\n0,3,1\n", {}, "gap in workers: 0 is followed by 3"),
    ("iteration,worker,duration\n0,0,1\n0,1,1\n1,0,1\n", {}, "no row for iteration 1, worker 1"),
    ("iteration,worker,duration\n0.5,0,1\n", {}, "not an integer index"),
    ("iteration,worker,duration\n0,0,1\n0,1\n", {}, "ragged CSV"),
    ("iteration,worker,duration\n0,0,0\n0,1,0\n", {}, "median duration is 0"),
    ("iteration,a,b\n0,1,2\n2,1,2\n", {}, "iteration 0 is followed by 2"),
    ("1,2\n1,x\n", {}, "not a number"),
]


@pytest.mark.parametrize("text, kw, msg", BAD)
def test_bad_files_one_line_errors(tmp_path, text, kw, msg):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    out = tmp_path / "bad.h5"
    with pytest.raises(UsageError, match=msg) as e:
        import_trace(str(p), str(out), **kw)
    assert "\n" not in str(e.value) and not out.exists()
    assert list(tmp_path.iterdir()) == [p]  # no temporary file left behind


def test_output_exists_and_missing_source(tmp_path):
    src = _long(tmp_path, _grid(1, 1))
    out = tmp_path / "t.h5"
    out.write_text("keep")
    with pytest.raises(UsageError, match="output exists"):
        import_trace(src, str(out))
    assert out.read_text() == "keep"
    import_trace(src, str(out), force=True)
    assert is_trace_file(str(out))
    with pytest.raises(UsageError, match="not found"):
        import_trace(str(tmp_path / "nope.csv"), str(tmp_path / "x.h5"))


def test_parquet_without_pyarrow_is_a_clean_error(tmp_path, monkeypatch):
    real = builtins.__import__

    def no_pyarrow(name, *a, **kw):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    p = tmp_path / "t.parquet"
    p.write_bytes(b"PAR1")
    with pytest.raises(UsageError, match=r"needs pyarrow.*mpicode\[parquet\]"):
        import_trace(str(p), str(tmp_path / "t.h5"))


def test_parquet_long_table(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    rows = _grid(3, 2)
    pq.write_table(pa.table({"iteration": [r[0] for r in rows], "worker": [r[1] for r in rows],
                             "duration": [r[2] for r in rows]}), tmp_path / "t.parquet")
    import_trace(str(tmp_path / "t.parquet"), str(tmp_path / "t.h5"))
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert f["durations"].shape == (3, 2) and f["durations"][2, 1] == 13.0


# --- replay ----------------------------------------------------------------------------------

def _cfg(path, iterations, trace_map="refuse", unit=0.5):
    return SimpleNamespace(stragglers=f"trace:{path}", iterations=iterations, seed=0,
                           delay_unit=unit, trace_map=trace_map)


@pytest.fixture
def trace3x2(tmp_path):
    """relative = [[1, 2], [0.5, 1], [1, 3]] (median of the durations is 2)."""
    d = {(0, 0): 2, (0, 1): 4, (1, 0): 1, (1, 1): 2, (2, 0): 2, (2, 1): 6}
    src = _long(tmp_path, [(t, w, v) for (t, w), v in d.items()])
    out = str(tmp_path / "tr.h5")
    import_trace(src, out)
    return out


def test_replay_delay_is_unit_times_load_times_relative(trace3x2):
    m = make_straggler_model(_cfg(trace3x2, 3), n_workers=2, n_partitions=4)
    assert isinstance(m, ImportedTrace)
    # a fair share (K/N = 2 partitions) takes unit x relative; 1 partition half of it
    assert m.delay(0, 1, 0, 2) == pytest.approx(0.5 * 2.0)
    assert m.delay(1, 0, 0, 2) == pytest.approx(0.5 * 0.5)
    assert m.delay(2, 1, 3, 1) == pytest.approx(0.5 * 0.5 * 3.0)  # a later task, same rate


def test_trace_map_refuse_cycle_tile(trace3x2):
    with pytest.raises(UsageError, match=r"2 workers x 3 iterations.*4 iterations.*"
                                         "--trace-map cycle"):
        make_straggler_model(_cfg(trace3x2, 4), 2, 4)
    with pytest.raises(UsageError, match="N=3 workers"):
        make_straggler_model(_cfg(trace3x2, 3), 3, 6)
    with pytest.raises(UsageError, match="use --trace-map tile"):
        make_straggler_model(_cfg(trace3x2, 3, "cycle"), 3, 6)
    c = make_straggler_model(_cfg(trace3x2, 7, "cycle"), 2, 4)
    assert [c.factor(t, 1) for t in range(7)] == [2, 1, 3, 2, 1, 3, 2]
    t = make_straggler_model(_cfg(trace3x2, 7, "tile"), 5, 10)
    assert [t.factor(4, w) for w in range(5)] == [0.5, 1, 0.5, 1, 0.5]
    one = make_straggler_model(_cfg(trace3x2, 2), 1, 1)  # fewer: the first column and rows
    assert [one.factor(i, 0) for i in range(2)] == [1, 0.5]


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 5), N=st.integers(1, 4), n=st.integers(1, 9), iters=st.integers(1, 12))
def test_tile_replays_the_trace_matrix_exactly(T, N, n, iters):
    rel = np.arange(1, T * N + 1, dtype=float).reshape(T, N)
    m = ImportedTrace(n, n, 0, relative=rel, iterations=iters, trace_map="tile", unit=1.0)
    got = np.array([[m.factor(t, w) for w in range(n)] for t in range(iters)])
    want = rel[np.arange(iters)[:, None] % T, np.arange(n)[None, :] % N]
    np.testing.assert_array_equal(got, want)


def test_run_file_traces_still_use_the_recorded_replay(tmp_path):
    from mpicode.models.stragglers import Trace
    p = tmp_path / "run.h5"
    with h5py.File(p, "w") as f:
        f.attrs.update(n_workers=2, n_done=2, n_partitions=2, n_tasks=2)
        for k, v in (("iteration", [0, 1]), ("worker", [0, 1]), ("n_partitions", [1.0, 1.0]),
                     ("delay_s", [0.3, 0.7])):
            f.create_dataset(f"tasks/{k}", data=np.array(v))
    assert not is_trace_file(str(p))
    m = make_straggler_model(_cfg(p, 2), 2, 2)
    assert type(m) is Trace and m.delay(1, 1, 0, 1) == pytest.approx(0.7)


def test_bad_trace_files(tmp_path):
    p = tmp_path / "t.h5"
    with h5py.File(p, "w") as f:
        f.attrs["format"] = "mpicode-trace"
        f.create_dataset("relative", data=np.array([[1.0, -1.0]]))
    with pytest.raises(UsageError, match="finite and >= 0"):
        make_straggler_model(_cfg(p, 1), 1, 1)
    with h5py.File(p, "w") as f:
        f.attrs["format"] = "mpicode-trace"
    with pytest.raises(UsageError, match="no /relative"):
        make_straggler_model(_cfg(p, 1), 1, 1)


@pytest.mark.parametrize("name, T, N", [("SE", 43, 32), ("AR", 44, 4)])
def test_shipped_traces_import(tmp_path, name, T, N):
    src = Path(ROOT) / "data" / "traces" / f"bytedance-{name}.csv"
    a = import_trace(str(src), str(tmp_path / "t.h5"), cols=("iteration", "worker", "compute"))
    assert (a["n_iterations"], a["n_workers"]) == (T, N)
    rel, _ = read_trace(str(tmp_path / "t.h5"))
    if name == "AR":  # worker 0 persistently ~1.3x slower than the others
        assert np.all(rel[:, 0] > 1.2 * rel[:, 1:].max(axis=1))
    else:  # which worker is slowest changes from step to step
        assert len(set(np.argmax(rel, axis=1).tolist())) > 5
    assert (Path(ROOT) / "data" / "traces" / "LICENSE-StragglerAnalysis.txt").is_file()


def test_replay_profile_feeds_the_oracle_and_pays_the_task_overhead(trace3x2):
    """The oracle's profile (rate per share) is the replayed delay: one task of K/N partitions
    per worker takes d_i + (K/N) c_i exactly; ``--task-overhead`` is paid per task."""
    rel, _ = read_trace(trace3x2)
    N, K, cost = 2, 4, 1e-3
    m = ImportedTrace(N, K, 0, relative=rel, iterations=3, unit=0.5, task_overhead=0.01)
    for it in range(3):
        c, d = m.worker_profile(it, cost)
        for w in range(N):
            took = K // N * cost + m.delay(it, w, 0, K // N)
            assert d[w] + K // N * c[w] == pytest.approx(took, rel=1e-12)
            assert m.delay(it, w, 0, 2) == pytest.approx(0.5 * rel[it, w] + 0.01)


# -- issue 27: real traces are sampled and gappy; durations bounded ---------------------------
def _sampled(tmp_path, missing=((4, 2),), stride=10, T=6, N=3):
    """Every ``stride``-th iteration of a run, (row index, worker) pairs in ``missing``
    absent: the newcomer's trace."""
    rows = [(t * stride, w, 1.0 + t + 10 * w) for t in range(T) for w in range(N)
            if (t, w) not in missing]
    return _long(tmp_path, rows)


def test_sampled_gappy_trace_default_error_suggests_both(tmp_path):
    src = _sampled(tmp_path)
    with pytest.raises(UsageError, match="--renumber or --iteration-stride") as e:
        import_trace(src, str(tmp_path / "t.h5"))
    assert "gap in iterations: 0 is followed by 10" in str(e.value)
    with pytest.raises(UsageError) as e:
        import_trace(src, str(tmp_path / "t.h5"), renumber=True)
    msg = str(e.value)
    assert "no row for iteration 40, worker 2" in msg and "--fill median|previous|" \
        "drop-iteration" in msg and "--renumber" in msg
    assert not (tmp_path / "t.h5").exists()


@pytest.mark.parametrize("fill, want, filled, dropped, T", [
    ("median", None, 1, "", 6),  # the median of iteration 40's present workers
    ("previous", 1.0 + 3 + 20, 1, "", 6),
    ("drop-iteration", None, 0, "40", 5),
])
def test_fill_and_renumber_are_applied_and_recorded(tmp_path, fill, want, filled, dropped, T):
    src = _sampled(tmp_path)
    out = tmp_path / "t.h5"
    a = import_trace(src, str(out), renumber=True, fill=fill)
    assert a["fill"] == fill and a["filled_cells"] == filled
    assert a["dropped_iterations"] == dropped and a["n_iterations"] == T
    assert a["iterations"].startswith("renumbered: the") and "0..50" in a["iterations"]
    with h5py.File(out) as f:
        d = f["durations"][()]
        assert f.attrs["fill"] == fill and f.attrs["iterations"] == a["iterations"]
    if fill == "median":
        assert d[4, 2] == np.median([1.0 + 4, 1.0 + 4 + 10])
    elif fill == "previous":
        assert d[4, 2] == want
    else:
        assert d.shape == (5, 3) and d[4, 0] == 1.0 + 5  # row 4 is source iteration 50


def test_iteration_stride_makes_missing_iterations_fillable(tmp_path):
    rows = [(t * 10, w, 2.0 + w) for t in (0, 1, 3) for w in range(2)]  # iteration 20 absent
    src = _long(tmp_path, rows)
    with pytest.raises(UsageError, match="no row for iteration 20, worker 0"):
        import_trace(src, str(tmp_path / "a.h5"), iteration_stride=10)
    a = import_trace(src, str(tmp_path / "b.h5"), iteration_stride=10, fill="previous")
    assert a["n_iterations"] == 4 and a["filled_cells"] == 2
    assert a["iterations"].startswith("stride 10")
    with pytest.raises(UsageError, match="iteration 25 is not on --iteration-stride 10"):
        import_trace(_long(tmp_path, rows + [(25, 0, 1.0), (25, 1, 1.0)], name="s.csv"),
                     str(tmp_path / "c.h5"), iteration_stride=10)
    with pytest.raises(UsageError, match="choose one"):
        import_trace(src, str(tmp_path / "d.h5"), iteration_stride=10, renumber=True)


def test_wide_sampled_trace_with_empty_cells(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("iteration,a,b\n0,1,2\n10,3,\n20,5,6\n")
    with pytest.raises(UsageError, match="missing value"):
        import_trace(str(p), str(tmp_path / "a.h5"), renumber=True)
    a = import_trace(str(p), str(tmp_path / "b.h5"), renumber=True, fill="previous")
    with h5py.File(tmp_path / "b.h5") as f:
        np.testing.assert_array_equal(f["durations"][()], [[1, 2], [3, 2], [5, 6]])
    assert a["filled_cells"] == 1


def test_absurd_durations_are_refused_naming_the_cells(tmp_path):
    rows = _grid(4, 3, lambda t, w: 1e12 if (t, w) in ((2, 1), (3, 0)) else 1.0)
    with pytest.raises(UsageError) as e:
        import_trace(_long(tmp_path, rows), str(tmp_path / "t.h5"))
    msg = str(e.value)
    assert "2 durations" in msg and "iteration 2 worker 1 (1e+12)" in msg
    assert "iteration 3 worker 0" in msg and not (tmp_path / "t.h5").exists()


def test_absurd_trace_file_is_refused_at_load(tmp_path):
    out = tmp_path / "t.h5"
    import_trace(_long(tmp_path, _grid(3, 2)), str(out))
    with h5py.File(out, "a") as f:  # an old or hand-made trace file
        f["relative"][1, 1] = 1e9
    with pytest.raises(UsageError, match=r"trace .*t.h5: 1 durations more than 10000 x the "
                                         r"median or not finite: iteration 1 worker 1"):
        read_trace(str(out))

"""The run log in-process: buffered block writes, the n_done rule, file safety (exclusive,
locked, never through a symlink), resume checks that change no byte, the watchdog."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from mpicode.cli import build_parser
from mpicode.config import UsageError, merge_resumed, resolve
from mpicode.io import checkpoint, runlog, safefile, watchdog
from mpicode.io.runlog import RunLog, check_output, read_checkpoint

N = 3


def _row(i):
    return ({"iteration": i, "t_start": float(i), "t_end": i + 0.5, "loss": 1.0 / (i + 1),
             "coverage": 1.0, "load": 1.0},
            {"finish_s": np.arange(N, dtype=float) + i, "used": np.ones(N, np.int8)},
            {"iteration": np.array([i, i]), "worker": np.array([0, 1])})


def _new(path, **kw):
    return RunLog(str(path), config_json=json.dumps({"scheme": "uncoded", "seed": 0}),
                  n_workers=N, n_partitions=4 * N, mode="simulated", attrs={"dim": 5}, **kw)


def _file_attr(path, key):
    with h5py.File(path, "r", locking=False) as f:
        return f.attrs[key]


def make_run(path, rows=4, ckpt=4, close=True, **snap_change):
    """A valid run file with ``rows`` rows and a checkpoint at ``ckpt``."""
    log = _new(path, flush_every=0)
    for i in range(rows):
        log.append(*_row(i))
    snap = {"w": np.zeros(5), "iteration": ckpt, "n_tasks": 2 * ckpt, "vt": 0.0,
            "t_offset": 0.0, "scheme": {}}
    snap.update(snap_change)
    checkpoint.write(log.f, snap)  # as stored (the checks below are the reader's)
    if close:
        log.close("interrupted")
    return log


def md5s(d):
    return {p.name: (os.path.islink(p), hashlib.md5(p.read_bytes()).hexdigest()
                     if p.is_file() and not p.is_symlink() else None) for p in d.iterdir()}


# ---- buffered writes ----------------------------------------------------------------------

def test_rows_are_buffered_and_n_done_follows_the_written_rows(tmp_path):
    out = tmp_path / "r.h5"
    log = _new(out, flush_every=1e9)
    for i in range(5):
        log.append(*_row(i))
    part = str(out) + ".part"
    assert log.n_done == 5 and int(_file_attr(part, "n_done")) == 0  # not written yet
    with h5py.File(part, "r", locking=False) as f:
        assert f["iterations/loss"].shape == (0,)
    log.flush()
    with h5py.File(part, "r", locking=False) as f:
        n = int(f.attrs["n_done"])
        assert n == 5 and int(f.attrs["n_tasks"]) == 10
        np.testing.assert_array_equal(f["iterations/iteration"][:n], np.arange(5))
        assert f["workers/finish_s"].shape == (5, N)
        np.testing.assert_array_equal(f["workers/finish_s"][4], np.arange(N) + 4.0)
        assert np.isnan(f["iterations/decode_s"][:n]).all()  # missing field: fill value
        assert (f["workers/stage"][:n] == -1).all()
    log.append(*_row(5))
    log.close()
    with h5py.File(out, "r") as f:
        assert int(f.attrs["n_done"]) == 6 and f["iterations"]["loss"].shape == (6,)
        assert f["tasks/worker"][:].tolist() == [0, 1] * 6
        assert f["iterations/loss"].dtype == np.float64 and f["workers/used"].dtype == np.int8


def test_flush_is_time_based(tmp_path, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(runlog.time, "monotonic", lambda: now[0])
    log = _new(tmp_path / "t.h5", flush_every=1.0)
    part = str(tmp_path / "t.h5.part")
    log.append(*_row(0))
    now[0] += 0.5
    log.append(*_row(1))
    assert int(_file_attr(part, "n_done")) == 0
    now[0] += 0.6  # 1.1 s since the file was created: this append writes both rows
    log.append(*_row(2))
    assert int(_file_attr(part, "n_done")) == 3
    now[0] += 0.2
    log.append(*_row(3))
    assert int(_file_attr(part, "n_done")) == 3
    log.close()


def test_flush_every_zero_writes_every_row(tmp_path):
    log = _new(tmp_path / "z.h5", flush_every=0)
    for i in range(3):
        log.append(*_row(i))
        assert int(_file_attr(str(tmp_path / "z.h5.part"), "n_done")) == i + 1
    log.close()


def test_a_checkpoint_writes_the_rows_first(tmp_path):
    log = _new(tmp_path / "c.h5", flush_every=1e9)
    for i in range(3):
        log.append(*_row(i))
    log.checkpoint({"w": np.zeros(5), "iteration": 3, "n_tasks": 6, "vt": 0.0,
                    "t_offset": 0.0, "scheme": {}})
    with h5py.File(str(tmp_path / "c.h5.part"), "r", locking=False) as f:
        assert int(f.attrs["n_done"]) == 3 and int(f["checkpoint/iteration"][()]) == 3
    with pytest.raises(runlog.DiskFull, match="only 3 rows"):  # a checkpoint of lost rows
        log.checkpoint({"w": np.zeros(5), "iteration": 4, "n_tasks": 8, "vt": 0.0,
                        "t_offset": 0.0, "scheme": {}})
    log.close()


def test_many_rows_grow_the_buffers(tmp_path):
    log = _new(tmp_path / "g.h5", flush_every=1e9)
    log._rows = runlog.Columns(runlog.ITERATION_FIELDS, None, 2)  # tiny: must grow
    for i in range(50):
        log.append(*_row(i))
    log.close()
    with h5py.File(tmp_path / "g.h5", "r") as f:
        np.testing.assert_array_equal(f["iterations/iteration"][:], np.arange(50))


# ---- file safety -----------------------------------------------------------------------------

def test_an_existing_part_is_output_exists(tmp_path):
    out = tmp_path / "o.h5"
    (tmp_path / "o.h5.part").write_bytes(b"a failed run")
    with pytest.raises(UsageError, match=r"output exists: .*o\.h5\.part.*--resume"):
        check_output(str(out), force=False)
    before = md5s(tmp_path)
    with pytest.raises(UsageError, match="output exists"):
        _new(out)
    assert md5s(tmp_path) == before
    _new(out, force=True).close()  # --force replaces a stale (not held) .part
    assert out.exists() and not (tmp_path / "o.h5.part").exists()


def test_a_part_held_by_a_live_run_is_never_replaced(tmp_path):
    out = tmp_path / "live.h5"
    first = _new(out, flush_every=0)
    first.append(*_row(0))
    with pytest.raises(UsageError, match="in use by a running mpicode run"):
        check_output(str(out), force=True)
    with pytest.raises(UsageError, match="in use"):
        _new(out, force=True)
    first.append(*_row(1))
    first.close()
    with h5py.File(out, "r") as f:
        assert int(f.attrs["n_done"]) == 2 and f["iterations/loss"][:].shape == (2,)


def test_a_symlinked_part_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, tmp_path / "s.h5.part")
    for force in (False, True):
        with pytest.raises(UsageError, match="symbolic link"):
            _new(tmp_path / "s.h5", force=force)
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5.part", "victim.txt"]


def test_creation_is_exclusive_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "x.h5"
    log = _new(out)
    assert os.stat(log.part).st_nlink == 1  # the temporary name is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5.part"]
    log.close()
    tmp = safefile.temp_name(str(tmp_path / "y"))
    (tmp_path / "y").write_text("someone else's")
    with open(tmp, "w") as f:
        f.write("t")
    with pytest.raises(FileExistsError):
        safefile.link_into_place(tmp, str(tmp_path / "y"), replace=False)
    assert (tmp_path / "y").read_text() == "someone else's"


# ---- resume: the checks change nothing ---------------------------------------------------

def _corrupt_config(f):
    f.attrs["config"] = "{not json"


def _config_list(f):
    f.attrs["config"] = "[1, 2]"


def _no_iterations(f):
    del f["iterations"]


def _short_workers(f):
    f["workers/used"].resize((1, N))


@pytest.mark.parametrize("mutate,snap,kw,msg", [
    (None, {}, {"n_workers": 5}, "the run has 3 workers, this job has 5"),
    (None, {}, {"mode": "mpi"}, "written in mode 'simulated'"),
    (_corrupt_config, {}, {}, "not a readable mpicode run"),
    (_config_list, {}, {}, "not a readable mpicode run (config is not a JSON object)"),
    (_no_iterations, {}, {}, "missing /iterations"),
    (_short_workers, {}, {}, "/workers/used has the wrong shape or too few rows"),
    (None, {"w": np.zeros((5, 2))}, {}, "w has shape (5, 2)"),
    (None, {"w": np.zeros(7)}, {}, "the run's model has 5 parameters"),
    (None, {"iteration": -1, "n_tasks": 0}, {}, "checkpoint at iteration -1"),
    (None, {"iteration": 9, "n_tasks": 2}, {}, "past the 4 logged rows"),
    (None, {"iteration": 2, "n_tasks": 99}, {}, "past the 8 logged task rows"),
])
def test_refused_resume_leaves_the_file_byte_identical(tmp_path, mutate, snap, kw, msg):
    run = tmp_path / "r.h5"
    make_run(run, **snap)
    if mutate is not None:
        with h5py.File(run, "r+") as f:
            mutate(f)
    before, mtime = md5s(tmp_path), os.stat(run).st_mtime_ns
    with pytest.raises(UsageError, match="--resume") as e:
        read_checkpoint(str(run), **kw)
    assert msg in str(e.value)
    assert md5s(tmp_path) == before and os.stat(run).st_mtime_ns == mtime


def test_resume_refuses_when_both_files_exist(tmp_path):
    run = tmp_path / "b.h5"
    make_run(run)
    (tmp_path / "b.h5.part").write_bytes(run.read_bytes())
    before = md5s(tmp_path)
    for name in ("b.h5", "b.h5.part"):
        with pytest.raises(UsageError, match=r"both .*b\.h5 and .*b\.h5\.part exist"):
            read_checkpoint(str(tmp_path / name))
    assert md5s(tmp_path) == before


def test_resume_refuses_a_symlink_and_a_live_run(tmp_path):
    make_run(tmp_path / "real.h5")
    os.symlink(tmp_path / "real.h5", tmp_path / "l.h5")
    with pytest.raises(UsageError, match="symbolic link"):
        read_checkpoint(str(tmp_path / "l.h5"))
    live = make_run(tmp_path / "live.h5", close=False)
    with pytest.raises(UsageError, match="in use by a running mpicode run"):
        read_checkpoint(str(tmp_path / "live.h5"))
    live.close()


def test_resume_reads_and_writes_one_file(tmp_path):
    run = tmp_path / "one.h5"
    make_run(run, rows=6, ckpt=4)
    with h5py.File(run, "r+") as f:  # a run from before a field was added: it gets it, filled
        del f["iterations/grad_norm"], f["workers/Q"]
    cfg, snap = read_checkpoint(str(run), n_workers=N, mode="simulated")
    assert cfg["scheme"] == "uncoded" and int(snap["iteration"]) == 4
    log = RunLog.resume(str(run), 4, 8, config_json=json.dumps({"scheme": "uncoded",
                                                                "iterations": 9}))
    assert not run.exists() and (tmp_path / "one.h5.part").exists()
    log.append(*_row(4))
    log.close()
    with h5py.File(run, "r") as f:
        assert int(f.attrs["n_done"]) == 5 and f.attrs["status"] == "complete"
        np.testing.assert_array_equal(f["iterations/iteration"][:], np.arange(5))
        assert json.loads(f.attrs["config"])["iterations"] == 9 and "resumed" in f.attrs
        assert np.isnan(f["iterations/grad_norm"][:]).all() and f["workers/Q"].shape == (5, N)


def _cfg(argv):
    return resolve(build_parser().parse_args(["simulate", *argv]))


def test_merge_refuses_changed_options_by_name():
    stored = json.loads(_cfg(["--scheme", "frc", "--seed", "4"]).to_json())
    stored.update(partitions=16, n_workers=4)
    with pytest.raises(UsageError) as e:
        merge_resumed(_cfg(["--resume", "r.h5", "--scheme", "cyclic", "--seed", "5",
                            "--iterations", "99"]), stored)
    assert "--scheme (stored 'frc', given 'cyclic')" in str(e.value)
    assert "--seed (stored 4, given 5)" in str(e.value) and "--iterations (" not in str(e.value)
    ok = merge_resumed(_cfg(["--resume", "r.h5", "--iterations", "99", "--quiet", "--seed",
                             "4", "--flush-every", "0", "--checkpoint-every", "3"]), stored)
    assert ok.iterations == 99 and ok.scheme == "frc" and ok.out == "r.h5" and ok.flush_every == 0
    for argv, msg in ((["--partitions", "8"], "--partitions (stored 16"),
                      (["--workers", "5"], "--workers (stored 4"),
                      (["--out", "other.h5"], "--out cannot be used with --resume")):
        with pytest.raises(UsageError, match=msg.replace("(", r"\(")):
            merge_resumed(_cfg(["--resume", "r.h5", *argv]), stored)
    assert merge_resumed(_cfg(["--resume", "r.h5.part", "--out", "r.h5"]), stored).out == "r.h5"


# ---- the watchdog ------------------------------------------------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_watchdog_marks_a_dead_writers_run_failed(tmp_path):
    make_run(tmp_path / "w.h5", close=False).f.close()  # abandoned: status "running"
    part = str(tmp_path / "w.h5.part")
    watchdog.watch(_dead_pid(), part, period=0.01)
    assert _file_attr(part, "status") == "failed"


def test_watchdog_leaves_a_file_a_live_run_took_over_alone(tmp_path):
    live = make_run(tmp_path / "w.h5", close=False)  # holds the lock
    watchdog.watch(_dead_pid(), live.part, period=0.01)
    assert _file_attr(live.part, "status") == "running"
    live.close()


def test_a_resumed_run_drops_the_stale_failure(tmp_path):
    """issue 27: the watchdog's ``failure`` of the run that died is history once it is
    resumed: moved into ``resumed``, not left on a run that then completes."""
    run = tmp_path / "f.h5"
    make_run(run, rows=6, ckpt=4)
    with h5py.File(run, "r+") as f:
        f.attrs["status"] = "failed"
        f.attrs["failure"] = "the writer (pid 1) died without closing the run"
    log = RunLog.resume(str(run), 4, 8)
    log.append(*_row(4))
    log.close()
    with h5py.File(run, "r") as f:
        assert "failure" not in f.attrs and f.attrs["status"] == "complete"
        entry = json.loads(f.attrs["resumed"])[-1]
        assert entry["previous_failure"].startswith("the writer (pid 1) died")


def test_checkpoint_with_nan_weights_is_refused():
    """issue 27: a NaN model in a checkpoint is refused by name, not blamed on --lr later."""
    from mpicode.schemes.uncoded import Uncoded
    snap = {"w": np.array([1.0, np.nan, 2.0])}
    msg = checkpoint.check(snap, dim=3, scheme=Uncoded(2, 2))
    assert msg and "1 of 3 values that are not finite" in msg

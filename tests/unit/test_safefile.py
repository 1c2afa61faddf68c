"""The one safe-write path (mpicode.io.safefile) and every file kind that goes through it
(issue 27): created under a fresh temporary name (O_EXCL | O_NOFOLLOW), moved into place only
when complete, a symlink at the name replaced as a link (its target never written), a
concurrent writer's file never truncated, a failed write leaving the name as it was."""

from __future__ import annotations

import errno
import os

import h5py
import numpy as np
import pytest

from mpicode.config import UsageError
from mpicode.errors import WriteError
from mpicode.io import safefile


@pytest.fixture
def victim(tmp_path):
    v = tmp_path / "victim.txt"
    v.write_text("precious")
    return v


def _no_temp_left(d):
    assert not [p.name for p in d.iterdir() if p.name.endswith(".tmp")], list(d.iterdir())


def test_write_text_replaces_a_symlink_never_its_target(tmp_path, victim):
    out = tmp_path / "out.json"
    out.symlink_to(victim)
    safefile.write_text(out, "{}")
    assert victim.read_text() == "precious"
    assert not out.is_symlink() and out.read_text() == "{}"
    _no_temp_left(tmp_path)


def test_without_replace_an_existing_name_is_kept(tmp_path, victim):
    with pytest.raises(FileExistsError):
        safefile.write_text(victim, "x", replace=False)
    assert victim.read_text() == "precious"
    _no_temp_left(tmp_path)


def test_a_failed_write_leaves_the_name_as_it_was(tmp_path, victim):
    with pytest.raises(WriteError, match="cannot write .*victim.txt: No space left"):
        with safefile.writing(victim) as f:
            f.write(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert victim.read_text() == "precious"
    _no_temp_left(tmp_path)


def test_an_error_in_the_writer_is_not_a_write_error(tmp_path):
    with pytest.raises(ValueError):
        with safefile.writing(tmp_path / "x") as f:
            f.write(b"half")
            raise ValueError("the caller's own bug")
    assert not (tmp_path / "x").exists()
    _no_temp_left(tmp_path)


def test_the_file_appears_only_when_complete(tmp_path):
    out = tmp_path / "out.bin"
    with safefile.writing(out) as f:
        f.write(b"a" * 1000)
        assert not out.exists()  # nobody sees half a file
    assert out.read_bytes() == b"a" * 1000


def test_temp_names_stay_within_name_max(tmp_path):
    base = "r" * 250 + ".h5"  # a legal 253-character name
    t = safefile.temp_name(str(tmp_path / base))
    assert len(os.path.basename(t)) <= safefile.name_max(str(tmp_path))
    safefile.write_text(tmp_path / base, "ok")
    assert (tmp_path / base).read_text() == "ok"


def test_a_directory_or_a_live_run_is_never_replaced(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        safefile.write_text(tmp_path / "d", "x")
    held = tmp_path / "live.h5"
    held.write_text("live")
    fd = safefile.hold(str(held))
    try:
        with pytest.raises(safefile.InUse):
            safefile.write_text(held, "x")
    finally:
        safefile.release(fd)
    assert held.read_text() == "live"
    _no_temp_left(tmp_path)


def test_output_refusals_are_one_line(tmp_path, victim):
    with pytest.raises(UsageError, match="output exists: .*use --force"):
        safefile.output_text(victim, "x", force=False)
    (tmp_path / "d").mkdir()
    with pytest.raises(UsageError, match="output is a directory"):
        safefile.output_text(tmp_path / "d", "x", force=True)
    # a concurrent writer took the name while this one was being written: it is kept
    out = tmp_path / "race.toml"
    with pytest.raises(UsageError, match="appeared while this one was written"):
        with safefile.output(out, force=False) as tmp:
            with open(tmp, "x") as f:
                f.write("mine")
            out.write_text("theirs")
    assert out.read_text() == "theirs"
    _no_temp_left(tmp_path)


# -- every file kind --------------------------------------------------------------------
def test_dataset_never_follows_a_part_link_nor_truncates_a_concurrent_writer(tmp_path, victim):
    from mpicode.io.datasets import read_dataset, synthetic, write_dataset
    out = tmp_path / "d.h5"
    (tmp_path / "d.h5.part").symlink_to(victim)  # the old fixed temporary name, planted
    write_dataset(synthetic(40, 3, 0), str(out))
    assert victim.read_text() == "precious" and read_dataset(out).X.shape[1] == 3
    # a second writer without --force: refused, the first file intact
    with pytest.raises(UsageError, match="output exists"):
        write_dataset(synthetic(40, 5, 1), str(out))
    assert read_dataset(out).X.shape[1] == 3
    # --force on a symlink: the link is replaced, its target untouched
    link = tmp_path / "l.h5"
    link.symlink_to(victim)
    write_dataset(synthetic(40, 2, 0), str(link), force=True)
    assert victim.read_text() == "precious" and not link.is_symlink()
    _no_temp_left(tmp_path)


def test_trace_import_replaces_a_link_never_its_target(tmp_path, victim):
    from mpicode.io import traces
    src = tmp_path / "t.csv"
    src.write_text("iteration,worker,duration\n0,0,1\n0,1,2\n1,0,1\n1,1,3\n")
    out = tmp_path / "t.h5"
    out.symlink_to(victim)
    with pytest.raises(UsageError, match="output exists"):
        traces.import_trace(str(src), str(out))
    traces.import_trace(str(src), str(out), force=True)
    assert victim.read_text() == "precious" and traces.is_trace_file(str(out))
    _no_temp_left(tmp_path)


def test_profile_is_written_by_the_safe_path(tmp_path, victim):
    """``mpicode calibrate`` writes its profile with safefile.output_text (rank 0)."""
    from pathlib import Path
    src = (Path(__file__).resolve().parents[2] / "mpicode" / "mpi" / "calibrate.py").read_text()
    assert "safefile.output_text(out, text, force=args.force)" in src
    out = tmp_path / "p.toml"
    out.symlink_to(victim)
    with pytest.raises(UsageError, match="output exists"):
        safefile.output_text(out, "a = 1\n", force=False)
    safefile.output_text(out, "a = 1\n", force=True)
    assert victim.read_text() == "precious" and out.read_text() == "a = 1\n"


def test_plots_replace_links_in_the_output_folder(tmp_path, victim):
    pytest.importorskip("matplotlib")
    from mpicode.analysis import plots
    fig, _ = plots._figure()
    out = tmp_path / "loss_vs_time.png"
    out.symlink_to(victim)
    plots._save(fig, out)
    assert victim.read_text() == "precious"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _no_temp_left(tmp_path)


def test_sweep_cell_log_replaces_a_link(tmp_path, victim):
    import sys

    from mpicode.analysis import sweep
    log = tmp_path / "cell.log"
    log.symlink_to(victim)
    code, _ = sweep.run_cell([sys.executable, "-c", "print('hi')"], log, 30)
    assert code == 0 and victim.read_text() == "precious" and "hi" in log.read_text()


def test_results_json_replaces_a_link(tmp_path, victim):
    from studies import publish
    out = tmp_path / "summary.json"
    out.symlink_to(victim)
    publish.write_json(out, {"x": float("nan")})
    assert victim.read_text() == "precious" and out.read_text().strip() == '{\n "x": null\n}'


def test_run_log_takes_no_rows_after_a_full_disk(tmp_path, monkeypatch):
    """Once the disk is found full (here: at a checkpoint, whose error the loop only
    records), the log refuses further rows: rows appended after dropped ones would land at
    the wrong index. The line says what the file announces."""
    from mpicode.io import runlog
    out = tmp_path / "r.h5"
    log = runlog.RunLog(str(out), config_json="{}", n_workers=2, n_partitions=2,
                        flush_every=0)
    row = {"iteration": 0, "t_start": 0.0, "t_end": 1.0, "loss": 1.0}

    def append(i):
        log.append({**row, "iteration": i}, {"compute_s": np.ones(2)},
                   {"worker": np.arange(2), "iteration": np.full(2, i)})
    for i in range(3):
        append(i)
    monkeypatch.setattr(runlog, "room_for", lambda path: 0)  # the disk is full now
    with pytest.raises(safefile.DiskFull):
        append(3)
    monkeypatch.setattr(runlog, "room_for", lambda path: 1 << 40)  # room again: too late
    with pytest.raises(safefile.DiskFull):
        append(4)
    assert log.kept() == "3 iterations readable, no checkpoint (it cannot be resumed)"
    log.close("failed")
    with h5py.File(out, "r") as f:
        assert int(f.attrs["n_done"]) == 3 and f.attrs["status"] == "failed"
        np.testing.assert_array_equal(f["iterations/iteration"][:3], [0, 1, 2])

"""Run files are never lost (issue 13, "Data loss" 1-5), end to end, and rank 0's progress
lines under mpiexec. Every launch is bounded (subprocess timeouts + MPIEXEC_TIMEOUT).

1. a second run with the same --out while the first runs is refused, the first is unharmed
   (simulate and train);
2. an existing OUT.part is "output exists" without --force (and the bad-input battery);
3. --resume when X.h5 and X.h5.part both exist is refused;
4. OUT.part as a symlink is refused, its target untouched;
5. a refused resume (wrong rank count, changed option, --out) leaves the file byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess

import h5py
import numpy as np
import pytest
from conftest import MPIEXEC, PY, ROOT, mpicode, mpirun, run_attr, wait_until

pytestmark = pytest.mark.timeout(400)

SIM = ["simulate", "--workers", 4, "--compute", "none", "--partition-cost", 1e-3, "--quiet"]
SMALL = ["--samples", 600, "--features", 8, "--quiet"]


def md5s(d):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "link"
            for p in sorted(d.iterdir())}


def one_line(r, msg):
    text = r.stdout + r.stderr
    assert "Traceback" not in text, text
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stderr)
    assert lines[0].startswith("mpicode: error: ") and msg in lines[0], lines[0]


def _rows_valid(path):
    with h5py.File(path, "r", locking=False) as f:
        n = int(f.attrs["n_done"])
        np.testing.assert_array_equal(f["iterations/iteration"][:n], np.arange(n))
        np.testing.assert_array_equal(f["iterations"]["t_end"][:n] > 0, True)
        assert f["workers/used"][:n].shape == (n, int(f.attrs["n_workers"]))
        return n, f.attrs["status"]


def _first_run_survives(p, out, tmp_path, second):
    """With ``p`` running on ``out``: ``second(force)`` is refused either way, then ``p``
    stops on SIGTERM with every row readable."""
    part = tmp_path / (out.name + ".part")
    assert wait_until(lambda: int(run_attr(part, "n_done") or 0) >= 2, 120, 0.2)
    for force in (False, True):
        one_line(second(force), f"output {part} is in use by a running mpicode run")
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 3, err
    n, status = _rows_valid(out)
    assert status == "interrupted" and n >= 2


def test_second_simulate_on_a_live_output_is_refused(tmp_path):
    out = tmp_path / "live.h5"
    p = subprocess.Popen([PY, "-m", "mpicode", *map(str, SIM), "--iterations", str(10**8),
                          "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        _first_run_survives(p, out, tmp_path, lambda force: mpicode(
            [*SIM, "--iterations", 3, "--out", out, *(["--force"] if force else [])]))
    finally:
        p.kill() if p.poll() is None else None


def test_second_train_on_a_live_output_is_refused(tmp_path):
    out = tmp_path / "live.h5"
    cmd = [MPIEXEC, "-n", "3", PY, "-m", "mpi4py", "-m", "mpicode", "train", "--iterations",
           "100000", "--stragglers", "shifted-exp", "--delay-unit", "0.01", "--out", str(out),
           *map(str, SMALL)]
    p = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, MPIEXEC_TIMEOUT="300"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _first_run_survives(p, out, tmp_path, lambda force: mpirun(
            3, ["train", "--iterations", 3, "--out", out, *SMALL,
                *(["--force"] if force else [])]))
    finally:
        p.kill() if p.poll() is None else None


def test_a_stale_part_is_output_exists_without_force(tmp_path):
    out = tmp_path / "o.h5"
    (tmp_path / "o.h5.part").write_bytes(b"a failed run, resumable")
    before = md5s(tmp_path)
    one_line(mpicode([*SIM, "--iterations", 2, "--out", out]), f"output exists: {out}.part")
    assert md5s(tmp_path) == before
    r = mpicode([*SIM, "--iterations", 2, "--out", out, "--force"])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5"]
    assert _rows_valid(out) == (2, "complete")


def test_part_symlink_and_both_files_are_refused_and_nothing_changes(tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"outside the requested output")
    os.symlink(victim, tmp_path / "s.h5.part")
    before = md5s(tmp_path)
    for extra in ([], ["--force"]):
        one_line(mpicode([*SIM, "--iterations", 2, "--out", tmp_path / "s.h5", *extra]),
                 "s.h5.part is a symbolic link")
    assert md5s(tmp_path) == before
    run = tmp_path / "b.h5"
    assert mpicode([*SIM, "--iterations", 3, "--out", run]).returncode == 0
    (tmp_path / "b.h5.part").write_bytes(run.read_bytes())
    before = md5s(tmp_path)
    one_line(mpicode(["simulate", "--resume", run, "--quiet"]),
             f"both {run} and {run}.part exist")
    assert md5s(tmp_path) == before


def test_refused_simulate_resume_changes_nothing(tmp_path):
    run = tmp_path / "r.h5"
    assert mpicode([*SIM, "--iterations", 3, "--out", run]).returncode == 0
    before = md5s(tmp_path)
    for args, msg in ((["--scheme", "frc", "--seed", 7], "cannot change --scheme (stored "
                       "'uncoded', given 'frc'), --seed (stored 0, given 7)"),
                      (["--out", tmp_path / "other.h5"], "--out cannot be used with --resume")):
        one_line(mpicode(["simulate", "--resume", run, "--quiet", *args]), msg)
    with h5py.File(run, "r+") as f:
        f.attrs["config"] = "{broken"
    before = md5s(tmp_path)
    one_line(mpicode(["simulate", "--resume", run, "--quiet"]), "not a readable mpicode run")
    assert md5s(tmp_path) == before and not (tmp_path / "r.h5.part").exists()


def test_refused_train_resume_changes_nothing(tmp_path):
    run = tmp_path / "t.h5"
    r = mpirun(4, ["train", "--iterations", 3, "--out", run, *SMALL])
    assert r.returncode == 0, r.stderr
    before = md5s(tmp_path)
    for n, args, msg in ((3, [], f"--resume {run}: the run has 3 workers, this job has 2 "
                          "(launch with mpiexec -n 4)"),
                         (4, ["--seed", 9], "cannot change --seed (stored 0, given 9)"),
                         (4, ["--out", tmp_path / "o.h5"], "--out cannot be used")):
        one_line(mpirun(n, ["train", "--resume", run, "--quiet", *args]), msg)
    assert md5s(tmp_path) == before
    assert run_attr(run, "status") == "complete"
    r = mpirun(4, ["train", "--resume", run, "--iterations", 5, "--quiet"])
    assert r.returncode == 0, r.stderr
    assert _rows_valid(run) == (5, "complete")


def test_progress_lines_under_mpiexec(tmp_path):
    """Rank 0's stderr is a pipe: ``--progress auto`` prints compact lines."""
    r = mpirun(3, ["train", "--iterations", 400, "--stragglers", "shifted-exp", "--delay-unit",
                   0.01, "--samples", 600, "--features", 8, "--out", tmp_path / "p.h5"])
    assert r.returncode == 0, r.stderr
    lines = re.findall(r"^mpicode: it (\d+)/400  loss [\d.]+  acc [\d.]+  [\d.e-]+ s/it  "
                       r"ETA [\d.]+ (?:s|min)$", r.stderr, re.M)
    assert lines and int(lines[-1]) == 400, r.stderr


# -- issue 27: every file kind by the one safe path, full disks ------------------------------
FILL = """
import os, sys, time, h5py
part, filler = sys.argv[1], sys.argv[2]
end = time.monotonic() + 120
while time.monotonic() < end:  # wait for the run's first rows, then fill the disk
    try:
        with h5py.File(part, "r", locking=False) as f:
            if int(f.attrs["n_done"]) >= 2:
                break
    except (OSError, KeyError):
        pass
    time.sleep(0.05)
fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
for size in (65536, 512):
    while True:
        try:
            os.write(fd, b"x" * size)
        except OSError:
            break
"""

def test_simulate_disk_filled_by_another_process_stays_readable(small_disk, tmp_path):
    """Another process fills the disk while ``simulate`` writes: the run stops before a
    write that would not fit, its line says what is readable (the file's own n_done), and
    both ``report`` and ``--resume`` open the file."""
    out = small_disk / "r.h5"
    filler = subprocess.Popen([PY, "-c", FILL, str(out) + ".part", str(small_disk / "fill")])
    r = subprocess.run([PY, "-m", "mpicode", *map(str, SIM), "--iterations", "1000000",
                        "--checkpoint-every", "20", "--flush-every", "0", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    filler.wait(timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    m = re.search(r"(\d+) iterations readable", line)
    assert m and "stopped before the disk is full" in line, line
    os.unlink(small_disk / "fill")
    n, status = _rows_valid(out)
    assert n == int(m.group(1)) and status == "failed"
    rep = mpicode(["report", out])
    assert rep.returncode == 0, rep.stderr
    assert f"showing its {n} completed iterations" in rep.stdout + rep.stderr, rep
    if "a checkpoint at iteration" in line:
        res = mpicode(["simulate", "--resume", out, "--iterations", n + 3, "--quiet"])
        # it opens the file and continues (the small disk may stop it again, cleanly)
        assert res.returncode in (0, 1) and "Traceback" not in res.stderr, res.stderr
        assert res.returncode == 1 or _rows_valid(out)[0] == n + 3
        assert _rows_valid(out)[0] >= int(re.search(r"checkpoint at iteration (\d+)",
                                                    line).group(1))


def test_report_plots_on_a_full_disk_leave_no_half_png(small_disk, tmp_path):
    pytest.importorskip("matplotlib")
    from runfiles import synth
    runs = [str(synth(tmp_path / f"{k}.h5", n=40).path) for k in "ab"]
    d = small_disk / "plots"
    d.mkdir()
    fd = os.open(small_disk / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    os.close(fd)
    os.truncate(small_disk / "fill", os.path.getsize(small_disk / "fill") - 60_000)
    r = mpicode(["report", *runs, "--plots", d])
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("mpicode: error")]
    assert len(lines) == 1 and "cannot write" in lines[0] and "No space left" in lines[0], \
        r.stderr
    assert "figures written whole before it" in lines[0], lines[0]  # what is readable
    for p in d.iterdir():  # what is there is whole: no temporary file, no half PNG
        assert not p.name.startswith("."), p
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[-8:-4] == b"IEND", p


def test_data_synth_part_link_and_concurrent_writers(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "d.h5"
    (tmp_path / "d.h5.part").symlink_to(victim)
    args = ["data", "synth", "--samples", 3000, "--features", 50, "--out", out]
    ps = [subprocess.Popen([PY, "-m", "mpicode", *map(str, args)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for _ in range(2)]
    res = [(p.wait(timeout=120), p.stderr.read()) for p in ps]
    assert victim.read_text() == "precious"
    assert sorted(c for c, _ in res) == [0, 2], res  # one wins, the other is refused
    loser = next(e for c, e in res if c == 2)
    assert "output" in loser and "Traceback" not in loser, loser
    from mpicode.io.datasets import read_dataset
    assert read_dataset(out).X.shape[1] == 50  # one whole file, never truncated
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

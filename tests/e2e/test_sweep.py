"""`mpicode sweep FILE`: two tiny cells under mpiexec, one after another (subprocess, bounded:
MPIEXEC_TIMEOUT per cell and a subprocess timeout), then a rerun that skips them, a resumed
cell, and a failing one."""

from __future__ import annotations

import subprocess

import h5py
import pytest
from conftest import PY, ROOT

from mpicode import launcher

TINY = "--iterations 4 --samples 400 --features 8 --checkpoint-every 2"


def sweep(args, timeout=400):
    env = launcher.launch_env(timeout=150)
    return subprocess.run([PY, "-m", "mpicode", "sweep", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


@pytest.mark.timeout(900)
def test_sweep_runs_skips_resumes_and_fails(tmp_path):
    f = tmp_path / "sweep.txt"
    f.write_text(f"# 2 cells\n--scheme uncoded --seed 0 {TINY}\n"
                 f"--scheme two-stage --seed 1 {TINY}\n")
    out = tmp_path / "runs"
    r = sweep([f, "--np", 3, "--out-dir", out])
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert len(lines) == 2 and all(": ran: ok in" in ln for ln in lines), r.stdout
    assert "2 cells" in r.stdout and "0 failed" in r.stdout
    cells = sorted(out.glob("cell_*.h5"))
    tail = "iterations=4_samples=400_features=8_checkpoint-every=2.h5"
    assert [c.name for c in cells] == [f"cell_000_scheme=uncoded_seed=0_{tail}",
                                       f"cell_001_scheme=two-stage_seed=1_{tail}"]
    for c in cells:
        with h5py.File(c, "r") as h:
            assert h.attrs["status"] == "complete" and int(h.attrs["n_done"]) == 4
        assert c.with_suffix(".log").exists()
    # a rerun skips complete cells; a killed cell (.part with a checkpoint) is resumed
    part = out / (cells[1].name + ".part")
    cells[1].rename(part)
    with h5py.File(part, "a") as h:
        h.attrs["status"] = "running"
    r = sweep([f, "--np", 3, "--out-dir", out])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipped (complete)" in r.stdout and "resumed from" in r.stdout, r.stdout
    with h5py.File(cells[1], "r") as h:
        assert h.attrs["status"] == "complete"
    # a failing cell: exit 1, a FAILED line naming its log, the others untouched
    f.write_text(f.read_text() + "--scheme no-such-scheme\n")
    r = sweep([f, "--np", 3, "--out-dir", out])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED (exit 2)" in r.stdout and "1 failed (cells 2)" in r.stdout, r.stdout
    assert sum(ln.endswith(": skipped (complete)") for ln in r.stdout.splitlines()) == 2
    r = sweep([f, "--np", 3, "--out-dir", out, "--dry-run"])
    assert r.returncode == 0 and "would run" in r.stdout and "mpiexec" in r.stdout


def test_sweep_bad_file_one_line_exit_2(tmp_path):
    r = sweep([tmp_path / "nope.txt"], timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("mpicode: error: cannot read sweep file")
    assert len(r.stderr.strip().splitlines()) == 1

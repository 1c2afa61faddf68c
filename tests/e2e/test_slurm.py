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
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PY, ROOT, run_attr, wait_until

from mpicode.analysis.report import read_run

pytestmark = pytest.mark.timeout(1200)  # includes a first apt-get install

IN_CI = os.environ.get("CI", "").lower() == "true"
JOB_TIMEOUT = 240  # seconds for all the jobs together
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
        "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


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


def _cannot(reason: str):
    if IN_CI:
        pytest.fail(f"SLURM test cannot run in CI: {reason}")
    pytest.skip(reason)


def ensure_slurm() -> None:
    """slurmctld, slurmd, sbatch and munged present, installing them with apt-get if not."""
    if os.environ.get("MPICODE_TEST_SLURM") == "0":  # README Quick start
        _cannot("MPICODE_TEST_SLURM=0")
    need = ("slurmctld", "slurmd", "sbatch", "scontrol", "munged")
    if all(shutil.which(b) for b in need):
        return
    if os.geteuid() != 0:
        _cannot("SLURM is not installed and installing it needs root")
    if not shutil.which("apt-get"):
        _cannot("SLURM is not installed and there is no apt-get to install it")
    t0 = time.time()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env,
                               stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                _cannot(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip()[-300:]}")
    except subprocess.TimeoutExpired:
        _cannot("apt-get did not finish in 15 minutes")
    _say(f"installed slurm-wlm and munge in {time.time() - t0:.1f} s")
    missing = [b for b in need if not shutil.which(b)]
    if missing:
        _cannot(f"still missing after apt-get install: {', '.join(missing)}")


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


SLURM_CONF = """\
# single-node test cluster written by tests/test_slurm.py
ClusterName=mpicodetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.socket,cred_expire=15
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=pmi2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
FirstJobId={first_job_id}
PlugStackConfig={d}/plugstack.conf
NodeName={host} NodeAddr=127.0.0.1 CPUs=9 RealMemory=4000 State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=60 State=UP
"""


class Cluster:
    """munged + slurmctld + slurmd in ``d``, clients configured through SLURM_CONF."""

    def __init__(self, d: Path):
        self.d = d
        self.host = socket.gethostname().split(".")[0]
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = dict(os.environ, SLURM_CONF=str(d / "slurm.conf"))
        for k in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
            if k != "SLURM_CONF":
                del self.env[k]  # a test run inside a SLURM job must not leak its job

    def write_config(self) -> None:
        d = self.d
        for sub in ("state", "spool"):
            (d / sub).mkdir(mode=0o700)
        (d / "plugstack.conf").write_text("")
        ctld_port, d_port = _free_ports(2)
        # job ids of their own: MPICH under srun names its shared-memory segments after the
        # job and step id, so a second test cluster starting at job 1 again could open a stale
        # /dev/shm segment of an earlier, killed job 1.0 (a hang, or "Invalid GenQ flag")
        first = 1000 + int.from_bytes(os.urandom(3), "big") % 1_000_000
        (d / "slurm.conf").write_text(SLURM_CONF.format(host=self.host, d=d, ctld_port=ctld_port,
                                                        d_port=d_port, first_job_id=first))
        key = d / "munge.key"
        if not key.exists():  # a key of our own: never touch /etc/munge
            key.write_bytes(os.urandom(1024))
            key.chmod(0o600)

    def _start(self, name: str, cmd: list[str]) -> None:
        log = open(self.d / f"{name}.stdout", "wb")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=self.env, start_new_session=True)
        log.close()
        self.procs.append((name, p))

    def start(self) -> None:
        d = self.d
        self._start("munged", ["munged", "--foreground", "--force", f"--socket={d}/munge.socket",
                               f"--key-file={d}/munge.key", f"--log-file={d}/munged.log",
                               f"--pid-file={d}/munged.pid", f"--seed-file={d}/munged.seed"])
        self._wait(lambda: (d / "munge.socket").exists(), 20, "munged socket")
        conf = str(d / "slurm.conf")
        self._start("slurmctld", ["slurmctld", "-D", "-c", "-i", "-f", conf])
        self._wait(lambda: self.scontrol("ping").returncode == 0, 30, "slurmctld ping")
        self._start("slurmd", ["slurmd", "-D", "-f", conf, "-N", self.host])
        self._wait(self.node_idle, 60, "node idle")

    def node_idle(self) -> bool:
        r = self.scontrol("show", "node", self.host, "-o")
        return r.returncode == 0 and "State=IDLE" in r.stdout

    def scontrol(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30,
                              env=self.env)

    def _wait(self, ok, timeout: float, what: str) -> None:
        def alive_and_ok():
            for name, p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(f"{name} exited ({p.returncode}) waiting for {what}:\n"
                                         + self.logs())
            return ok()

        if not wait_until(alive_and_ok, timeout, 0.3):
            raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n"
                                 + self.logs())

    def logs(self, tail: int = 25) -> str:
        out = []
        for f in sorted(self.d.glob("*.log")) + sorted(self.d.glob("*.stdout")):
            lines = f.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def job_states(self, job_id: str) -> dict[str, str]:
        """JobId -> JobState of a job or of every task of an array job."""
        r = self.scontrol("show", "job", job_id, "-o")
        states = {}
        for line in r.stdout.splitlines():
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            states[f.get("JobId", "?")] = f.get("JobState", "?")
        return states

    def wait_jobs(self, job_ids: list[str], timeout: float) -> dict[str, str]:
        """Poll ``scontrol show job`` (no accounting here) until every job, and every task of
        an array job, has ended; bounded by ``timeout`` seconds."""
        states: dict[str, str] = {}

        def ended():
            per_job = [self.job_states(j) for j in job_ids]
            states.clear()
            states.update({k: v for s in per_job for k, v in s.items()})
            return all(per_job) and all(v in DONE for v in states.values())

        if not wait_until(ended, timeout, 1.0):
            raise AssertionError(f"jobs not done in time: {states}\n" + self.logs())
        return states

    def cancel_all(self) -> None:
        """Cancel whatever is still queued or running on this test cluster (a failed test)."""
        r = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                           timeout=30, env=self.env)
        ids = r.stdout.split()
        if ids:
            _say(f"cancelling leftover jobs {ids}")
            subprocess.run(["scancel", "--full", *ids], capture_output=True, timeout=30,
                           env=self.env)
            wait_until(lambda: not subprocess.run(
                ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30,
                env=self.env).stdout.strip(), 30, 0.5)

    def stop(self) -> None:
        if any(n == "slurmctld" and p.poll() is None for n, p in self.procs):
            try:
                self.cancel_all()
            except (OSError, subprocess.SubprocessError) as e:
                _say(f"could not cancel leftover jobs: {e}")
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    _say(f"{name} (pid {p.pid}) ignored SIGTERM: SIGKILL")
                    p.kill()
                    p.wait(timeout=10)
        self.procs.clear()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ensure_slurm()
    if os.geteuid() != 0:
        _cannot("the test cluster runs slurmd as root; not root here")
    t0 = time.time()
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    c.write_config()
    try:
        c.start()
        _say(f"munged + slurmctld + slurmd up in {time.time() - t0:.1f} s ({c.d})")
        yield c
    finally:
        c.stop()
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

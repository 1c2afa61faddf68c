"""A private SLURM for the tests: munged + slurmctld + one slurmd per node, in a temporary
directory, stopped by pid. Used by tests/e2e/test_slurm.py (one node: this host, 127.0.0.1)
and tests/cluster/test_slurm_nodes.py (one slurmd per node of a virtual cluster, each in the
node's namespace; slurmctld and the clients on its login node).

It installs Debian's slurm-wlm and munge when ``slurmctld`` is missing (root and apt-get
needed). Where it cannot run (not root, no apt-get, the install fails,
``MPICODE_TEST_SLURM=0``) a test skips and says why; with ``CI=true`` it fails instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import wait_until

IN_CI = os.environ.get("CI", "").lower() == "true"
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
        "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def cannot(reason: str):
    if IN_CI:
        pytest.fail(f"SLURM test cannot run in CI: {reason}")
    pytest.skip(reason)


def ensure_slurm(say=print) -> None:
    """slurmctld, slurmd, sbatch and munged present, installing them with apt-get if not."""
    if os.environ.get("MPICODE_TEST_SLURM") == "0":  # README Quick start
        cannot("MPICODE_TEST_SLURM=0")
    need = ("slurmctld", "slurmd", "sbatch", "scontrol", "munged")
    if all(shutil.which(b) for b in need):
        return
    if os.geteuid() != 0:
        cannot("SLURM is not installed and installing it needs root")
    if not shutil.which("apt-get"):
        cannot("SLURM is not installed and there is no apt-get to install it")
    t0 = time.time()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env,
                               stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                cannot(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip()[-300:]}")
    except subprocess.TimeoutExpired:
        cannot("apt-get did not finish in 15 minutes")
    say(f"installed slurm-wlm and munge in {time.time() - t0:.1f} s")
    missing = [b for b in need if not shutil.which(b)]
    if missing:
        cannot(f"still missing after apt-get install: {', '.join(missing)}")


def free_ports(n: int) -> list[int]:
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
# test cluster written by tests/slurmlib.py
ClusterName=mpicodetest
SlurmctldHost={host}({ctld_addr})
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.socket,cred_expire={cred_expire}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd-%n.log
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
# a requeued job becomes eligible again after the credential's lifetime (cred_expire above);
# the main scheduling loop then starts it at its next pass: every 2 s here, not 60
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
FirstJobId={first_job_id}
PlugStackConfig={d}/plugstack.conf
{node_lines}
PartitionName=test Nodes={node_names} Default=YES MaxTime=60 State=UP
"""


@dataclass
class Node:
    """A slurmd: its NodeName, NodeAddr, declared CPUs, and how to run a process there."""

    name: str
    addr: str
    cpus: int
    prefix: list[str] = field(default_factory=list)


class Cluster:
    """munged + slurmctld + one slurmd per node in ``d``; clients configured through
    SLURM_CONF and run with ``client_prefix`` (the namespace where slurmctld is reachable).
    Without ``nodes``: one node, this host, at 127.0.0.1 with 9 CPUs."""

    def __init__(self, d: Path, nodes: list[Node] | None = None, ctld_addr: str = "127.0.0.1",
                 ctld_prefix: list[str] | None = None, client_prefix: list[str] | None = None,
                 cred_expire: int = 15):
        self.d = d
        # a requeued job waits this long (the job credential's lifetime) before it restarts
        self.cred_expire = int(cred_expire)
        self.host = socket.gethostname().split(".")[0]
        self.nodes = nodes or [Node(self.host, "127.0.0.1", 9)]
        self.ctld_addr = ctld_addr
        self.ctld_prefix = ctld_prefix or []
        self.client_prefix = client_prefix or []
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = dict(os.environ, SLURM_CONF=str(d / "slurm.conf"))
        for k in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
            if k != "SLURM_CONF":
                del self.env[k]  # a test run inside a SLURM job must not leak its job

    def write_config(self) -> None:
        d = self.d
        for sub in ("state", "spool"):
            (d / sub).mkdir(mode=0o700)
        for n in self.nodes:
            (d / "spool" / n.name).mkdir(mode=0o700)
        (d / "plugstack.conf").write_text("")
        ctld_port, d_port = free_ports(2)
        # job ids of their own: MPICH under srun names its shared-memory segments after the
        # job and step id, so a second test cluster starting at job 1 again could open a stale
        # /dev/shm segment of an earlier, killed job 1.0 (a hang, or "Invalid GenQ flag")
        first = 1000 + int.from_bytes(os.urandom(3), "big") % 1_000_000
        lines = "\n".join(f"NodeName={n.name} NodeAddr={n.addr} CPUs={n.cpus} RealMemory=4000 "
                          "State=UNKNOWN" for n in self.nodes)
        (d / "slurm.conf").write_text(SLURM_CONF.format(
            host=self.host, ctld_addr=self.ctld_addr, d=d, ctld_port=ctld_port, d_port=d_port,
            first_job_id=first, node_lines=lines, cred_expire=self.cred_expire,
            node_names=",".join(n.name for n in self.nodes)))
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
        self._start("slurmctld", [*self.ctld_prefix, "slurmctld", "-D", "-c", "-i", "-f", conf])
        self._wait(lambda: self.scontrol("ping").returncode == 0, 30, "slurmctld ping")
        for n in self.nodes:
            self._start(f"slurmd-{n.name}", [*n.prefix, "slurmd", "-D", "-f", conf, "-N", n.name])
        self._wait(self.nodes_idle, 60, "nodes idle")

    def nodes_idle(self) -> bool:
        r = self.scontrol("show", "node", "-o")
        idle = sum("State=IDLE" in ln for ln in r.stdout.splitlines())
        return r.returncode == 0 and idle == len(self.nodes)

    def run(self, argv: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """A client command (sbatch, scontrol, ...) where slurmctld is reachable."""
        kw.setdefault("env", self.env)
        return subprocess.run([*self.client_prefix, *argv], capture_output=True, text=True,
                              timeout=timeout, **kw)

    def scontrol(self, *args) -> subprocess.CompletedProcess:
        return self.run(["scontrol", *args])

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

    def cancel_all(self, say=print) -> None:
        """Cancel whatever is still queued or running on this test cluster (a failed test)."""
        ids = self.run(["squeue", "-h", "-o", "%i"]).stdout.split()
        if ids:
            say(f"cancelling leftover jobs {ids}")
            self.run(["scancel", "--full", *ids])
            wait_until(lambda: not self.run(["squeue", "-h", "-o", "%i"]).stdout.strip(),
                       30, 0.5)

    def stop(self, say=print) -> None:
        if any(n == "slurmctld" and p.poll() is None for n, p in self.procs):
            try:
                self.cancel_all(say)
            except (OSError, subprocess.SubprocessError) as e:
                say(f"could not cancel leftover jobs: {e}")
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    say(f"{name} (pid {p.pid}) ignored SIGTERM: SIGKILL")
                    p.kill()
                    p.wait(timeout=10)
        self.procs.clear()

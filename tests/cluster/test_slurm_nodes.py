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
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import PY, ROOT, require_openmpi_ulfm, run_attr, wait_until
from slurmlib import DONE, Cluster, Node, cannot, ensure_slurm
from test_node_failure import kill_node_workers

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
    if mpi_kind(launcher.mpiexec_path()) != "mpich":  # (pytest -m under .venv-openmpi)
        pytest.skip("the jobs' srun --mpi=pmi2 starts MPICH ranks; Open MPI needs PMIx, "
                    "which this Slurm's plugin cannot load here")
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


ELASTIC_ITERS = 16
ELASTIC_ARGS = ["--scheme", "uncoded", "--iterations", ELASTIC_ITERS, "--delay-unit", 0.05,
                "--eval-every", 1, "--flush-every", 0, *SMALL]


def test_elastic_job_survives_a_nodes_workers_killed(slurm, vcluster, tmp_path):
    """``jobs/train-elastic.sbatch``, unchanged, over 3 nodes x 2 tasks (rank 0 and worker 1
    on the first node; ranks 2-3, 4-5 on the others) with Open MPI: its default launcher,
    ``mpiexec --with-ft ulfm -n $SLURM_NTASKS`` inside the allocation (PRRTE starts one prted
    per node through srun). Once 3 iterations are logged, both ranks of the third node are
    SIGKILLed (by pid, through its namespace): the job ends COMPLETED, the run complete, exact
    (the single-host uncoded run's losses to 1e-9), both failures in /events, n_alive 5 -> 3."""
    py, mpiexec = require_openmpi_ulfm("the elastic SLURM job")
    c, vc = slurm, vcluster
    runs = tmp_path / "runs"
    env = dict(_env(c, runs), MPICODE_PYTHON=py)
    env.pop("MPICODE_LAUNCHER", None)  # the script's own default: mpiexec
    if os.geteuid() == 0:  # the jobs run as root here; Open MPI refuses that unless told
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    args = ["jobs/configs/demo.toml", *map(str, ELASTIC_ARGS)]
    # the reference: the same run on this host alone, uninterrupted, 5 workers
    ref = tmp_path / "reference.h5"
    r = subprocess.run([*launcher.mpiexec_argv(6, mpiexec=mpiexec), py, "-m", "mpi4py", "-m",
                        "mpicode", "train", "--config", *args, "--quiet", "--out", str(ref)],
                       cwd=ROOT, capture_output=True, text=True, timeout=JOB_TIMEOUT + 60,
                       env=launcher.launch_env(timeout=JOB_TIMEOUT))
    assert r.returncode == 0, r.stderr
    r = c.run(["sbatch", "--parsable", f"--nodes={NODES}", "--ntasks=6",
               "--ntasks-per-node=2", "--time=5", str(ROOT / "jobs/train-elastic.sbatch"),
               *args], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip().split(";")[0]
    out = runs / f"elastic_{job}.h5"
    part = Path(f"{out}.part")
    log = tmp_path / f"mpicode-elastic-{job}.out"
    try:
        assert wait_until(lambda: (run_attr(part, "n_done") or 0) >= 3
                          or c.job_states(job).get(job) in DONE, JOB_TIMEOUT, 0.05), c.logs()
        assert c.job_states(job).get(job) not in DONE, log.read_text(errors="replace")
        killed, daemons = kill_node_workers(vc, vc.nodes[2], out)
        assert len(killed) == 2 and daemons, (killed, daemons)  # PRRTE's prted stays
        states = c.wait_jobs([job], JOB_TIMEOUT)
    finally:
        c.cancel_all(_say)  # a failed assertion above must not leave the job running
    text = log.read_text(errors="replace")
    assert states == {job: "COMPLETED"}, f"{states}\n{text[-3000:]}\n{c.logs()}"
    run = read_run(str(out))
    assert run["attrs"]["status"] == "complete" and run["n"] == ELASTIC_ITERS, text[-3000:]
    assert run["attrs"]["n_workers"] == 5
    with h5py.File(out, "r") as f, h5py.File(ref, "r") as fr:
        assert sorted(f["events/rank"][:]) == [4, 5]
        its = [int(i) for i in f["events/iteration"][:]]
        assert list(f["iterations/n_alive"][:]) == [5 - sum(i <= it for i in its)
                                                    for it in range(ELASTIC_ITERS)]
        loss, reference = f["iterations/loss"][:], fr["iterations/loss"][:]
    rel = float(np.max(np.abs(loss - reference) / np.abs(reference)))
    _say(f"elastic job {job}: ranks 4, 5 ({vc.nodes[2]}) killed, failures filed in iterations "
         f"{its}, {len(loss)}/{ELASTIC_ITERS} iterations, max rel. loss diff {rel:.1e}")
    np.testing.assert_allclose(loss, reference, rtol=1e-9, atol=0)
    assert "worker 4 (rank 5) failed" in text and "3 workers go on" in text, text[-3000:]
    assert "failed in iteration" in text  # the job's report notes each failure

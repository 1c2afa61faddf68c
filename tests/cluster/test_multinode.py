"""Multi-node runs on the virtual cluster (mpicode.vcluster): MPICH's mpiexec with a hostfile
over 3 nodes, rank 0 alone on the first and two workers on each of the others, started by
Hydra through the ssh stand-in, with the bytes between nodes going over TCP on the nodes' links.

* every exact scheme (the suite's EXACT: uncoded, speed-aware, frc, cyclic, two-stage, the
  paper's two-stage shape, self-scheduling) gives the loss trajectory of the single-host run
  to 1e-9 relative (one batch job of all the schemes on each side, studies.batch);
* the results really crossed the links: the bytes node 0 received are at least every result
  rank 0 got (UCX would otherwise move them through shared memory, since every "node" is this
  one machine: ``UCX_TLS=tcp,self``, mpicode.vcluster.launcher);
* where the data lives: the multi-node batch reads a copy of the dataset on every node's local
  disk (the same path, other files), the CLI run reads it from the shared filesystem, and a
  dataset missing on one node stops the run with one line naming the rank.

    python -m pytest -q tests/cluster/test_multinode.py      # as root
"""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import MPIEXEC, PY, mpicode

from mpicode import launcher
from mpicode.vcluster import links, mpi_env, mpiexec_argv
from mpicode.vcluster.launcher import mpi_kind
from studies.suite import EXACT, SCHEMES

pytestmark = pytest.mark.timeout(600)

COMMON = {"iterations": 12, "stragglers": "shifted-exp", "delay_unit": 0.004, "seed": 3,
          "eval_every": 1}


def slug(label: str) -> str:
    return label.replace(" (", "-").replace(")", "").replace(" ", "-")


def _layout(vc):
    """Rank 0 alone on node 0, ranks 1-2 on node 1, ranks 3-4 on node 2."""
    return [(vc.nodes[0], 1), (vc.nodes[1], 2), (vc.nodes[2], 2)]


def _single_argv(n):
    """The single-host reference's launch line: this host alone, ``n`` ranks on its cores
    (Open MPI counts cores as slots and refuses root unless told)."""
    argv = launcher.mpiexec_argv(n, mpiexec=MPIEXEC)
    if mpi_kind(MPIEXEC) == "openmpi":
        argv[1:1] = ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    return argv


def _env(timeout=300):
    return dict(mpi_env(), MPIEXEC_TIMEOUT=str(timeout))


def _losses(path):
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete", path
        n = int(f.attrs["n_done"])
        return f["iterations"]["loss"][:n], f["model/w"][...], int(f["iterations"]["bytes_up"][
            :n].sum())


@pytest.fixture(scope="module")
def runs(vcluster, tmp_path_factory):
    """Every exact scheme across 3 nodes (data: a copy per node) and on this host alone
    (data: the shared path), each as one batch job; the link counters around the first."""
    vc = vcluster
    d = tmp_path_factory.mktemp("multinode")
    ds = d / "data.h5"
    r = mpicode(["data", "synth", "--samples", 800, "--features", 16, "--seed", 5,
                 "--out", ds], timeout=120)
    assert r.returncode == 0, r.stderr
    for node in vc.nodes[:3]:
        shutil.copy(ds, vc.node_dir(node) / "data.h5")
    cells = {slug(label): {**COMMON, **SCHEMES[label]} for label in EXACT}
    for where, path in (("multi", vc.local / "data.h5"), ("single", ds)):
        spec = d / f"{where}.json"
        spec.write_text(json.dumps(
            {k: {**v, "dataset": str(path)} for k, v in cells.items()}))
    prog = [PY, "-m", "mpi4py", "-m", "studies.batch"]
    before = {n: links.counters(vc, n) for n in vc.nodes[:3]}
    r = subprocess.run(mpiexec_argv(vc, _layout(vc), mpiexec=MPIEXEC) + prog
                       + [d / "multi.json", d / "multi"], capture_output=True, text=True,
                       env=_env(), timeout=360)
    assert r.returncode == 0, r.stdout + r.stderr
    after = {n: links.counters(vc, n) for n in vc.nodes[:3]}
    r = subprocess.run([*_single_argv(5), *prog,
                        d / "single.json", d / "single"], capture_output=True, text=True,
                       env=_env(), timeout=360)
    assert r.returncode == 0, r.stdout + r.stderr
    delta = {n: {k: after[n][k] - before[n][k] for k in after[n]} for n in after}
    yield {"dir": d, "cells": list(cells), "delta": delta, "dataset": ds}
    for node in vc.nodes[:3]:  # the session's cluster is shared: leave its disks as found
        (vc.node_dir(node) / "data.h5").unlink(missing_ok=True)


def test_every_exact_scheme_is_exact_across_nodes(runs):
    """(``pytest -rP`` prints the table: scheme, iterations, largest relative loss
    difference, final loss.)"""
    d = runs["dir"]
    table = ["| scheme | iterations | max rel. loss diff, 3 nodes vs 1 host | final loss |",
             "|---|---|---|---|"]
    for name in runs["cells"]:
        multi, w_multi, _ = _losses(d / "multi" / f"{name}.h5")
        single, w_single, _ = _losses(d / "single" / f"{name}.h5")
        rel = float(np.max(np.abs(multi - single) / np.abs(single)))
        table.append(f"| {name} | {multi.size} | {rel:.1e} | {multi[-1]:.6g} |")
        assert multi.size == COMMON["iterations"] and multi[-1] < multi[0], name  # it trains
        np.testing.assert_allclose(multi, single, rtol=1e-9, atol=0, err_msg=name)
        np.testing.assert_allclose(w_multi, w_single, rtol=1e-8, atol=1e-12, err_msg=name)
        with h5py.File(d / "multi" / f"{name}.h5", "r") as f:
            library = str(f.attrs["mpi_library"])
            assert int(f.attrs["n_workers"]) == 4
            assert ("Open MPI" if mpi_kind(MPIEXEC) == "openmpi" else "MPICH") in library
    print(f"across 3 nodes ({mpi_kind(MPIEXEC)}), rank 0 alone:", *table, sep="\n")


def test_results_crossed_the_links_over_tcp(runs):
    """Rank 0 is alone on node 0: every result it received came in over node 0's link."""
    d, delta = runs["dir"], runs["delta"]
    results = sum(_losses(d / "multi" / f"{n}.h5")[2] for n in runs["cells"])
    n0, n1, n2 = sorted(delta)  # node names sort by index here
    assert results > 0 and delta[n0]["rx_bytes"] >= results, (results, delta)
    assert delta[n1]["tx_bytes"] > results / 4 and delta[n2]["tx_bytes"] > results / 4


def test_train_across_nodes_reads_the_shared_filesystem(vcluster, runs, tmp_path):
    """``mpicode train`` itself, launched like on a cluster (hostfile, ssh), with the dataset
    on the shared filesystem: the single-host run's trajectory."""
    out = tmp_path / "two-stage.h5"
    args = ["train", "--dataset", runs["dataset"], "--out", out, "--quiet",
            *[f"--{k.replace('_', '-')}={v}" for k, v in {**COMMON, **SCHEMES["two-stage"]}
              .items()]]
    r = subprocess.run(mpiexec_argv(vcluster, _layout(vcluster), mpiexec=MPIEXEC)
                       + [PY, "-m", "mpi4py", "-m", "mpicode", *map(str, args)],
                       capture_output=True, text=True, env=_env(), timeout=360)
    assert r.returncode == 0, r.stderr
    loss, w, _ = _losses(out)
    ref, w_ref, _ = _losses(runs["dir"] / "single" / "two-stage.h5")
    np.testing.assert_allclose(loss, ref, rtol=1e-9, atol=0)
    np.testing.assert_allclose(w, w_ref, rtol=1e-8, atol=1e-12)


def test_a_dataset_missing_on_one_node_is_one_line_and_exit_2(vcluster, runs, tmp_path):
    """The data on node 0's local disk only (the copy to the other nodes was forgotten):
    every rank exits 2, rank 1 says which file its node lacks, nothing is written. (Under
    Open MPI, mpirun adds a block of its own about the exit code: mpicode's is the one line.)"""
    vc = vcluster
    shutil.copy(runs["dataset"], vc.node_dir(vc.nodes[0]) / "only-here.h5")
    out = tmp_path / "never.h5"
    try:
        r = subprocess.run(mpiexec_argv(vc, _layout(vc), mpiexec=MPIEXEC)
                           + [PY, "-m", "mpi4py", "-m", "mpicode", "train", "--dataset",
                              str(vc.local / "only-here.h5"), "--iterations", "3", "--quiet",
                              "--out", str(out)],
                           capture_output=True, text=True, env=_env(120), timeout=200)
    finally:
        (vc.node_dir(vc.nodes[0]) / "only-here.h5").unlink()
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    if mpi_kind(MPIEXEC) == "openmpi":  # prterun appends its own report of a non-zero exit
        lines = [ln for ln in lines if ln.startswith("mpicode:")]
    assert len(lines) == 1 and lines[0].startswith("mpicode: error: rank 1: "), lines
    assert "only-here.h5" in lines[0]
    assert not out.exists() and not list(tmp_path.iterdir())


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

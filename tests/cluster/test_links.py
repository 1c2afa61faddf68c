"""Real links on the virtual cluster: the machinery of the real-link study
(studies.cluster_links), small. One MPI job whose cells set their links between
cells: a scheduler granting on shaped links with ``--link-timing real``, the same on unshaped
links with the emulated slot clock, no scheduler on shaped links, and a run whose worker link is
throttled to a tenth mid-run (``tc qdisc change`` while the job runs). Every cell completes
with the same (exact) loss trajectory; the links are open again afterwards. The figures are
the study's (``make cluster-study``), not a test's: no timing is asserted here.

    python -m pytest -q tests/cluster/test_links.py          # as root
"""

import numpy as np
import pytest

from mpicode.vcluster import links
from studies import cluster_links as cl
from studies.cluster_report import metrics, write_report

pytestmark = pytest.mark.timeout(600)


def test_scheduled_emulated_ideal_and_throttled_cells_in_one_job(vcluster, tmp_path):
    st = cl.Study(seeds=1, iterations=6, features=500, samples=600)
    traces = cl.write_traces(st.links, tmp_path)
    sched = cl.scheduler_cells(st, traces)
    slow = cl.slowlink_cells(st, traces)
    cells = {k: sched[k] for k in ("sched|cyclic|lyapunov|real-wired|0",
                                   "sched|cyclic|lyapunov|emulated-wired|0",
                                   "sched|cyclic|ideal|real|0")}
    cells["slow|cyclic|lyapunov|throttled|0"] = slow["slow|cyclic|lyapunov|throttled|0"]
    assert cells["sched|cyclic|lyapunov|real-wired|0"]["opts"]["link_timing"] == "real"
    res = cl.run_job(vcluster, cells, st.links, tmp_path)
    assert set(res) == set(cells)
    losses = [np.asarray(r["loss"]) for r in res.values()]
    for r in res.values():
        assert r["status"] == "complete" and len(r["loss"]) == st.iterations, r["name"]
    for loss in losses[1:]:
        np.testing.assert_allclose(loss, losses[0], rtol=1e-9, atol=0)
    assert "throttled_at_s" in res["slow|cyclic|lyapunov|throttled|0"]
    assert not any("throttled_at_s" in r for k, r in res.items() if k.startswith("sched"))
    m = {k: metrics(r) for k, r in res.items()}
    assert np.isfinite(m["sched|cyclic|lyapunov|real-wired|0"]["mean_link_s"])
    assert np.isnan(m["sched|cyclic|ideal|real|0"]["mean_link_s"])  # no scheduler: no grants
    for node in vcluster.nodes:  # the job's links are open again
        assert {q["kind"] for q in links.qdiscs(vcluster, node)} == {"noqueue"}
    rep = tmp_path / "report.md"
    write_report({"study": {**st.__dict__, "links": st.links.__dict__,
                            "throttle": {"worker": 1, "factor": 0.1, "at": 2}},
                  "cells": res, "goodput": [], "seconds": 1.0, "host": "test",
                  "commit": cl.source_commit()}, rep,
                 cl.SCHED_SCHEMES, cl.SCHEDULERS)
    text = rep.read_text()
    assert "| cyclic | lyapunov |" in text and "A slow link mid-run" in text
    assert cl.source_commit() is None or f"Code: commit {cl.source_commit()}." in text

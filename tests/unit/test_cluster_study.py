"""The real-link study's pure parts (no root, no MPI): the links' channel models, the cells of
its two blocks, the figures of a cell, and the slot clock that only grants
(``--link-timing real``). The study itself runs on a virtual cluster (tests/cluster,
``make cluster-study``).

    python -m pytest -q tests/unit/test_cluster_study.py
"""

import argparse
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mpicode.config import UsageError, resolve, validate_for_size
from mpicode.engine.uplink import make_uplink
from studies import cluster_links as cl
from studies.cluster_report import metrics
from studies.suite import EXACT


def _cfg():
    return resolve(argparse.Namespace())


def test_the_channel_models_of_the_links():
    links = cl.Links(uplinks=(4e6, 2e6, 0.5e6), bottleneck=2e6, slot_ms=2.0)
    assert links.rates() == [2e6, 2e6, 0.5e6]            # alone, into node 0
    assert links.trace_row("tdma") == "4000,4000,1000\n"  # bytes per 2 ms slot
    assert links.trace_row("wired") == "8000,4000,1000\n"  # own links; B caps the sum


def test_the_cells_of_both_blocks(tmp_path):
    st = cl.Study(seeds=2, iterations=9)
    traces = cl.write_traces(st.links, tmp_path)
    sched = cl.scheduler_cells(st, traces)
    per = len(cl.SCHEDULERS) * len(cl.VARIANTS) + 1
    assert len(sched) == st.seeds * len(cl.SCHED_SCHEMES) * per
    for name, c in sched.items():
        _, scheme, s, label, seed = name.split("|")
        o = c["opts"]
        assert c["links"] == ("open" if label.startswith("emulated") else "shaped")
        if s == "ideal":
            assert o["channel"] == "ideal"
        else:
            timing, access = label.split("-")
            assert (o["link_timing"], o["access"], o["scheduler"]) == (timing, access, s)
            assert ("bottleneck" in o) == (access == "wired")
            cfg = validate_for_size(_cfg().replace(**o), st.workers)  # valid options
            assert cfg.channel_trace == str(traces[access])
    # the order of the variants turns with the seed (slow phases of a machine spread out)
    orders = [[n.split("|")[2:4] for n in sched if n.startswith("sched|cyclic|")
               and n.endswith(f"|{k}")] for k in range(2)]
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])
    slow = cl.slowlink_cells(st, traces)
    assert len(slow) == st.seeds * len(EXACT) * 2 * 2
    for name, c in slow.items():
        assert (c["throttle_at"] == 3) == name.split("|")[3].startswith("throttled")


def test_figures_of_a_cell():
    rec = {"iter_s": [0.1, 0.2, 0.1, 0.3, 0.1], "t_end": [0.1, 0.3, 0.4, 0.7, 0.8],
           "loss": [5.0, 4.0, 3.0, 2.0, 1.0], "link_s": [0.01, math.nan, 0.03, 0.02, 0.04]}
    m = metrics(rec)
    # the target is the iteration at 80% of the run: index 3
    assert m["time_to_target_s"] == pytest.approx(0.7) and m["loss_at_target"] == 2.0
    assert m["mean_iter_s"] == pytest.approx(0.16)
    assert m["mean_link_s"] == pytest.approx(0.025)   # NaN iterations left out
    assert math.isnan(metrics({**rec, "link_s": [math.nan] * 5})["mean_link_s"])


def test_a_real_link_is_only_granted_not_delivered_by_the_slot_clock(tmp_path):
    trace = tmp_path / "rates.csv"
    trace.write_text("1000,1000\n")
    base = dict(channel="trace", channel_trace=str(trace), scheduler="fifo", slot_ms=1.0)
    for real in (False, True):
        up = make_uplink(_cfg().replace(**base), 2, real_link=real)
        up.new_iteration(0)
        up.offer(0, (0, 7), 1500, 0.0)
        grants = [g for _ in range(3) for g in up.step()]
        assert sum(g.nbytes for g in grants) == 1500 and grants[-1].last
        # emulated: delivered at the end of the slot with the last byte; real: not by slots
        assert up.next_delivery() == (math.inf if real else 0.002)


def test_wired_needs_its_bottleneck_only_with_wired():
    with pytest.raises(UsageError, match="needs --access wired"):
        validate_for_size(_cfg().replace(bottleneck=1e6), 2)
    cfg = validate_for_size(_cfg().replace(access="wired"), 2)  # no shared limit
    assert cfg.bottleneck is None
    assert np.isinf(make_uplink(cfg.replace(channel="constant"), 2).sched.capacity)


def test_the_record_names_the_code_that_ran():
    """The study's record carries the commit that produced it (``+dirty`` when tracked files
    differ from it), so a published table can be traced to its code."""
    root = Path(cl.__file__).resolve().parents[1]  # the checkout: studies/ beside mpicode/
    assert (root / "studies").is_dir() and (root / "mpicode").is_dir()
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                          text=True, timeout=30)
    commit = cl.source_commit()
    if head.returncode != 0:  # not a git checkout (an installed package): nothing to name
        assert commit is None
        return
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit), commit
    assert commit.split("+")[0] == head.stdout.strip()

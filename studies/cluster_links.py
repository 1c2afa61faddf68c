"""Real links for the communication phase: the uplink schedulers on rate-limited links of a
virtual cluster (:mod:`mpicode.vcluster`), against the emulated channel of the same rates.
Root only (network namespaces)::

    python -m studies.cluster_links                 # results/cluster_links.{md,json}
    python -m studies.cluster_links --quick --out /tmp/cl    # ~1 min

The cluster: rank 0 alone on node 0, worker i alone on node i + 1. Node i + 1's uplink is a
token bucket of ``uplinks[i]`` bytes/s and everything into node 0 shares one ``bottleneck``
of B bytes/s (:class:`Links`). The scheduler's channel model is a ``trace`` channel of the
same rates, in one of two models of the slot (:mod:`mpicode.schedulers.sharing`): ``wired``
(R_i = uplink_i, ``--bottleneck B``: several workers at once, as the real links allow) and
``tdma`` (R_i = min(uplink_i, B), one worker's slot at a time: the radio model the suite's
comm study uses).

Two blocks, each ONE MPI job (:mod:`studies.cluster_job`) whose cells set their
links between cells:

* ``schedulers``: per seed and scheme, every scheduler on the shaped links with
  ``--link-timing real`` (the scheduler grants slot by slot, the real link delivers) under
  both models (``real-wired``, ``real-tdma``), and on unshaped links with ``--link-timing
  emulated`` (``emulated-wired``: the slot clock delivers), interleaved; plus ``ideal`` on the
  shaped links (no scheduler: every result is sent whole at once and TCP shares the
  bottleneck); and the simulator's prediction of every scheduler under both models.
* ``slowlink``: every exact scheme, with no scheduler (``ideal``) and with lyapunov on the real
  links (wired model, unaware of the change), each run twice: as is, and with one worker's
  uplink throttled to a tenth mid-run (``tc qdisc change``, after a third of the iterations).

Writes ``OUT/cluster_links.json`` (every cell's series) and ``OUT/cluster_links.md`` (tables:
:mod:`studies.cluster_report`). ``make cluster-study`` runs it under
``flock /tmp/mpicode-bench.lock`` (every figure is a time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mpicode import launcher
from mpicode.io import safefile
from mpicode.vcluster import VirtualCluster, cleanup_stale, mpi_env, mpiexec_argv, unavailable
from mpicode.vcluster import links as tc
from studies import ROOT
from studies.cluster_report import write_report
from studies.comm_study import BASELINES, SUBJECT, simulate
from studies.suite import EXACT, SCHEMES

SCHEDULERS = (*BASELINES, SUBJECT)
SCHED_SCHEMES = ("cyclic", "two-stage")
THROTTLE_AT = 1 / 3           # of the iterations
THROTTLE_FACTOR = 0.1
THROTTLED_WORKER = 1          # worker 1 (node 2): a full-rate link before the throttle


@dataclass(frozen=True)
class Links:
    """Per-worker uplink rates and the shared bottleneck into rank 0's node (bytes/s)."""

    uplinks: tuple[float, ...] = (4e6, 2e6, 1e6, 0.5e6)
    bottleneck: float = 2e6
    slot_ms: float = 2.0

    def rates(self) -> list[float]:
        """What one worker alone gets through to rank 0 (bytes/s)."""
        return [min(r, self.bottleneck) for r in self.uplinks]

    def trace_row(self, access: str) -> str:
        """The scheduler's channel, one row of bytes per slot (``--channel trace``, cycled):
        ``tdma``, the slot in time, R_i = what worker i alone gets through; ``wired``,
        R_i = its own uplink (``--bottleneck`` B caps the sum)."""
        rates = self.rates() if access == "tdma" else self.uplinks
        return ",".join(f"{r * self.slot_ms / 1000:.6g}" for r in rates) + "\n"


@dataclass
class Study:
    links: Links = field(default_factory=Links)
    seeds: int = 3
    iterations: int = 30
    features: int = 2000        # a 16 kB gradient message (8 bytes x (features + 6))
    samples: int = 2000
    delay_unit: float = 0.01

    @staticmethod
    def make(quick: bool) -> Study:
        if quick:
            return Study(seeds=1, iterations=8, features=1000, samples=800)
        return Study()

    @property
    def workers(self) -> int:
        return len(self.links.uplinks)

    def base(self, scheme_label: str, seed: int) -> dict:
        return {**SCHEMES[scheme_label], "iterations": self.iterations, "seed": 100 + seed,
                "features": self.features, "samples": self.samples,
                "stragglers": "shifted-exp", "shift": 1.0, "mu": 1.0,
                "delay_unit": self.delay_unit, "eval_every": self.iterations}

    def channel(self, traces: dict, scheduler: str | None, timing: str,
                access: str = "wired") -> dict:
        if scheduler is None:
            return {"channel": "ideal"}
        out = {"channel": "trace", "channel_trace": str(traces[access]),
               "scheduler": scheduler, "slot_ms": self.links.slot_ms, "link_timing": timing,
               "access": access}
        if access == "wired":
            out["bottleneck"] = self.links.bottleneck
        return out


VARIANTS = (("real", "wired"), ("emulated", "wired"), ("real", "tdma"))


def scheduler_cells(st: Study, traces: dict) -> dict:
    """The schedulers block: per seed and scheme, every scheduler on the real links with the
    wired model (``real-wired``) and with the time-shared one (``real-tdma``), on unshaped
    links with the wired model's slot clock (``emulated-wired``), and no scheduler on the real
    links (``ideal``); the order rotated per seed."""
    cells = {}
    variants = [(s, t, a) for s in SCHEDULERS for t, a in VARIANTS] + [(None, "real", None)]
    for seed in range(st.seeds):
        k = seed % len(variants)
        for scheme in SCHED_SCHEMES:
            for sched, timing, access in variants[k:] + variants[:k]:
                label = f"{timing}-{access}" if sched else "real"
                name = f"sched|{scheme}|{sched or 'ideal'}|{label}|{seed}"
                cells[name] = {"opts": {**st.base(scheme, seed),
                                        **st.channel(traces, sched, timing, access)},
                               "links": "shaped" if timing == "real" else "open",
                               "throttle_at": None}
    return cells


def slowlink_cells(st: Study, traces: dict) -> dict:
    """The slow-link block: every exact scheme, without and with a scheduler, as is and
    throttled."""
    cells = {}
    at = max(1, round(THROTTLE_AT * st.iterations))
    for seed in range(st.seeds):
        for scheme in EXACT:
            for sched in (None, SUBJECT):
                for throttled in (False, True):
                    name = (f"slow|{scheme}|{sched or 'ideal'}|"
                            f"{'throttled' if throttled else 'steady'}|{seed}")
                    cells[name] = {"opts": {**st.base(scheme, seed),
                                            **st.channel(traces, sched, "real")},
                                   "links": "shaped", "throttle_at": at if throttled else None}
    return cells


def set_links(vc, links: Links, kind: str) -> None:
    """``shaped``: every worker's uplink and the bottleneck; ``open``: no limit anywhere."""
    for i, node in enumerate(vc.nodes[1:len(links.uplinks) + 1]):
        if kind == "shaped":
            tc.set_uplink(vc, node, links.uplinks[i])
        else:
            tc.clear(vc, node)
    if kind == "shaped":
        tc.set_bottleneck(vc, vc.nodes[0], links.bottleneck)
    else:
        tc.clear(vc, vc.nodes[0])


def throttle(vc, links: Links) -> None:
    w = THROTTLED_WORKER
    tc.set_uplink(vc, vc.nodes[1 + w], links.uplinks[w] * THROTTLE_FACTOR, live=True)


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_job(vc, cells: dict, links: Links, workdir: Path, log=_say,
            timeout_s: int = 1800) -> dict:
    """Run ``cells`` as one MPI job on ``vc`` (rank 0 on node 0, worker i on node i + 1),
    setting each cell's links when it is about to start; returns name -> the cell's
    ``CELL`` record. Bounded by ``timeout_s`` (the launcher's, then a kill)."""
    n = len(links.uplinks) + 1
    spec = workdir / "cells.json"
    spec.write_text(json.dumps({k: {"opts": v["opts"], "throttle_at": v["throttle_at"]}
                                for k, v in cells.items()}))
    argv = mpiexec_argv(vc, [(node, 1) for node in vc.nodes[:n]]) + launcher.python_m(
        "studies.cluster_job", spec)
    env = dict(mpi_env(), MPIEXEC_TIMEOUT=str(timeout_s))
    err = open(workdir / "job.stderr", "w")
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                         text=True, env=env)
    killer = threading.Timer(timeout_s + 60, p.kill)
    killer.start()
    out, throttled, t0 = {}, {}, time.time()
    try:
        for line in p.stdout:
            word, _, rest = line.rstrip("\n").partition(" ")
            if word == "READY":
                set_links(vc, links, cells[rest]["links"])
                p.stdin.write("go\n")
                p.stdin.flush()
            elif word == "THROTTLE":
                throttle(vc, links)
                throttled[rest] = time.time() - t0
            elif word == "CELL":
                rec = json.loads(rest)
                if rec["name"] in throttled:  # when, in the job's time (seconds)
                    rec["throttled_at_s"] = throttled[rec["name"]]
                out[rec["name"]] = rec
                log(f"  [{len(out)}/{len(cells)}] {rec['name']}: {len(rec['loss'])} "
                    f"iterations ({time.time() - t0:.0f} s)")
        p.stdin.close()
        code = p.wait(timeout=60)
    finally:
        killer.cancel()
        if p.poll() is None:
            p.kill()
            p.wait()
        err.close()
        set_links(vc, links, "open")
    if code != 0 or len(out) != len(cells):
        tail = (workdir / "job.stderr").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"cluster study: the MPI job exited {code} after {len(out)} of "
                           f"{len(cells)} cells:\n{tail}")
    return out


def predictions(st: Study, traces: dict) -> dict:
    """The simulator's figures (virtual time) of every scheduler cell, under both models: the
    emulated channel's prediction."""
    out = {}
    for seed in range(st.seeds):
        for scheme in SCHED_SCHEMES:
            for sched in SCHEDULERS:
                for access in ("wired", "tdma"):
                    opts = {**st.base(scheme, seed),
                            **st.channel(traces, sched, "emulated", access)}
                    out[f"sched|{scheme}|{sched}|predicted-{access}|{seed}"] = simulate(
                        opts, st.workers)
    return out


def link_goodput(vc, links: Links, nbytes: int = 2_000_000) -> list[dict]:
    """Each worker node's TCP goodput to node 0 on the shaped links, alone (bytes/s): what
    the rates deliver after headers. A bulk transfer, one node at a time."""
    set_links(vc, links, "shaped")
    server = ("import socket,sys,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
              "socket.SO_REUSEADDR,1);s.bind(('',5999));s.listen(1);c,_=s.accept();n=0\n"
              "while True:\n d=c.recv(1<<16)\n if not d: break\n n+=len(d)\nprint(n)")
    client = ("import socket,sys,time\nc=socket.create_connection((sys.argv[1],5999));"
              "t=time.perf_counter();c.sendall(b'x'*int(sys.argv[2]));c.shutdown(1);"
              "c.recv(1);print(time.perf_counter()-t)")
    out = []
    try:
        for i, node in enumerate(vc.nodes[1:len(links.uplinks) + 1]):
            srv = subprocess.Popen(vc.node_argv(vc.nodes[0], [sys.executable, "-c", server]),
                                   stdout=subprocess.PIPE, text=True)
            time.sleep(0.3)
            r = subprocess.run(vc.node_argv(node, [sys.executable, "-c", client,
                                                   vc.ip[vc.nodes[0]], str(nbytes)]),
                               capture_output=True, text=True, timeout=120)
            srv.wait(timeout=30)
            secs = float(r.stdout.strip())
            out.append({"worker": i, "uplink": links.uplinks[i], "model": links.rates()[i],
                        "goodput": nbytes / secs})
    finally:
        set_links(vc, links, "open")
    return out


def _rounded(x):
    """Every finite float to 6 significant digits (the record's size halves; no figure in
    the tables needs more)."""
    if isinstance(x, float):
        return float(f"{x:.6g}") if x == x and abs(x) != float("inf") else x
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def write_traces(links: Links, out: Path) -> dict:
    """The scheduler's channel under each model, as ``--channel-trace`` files in ``out``."""
    traces = {a: (out / f"channel-{a}.csv").resolve() for a in ("wired", "tdma")}
    for access, path in traces.items():
        path.write_text(f"# bytes per {links.slot_ms} ms slot, worker 0..N-1 ({access})\n"
                        + links.trace_row(access))
    return traces


def source_commit() -> str | None:
    """The git commit of the code that ran (``+dirty`` with uncommitted changes), or None
    outside a git checkout: which code produced a published table."""
    repo = ROOT  # the checkout studies/ sits in
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=30)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.cluster_links")
    p.add_argument("--out", default="results", help="writes OUT/cluster_links.{md,json}")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--blocks", default="schedulers,slowlink")
    a = p.parse_args(argv)
    why = unavailable()
    if why:
        print(f"cluster_links: cannot build the virtual cluster: {why}", file=sys.stderr)
        return 2
    cleanup_stale()
    st = Study.make(a.quick)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    blocks = a.blocks.split(",")
    res: dict = {"study": {**st.__dict__, "links": st.links.__dict__,
                           "throttle": {"worker": THROTTLED_WORKER, "factor": THROTTLE_FACTOR,
                                        "at": max(1, round(THROTTLE_AT * st.iterations))}},
                 "cells": {}, "host": os.uname().nodename, "commit": source_commit()}
    t0, load0 = time.time(), os.getloadavg()[0]
    with VirtualCluster(st.workers + 1) as vc:  # its directory holds the job's files
        traces = write_traces(st.links, vc.dir)
        res["goodput"] = link_goodput(vc, st.links)
        for block, make in (("schedulers", scheduler_cells), ("slowlink", slowlink_cells)):
            if block in blocks:
                print(f"cluster study: block {block}", flush=True)
                res["cells"].update(run_job(vc, make(st, traces), st.links, vc.dir))
        if "schedulers" in blocks:
            res["cells"].update(predictions(st, traces))
    res["seconds"] = time.time() - t0
    res["load"] = [load0, os.getloadavg()[0]]
    safefile.write_text(out / "cluster_links.json", json.dumps(_rounded(res),
                                                               separators=(",", ":")))
    write_report(res, out / "cluster_links.md", SCHED_SCHEMES, SCHEDULERS)
    print(f"cluster study: {len(res['cells'])} cells in {res['seconds']:.0f} s -> "
          f"{out / 'cluster_links.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

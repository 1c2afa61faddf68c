"""Claim 2 with confidence intervals: lyapunov against every baseline uplink scheduler.

::

    python -m studies.comm_study --quick --no-mpi      # a few seconds
    flock /tmp/mpicode-bench.lock python -m studies.comm_study --json comm.json

The MPI block is one job (:mod:`studies.comm_mpi`).

Every cell is (scheme, scheduler variant, seed) on the suite's uplink (``suite.CHANNEL``,
near/far Rayleigh, 2 ms slots), gradients of the suite's ``comm_dataset`` (16 kB) and its
light shifted-exponential compute stragglers (``comm_delay_unit``). A seed is a channel
realisation *and* a straggler draw: every scheduler of a (scheme, seed) sees the same ones.
The virtual-time block runs in the simulator (``--compute none``); the MPI block runs a subset
in the MPI runtime (real sleeps, the real slot clock), seed-major with the scheduler order
rotated per seed, so that slow phases of a busy machine do not land on one scheduler.

Per cell: time to target (``t_end`` of the iteration whose loss first reaches the target:
the loss uncoded+fifo has at 80% of the iterations; every scheme here is exact, so the loss
trajectory, hence that iteration, is the same for every cell of a seed), mean iteration
time, and two communication times:

* ``comm_s``, as logged: from the moment the last *used* message was ready to decodability.
  It depends on which messages were used, so a scheduler that holds back a redundant message
  (lyapunov's coding-aware admission) moves its own origin earlier and looks slower, even
  when its iteration ends sooner (see docs/design.md, "Comparing schedulers");
* ``link_s``: from the moment the *ready* messages could first decode (a function of the
  compute timeline only) to decodability: the time the uplink added.

and the long-run participation per worker (admitted / resolved offers): its minimum, Jain's
index, and whether the floor ``min_participation`` held (admitted >= p*resolved - p).
Ratios are lyapunov / baseline, paired by seed, with 95% Student-t intervals; a verdict is
"holds" only when the interval is below 1, "does not hold" when above, else "tie".
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from mpicode import launcher
from mpicode.config import Config, defaults, validate_for_size
from mpicode.engine.costs import CostModel, model_partition_cost
from mpicode.engine.uplink import make_uplink
from mpicode.io import safefile
from mpicode.models.stragglers import make_straggler_model
from mpicode.schemes import make_scheme
from mpicode.simulator import Simulator
from mpicode.stats import ci_dict as _ci
from mpicode.stats import jain
from mpicode.wire import result_bytes
from studies.suite import CHANNEL, SCHEDULER_SCHEMES, SCHEMES, Suite
from studies.verdicts import JAIN_MIN

SUBJECT = "lyapunov"
BASELINES = ("fifo", "round-robin", "max-weight", "proportional-fair")
# label -> scheduler options; the subject, the baselines, and lyapunov's airtime variant
VARIANTS: dict[str, dict] = {
    **{b: {"scheduler": b} for b in BASELINES},
    "lyapunov": {"scheduler": "lyapunov"},
    "lyapunov-airtime": {"scheduler": "lyapunov", "queue_weights": "airtime"},
}
SCENARIO = {"stragglers": "shifted-exp", "shift": 1.0, "mu": 1.0}
METRICS = ("time_to_target_s", "mean_iter_s", "mean_link_s", "mean_comm_s")
TARGET_AT = 0.8  # the loss target: uncoded+fifo's loss at this fraction of the iterations
# the MPI subset: the coded schemes (with uncoded, lyapunov *is* max-weight: nothing to hold)
MPI_SCHEMES = ("cyclic", "two-stage")


def options(scheme: str, variant: str, seed: int, iterations: int, quick: bool) -> dict:
    """A cell's configuration options (over the package defaults)."""
    s = Suite.make(quick)
    return {**s.comm_dataset.options, **SCENARIO, **CHANNEL, **SCHEMES[scheme],
            **VARIANTS[variant], "delay_unit": s.comm_delay_unit, "seed": seed,
            "iterations": iterations}


def config(opts: dict, N: int, **extra):
    v = dict(defaults().values)
    v.update(quiet=True, **extra)
    v.update(opts)
    return validate_for_size(Config(v), N)


def target_iteration(iterations: int) -> int:
    return max(0, int(TARGET_AT * iterations) - 1)


def link_s(scheme, tasks: dict, t_wait: float) -> float:
    """``t_wait`` minus the earliest moment the ready messages (``tasks["t_ready"]``, in the
    order of ``scheme.tasks``) would have decoded: a binary search over the ready prefixes
    (decodability only grows with the set)."""
    ids = np.asarray(list(scheme.tasks), np.int64)
    ready = np.asarray(tasks["t_ready"], float)
    ok = np.isfinite(ready)
    ids, ready = ids[ok], ready[ok]
    order = np.argsort(ready, kind="stable")
    ids, ready = ids[order], ready[order]
    if not len(ids) or not scheme.decodable_with({int(t) for t in ids}):
        return math.nan
    lo, hi = 0, len(ids) - 1  # the smallest prefix [0, hi] that decodes
    while lo < hi:
        mid = (lo + hi) // 2
        if scheme.decodable_with({int(t) for t in ids[:mid + 1]}):
            hi = mid
        else:
            lo = mid + 1
    return float(t_wait - ready[hi])


def floor_held(sched) -> bool:
    """The participation floor of coding-aware admission: admitted >= p*resolved - p per
    worker (what the virtual queue P guarantees); baselines admit everything."""
    p = float(getattr(sched, "p_min", 0.0))
    resolved = sched.n_admitted + sched.n_left_out
    return bool(np.all(sched.n_admitted >= p * resolved - p - 1e-9))


def cell_metrics(per_it: dict, sched, k_target: int) -> dict:
    """One run's figures from its per-iteration lists (iter_s, t_end, comm_s, link_s,
    loss: NaN where not computed)."""
    it = np.asarray(per_it["iter_s"])
    t_end = np.asarray(per_it["t_end"])
    part = sched.participation()
    return {"time_to_target_s": float(t_end[min(k_target, len(t_end) - 1)] - t_end[0]
                                      + it[0]),
            "mean_iter_s": float(it.mean()), "p95_iter_s": float(np.percentile(it, 95)),
            "mean_comm_s": float(np.nanmean(per_it["comm_s"])),
            "mean_link_s": float(np.nanmean(per_it["link_s"])),
            "part_min": float(part.min()), "part_jain": float(jain(part)),
            "floor_held": floor_held(sched)}


def simulate(opts: dict, N: int) -> dict:
    """One cell in virtual time (the simulator; timing only)."""
    cfg = config(opts, N, compute="none")
    K = cfg.partitions
    scheme = make_scheme(cfg, N, K)
    uplink = make_uplink(cfg, N, scheme)
    sim = Simulator(scheme, make_straggler_model(cfg, N, K), n_workers=N,
                    partition_cost=model_partition_cost(cfg.samples / K, cfg.features),
                    uplink=uplink, msg_bytes=result_bytes(cfg.features),
                    costs=CostModel.from_config(cfg))  # rank 0 charged (issue 23)
    per: dict = {k: [] for k in ("iter_s", "t_end", "comm_s", "link_s")}
    for k in range(cfg.iterations):
        out = sim.iteration(k)
        row = out["row"]
        per["iter_s"].append(row["t_end"] - row["t_start"])
        per["t_end"].append(row["t_end"])
        per["comm_s"].append(row["comm_s"])
        per["link_s"].append(link_s(scheme, out["tasks"], row["wait_s"]))
    return cell_metrics(per, uplink.sched, target_iteration(cfg.iterations))


def run_virtual(schemes, variants, seeds: int, N: int, iterations: int, quick: bool,
                log=print) -> list[dict]:
    """One row per (scheme, variant) with per-seed lists of every metric."""
    rows = []
    for scheme in schemes:
        for v in variants:
            per = [simulate(options(scheme, v, 100 + k, iterations, quick), N)
                   for k in range(seeds)]
            rows.append({"block": "virtual", "scheme": scheme, "scheduler": v, "N": N,
                         **{k: [p[k] for p in per] for k in per[0]}})
        log(f"  comm study (virtual time): {scheme}: {len(variants)} schedulers x {seeds} "
            f"seeds")
    return rows


def run_mpi(schemes, variants, seeds: int, iterations: int, quick: bool, log=print,
            timeout_s: int = 600) -> list[dict]:
    """The MPI block as one job (``N + 1`` ranks, :mod:`studies.comm_mpi`),
    rows like :func:`run_virtual`'s."""
    N = Suite.make(quick).workers
    args = ["studies.comm_mpi", "--inner", "--seeds", str(seeds),
            "--iterations", str(iterations), "--schemes", *schemes, "--variants", *variants]
    r = launcher.launch(args + (["--quick"] if quick else []), N + 1, timeout_s=timeout_s,
                        capture=True)
    if r.returncode:
        raise SystemExit(f"comm study: the MPI job failed (exit code {r.returncode})")
    cells = [json.loads(ln[5:]) for ln in r.stdout.splitlines() if ln.startswith("CELL ")]
    rows = []
    for scheme in schemes:
        for v in variants:
            per = sorted((c for c in cells if c["scheme"] == scheme and c["scheduler"] == v),
                         key=lambda c: c["seed"])
            if per:
                keys = [k for k in per[0] if k not in ("scheme", "scheduler", "seed")]
                rows.append({"block": "mpi", "scheme": scheme, "scheduler": v, "N": N,
                             **{k: [c[k] for c in per] for k in keys}})
    log(f"  comm study (MPI runtime): {len(cells)} cells")
    return rows


def verdict(ci: dict) -> str:
    if ci["hi"] < 1:
        return "holds"
    if ci["lo"] > 1:
        return "does not hold"
    return "tie"


def compare(rows: list[dict], subject: str = SUBJECT) -> list[dict]:
    """Per (block, scheme, baseline): the subject's ratio on every metric, paired by seed,
    with its CI and verdict, and the subject's fairness."""
    by: dict[tuple, dict] = {}
    for r in rows:
        by.setdefault((r["block"], r["scheme"]), {})[r["scheduler"]] = r
    out = []
    for (block, scheme), cells in by.items():
        if subject not in cells:
            continue
        sub = cells[subject]
        for base in (b for b in cells if b != subject):
            c = {"block": block, "scheme": scheme, "subject": subject, "baseline": base,
                 "seeds": len(sub["mean_iter_s"])}
            for m in METRICS:
                ratio = _ci(np.asarray(sub[m]) / np.asarray(cells[base][m]))
                c[m] = {"ratio": ratio, "verdict": verdict(ratio),
                        "subject": float(np.mean(sub[m])),
                        "baseline": float(np.mean(cells[base][m]))}
            c.update(part_min=float(np.min(sub["part_min"])),
                     part_jain=_ci(sub["part_jain"]), floor_held=bool(all(sub["floor_held"])))
            out.append(c)
    return out


def summarise(cmp: list[dict], block: str) -> dict:
    """Claim 2 in one block: per baseline, the time-to-target and link-time verdicts over the
    schemes; overall "holds" when lyapunov is sooner than fifo and round-robin for every
    scheme (interval below 1) with its fairness kept, "does not hold" when an interval is
    above 1 there, else "mixed"."""
    rows = [c for c in cmp if c["block"] == block]
    if not rows:
        return {}
    per = {}
    for base in dict.fromkeys(c["baseline"] for c in rows):
        vs = [c for c in rows if c["baseline"] == base]
        per[base] = {m: [c[m]["verdict"] for c in vs] for m in METRICS}
    fair = all(c["floor_held"] and c["part_jain"]["mean"] >= JAIN_MIN for c in rows)
    need = [v for b in ("fifo", "round-robin") if b in per for v in per[b]["time_to_target_s"]]
    if need and all(v == "holds" for v in need) and fair:
        overall = "holds"
    elif any(v == "does not hold" for v in need) or not fair:
        overall = "does not hold"
    else:
        overall = "mixed"
    return {"verdict": overall, "fair": fair, "per_baseline": per}



# ---- the study ----------------------------------------------------------------------------
def plan(quick: bool) -> dict:
    """Sizes of both blocks (full: 138 s on the loaded 2-core machine, 22 s of it virtual)."""
    s = Suite.make(quick)
    if quick:
        return {"N": s.workers, "seeds": 3, "iterations": 6, "schemes": SCHEDULER_SCHEMES,
                "variants": tuple(VARIANTS), "mpi_seeds": 2, "mpi_iterations": 4,
                "mpi_schemes": ("two-stage",), "mpi_variants": ("max-weight", SUBJECT)}
    return {"N": s.workers, "seeds": 8, "iterations": s.comm_iterations,
            "schemes": SCHEDULER_SCHEMES, "variants": tuple(VARIANTS), "mpi_seeds": 3,
            "mpi_iterations": 15, "mpi_schemes": MPI_SCHEMES, "mpi_variants": tuple(VARIANTS)}


def suite(quick: bool, log=print, mpi: bool = True) -> tuple[list[dict], list[dict], dict]:
    """The study ``make experiments`` runs: (rows, comparisons, meta). ``mpi`` adds the MPI
    block (one ``mpiexec`` job; run it under ``flock /tmp/mpicode-bench.lock``)."""
    p = plan(quick)
    t0 = time.perf_counter()
    rows = run_virtual(p["schemes"], p["variants"], p["seeds"], p["N"], p["iterations"],
                       quick, log)
    meta = {**{k: list(v) if isinstance(v, tuple) else v for k, v in p.items()},
            "virtual_s": time.perf_counter() - t0, "scenario": SCENARIO, "channel": CHANNEL,
            "target_at": TARGET_AT, "mpi": mpi}
    if mpi:
        t1 = time.perf_counter()
        rows += run_mpi(p["mpi_schemes"], p["mpi_variants"], p["mpi_seeds"],
                        p["mpi_iterations"], quick, log)
        meta["mpi_s"] = time.perf_counter() - t1
    cmp = compare(rows)
    meta["claim2"] = {b: summarise(cmp, b) for b in ("virtual", "mpi") if b == "virtual" or mpi}
    meta["wall_s"] = time.perf_counter() - t0
    return rows, cmp, meta


def table(cmp: list[dict], block: str) -> list[str]:
    """Markdown rows of one block: lyapunov / baseline per scheme, every metric."""
    head = ("| scheme | vs | time to target [95% CI] | verdict | mean iteration [95% CI] | "
            "link time [95% CI] | verdict | comm_s [95% CI] | part. min | Jain | floor |")
    out = [head, "|---" * 11 + "|"]
    for c in (c for c in cmp if c["block"] == block):
        f = {m: c[m]["ratio"] for m in METRICS}
        out.append(
            f"| {c['scheme']} | {c['baseline']} | {_fmt(f['time_to_target_s'])} | "
            f"{c['time_to_target_s']['verdict']} | {_fmt(f['mean_iter_s'])} | "
            f"{_fmt(f['mean_link_s'])} | {c['mean_link_s']['verdict']} | "
            f"{_fmt(f['mean_comm_s'])} | {c['part_min']:.2f} | {c['part_jain']['mean']:.3f} | "
            f"{'held' if c['floor_held'] else 'broken'} |")
    return out


def markdown(cmp: list[dict], meta: dict) -> str:
    """The study as a Markdown section: set-up, verdicts and one table per block."""
    lines = ["## Claim 2 with confidence intervals (uplink schedulers)", "",
             f"Near/far Rayleigh uplink ({', '.join(f'{k}={v}' for k, v in CHANNEL.items())}), "
             f"N = {meta['N']}, light shifted-exponential compute stragglers. Virtual time: "
             f"{meta['seeds']} seeds x {meta['iterations']} iterations, schemes "
             f"{', '.join(meta['schemes'])}. Ratios are lyapunov / baseline paired by seed "
             "(< 1: lyapunov better), 95% Student-t intervals; a verdict holds only when the "
             "interval is below 1. Time to target: the loss uncoded+fifo has at "
             f"{TARGET_AT:.0%} of the iterations. Link time: from the moment the ready "
             "messages could decode to decodability; comm_s: from the last used message's "
             "readiness (not comparable across schedulers, docs/design.md 4.4a)."]
    if meta.get("mpi"):
        lines.append(f"MPI runtime: {meta['mpi_seeds']} seeds x {meta['mpi_iterations']} "
                     f"iterations, schemes {', '.join(meta['mpi_schemes'])}, real sleeps and "
                     "the wall-clock slot clock.")
    for block, c2 in meta["claim2"].items():
        lines += ["", f"### {block}: claim 2 {c2['verdict']}", "", *table(cmp, block)]
    return "\n".join(lines) + "\n"


def _fmt(ci: dict) -> str:
    return f"{ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.comm_study",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small grid, for tests")
    ap.add_argument("--no-mpi", action="store_true", help="virtual time only")
    ap.add_argument("--json", default=None, metavar="FILE", help="write rows and comparisons")
    ap.add_argument("--md", default=None, metavar="FILE", help="write the Markdown tables")
    a = ap.parse_args(argv)
    rows, cmp, meta = suite(a.quick, log=lambda s: print(s, file=sys.stderr, flush=True),
                            mpi=not a.no_mpi)
    for block in meta["claim2"]:
        print(f"\n{block}: lyapunov / baseline (ratios < 1: lyapunov better), "
              f"claim 2 {meta['claim2'][block]['verdict'].upper()}")
        print("\n".join(table(cmp, block)))
    print(f"\ncomm study: {len(rows)} rows in {meta['wall_s']:.0f} s", file=sys.stderr)
    if a.json:
        safefile.write_text(a.json, json.dumps({"rows": rows, "compare": cmp, "meta": meta},
                                               indent=1, default=float))
    if a.md:
        safefile.write_text(a.md, markdown(cmp, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())

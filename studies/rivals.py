"""two-stage against the field's newest rivals, in the field's metric (no MPI).

::

    python -m studies.rivals --quick                  # N = 8, 2 seeds, seconds
    python -m studies.rivals --n 64 256 --seeds 5 --json rivals.json

The simulator half of the rivals' comparison (the MPI half, N = 8, is the suite's seeded
comparison: :func:`studies.seeded.rivals`). Every cell is (scenario, N,
placement, scheme, seed): a simulation that trains for real (logistic regression on the
synthetic data set, 64 N samples, so that the inexact ``dropcompute`` has a time to the
target too), with the rank-0 cost charged when the build has the cost model's coordinator
option (``--coordinator-cost model``; otherwise the zero cost model, said in the output).
Scenarios are the study's (five synthetic models and the two shipped real traces, realised
per seed: :data:`studies.study.SCENARIOS`); a seed is one straggler realisation
that every scheme of the cell sees.

Per cell and seed: the time to the loss target (the loss ``uncoded`` has after half of the
iterations, so an inexact scheme has the other half to reach it; ``inf`` if it never does),
the mean iteration time, ``S`` (slowdown versus the straggler-free replay, ``ideal_s``),
``removed`` (the fraction of uncoded's slowdown removed, uncoded of the same seed), the load,
result messages per worker and iteration, and the coverage. Per (scenario, N, placement):
every scheme's time-to-target ratio to ``two-stage``, paired by seed, with its mean and 95%
Student-t interval; the headline is ``two-stage / partial-gc`` (:func:`headline`), reported
whichever way it comes out.

Placements: ``two-stage`` and ``speed-aware`` run under ``shared`` and ``replicated:2``;
``uncoded``, ``partial-gc`` (its chunks on s + 1 = 2 workers, the storage of
``replicated:2``) and ``dropcompute`` have a fixed layout (one run, shown under both);
``hetero-gc`` needs every worker to read any partition, so it runs under ``shared`` only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from mpicode.config import by_name
from mpicode.engine.costs import CostModel, model_partition_cost
from mpicode.numerics.problem import Problem
from mpicode.schemes import make_scheme
from mpicode.simulator import Simulator
from mpicode.stats import ci_dict as _ci
from mpicode.wire import result_bytes
from studies import study

SUBJECT = "two-stage"
HEADLINE = "partial-gc"
BASE = "uncoded"            # the S of the removed fraction
SCHEMES: dict[str, dict] = {
    "uncoded": {"scheme": "uncoded"},
    "two-stage": {"scheme": "two-stage", "stragglers_tolerated": 1},
    "partial-gc": {"scheme": "partial-gc", "stragglers_tolerated": 1},
    "hetero-gc": {"scheme": "hetero-gc", "stragglers_tolerated": 1},
    "speed-aware": {"scheme": "speed-aware"},
    "dropcompute": {"scheme": "dropcompute", "dc_tune_iterations": 5},
}
FIXED = ("uncoded", "partial-gc", "dropcompute")   # one layout: shown under both placements
SHARED_ONLY = ("hetero-gc",)
PLACEMENTS = ("shared", "replicated:2")
TARGET_AT = 0.5       # the loss target: uncoded's loss after this fraction of the iterations
# the full run: N, seeds, iterations per N
FULL = ([64, 256], 5, {64: 40, 256: 24})
QUICK = ([8], 2, 12)


def coordinator_options() -> dict:
    """The rank-0 cost model when this build has it (issue 23's --coordinator-cost)."""
    return {"coordinator_cost": "model"} if "coordinator_cost" in by_name() else {}


def measure(opts: dict, N: int, iterations: int) -> dict:
    """One cell and seed: per-iteration loss and end time, and the run's summary metrics."""
    cfg = study.config({**opts, "iterations": iterations, "compute": "real",
                        "dataset": "synthetic", "model": "logistic", "lr": 0.5,
                        **coordinator_options()}, N)
    K = cfg.partitions
    problem = Problem.from_config(cfg, K)
    cost = model_partition_cost(cfg.samples / K, cfg.features)
    sim = Simulator(make_scheme(cfg, N, K), study.straggler_model(cfg, N, K), n_workers=N,
                    partition_cost=cost, problem=problem, lr=cfg.lr,
                    msg_bytes=result_bytes(problem.dim), costs=CostModel.from_config(cfg))
    rows = []
    for it in range(iterations):
        out = sim.iteration(it)
        r, tk = out["row"], out["tasks"]
        r["msgs"] = float(np.sum(tk["cancelled"] == 0)) / N
        r["loss"] = problem.evaluate(sim.w)["loss"]   # after the step, as the run log's
        rows.append(r)
    dur = np.array([r["t_end"] - r["t_start"] for r in rows])
    ideal = dur - np.array([r["wait_s"] - r["ideal_s"] for r in rows])
    return {"loss": [float(r["loss"]) for r in rows], "t_end": [float(r["t_end"]) for r in rows],
            "mean_iter_s": float(dur.mean()), "S": float(dur.sum() / ideal.sum()),
            "load": float(np.mean([r["load"] for r in rows])),
            "msgs_per_worker": float(np.mean([r["msgs"] for r in rows])),
            "coverage": float(np.mean([r["coverage"] for r in rows]))}


def time_to(cell: dict, target: float) -> float:
    """The run's time (its clock) at the end of the first iteration with loss <= target."""
    for loss, t in zip(cell["loss"], cell["t_end"], strict=True):
        if loss <= target * (1 + 1e-9):
            return t
    return math.inf


def placements_of(label: str, placements=PLACEMENTS) -> tuple:
    return ("shared",) if label in SHARED_ONLY else tuple(placements)


def run(ns, seeds: int, iterations, scenarios=None, schemes=None, placements=PLACEMENTS,
        log=print) -> list[dict]:
    """One row per (scenario, N, placement, scheme) with per-seed lists of every metric."""
    schemes = study.available(schemes or SCHEMES)
    rows = []
    for scen in scenarios or study.SCENARIOS:
        for N in ns:
            its = study.iterations_for(iterations, N)
            cells: dict[tuple, list] = {}
            for label in schemes:
                for pl in placements_of(label, placements):
                    key = (label, "fixed" if label in FIXED else pl)
                    if key not in cells:
                        opts = {**study.SCENARIOS[scen], **schemes[label]}
                        if label not in FIXED:
                            opts["placement"] = pl
                        cells[key] = [measure({**opts, "seed": 100 + k}, N, its)
                                      for k in range(seeds)]
            base = cells.get((BASE, "fixed"))
            for (label, pl), per in cells.items():
                for place in (placements if pl == "fixed" else (pl,)):
                    rows.append(_row(scen, N, place, label, per, base, its))
            log(f"  rivals: {scen} N={N}: {len(cells)} cells x {seeds} seeds x {its} "
                "iterations")
    return rows


def _row(scen, N, placement, label, per, base, its) -> dict:
    k = max(1, int(round(TARGET_AT * its))) - 1
    targets = [b["loss"][k] for b in base] if base else [math.nan] * len(per)
    t = [time_to(c, tg) for c, tg in zip(per, targets, strict=True)]
    s_base = [b["S"] for b in base] if base else [math.nan] * len(per)
    removed = [(su - c["S"]) / (su - 1) if su > 1 else math.nan
               for c, su in zip(per, s_base, strict=True)]
    return {"scenario": scen, "N": N, "placement": placement, "scheme": label,
            "t_target": t, "removed": removed,
            **{m: [c[m] for c in per] for m in ("mean_iter_s", "S", "load", "msgs_per_worker",
                                                "coverage")}}


def ratio(a, b) -> dict:
    """a_k / b_k paired by seed: mean and 95% interval (NaN when a ratio is not finite)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.asarray(a, float) / np.asarray(b, float)
    if not np.isfinite(r).all():
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "never": int(
            np.sum(~np.isfinite(np.asarray(a, float))))}
    return _ci(r)


def table(rows: list[dict]) -> list[dict]:
    """Every scheme's time-to-target ratio to two-stage per (scenario, N, placement), with
    S, removed, load and messages (means and intervals)."""
    by: dict[tuple, dict] = {}
    for r in rows:
        by.setdefault((r["scenario"], r["N"], r["placement"]), {})[r["scheme"]] = r
    out = []
    for (scen, N, pl), cell in by.items():
        if SUBJECT not in cell:
            continue
        ref = cell[SUBJECT]["t_target"]
        for label, r in cell.items():
            out.append({"scenario": scen, "N": N, "placement": pl, "scheme": label,
                        "vs_two_stage": ratio(r["t_target"], ref),
                        "S": _ci(r["S"]), "removed": _ci(r["removed"]),
                        "load": float(np.mean(r["load"])),
                        "msgs_per_worker": float(np.mean(r["msgs_per_worker"])),
                        "coverage": float(np.mean(r["coverage"]))})
    return out


def headline(rows: list[dict]) -> list[dict]:
    """two-stage / partial-gc time to target, paired by seed, per (scenario, N, placement):
    below 1 two-stage is sooner; the verdict names a direction only when the interval
    excludes 1."""
    by: dict[tuple, dict] = {}
    for r in rows:
        by.setdefault((r["scenario"], r["N"], r["placement"]), {})[r["scheme"]] = r
    out = []
    for (scen, N, pl), cell in by.items():
        if SUBJECT in cell and HEADLINE in cell:
            c = ratio(cell[SUBJECT]["t_target"], cell[HEADLINE]["t_target"])
            verdict = ("n/a" if not math.isfinite(c["lo"]) else "two-stage sooner"
                       if c["hi"] < 1 else "partial-gc sooner" if c["lo"] > 1 else "tie")
            base = cell.get(BASE)
            out.append({"scenario": scen, "N": N, "placement": pl, "ratio": c,
                        "verdict": verdict,
                        **{f"{k}_{s}": float(np.nanmean(cell[n][k]))
                           for s, n in (("ts", SUBJECT), ("pgc", HEADLINE))
                           for k in ("S", "removed", "load", "msgs_per_worker")},
                        # what the mechanism sentence reads: each one's straggler-free
                        # iteration (mean iteration / S) and how uncoded fares here
                        **{f"ideal_iter_s_{s}": float(np.nanmean(
                            np.asarray(cell[n]["mean_iter_s"]) / np.asarray(cell[n]["S"])))
                           for s, n in (("ts", SUBJECT), ("pgc", HEADLINE))},
                        "S_uncoded": float(np.nanmean(base["S"])) if base else math.nan,
                        "uncoded_vs_ts": ratio(base["t_target"], cell[SUBJECT]["t_target"])
                        ["mean"] if base else math.nan})
    return out


def tally(head: list[dict]) -> str:
    """One sentence: how the headline cells came out, and, where partial-gc was sooner, what
    the logs say about why (its S, load and messages against two-stage's)."""
    n = {v: sum(h["verdict"] == v for h in head)
         for v in ("two-stage sooner", "partial-gc sooner", "tie", "n/a")}
    text = (f"Of {len(head)} cells: two-stage sooner in {n['two-stage sooner']}, partial-gc "
            f"sooner in {n['partial-gc sooner']}, ties (the interval contains 1) in {n['tie']}"
            + (f", no interval in {n['n/a']}" if n["n/a"] else "") + ".")
    won = [h for h in head if h["verdict"] == "partial-gc sooner"]
    if won:
        text += " " + why_partial_gc_wins(won)
    return text


def why_partial_gc_wins(won: list[dict]) -> str:
    """The mechanism, read from the cells where partial-gc was sooner: whether the
    stragglers left anything to remove (uncoded's S), whose straggler-free iteration is the
    shorter (mean iteration / S), and the coordination each pays (result messages per
    worker, which rank 0 handles one decision each)."""
    m = {k: float(np.nanmean([h[k] for h in won])) for k in (
        "S_pgc", "S_ts", "load_pgc", "load_ts", "S_uncoded", "uncoded_vs_ts",
        "ideal_iter_s_ts", "ideal_iter_s_pgc", "msgs_per_worker_ts", "msgs_per_worker_pgc")}
    text = ("Where partial-gc is sooner (" + ", ".join(
        f"{h['scenario']} N={h['N']} {h['placement']}" for h in won) + f"), its S is "
        f"{m['S_pgc']:.2f} against two-stage's {m['S_ts']:.2f} at load {m['load_pgc']:.2f} "
        f"against {m['load_ts']:.2f}, so it does not win by removing more of the straggler "
        f"slowdown. It wins on the straggler-free iteration: two-stage's is "
        f"{m['ideal_iter_s_ts'] * 1e3:.1f} ms against partial-gc's "
        f"{m['ideal_iter_s_pgc'] * 1e3:.1f} ms, with {m['msgs_per_worker_ts']:.2f} result "
        f"messages per worker against {m['msgs_per_worker_pgc']:.2f}, each a decision rank 0 "
        "is charged for (two-stage's dispatch waits on them).")
    also = [h for h in won if h["uncoded_vs_ts"] < 1]
    if also:
        u = [h["uncoded_vs_ts"] for h in also]
        su = [h["S_uncoded"] for h in also]
        text += (f" In {len(also)} of these {len(won)} cells uncoded too is sooner than "
                 f"two-stage ({min(u):.2f}-{max(u):.2f} of its time; uncoded's S "
                 f"{min(su):.2f}-{max(su):.2f}): the stragglers leave less to remove than "
                 "two-stage's coordination costs, which grows with N (rank 0 is charged per "
                 "decision: saturation.md has each scheme's saturation N).")
    return text


def _fmt(c: dict) -> str:
    if not math.isfinite(c.get("mean", math.nan)):
        return "never" if c.get("never") else "-"
    return f"{c['mean']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]"


def markdown(tab: list[dict], head: list[dict], meta: dict) -> str:
    """The rivals' tables as Markdown (results/rivals.md)."""
    lines = ["# two-stage against the rivals (simulator)", "",
             f"N = {meta['N']}, {meta['seeds']} seeds, iterations {meta['iterations']}; "
             f"coordinator cost: {meta['coordinator'] or 'zero (option not in this build)'}; "
             "time to target = time to uncoded's loss at half of the iterations (same seed)."
             + (f" Made by `{meta['command']}`" if meta.get("command") else "")
             + (f" in {meta['wall_s']:.0f} s (the simulator half)." if meta.get("wall_s")
                else ""),
             "", "## Headline: two-stage / partial-gc, time to target (95% CI)", "",
             tally(head), "",
             "| scenario | N | placement | two-stage / partial-gc | verdict | S two-stage | "
             "S partial-gc | removed two-stage | removed partial-gc | load ts / pgc | "
             "msgs/worker ts / pgc |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for h in head:
        lines.append(f"| {h['scenario']} | {h['N']} | {h['placement']} | {_fmt(h['ratio'])} | "
                     f"{h['verdict']} | {h['S_ts']:.3f} | {h['S_pgc']:.3f} | "
                     f"{h['removed_ts']:.3f} | {h['removed_pgc']:.3f} | "
                     f"{h['load_ts']:.2f} / {h['load_pgc']:.2f} | "
                     f"{h['msgs_per_worker_ts']:.2f} / {h['msgs_per_worker_pgc']:.2f} |")
    lines += ["", "## Every scheme: time to target / two-stage's (95% CI), S, removed, load, "
              "messages", "",
              "| scenario | N | placement | scheme | vs two-stage | S | removed | load | "
              "msgs/worker | coverage |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in tab:
        lines.append(f"| {r['scenario']} | {r['N']} | {r['placement']} | {r['scheme']} | "
                     f"{_fmt(r['vs_two_stage'])} | {r['S']['mean']:.3f} | "
                     f"{r['removed']['mean']:.3f} | {r['load']:.2f} | "
                     f"{r['msgs_per_worker']:.2f} | {r['coverage']:.3f} |")
    return "\n".join(lines) + "\n"


def mpi_markdown(rows: list[dict], seeds: int, workers: int) -> str:
    """The MPI half (the suite's seeded comparison, :func:`studies.seeded.rivals`)
    as Markdown: per scenario and placement, every scheme against two-stage."""
    lines = [f"## MPI, N = {workers}: time to the loss target / two-stage's ({seeds} seeds, "
             "95% CI), S, removed, load, messages", "",
             "| scenario | placement | scheme | vs two-stage | two-stage / partial-gc | S | "
             "removed | load | msgs/worker |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        h = r.get("headline")
        head = f"{_fmt(h)} {h['verdict']}" if h else ""
        lines.append(f"| {r['scenario']} | {r['placement']} | {r['scheme']} | "
                     f"{_fmt(r['vs_subject'])} | {head} | {r['S']['mean']:.3f} | "
                     f"{r['removed']['mean']:.3f} | {r['load']:.2f} | "
                     f"{r['msgs_per_worker']:.2f} |")
    return "\n".join(lines) + "\n"


def suite(quick: bool, log=print) -> tuple[list[dict], list[dict], list[dict], dict]:
    """(rows, table, headline, meta) of the simulator half, full or quick."""
    ns, seeds, iterations = QUICK if quick else FULL
    t0 = time.perf_counter()
    rows = run(ns, seeds, iterations, log=log)
    meta = {"N": ns, "seeds": seeds, "iterations": iterations,
            "coordinator": coordinator_options().get("coordinator_cost"),
            "wall_s": time.perf_counter() - t0}
    return rows, table(rows), headline(rows), meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.rivals",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=FULL[0])
    p.add_argument("--seeds", type=int, default=FULL[1])
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--scenarios", nargs="+", choices=list(study.SCENARIOS), default=None)
    p.add_argument("--schemes", nargs="+", choices=list(SCHEMES), default=None)
    p.add_argument("--quick", action="store_true", help="N = 8, 2 seeds, 12 iterations")
    p.add_argument("--json", default=None, metavar="FILE")
    p.add_argument("--md", default=None, metavar="FILE")
    a = p.parse_args(argv)
    ns, seeds, its = QUICK if a.quick else (a.n, a.seeds, a.iterations or FULL[2])
    if isinstance(its, dict) and any(n not in its for n in ns):
        its = 24
    schemes = None if a.schemes is None else {k: SCHEMES[k] for k in a.schemes}
    if schemes is not None:
        schemes = {BASE: SCHEMES[BASE], SUBJECT: SCHEMES[SUBJECT], **schemes}
    t0 = time.perf_counter()
    rows = run(ns, seeds, its, a.scenarios, schemes,
               log=lambda s: print(s, file=sys.stderr, flush=True))
    tab, head = table(rows), headline(rows)
    meta = {"N": ns, "seeds": seeds, "iterations": its,
            "coordinator": coordinator_options().get("coordinator_cost"),
            "wall_s": time.perf_counter() - t0}
    text = markdown(tab, head, meta)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "table": tab, "headline": head, "meta": meta}, f,
                      indent=1, default=float)
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The seeded scheme comparison in the simulator, with confidence intervals (no MPI).

::

    python -m mpicode.experiments.study --quick            # a small grid, a few seconds
    python -m mpicode.experiments.study --n 8 64 --seeds 5 --json study.json

Every cell is (scenario, N, placement, scheme, seed): a timing-only simulation
(``--compute none``; for exact schemes the model and the loss trajectory do not depend on the
scheme, so time to any loss target is the time to the same iteration, and the ratio of mean
iteration times is the ratio of times to the target). Seeds are straggler realisations: every
scheme of a (scenario, N, placement, seed) sees the same draws. Per cell: mean and p95
iteration time, mean computation load, result messages per worker and iteration, and the
clairvoyant oracle's time where the log has it (``vs_oracle`` = mean iteration time / mean
oracle time). Per (scenario, N, placement): the ratio of two-stage's mean iteration time to the
best other exact scheme's, paired by seed, with its mean and 95% Student-t interval; the
verdict is "faster" or "slower" only when the interval excludes 1, else "tie".

Placement: ``shared`` lets the flexible schemes (two-stage, speed-aware, self-scheduling) run
any partition anywhere; ``replicated:2`` (the storage frc and cyclic with s = 1 pay) lets a
partition run only on its two holders. frc and cyclic are the same under both.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from mpicode.stats import mean_ci

SCENARIOS: dict[str, dict] = {
    "shifted-exp": {"stragglers": "shifted-exp", "shift": 1.0, "mu": 1.0},
    "bimodal": {"stragglers": "bimodal", "slow_fraction": 0.25, "slowdown": 5.0},
    "exp-per-iteration": {"stragglers": "exp-per-iteration", "delay_mean": 2.0},
    "pareto": {"stragglers": "pareto", "pareto_shape": 2.5},
    "gilbert-elliott": {"stragglers": "gilbert-elliott", "ge_p_bad": 0.1, "ge_p_good": 0.5,
                        "slowdown": 5.0},
}
# label -> options; the placement is added per cell where the scheme takes one
SCHEMES: dict[str, dict] = {
    "uncoded": {"scheme": "uncoded"},
    "speed-aware": {"scheme": "speed-aware"},
    "frc": {"scheme": "frc", "stragglers_tolerated": 1},
    "cyclic": {"scheme": "cyclic", "stragglers_tolerated": 1},
    "self-scheduling": {"scheme": "self-scheduling"},
    "two-stage": {"scheme": "two-stage", "stragglers_tolerated": 1},
    "two-stage (paper)": {"scheme": "two-stage", "stragglers_tolerated": 1, "rho": 0.75,
                          "stage2_tolerance": 1, "replan": 0, "stage1_chunks": 1},
    "two-stage (single stage 2)": {"scheme": "two-stage", "stragglers_tolerated": 1,
                                   "replan": 0, "stage1_chunks": 1},
}
FIXED_PLACEMENT = ("uncoded", "frc", "cyclic")  # their layout is the code itself
SUBJECT = "two-stage"
PLACEMENTS = ("shared", "replicated:2")


def available(schemes: dict[str, dict]) -> dict[str, dict]:
    """The variants whose scheme is registered here (self-scheduling may be absent)."""
    from mpicode.schemes import SCHEMES as REGISTERED
    return {k: v for k, v in schemes.items() if v["scheme"] in REGISTERED}


def config(opts: dict, N: int):
    from mpicode.config import Config, defaults, validate_for_size
    v = dict(defaults().values)
    v.update(samples=64 * N, features=50, compute="none", delay_unit=0.02, quiet=True)
    v.update(opts)
    return validate_for_size(Config(v), N)


def measure(opts: dict, N: int, iterations: int) -> dict:
    """One simulated cell: per-iteration times, load, messages, oracle (if logged)."""
    from mpicode.models.stragglers import make_straggler_model
    from mpicode.schemes import make_scheme
    from mpicode.simulator import Simulator, model_partition_cost
    cfg = config(opts, N)
    K = cfg.partitions
    cost = model_partition_cost(cfg.samples / K, cfg.features)
    sim = Simulator(make_scheme(cfg, N, K), make_straggler_model(cfg, N, K), n_workers=N,
                    partition_cost=cost)
    dur, load, msgs, oracle = [], [], [], []
    for it in range(iterations):
        out = sim.iteration(it)
        row, tk = out["row"], out["tasks"]
        dur.append(row["t_end"] - row["t_start"])
        load.append(row["load"])
        msgs.append(float(np.sum(np.isfinite(tk["t_ready"]) & (tk["cancelled"] == 0))) / N)
        oracle.append(row.get("oracle_s", math.nan))
    dur, oracle = np.asarray(dur), np.asarray(oracle, float)
    return {"mean_iter_s": float(dur.mean()), "p95_iter_s": float(np.percentile(dur, 95)),
            "load": float(np.mean(load)), "msgs_per_worker": float(np.mean(msgs)),
            "oracle_s": float(np.mean(oracle)) if np.isfinite(oracle).all() else math.nan}


def cell_options(label: str, scen: str, placement: str, seed: int) -> dict:
    opts = {**SCENARIOS[scen], **SCHEMES[label], "seed": seed}
    if label not in FIXED_PLACEMENT:
        opts["placement"] = placement
    return opts


def run(ns, seeds: int, iterations: int, scenarios=None, placements=PLACEMENTS,
        schemes=None, log=print) -> list[dict]:
    """Every cell's metrics: one row per (scenario, N, placement, scheme), per-seed lists."""
    schemes = available(schemes or SCHEMES)
    rows = []
    for scen in scenarios or SCENARIOS:
        for N in ns:
            for placement in placements:
                for label in schemes:
                    per = [measure(cell_options(label, scen, placement, 100 + k), N, iterations)
                           for k in range(seeds)]
                    rows.append({"scenario": scen, "N": N, "placement": placement,
                                 "scheme": label,
                                 **{k: [p[k] for p in per] for k in per[0]}})
                log(f"  study: {scen} N={N} {placement}: {len(schemes)} schemes x {seeds} seeds")
    return rows


def _ci(x) -> dict:
    m, lo, hi = mean_ci(x)
    return {"mean": m, "lo": lo, "hi": hi}


def verdict(ci: dict) -> str:
    if ci["hi"] < 1:
        return "faster"
    if ci["lo"] > 1:
        return "slower"
    return "tie"


def compare(rows: list[dict], subject: str = SUBJECT) -> list[dict]:
    """Per (scenario, N, placement): the subject against the best other exact scheme (by
    mean over seeds), the ratio paired by seed, its 95% CI and the verdict; vs_oracle."""
    from mpicode.schemes import SCHEMES as REGISTERED
    groups: dict[tuple, dict] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["N"], r["placement"]), {})[r["scheme"]] = r
    out = []
    for (scen, N, placement), by in groups.items():
        if subject not in by:
            continue
        others = {k: v for k, v in by.items() if k != subject and not k.startswith(subject)
                  and REGISTERED[SCHEMES[k]["scheme"]].exact}
        best = min(others, key=lambda k: np.mean(others[k]["mean_iter_s"]))
        a = np.asarray(by[subject]["mean_iter_s"])
        b = np.asarray(others[best]["mean_iter_s"])
        ratio = _ci(a / b)
        sub = by[subject]
        out.append({"scenario": scen, "N": N, "placement": placement, "best_other": best,
                    "subject_s": _ci(a), "best_other_s": _ci(b), "ratio": ratio,
                    "verdict": verdict(ratio), "subject_load": float(np.mean(sub["load"])),
                    "subject_msgs": float(np.mean(sub["msgs_per_worker"])),
                    "subject_p95_s": float(np.mean(sub["p95_iter_s"])),
                    "vs_oracle": _ci(a / np.asarray(sub["oracle_s"]))})
    return out


def suite(quick: bool, log=print) -> tuple[list[dict], list[dict], dict]:
    """The comparison ``make experiments`` runs: (rows, comparisons, meta)."""
    ns, seeds, iterations = ([8], 2, 5) if quick else ([8, 64], 5, 20)
    rows = run(ns, seeds, iterations, log=log)
    others = [k for k in available(SCHEMES) if not k.startswith(SUBJECT)]
    meta = {"N": ns, "seeds": seeds, "iterations": iterations, "others": others,
            "scenarios": list(SCENARIOS), "placements": list(PLACEMENTS)}
    return rows, compare(rows), meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mpicode.experiments.study",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[8, 64])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=None)
    p.add_argument("--placements", nargs="+", default=list(PLACEMENTS), metavar="P",
                   help="placements to run (shared, replicated:R)")
    p.add_argument("--schemes", nargs="+", choices=list(SCHEMES), default=None, metavar="S",
                   help=f"scheme labels to run (default: all; {SUBJECT!r} is compared "
                        "against the best of the others given)")
    p.add_argument("--quick", action="store_true", help="N = 8, 3 seeds, 8 iterations")
    p.add_argument("--json", default=None, metavar="FILE", help="write rows and comparisons")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.seeds, a.iterations = [8], 3, 8
    t0 = time.perf_counter()
    schemes = None if a.schemes is None else {k: SCHEMES[k] for k in a.schemes}
    rows = run(a.n, a.seeds, a.iterations, a.scenarios, a.placements, schemes,
               log=lambda s: print(s, file=sys.stderr, flush=True))
    cmp = compare(rows)
    for c in cmp:
        r = c["ratio"]
        print(f"{c['scenario']:>18} N={c['N']:<4} {c['placement']:<13} {SUBJECT} / "
              f"{c['best_other']:<16} {r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] "
              f"{c['verdict']:<6} vs_oracle {c['vs_oracle']['mean']:.2f} "
              f"load {c['subject_load']:.2f} msgs {c['subject_msgs']:.2f}")
    print(f"study: {len(rows)} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "compare": cmp}, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())

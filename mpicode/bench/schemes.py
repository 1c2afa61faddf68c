"""``mpicode bench schemes``: every scheme side by side, same data and seed, under the three
straggler scenarios of docs/design.md §5, in the MPI runtime (real ranks, injected delays).

    mpicode bench schemes [--json] [--quick] [--workers 8] [--mode mpi|sim]

In ``mpi`` mode it launches itself as
``mpiexec -n N+1 python -m mpi4py -m mpicode.bench.schemes --inner ...``; every cell runs on
the same communicator, one after the other. ``sim`` mode runs the same grid in the simulator
(virtual time, bit-for-bit reproducible). Exact schemes follow one loss trajectory, so the
target loss is the one uncoded reaches at 80% of the iterations, and time to target is the
summed iteration time until a run first reaches it. Ratios come from one run; no absolute
time is compared with anything measured elsewhere.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from mpicode import registry
from mpicode.bench import inner_setup, launch_inner
from mpicode.config import Config, UsageError, defaults, validate_for_size
from mpicode.models.scenarios import SCENARIOS
from mpicode.models.stragglers import make_straggler_model
from mpicode.numerics.problem import Problem
from mpicode.schemes import make_scheme
from mpicode.simulator import Simulator

EXACT_CLASSIC = ("uncoded", "frc s=1", "frc s=3", "cyclic s=1", "cyclic s=2", "cyclic s=3")


# variants beyond one cell per registered scheme (at s = 1): label -> options
VARIANTS = {
    "frc": [(f"frc s={s}", {"stragglers_tolerated": s}) for s in (1, 3)],
    "cyclic": [(f"cyclic s={s}", {"stragglers_tolerated": s}) for s in (1, 2, 3)],
    "two-stage": [("two-stage", {"stragglers_tolerated": 1}),
                  ("two-stage (paper)", {"stragglers_tolerated": 1, "rho": 0.75,
                                         "stage2_tolerance": 1})],
}


def cells(N: int) -> list[tuple[str, dict]]:
    """Every registered scheme (built-ins and plugins), with the variants above, at the sizes
    its ``validate_size`` accepts for N workers and K = 4N."""
    out = []
    for name, cls in registry.schemes().items():
        for label, opts in VARIANTS.get(name, [(name, {"stragglers_tolerated": 1})]):
            try:
                cls.validate_size(defaults().replace(**opts), N, 4 * N)
            except UsageError:
                continue
            out.append((label, {"scheme": name, **opts}))
    return out


def base_config(N: int, quick: bool, **kw):
    v = dict(defaults().values)
    v.update(samples=4000, features=50, iterations=15 if quick else 40, lr=0.5, seed=7,
             delay_unit=0.01 if quick else 0.02, quiet=True)
    v.update(kw)
    return validate_for_size(Config(v), N)


def summarize(history: list[dict], target: float) -> dict:
    dur = np.array([r["t_end"] - r["t_start"] for r in history])
    loss = np.array([r.get("loss", math.nan) for r in history])
    hit = np.flatnonzero(loss <= target)
    return {"time_to_target_s": float(dur[:hit[0] + 1].sum()) if hit.size else math.inf,
            "mean_iter_s": float(dur.mean()), "p95_iter_s": float(np.percentile(dur, 95)),
            "mean_load": float(np.mean([r["load"] for r in history])),
            "stage2_frac": float(np.mean([r["stage2"] > 0 for r in history])),
            "final_loss": float(loss[-1])}


def verdicts(res: dict) -> dict:
    """The issue's targets, evaluated on one scenario's rows."""
    out = {}
    for scen, rows in res.items():
        ttt = {name: r["time_to_target_s"] for name, r in rows.items()}
        best_name = min((n for n in EXACT_CLASSIC if n in ttt), key=ttt.__getitem__)
        ts = ttt["two-stage"]
        v = {"best_exact_classic": best_name,
             "speedup_vs_best_exact": ttt[best_name] / ts,
             "speedup_vs_speed_aware": ttt["speed-aware"] / ts,
             "paper_shape_speedup_vs_best_exact": ttt[best_name] / ttt["two-stage (paper)"],
             "two_stage_load": rows["two-stage"]["mean_load"]}
        if scen == "bimodal":
            v["target"] = ">= 1.3x sooner than the best exact classic, no later than speed-aware"
            v["met"] = bool(v["speedup_vs_best_exact"] >= 1.3 and v["speedup_vs_speed_aware"]
                            >= 1.0)
        elif scen == "shifted-exp":
            v["target"] = ">= 1.15x sooner than the best exact classic at mean load <= 1.25"
            v["met"] = bool(v["speedup_vs_best_exact"] >= 1.15 and v["two_stage_load"] <= 1.25)
        else:
            v["target"] = "no later than the best exact classic (within 5%)"
            v["met"] = bool(v["speedup_vs_best_exact"] >= 1 / 1.05)
        out[scen] = v
    return out


def render(res: dict, meta: dict) -> str:
    lines = [f"bench schemes: N={meta['N']} workers, {meta['iterations']} iterations, "
             f"delay unit {meta['delay_unit']} s, mode {meta['mode']}"]
    v = verdicts(res)
    for scen, rows in res.items():
        lines.append(f"\n[{scen}]  target loss {meta['targets'][scen]:.6g}")
        lines.append(f"  {'scheme':<20}{'to target s':>12}{'mean it s':>11}{'p95 it s':>10}"
                     f"{'load':>7}{'stage2':>8}{'final loss':>12}")
        for name, r in rows.items():
            lines.append(f"  {name:<20}{r['time_to_target_s']:>12.3f}{r['mean_iter_s']:>11.4f}"
                         f"{r['p95_iter_s']:>10.4f}{r['mean_load']:>7.2f}"
                         f"{r['stage2_frac']:>8.2f}{r['final_loss']:>12.6f}")
        x = v[scen]
        lines.append(f"  two-stage vs best exact classic ({x['best_exact_classic']}): "
                     f"{x['speedup_vs_best_exact']:.2f}x sooner; vs speed-aware "
                     f"{x['speedup_vs_speed_aware']:.2f}x; paper shape "
                     f"{x['paper_shape_speedup_vs_best_exact']:.2f}x; load "
                     f"{x['two_stage_load']:.2f}")
        lines.append(f"  target: {x['target']}: {'MET' if x['met'] else 'NOT MET'}")
    return "\n".join(lines)


def run_grid(N: int, quick: bool, mode: str, comm=None) -> tuple[dict, dict] | None:
    """Run every (scenario, scheme) cell; rank 0 (or the simulator) returns the results."""
    res, targets = {}, {}
    meta = None
    for scen, sp in SCENARIOS.items():
        res[scen] = {}
        for name, cp in cells(N):
            cfg = base_config(N, quick, **sp, **cp)
            meta = {"N": N, "iterations": cfg.iterations, "delay_unit": cfg.delay_unit,
                    "mode": mode}
            problem = Problem.from_config(cfg, cfg.partitions)
            if mode == "mpi":
                from mpicode.mpi.launch import execute  # lazy: importing mpi4py initialises MPI
                coord = execute(cfg, comm, problem)
                if comm.rank != 0:
                    continue
                hist = coord.history
            else:
                sim = Simulator(make_scheme(cfg, N, cfg.partitions),
                                make_straggler_model(cfg, N, cfg.partitions), n_workers=N,
                                partition_cost=cfg.delay_unit * N / cfg.partitions * 0.05,
                                problem=problem, lr=cfg.lr)
                sim.run(cfg.iterations)
                hist = sim.history
            if name == "uncoded":
                targets[scen] = hist[int(0.8 * len(hist)) - 1]["loss"]
            res[scen][name] = summarize(hist, targets[scen])
    if mode == "mpi" and comm.rank != 0:
        return None
    meta["targets"] = targets
    return res, meta


def _inner(argv) -> int:
    a, comm = inner_setup(argv)
    out = run_grid(comm.size - 1, a.quick, "mpi", comm)
    if out is not None:
        res, meta = out
        print(json.dumps({"meta": meta, "results": res, "verdicts": verdicts(res)})
              if a.json else render(res, meta), flush=True)
    comm.Free()
    return 0


def run(as_json: bool = False, quick: bool = False, workers: int = 8, mode: str = "mpi"):
    if mode == "sim":
        res, meta = run_grid(workers, quick, "sim")
        print(json.dumps({"meta": meta, "results": res, "verdicts": verdicts(res)})
              if as_json else render(res, meta))
        return {"meta": meta, "results": res}
    launch_inner("mpicode.bench.schemes", workers + 1,
                 (["--json"] if as_json else []) + (["--quick"] if quick else []))
    return None


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        sys.exit(_inner(sys.argv[2:]))
    sys.exit(run(as_json="--json" in sys.argv, quick="--quick" in sys.argv) and 0)

"""Rank 0's saturation N: at how many workers the coordinator is busy half of an iteration.

Every registered scheme is simulated at growing N with the coordinator charged by the
default cost model (``--coordinator-cost model``, the reference profile; docs/design.md
§2.6), in the scale sweep's workload: each worker's share is a fixed 4 partitions of 0.1 ms
(weak scaling: adding workers adds data), shifted-exponential stragglers with a 20 ms delay
unit, ``--compute none``. For each N the mean ``coord_busy`` (the fraction of an iteration
rank 0 was busy) and the mean iteration time over iterations 1.. are recorded; the
*saturation N* is where ``coord_busy`` crosses 1/2, interpolated on log N between the two
sizes around it (``> N_max`` when it never does; a scheme that cannot run at an N stops
there, with the reason)::

    python -m studies.saturation            # the full sweep, a table
    python -m studies.saturation --quick
"""

from __future__ import annotations

import math
import re
import sys

import numpy as np

from mpicode import registry
from mpicode.config import Config, UsageError, defaults, validate_for_size
from mpicode.engine.costs import CostModel
from mpicode.models.stragglers import make_straggler_model
from mpicode.schemes import make_scheme
from mpicode.simulator import Simulator

NS = (16, 64, 256, 1024, 4096, 16384)
QUICK_NS = (8, 32)
ITERATIONS = 6
HALF = 0.5


def measure(scheme: str, N: int, iterations: int = ITERATIONS, seed: int = 7) -> dict:
    """Mean coord_busy, iteration time and policy time of ``scheme`` at N (iterations 1..)."""
    v = dict(defaults().values)
    v.update(scheme=scheme, seed=seed, stragglers="shifted-exp", stragglers_tolerated=1,
             samples=max(4000, 4 * N), compute="none", delay_unit=0.02, iterations=iterations,
             partitions=4 * N)
    cfg = validate_for_size(Config(v), N)
    sim = Simulator(make_scheme(cfg, N, cfg.partitions),
                    make_straggler_model(cfg, N, cfg.partitions), n_workers=N,
                    partition_cost=1e-4, costs=CostModel.from_config(cfg))
    sim.run(iterations)
    rows = sim.history[1:] if len(sim.history) > 1 else sim.history
    return {"scheme": scheme, "N": N,
            "coord_busy": float(np.mean([r["coord_busy"] for r in rows])),
            "iter_s": float(np.mean([r["t_end"] - r["t_start"] for r in rows])),
            "policy_s": float(np.mean([r["policy_s"] for r in rows]))}


def crossing(rows: list[dict], level: float = HALF) -> float:
    """N where coord_busy first reaches ``level`` (log-linear between the sizes around it);
    inf if it never does, the smallest N if it already does there."""
    pts = sorted((r["N"], r["coord_busy"]) for r in rows)
    for k, (n, b) in enumerate(pts):
        if b >= level:
            if k == 0:
                return float(n)
            n0, b0 = pts[k - 1]
            f = (level - b0) / (b - b0) if b > b0 else 1.0
            return float(math.exp(math.log(n0) + f * (math.log(n) - math.log(n0))))
    return math.inf


def run(schemes=None, ns=NS, iterations: int = ITERATIONS, log=print) -> dict:
    """Rows (scheme, N, coord_busy, iter_s, policy_s), each scheme's saturation N and notes
    (where a scheme stopped and why). A scheme stops growing N once rank 0 is saturated
    (busy >= 0.9): beyond, the iteration is rank 0's alone."""
    schemes = list(registry.schemes()) if schemes is None else list(schemes)
    rows, sat, notes = [], {}, []
    for name in schemes:
        mine = []
        for N in ns:
            try:
                r = measure(name, N, iterations)
            except (UsageError, RuntimeError, ValueError, np.linalg.LinAlgError) as e:
                why = re.sub(r"\s*\[[^\]]*\]", "", str(e).splitlines()[0])
                notes.append(f"{name}: stopped at N={N}: {why}")
                log(f"  saturation {name:>18} N={N:>6}: {notes[-1]}")
                break
            mine.append(r)
            log(f"  saturation {name:>18} N={N:>6}: busy {r['coord_busy']:.3f}, iteration "
                f"{1e3 * r['iter_s']:.2f} ms, policy {1e3 * r['policy_s']:.2f} ms")
            if r["coord_busy"] >= 0.9:
                break
        rows += mine
        sat[name] = crossing(mine) if mine else math.nan
        if mine and math.isinf(sat[name]):
            notes.append(f"{name}: rank 0 below half busy up to N={mine[-1]['N']}")
    return {"rows": rows, "saturation_n": sat, "notes": notes, "ns": list(ns)}


def section(res: dict) -> list[str]:
    """The results' Markdown section: saturation N per scheme, then the rows."""
    def n(x):
        if isinstance(x, float) and math.isinf(x):
            return f"> {max(res['ns'])}"
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0f}"
    L = ["", "## Rank 0's saturation N (simulator, coordinator charged)", "",
         "The N at which rank 0 is busy half of an iteration (`coord_busy` = 0.5, interpolated "
         "on log N), with the default coordinator cost model (the reference profile, "
         "docs/design.md §2.6); weak scaling: 4 partitions of 0.1 ms per worker, "
         "shifted-exponential stragglers (delay unit 20 ms), `--compute none`.", "",
         "| scheme | saturation N |", "|---|---|"]
    L += [f"| {k} | {n(v)} |" for k, v in res["saturation_n"].items()]
    L += ["", "| scheme | N | coord_busy | iteration ms | policy ms / iteration |",
          "|---|---|---|---|---|"]
    L += [f"| {r['scheme']} | {r['N']} | {r['coord_busy']:.3f} | {1e3 * r['iter_s']:.2f} | "
          f"{1e3 * r['policy_s']:.2f} |" for r in res["rows"]]
    if res["notes"]:
        L += [""] + [f"* {x}" for x in res["notes"]]
    return L


def main(argv=None) -> int:
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    res = run(ns=QUICK_NS if quick else NS)
    print("\n".join(section(res)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

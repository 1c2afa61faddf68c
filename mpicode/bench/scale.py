"""``mpicode bench scale [--json]``: the policy's own cost per iteration against N.

Times what the coordinator spends inside the scheme (planning: ``begin``; events: every
``on_result``/``on_tick``, which includes two-stage's stage-2 plan; and ``decode``) in the
simulator (``--compute none``, shifted-exponential stragglers), for N = 16 .. 10,000, for
two-stage and cyclic. Cyclic's decode solves a least-squares problem on the (N-s) x N
submatrix of B: it stops growing N once one iteration exceeds the budget, and says so. Fits
the growth exponents (log-log slopes): two-stage's cost should be near-linear in N and in the
number of uncovered partitions |U|.
"""

from __future__ import annotations

import json
import time

import numpy as np

from mpicode.bench.schemes import base_config
from mpicode.models.stragglers import make_straggler_model
from mpicode.schemes import make_scheme
from mpicode.simulator import Simulator

NS = (16, 64, 256, 1024, 4096, 10000)


class Timed:
    """Wraps a scheme and accumulates the CPU seconds of this thread spent in its
    driver-facing methods (CPU time: a wall clock on a shared machine also counts the other
    processes' time slices), in total and per method."""

    METHODS = ("begin", "on_result", "on_tick", "decode", "outstanding", "end")

    def __init__(self, scheme):
        self._s = scheme
        self.seconds = 0.0
        self.by_method = dict.fromkeys(self.METHODS, 0.0)

    def __getattr__(self, name):
        f = getattr(self._s, name)
        if name not in self.METHODS:
            return f

        def timed(*a, **kw):
            t0 = time.thread_time()
            try:
                return f(*a, **kw)
            finally:
                dt = time.thread_time() - t0
                self.seconds += dt
                self.by_method[name] += dt
        return timed


def measure(scheme_name: str, N: int, iterations: int, s: int = 1) -> dict:

    cfg = base_config(N, False, scheme=scheme_name, stragglers_tolerated=s,
                      stragglers="shifted-exp", samples=max(4000, 4 * N), compute="none")
    t0 = time.perf_counter()
    scheme = Timed(make_scheme(cfg, N, cfg.partitions))
    setup = time.perf_counter() - t0
    sim = Simulator(scheme, make_straggler_model(cfg, N, cfg.partitions), n_workers=N,
                    partition_cost=1e-4)
    per_it, u = [], []
    for it in range(iterations):
        before = scheme.seconds
        out = sim.iteration(it)
        per_it.append(scheme.seconds - before)
        u.append(int(out["tasks"]["n_partitions"][out["tasks"]["stage"] == 2].sum()))
    skip = 1 if iterations > 1 else 0  # iteration 0 has no speed estimates yet
    return {"scheme": scheme_name, "N": N, "K": cfg.partitions, "setup_s": setup,
            "policy_s_per_iteration": float(np.mean(per_it[skip:])),
            "stage2_partitions_per_iteration": float(np.mean(u[skip:]))}


def slope(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def run(as_json: bool = False, quick: bool = False, budget_s: float = 2.0) -> dict:
    ns = NS[:4] if quick else NS
    rows, notes = [], []
    for name in ("two-stage", "cyclic"):
        for N in ns:
            its = 3 if N >= 4096 else 5
            t0 = time.perf_counter()
            try:
                r = measure(name, N, its)
            except RuntimeError as e:  # cyclic's B loses exactness at large N
                notes.append(f"{name}: stopped at N={N}: {e}")
                break
            r["wall_s"] = time.perf_counter() - t0
            rows.append(r)
            if not as_json:
                print(f"{name:>10} N={N:>6}: policy {r['policy_s_per_iteration'] * 1e3:9.2f} "
                      f"ms/iteration, stage-2 partitions "
                      f"{r['stage2_partitions_per_iteration']:8.1f}"
                      f", set-up {r['setup_s']:.2f} s", flush=True)
            if r["policy_s_per_iteration"] + r["setup_s"] / its > budget_s:
                notes.append(f"{name}: stopped after N={N}: {r['policy_s_per_iteration']:.2f} s "
                             f"per iteration (+{r['setup_s']:.1f} s set-up) exceeds the "
                             f"{budget_s} s budget; least-squares decode grows ~N^3")
                break
    # the solve alone, on a well-conditioned stand-in of B_F, for the N cyclic could not reach
    solve = []
    for N in ns:
        M = np.random.default_rng(N).standard_normal((N - 1, N))
        t0 = time.perf_counter()
        np.linalg.lstsq(M.T, np.ones(N), rcond=None)
        dt = time.perf_counter() - t0
        solve.append({"N": N, "lstsq_s": dt})
        if not as_json:
            print(f"    cyclic N={N:>6}: least-squares solve alone {dt * 1e3:9.2f} ms", flush=True)
        if dt > budget_s:
            notes.append(f"cyclic solve: stopped after N={N} ({dt:.1f} s > {budget_s} s)")
            break
    fits = {"cyclic-solve": {"exponent_vs_N": slope([r["N"] for r in solve[1:]],
                                                     [r["lstsq_s"] for r in solve[1:]])}}
    for name in ("two-stage", "cyclic"):
        rs = [r for r in rows if r["scheme"] == name]
        fits[name] = {"exponent_vs_N": slope([r["N"] for r in rs],
                                             [r["policy_s_per_iteration"] for r in rs])}
        if name == "two-stage":
            fits[name]["exponent_vs_uncovered"] = slope(
                [r["stage2_partitions_per_iteration"] for r in rs],
                [r["policy_s_per_iteration"] for r in rs])
    res = {"rows": rows, "solve": solve, "fits": fits, "notes": notes}
    if as_json:
        print(json.dumps(res, indent=2))
    else:
        for name, f in fits.items():
            print(f"{name}: policy cost ~ N^{f['exponent_vs_N']:.2f}"
                  + (f", ~ |U|^{f['exponent_vs_uncovered']:.2f}" if "exponent_vs_uncovered" in f
                     else ""))
        for n in notes:
            print("note:", n)
    return res


if __name__ == "__main__":
    import sys
    run(as_json="--json" in sys.argv, quick="--quick" in sys.argv)

"""The scale sweep: a scheme's own cost per iteration as N grows, in the simulator.

Times the CPU the coordinator spends inside the policy (planning: ``begin``; events:
``on_result``/``on_tick``, which hold two-stage's stage-2 plan; ``decode``; the end of the
iteration) with :class:`Timed`, in virtual time with no gradients (``--compute none``) and
shifted-exponential stragglers. CPU time of the thread, not wall time: on a shared machine
the wall clock also counts the time other jobs held the core. The per-iteration cost is the
median over iterations 1.. (iteration 0 has no speed estimates); each point is measured
``repeats`` times and the smallest median kept. A scheme stops growing N once an iteration
exceeds the budget, or when it cannot be built or decode (cyclic's B is ill-conditioned at
large N); the sweep records why. Because cyclic stops early, :func:`lstsq_times` also times
its decode's least-squares solve alone (a^T B_F = 1, B from Tandon's Algorithm 2, F = all
workers but one) up to the largest N, whatever the residual.
"""

from __future__ import annotations

import re
import time

import numpy as np

from mpicode.bench.scale import Timed
from mpicode.config import Config, defaults, validate_for_size
from mpicode.models.stragglers import make_straggler_model
from mpicode.schemes import make_scheme
from mpicode.schemes.cyclic import tandon_cyclic_B
from mpicode.simulator import Simulator


def measure(label: str, options: dict, N: int, iterations: int, repeats: int = 3) -> dict:
    """The policy's cost per iteration at N: the smallest of ``repeats`` medians."""
    rs = [_measure_once(label, options, N, iterations) for _ in range(repeats)]
    return min(rs, key=lambda r: r["policy_s"])


def _measure_once(label: str, options: dict, N: int, iterations: int) -> dict:

    v = dict(defaults().values)
    v.update(seed=7, stragglers="shifted-exp", samples=max(4000, 4 * N), compute="none",
             delay_unit=0.02, iterations=iterations)
    v.update(options)
    cfg = validate_for_size(Config(v), N)
    t0 = time.perf_counter()
    scheme = Timed(make_scheme(cfg, N, cfg.partitions))
    setup = time.perf_counter() - t0
    sim = Simulator(scheme, make_straggler_model(cfg, N, cfg.partitions), n_workers=N,
                    partition_cost=1e-4)
    per_it, dec, u = [], [], []
    for it in range(iterations):
        before, d0 = scheme.seconds, scheme.by_method["decode"]
        out = sim.iteration(it)
        per_it.append(scheme.seconds - before)
        dec.append(scheme.by_method["decode"] - d0)
        tk = out["tasks"]
        u.append(int(tk["n_partitions"][tk["stage"] == 2].sum()))
    skip = 1 if iterations > 1 else 0
    return {"scheme": label, "N": N, "K": cfg.partitions, "setup_s": setup,
            "policy_s": float(np.median(per_it[skip:])),
            "decode_s": float(np.median(dec[skip:])),
            "uncovered": float(np.mean(u[skip:]))}


def run(ns, schemes: dict[str, dict], iterations: int, budget_s: float,
        log=print) -> dict:
    """Rows (scheme, N, policy_s, uncovered, ...) and notes (where a scheme stopped, why)."""
    rows, notes = [], []
    for label, options in schemes.items():
        for N in ns:
            try:
                r = measure(label, options, N, iterations)
            except (RuntimeError, ValueError, np.linalg.LinAlgError) as e:
                why = re.sub(r"\s*\[[^\]]*\]", "", str(e).splitlines()[0])
                why = why.removeprefix(f"{options['scheme']}: ")
                notes.append(f"{label}: stopped at N={N}: {why}")
                log(f"  sweep {label:>18} N={N:>5}: {notes[-1]}")
                break
            rows.append(r)
            log(f"  sweep {label:>18} N={N:>5}: {r['policy_s'] * 1e3:9.3f} ms/iteration, "
                f"|U| {r['uncovered']:7.1f}")
            if r["policy_s"] > budget_s:
                notes.append(f"{label}: stopped after N={N}: {r['policy_s']:.2f} s per "
                             f"iteration exceeds the {budget_s} s budget")
                break
    return {"rows": rows, "notes": notes, "lstsq": lstsq_times(ns, log=log)}


def lstsq_times(ns, repeats: int = 3, log=print) -> list[dict]:
    """CPU seconds of cyclic's decoding solve alone (smallest of ``repeats``) for every N, with
    s = 1: ``lstsq(B_F^T, 1)`` on B from Tandon's Algorithm 2 (seed N), F = workers 1..N-1."""
    rows = []
    for N in ns:
        BF = tandon_cyclic_B(N, 1, np.random.default_rng(N))[1:]
        ts = []
        for _ in range(repeats):
            t0 = time.thread_time()
            a, *_ = np.linalg.lstsq(BF.T, np.ones(N), rcond=None)
            ts.append(time.thread_time() - t0)
        rows.append({"N": N, "lstsq_s": min(ts),
                     "residual": float(np.abs(a @ BF - 1.0).max())})
        log(f"  sweep  cyclic solve alone N={N:>5}: {1e3 * min(ts):9.3f} ms "
            f"(residual {rows[-1]['residual']:.1e})")
    return rows


def slope(x, y) -> float:
    """Least-squares slope of log y against log x (positive pairs only); NaN if < 2."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])

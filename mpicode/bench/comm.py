"""Communication-phase benchmark in virtual time (pure: no MPI, no wall clock).

Run::

    python -m mpicode.bench.comm            # full table (a few minutes on one core)
    python -m mpicode.bench.comm --quick    # smaller horizons
    python -m mpicode.bench.comm --json     # machine-readable

Every scheduler runs on the same channel realisation (near/far Rayleigh, seed 0) for
N = 8 and 32, in two regimes:

(a) **streaming overload**: every worker offers messages at ``load`` x c* (deterministic
    arrivals), where c* is the largest rate every worker can get at once on this realisation
    (:func:`mpicode.schedulers.fluid.max_equal_rate`, an exact fluid bound including the
    opportunistic gain of fading; the non-opportunistic time-sharing bound 1/sum(1/E[R_i]) is
    printed for reference). Messages are c*/1.25 bytes, so c* is 1.25 messages per slot and the
    utility works on O(1) rates. Measured after a warm-up: throughput (relative to
    round-robin), Jain's index of the delivered rates, mean backlog (messages), utility gap to
    the fluid optimum on the same slots (messages/slot, the scheduler's own utility).
(b) **gradient iterations**: each iteration every worker offers one message of 8*dim bytes
    at once; the iteration ends when the delivered set decodes: ``uncoded`` needs all N,
    ``coded`` any N-1 (``decodable_with`` of a cyclic/ignore-one scheme), then the rest is
    dropped. Measured: mean and p95 communication time per iteration (slots), participation
    (fraction of iterations a worker's message was in the decoded set) Jain and minimum,
    fraction of offered bytes dropped.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mpicode import registry
from mpicode.models.channels import Rayleigh, snr_profile
from mpicode.schedulers import jain, make_utility
from mpicode.schedulers.fluid import fluid_optimum, max_equal_rate, time_sharing_equal_rate


def near_far(N: int, seed: int = 0, snr_db: float = 10.0, spread_db: float = 20.0,
             bytes_per_slot: float = 1e4) -> Rayleigh:
    """The benchmark's channel: Rayleigh, mean SNR 0..20 dB (5e6 B/s x 2 ms slots)."""
    return Rayleigh(N, snr_profile(N, snr_db, spread_db), bytes_per_slot, seed=seed)


def make(name: str, channel, **kw):
    import inspect
    cls = registry.scheduler(name)
    # the base keyword arguments, and those the class itself takes (lyapunov's V, ...)
    own = set(inspect.signature(cls.__init__).parameters)
    kw = {k: v for k, v in kw.items() if k in ("access", "m", "record") or k in own}
    return cls(channel.N, channel, **kw)


def streaming(name: str, channel, *, load: float = 1.5, slots: int = 20000,
              warmup: int | None = None, cstar: float | None = None, per_slot: float = 1.25,
              utility: str = "alpha-fair", alpha: float = 4.0, fluid=None, **kw) -> dict:
    """Regime (a): every worker offers ``load`` x c* bytes/slot as whole messages of
    c*/per_slot bytes. Statistics over slots [warmup, slots)."""
    N = channel.N
    R = channel.samples(0, slots)
    if cstar is None:
        cstar = max_equal_rate(R).lower
    unit = int(round(cstar / per_slot))
    lam = load * cstar / unit                          # messages per slot per worker
    warmup = slots // 4 if warmup is None else warmup
    kw.setdefault("utility", utility)
    kw.setdefault("alpha", alpha)
    s = make(name, channel, **kw)
    credit = np.zeros(N)
    nid = 0
    delivered0 = None
    qsum = 0.0
    q_end_first = None
    for t in range(slots):
        credit += lam
        k = np.floor(credit).astype(int)
        credit -= k
        for i in np.flatnonzero(k):
            for _ in range(k[i]):
                s.offer(int(i), nid, unit)
                nid += 1
        if t == warmup:
            delivered0 = s.delivered.copy()
        s.step(t)
        if t >= warmup:
            qsum += s.Q.sum() / unit
        if t == (warmup + slots) // 2:
            q_end_first = s.Q.sum() / unit
    T = slots - warmup
    d = (s.delivered - delivered0) / unit / T           # messages per slot
    U = make_utility(utility, alpha)
    if fluid is None:
        fluid = fluid_optimum(R[warmup:] / unit, U, lam=lam)
    with np.errstate(divide="ignore"):
        util = float(np.sum(U.value(d)))
    return {
        "scheduler": name, "N": N, "cstar": cstar, "unit": unit, "lam": lam,
        "throughput": float(d.sum() * unit), "rates": d, "jain": jain(d),
        "backlog": qsum / T, "backlog_mid": q_end_first, "backlog_end": float(s.Q.sum() / unit),
        "utility": util, "opt": fluid.value, "gap": fluid.value - util,
        "opt_bounds": (fluid.lower, fluid.upper), "Z": s.Z.copy(),
    }


def iterations(name: str, channel, *, iters: int = 200, msg_bytes: int = 8 * 25_000,
               need: int | None = None, start_slot: int = 0, **kw) -> dict:
    """Regime (b): each iteration every worker offers one message of ``msg_bytes`` at once;
    it ends when ``need`` messages of the iteration (default all N) are delivered, which a
    scheme's ``decodable_with`` would report (any ``need`` of N: cyclic / ignore-stragglers).
    Lyapunov gets that rule through ``set_decodable``; the others send until the driver drops
    the iteration."""
    N = channel.N
    need = N if need is None else need
    s = make(name, channel, **kw)
    cur = {"it": -1}

    def decodable(ids):
        return sum(1 for m in ids if m[0] == cur["it"]) >= need

    s.set_decodable(decodable)
    times = np.zeros(iters)
    part = np.zeros(N)
    slot = start_slot
    offered = dropped = 0
    for it in range(iters):
        cur["it"] = it
        t0 = slot
        for i in range(N):
            s.offer(i, (it, i), msg_bytes)
        offered += N * msg_bytes
        got: set = set()
        while len(got) < need:
            out = s.step(slot)
            slot += 1
            got.update(out.completed)
        times[it] = slot - t0
        for m in got:
            part[m[1]] += 1
        dropped += s.drop(lambda m, it=it: m[0] == it)
    part /= iters
    return {
        "scheduler": name, "N": N, "need": need, "mean": float(times.mean()),
        "p95": float(np.percentile(times, 95)), "times": times, "participation": part,
        "part_jain": jain(part), "part_min": float(part.min()),
        "dropped": dropped / offered, "admitted_part": s.participation(),
    }


# label -> (scheduler, extra keyword arguments): every registered scheduler, and lyapunov
# with airtime queue weights too
VARIANTS = {}
for _name in registry.schedulers():
    VARIANTS[_name] = (_name, {})
    if _name == "lyapunov":
        VARIANTS["lyapunov-airtime"] = ("lyapunov", {"queue_weights": "airtime"})


def run(as_json: bool = False, quick: bool = False, sizes=(8, 32), seed: int = 0,
        V: float = 64.0, theta: float = 0.0, utility: str = "alpha-fair",
        alpha: float = 4.0, min_participation: float = 0.85) -> dict:
    """Both regimes for every scheduler; prints a table (or JSON) and returns the figures."""
    slots = 6000 if quick else 20000
    iters = 60 if quick else 200
    lyap = {"V": V, "theta": theta, "utility": utility, "alpha": alpha,
            "min_participation": min_participation}
    out: dict = {"params": {"slots": slots, "iterations": iters, "seed": seed, **lyap},
                 "streaming": {}, "iterations": {}}
    U = make_utility(utility, alpha)
    for N in sizes:
        t0 = time.time()
        ch = near_far(N, seed)
        R = ch.samples(0, slots)
        cs = max_equal_rate(R).lower
        unit = int(round(cs / 1.25))
        warm = slots // 4
        fl = fluid_optimum(R[warm:] / unit, U, lam=1.5 * cs / unit)
        rows = {}
        for label, (name, extra) in VARIANTS.items():
            r = streaming(name, ch, slots=slots, cstar=cs, fluid=fl, **lyap, **extra)
            rows[label] = {k: r[k] for k in ("throughput", "jain", "backlog", "backlog_mid",
                                              "backlog_end", "utility", "gap")}
        rr = rows["round-robin"]["throughput"]
        for r in rows.values():
            r["vs_rr"] = r["throughput"] / rr
        out["streaming"][N] = {"cstar": cs, "cstar_time_sharing":
                               time_sharing_equal_rate(ch.mean_rates()), "unit": unit,
                               "fluid_throughput": float(fl.x.sum() * unit),
                               "fluid_jain": jain(fl.x), "opt": fl.value, "rows": rows}
        it_rows = {}
        for rule, need in (("uncoded", N), ("coded", N - 1)):
            rows = {}
            for label, (name, extra) in VARIANTS.items():
                r = iterations(name, ch, iters=iters, need=need, **lyap, **extra)
                rows[label] = {k: r[k] for k in ("mean", "p95", "part_jain", "part_min",
                                                  "dropped")}
            it_rows[rule] = rows
        for rows in it_rows.values():
            for r in rows.values():
                for base in ("round-robin", "fifo"):
                    for k in ("mean", "p95"):
                        r[f"{k}_vs_{base}"] = 1.0 - r[k] / rows[base][k]
                r["mean_vs_rr_uncoded"] = 1.0 - r["mean"] / it_rows["uncoded"]["round-robin"][
                    "mean"]
        out["iterations"][N] = it_rows
        out["streaming"][N]["seconds"] = time.time() - t0
    if as_json:
        print(json.dumps(out, indent=1, default=float))
    else:
        print(format_table(out))
    return out


def format_table(out: dict) -> str:
    p = out["params"]
    lines = [f"communication phase, virtual time: near/far Rayleigh (0..20 dB), seed {p['seed']}, "
             f"V={p['V']:g} theta={p['theta']:g} {p['utility']}(alpha={p['alpha']:g}) "
             f"floor={p['min_participation']:g}"]
    for N, st in out["streaming"].items():
        lines.append("")
        lines.append(f"(a) streaming, N={N}: offered 1.5 c*, c* = {st['cstar']:.0f} B/slot "
                     f"(time-sharing bound {st['cstar_time_sharing']:.0f}); {p['slots']} slots; "
                     f"fluid optimum: {st['fluid_throughput']:.0f} B/slot, Jain "
                     f"{st['fluid_jain']:.3f}")
        lines.append(f"  {'scheduler':18s} {'B/slot':>8s} {'x RR':>6s} {'Jain':>6s} "
                     f"{'backlog':>9s} {'at end':>9s} {'util gap':>9s}")
        for label, r in st["rows"].items():
            lines.append(f"  {label:18s} {r['throughput']:8.0f} {r['vs_rr']:6.2f} "
                         f"{r['jain']:6.3f} {r['backlog']:9.1f} {r['backlog_end']:9.1f} "
                         f"{r['gap']:9.4f}")
        for rule, rows in out["iterations"][N].items():
            lines.append(f"(b) gradient iterations, N={N}, {rule} "
                         f"({'all N' if rule == 'uncoded' else 'any N-1'}), "
                         f"{p['iterations']} iterations, slots per iteration:")
            lines.append(f"  {'scheduler':18s} {'mean':>6s} {'p95':>6s} {'-%RR':>6s} "
                         f"{'-%RRp95':>7s} {'-%fifo':>6s} {'-%fifo95':>8s} {'partJain':>8s} "
                         f"{'partMin':>7s} {'dropped':>7s}")
            for label, r in rows.items():
                lines.append(
                    f"  {label:18s} {r['mean']:6.1f} {r['p95']:6.1f} "
                    f"{100 * r['mean_vs_round-robin']:6.1f} {100 * r['p95_vs_round-robin']:7.1f} "
                    f"{100 * r['mean_vs_fifo']:6.1f} {100 * r['p95_vs_fifo']:8.1f} "
                    f"{r['part_jain']:8.3f} {r['part_min']:7.3f} {r['dropped']:7.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpicode.bench.comm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="8,32", help="comma-separated N (default 8,32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--V", type=float, default=64.0)
    ap.add_argument("--theta", type=float, default=0.0)
    ap.add_argument("--utility", default="alpha-fair", choices=("alpha-fair", "log", "log1p"))
    ap.add_argument("--alpha", type=float, default=4.0)
    ap.add_argument("--min-participation", type=float, default=0.85)
    a = ap.parse_args(argv)
    run(as_json=a.json, quick=a.quick, sizes=tuple(int(x) for x in a.sizes.split(",")),
        seed=a.seed, V=a.V, theta=a.theta, utility=a.utility, alpha=a.alpha,
        min_participation=a.min_participation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""End to end: training time to a target loss in the MPI runtime, per uplink scheduler.

    mpicode bench comm            # the virtual-time regimes, then this part
    python -m mpicode.bench.comm_e2e [--json] [--quick]

Launches ``mpiexec -n 9 python -m mpi4py -m mpicode.bench.comm_e2e --inner``: 8 workers on a
near/far Rayleigh uplink (0-20 dB), gradients of 2000 float64 (16 kB) so that sending them
takes several 2 ms slots; light shifted-exponential compute stragglers. For every scheduler,
with ``uncoded`` (every message needed) and ``two-stage`` (coding-aware admission may defer
a straggler's redundant message), it reports the mean and p95 communication time per
iteration (``comm_s``: from the moment the used messages were ready to decodability; not
comparable across schedulers that use different messages, docs/design.md §4.4a), the
iteration time, time to the loss uncoded+fifo reaches at 80% of the iterations, and the
participation Jain index. One run per cell: ``python -m studies.comm_study`` has
the seeded comparison with confidence intervals.
"""

from __future__ import annotations

import json
import math

import numpy as np

from mpicode import registry
from mpicode.bench import inner_setup, launch_inner
from mpicode.bench.schemes import base_config
from mpicode.numerics.problem import Problem
from mpicode.schedulers import jain

# every registered scheduler, lyapunov last (the loss target comes from the first run)
SCHEDULERS = tuple(sorted(registry.schedulers(), key=lambda n: n == "lyapunov"))


def _config(N, quick, **kw):
    return base_config(N, quick, samples=2000, features=2000, channel="rayleigh",
                       bandwidth=5e5, snr_db=10.0, snr_spread_db=20.0, stragglers="shifted-exp",
                       delay_unit=0.005, iterations=12 if quick else 30, **kw)


def _inner(argv) -> int:
    from mpicode.mpi.launch import execute  # lazy: importing mpi4py initialises MPI
    a, comm = inner_setup(argv)
    N = comm.size - 1
    res, target = {}, None
    for scheme in ("uncoded", "two-stage"):
        for sched in SCHEDULERS:
            cfg = _config(N, a.quick, scheme=scheme, scheduler=sched, stragglers_tolerated=1)
            problem = Problem.from_config(cfg, cfg.partitions)
            coord = execute(cfg, comm, problem)
            if comm.rank != 0:
                continue
            h = coord.history
            if target is None:
                target = h[int(0.8 * len(h)) - 1]["loss"]
            dur = np.array([r["t_end"] - r["t_start"] for r in h])
            cs = np.array([r["comm_s"] for r in h])
            loss = np.array([r["loss"] for r in h])
            hit = np.flatnonzero(loss <= target)
            part = coord.trainer.uplink.sched.participation()
            res[f"{scheme} / {sched}"] = {
                "mean_comm_s": float(np.nanmean(cs)),
                "p95_comm_s": float(np.nanpercentile(cs, 95)),
                "mean_iter_s": float(dur.mean()),
                "time_to_target_s": float(dur[:hit[0] + 1].sum()) if hit.size else math.inf,
                "participation_min": float(part.min()), "participation_jain": float(jain(part))}
    if comm.rank == 0:
        if a.json:
            print(json.dumps({"target_loss": target, "results": res}))
        else:
            print(f"\nend to end in the MPI runtime: N={N}, near/far Rayleigh, 16 kB gradients, "
                  f"target loss {target:.6g}")
            print(f"  {'scheme / scheduler':<32}{'comm s':>9}{'p95':>9}{'iter s':>9}"
                  f"{'to target':>11}{'part min':>10}{'part Jain':>10}")
            for k, r in res.items():
                print(f"  {k:<32}{r['mean_comm_s']:>9.4f}{r['p95_comm_s']:>9.4f}"
                      f"{r['mean_iter_s']:>9.4f}{r['time_to_target_s']:>11.3f}"
                      f"{r['participation_min']:>10.3f}{r['participation_jain']:>10.3f}")
            for scheme in ("uncoded", "two-stage"):
                ly = res[f"{scheme} / lyapunov"]
                for base in (b for b in SCHEDULERS if b != "lyapunov"):
                    b = res[f"{scheme} / {base}"]
                    cut = 100 * (1 - ly["mean_iter_s"] / b["mean_iter_s"])
                    faster = b["time_to_target_s"] / ly["time_to_target_s"]
                    print(f"  {scheme}: lyapunov's iteration time {cut:.0f}% below {base}'s, "
                          f"time to target {faster:.2f}x sooner")
            print("  (one run per cell, in this order, on this machine: no intervals. comm s "
                  "counts from the last *used* message's readiness, so it is not comparable "
                  "across schedulers that use different messages; python -m "
                  "studies.comm_study gives ratios with 95% intervals over seeds)")
    comm.Free()
    return 0


def run(as_json: bool = False, quick: bool = False, workers: int = 8) -> None:
    launch_inner("mpicode.bench.comm_e2e", workers + 1,
                 (["--json"] if as_json else []) + (["--quick"] if quick else []))


if __name__ == "__main__":
    import sys
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        sys.exit(_inner(sys.argv[2:]))
    run(as_json="--json" in sys.argv, quick="--quick" in sys.argv)

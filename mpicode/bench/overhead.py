"""``mpicode bench overhead``: rank 0's per-iteration cost by phase against the floor.

    mpicode bench overhead [--json] [--quick] [--workers 4,8] [--sizes demo,1e6]

For N = 4, 8, 16 (``--quick``: 4) it launches
``mpiexec -n N+1 python -m mpi4py -m mpicode.bench.overhead --inner --dir DIR``. At each
model size (the demo's 8000 x 100, then 10^3 .. 10^6 parameters = features; rows are cut
so that a rank holds at most ~2*10^6 elements, 10^6 only at N = 4 to bound memory;
``--workers`` and ``--sizes`` narrow the plan to some N and size labels) the job
trains ``uncoded`` with ``--stragglers none`` and default options, logged like
``mpicode train``, and then times the floor on the same ranks: a plain mpi4py ``Bcast`` of
the model + ``Reduce`` of one gradient (:func:`mpicode.mpi.floor.bcast_reduce`, blocking and
polled with the runtime's backoff: the faster of the two counts); run and floor are
repeated twice, interleaved. From the rows (first 3 iterations left out): the cycle
(``t_end - t_start``, the one clock: rows tile training time) and its phases ``log_s``,
``decode_s``, ``update_s``, ``eval_s`` and ``wait_s`` minus the slowest worker's compute
(``workers/compute_s``: what waiting costs beyond computing). Floor = the slowest worker's
compute + the Bcast/Reduce. Target: cycle <= 1.5 x floor. Medians over repetitions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from mpicode import analysis
from mpicode.bench import launch_inner
from mpicode.errors import UsageError
from mpicode.io import safefile

TARGET = 1.5
SKIP = 3
PHASES = ("log_s", "comm_extra_s", "decode_s", "update_s", "eval_s")


def sizes(N: int, quick: bool, only: tuple[str, ...] = ()) -> list[tuple[str, int, int]]:
    """(label, features, samples) of every model size at N workers (``only``: these labels)."""
    K = 4 * N
    feats = (10**3, 10**4, 10**5) + ((10**6,) if N == 4 and not quick else ())
    out = [("demo", 100, 8000)] + [(f"1e{int(np.log10(f))}", f,
                                    min(8000, max(K, int(2e6 // f)))) for f in feats]
    return [s for s in out if not only or s[0] in only]


def _plan(quick: bool, workers: str | None = None, only: str | None = None) -> dict:
    Ns = (4,) if quick else (4, 8, 16)
    if workers:
        try:
            Ns = tuple(int(n) for n in workers.split(","))
        except ValueError:
            raise UsageError(f"--workers {workers!r}: give worker counts like 4,8") from None
        if min(Ns) < 1:
            raise UsageError(f"--workers {workers!r}: every N must be >= 1")
    return {"Ns": Ns, "iterations": 10 if quick else 20, "reps": 1 if quick else 2,
            "sizes": tuple(only.split(",")) if only else ()}


def cell(comm, d: str, label: str, features: int, samples: int, plan: dict, rep: int,
         cache: dict):
    """One run and one floor measurement (collective); rank 0 returns its figures."""
    from mpicode.mpi.calibrate import columns  # lazy: importing mpi4py initialises MPI
    from mpicode.mpi.floor import bcast_reduce  # lazy: importing mpi4py initialises MPI
    from mpicode.mpi.runs import logged_run, run_config  # lazy: importing mpi4py initialises MPI
    N = comm.size - 1
    cfg = run_config(N, str(Path(d) / f"ovh-{N}-{label}-{rep}.h5"),
                     {"samples": samples, "features": features, "seed": 1}, plan["iterations"],
                     scheme="uncoded")
    out = logged_run(cfg, comm, cache)
    cache.clear()  # (memory: the next size's data)
    reps = 10 if features >= 10**5 else 30
    # the better of blocking collectives (spin) and polled ones (sleep): the stricter floor
    floor_comm = (bcast_reduce(comm, features, reps, polled=False),
                  bcast_reduce(comm, features, reps, polled=True))
    if comm.rank != 0:
        return None
    if out[0] != 0:
        raise RuntimeError(f"run {cfg.out} failed (exit code {out[0]})")
    return figures(columns_of(cfg.out, columns), floor_comm)


def columns_of(path: str, columns) -> dict:
    c = columns(path)
    c["compute_max"] = np.nanmax(analysis.read_run(path)["workers"]["compute_s"], axis=1)
    return c


def figures(c: dict, floor_comm) -> dict:
    """Mean cycle, phases and floor (s) of one run's rows, warm-up left out; ``floor_comm``:
    the Bcast/Reduce's seconds (blocking, polled), of which the floor takes the smaller."""
    r = {k: np.asarray(v)[SKIP:] for k, v in c["rows"].items()}
    comp = np.asarray(c["compute_max"])[SKIP:len(c["rows"]["t_end"])]
    out = {"cycle_s": float(np.mean(r["t_end"] - r["t_start"])),
           "comm_extra_s": float(np.mean(r["wait_s"] - comp)),
           "compute_s": float(np.mean(comp)), "bcast_reduce_s": float(np.min(floor_comm)),
           "bcast_reduce_blocking_s": float(np.atleast_1d(floor_comm)[0]),
           "bcast_reduce_polled_s": float(np.atleast_1d(floor_comm)[-1])}
    for k in ("log_s", "decode_s", "update_s", "eval_s"):
        out[k] = float(np.mean(r[k]))
    out["floor_s"] = out["compute_s"] + out["bcast_reduce_s"]
    out["ratio"] = out["cycle_s"] / out["floor_s"]
    return out


def _inner(argv) -> int:
    from mpicode import mpi as runtime  # lazy: importing mpi4py initialises MPI
    from mpicode.numerics import kernels  # lazy: numba (~1 s), on the MPI ranks only
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", default=None)
    a = p.parse_args(argv)
    kernels.warmup()
    comm = runtime.world().Dup()
    N, plan = comm.size - 1, _plan(a.quick, None, a.sizes)
    res: dict = {}
    for rep in range(plan["reps"]):
        for label, f, n in sizes(N, a.quick, plan["sizes"]):
            x = cell(comm, a.dir, label, f, n, plan, rep, {})
            if x is not None:
                res.setdefault(label, {"features": f, "samples": n, "reps": []})["reps"].append(x)
    if comm.rank == 0:
        safefile.write_text(Path(a.dir, f"overhead-{N}.json"), json.dumps(res))
    comm.Free()
    return 0


def _median(entry: dict) -> dict:
    reps = entry["reps"]
    med = {k: float(np.median([x[k] for x in reps])) for k in reps[0]}
    med["ratio"] = med["cycle_s"] / med["floor_s"]
    med["met"] = bool(med["ratio"] <= TARGET)
    worst = max(PHASES, key=lambda k: med[k])
    return {**entry, **med, "largest_phase": worst}


def render(results: dict, plan: dict) -> str:
    lines = [f"bench overhead: uncoded, --stragglers none, default options, "
             f"{plan['iterations']} iterations (first {SKIP} left out), {plan['reps']} "
             "repetition(s) interleaved with the floor, medians; times in ms",
             "floor = slowest worker's compute + mpi4py Bcast(model) + Reduce(gradient); "
             f"target cycle <= {TARGET} x floor",
             f"  {'N':>3} {'size':>5} {'rows':>5} {'cycle':>8} {'log':>7} {'wait-comp':>9}"
             f"{'decode':>8}{'update':>8}{'eval':>8}{'compute':>9}{'bc+red':>8}{'floor':>8}"
             f"{'ratio':>7}  largest phase"]
    for N, rows in results.items():
        for label, r in rows.items():
            ms = {k: 1e3 * r[k] for k in ("cycle_s", "log_s", "comm_extra_s", "decode_s",
                                            "update_s", "eval_s", "compute_s",
                                            "bcast_reduce_s", "floor_s")}
            lines.append(
                f"  {N:>3} {label:>5} {r['samples']:>5} {ms['cycle_s']:>8.2f}"
                f"{ms['log_s']:>8.2f}{ms['comm_extra_s']:>10.2f}{ms['decode_s']:>8.2f}"
                f"{ms['update_s']:>8.2f}{ms['eval_s']:>8.2f}{ms['compute_s']:>9.2f}"
                f"{ms['bcast_reduce_s']:>8.2f}{ms['floor_s']:>8.2f}{r['ratio']:>7.2f}  "
                f"{r['largest_phase']}{'' if r['met'] else '  (target missed)'}")
    met = [r["met"] for rows in results.values() for r in rows.values()]
    lines.append(f"{sum(met)}/{len(met)} sizes within {TARGET}x of the floor")
    return "\n".join(lines)


def run(as_json: bool = False, quick: bool = False, workers: str | None = None,
        sizes: str | None = None) -> dict:
    plan = _plan(quick, workers, sizes)
    results = {}
    with tempfile.TemporaryDirectory(prefix="mpicode-overhead-") as d:
        for N in plan["Ns"]:
            launch_inner("mpicode.bench.overhead", N + 1,
                         ["--dir", d] + (["--quick"] if quick else [])
                         + (["--sizes", sizes] if sizes else []))
            raw = json.loads(Path(d, f"overhead-{N}.json").read_text())
            results[N] = {k: _median(v) for k, v in raw.items()}
    out = {"plan": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.items()},
           "results": results}
    print(json.dumps(out) if as_json else render(results, plan), flush=True)
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        sys.exit(_inner(sys.argv[2:]))
    p = argparse.ArgumentParser(prog="mpicode bench overhead")
    for flag in ("--json", "--quick"):
        p.add_argument(flag, action="store_true")
    p.add_argument("--workers")
    p.add_argument("--sizes")
    a = p.parse_args()
    run(as_json=a.json, quick=a.quick, workers=a.workers, sizes=a.sizes)

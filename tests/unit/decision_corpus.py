"""The recorded decision corpus of the built-in schemes: seeded inputs and the decisions they
produced, stored as data (tests/data/decisions/*.json.gz), replayed by
tests/unit/test_decision_corpus.py against the live schemes, bit for bit.

A *case* is an input: a scheme with all its options spelled out (N, K, s, seed and every
option of the class, so a later change of a default does not change the input), and either

* ``sim``: a straggler model (every parameter spelled out) and a partition cost, driven for a
  few iterations through the real simulator path (:func:`mpicode.simulator.Simulator`, its
  ``EventLoop`` and ``VirtualWorkers``, ``--compute none``) with a given cost model (the zero
  model: today's idealisation); or
* ``replay``: per-iteration worker speeds and per-task jitter drawn by a seeded generator the
  way the former hypothesis equivalence tests drew them (ties: integer durations; 1e6: a
  dead-slow worker; cancelled results delivered or not), driven by
  :func:`mpicode.schemes.replay.run_iteration`.

The *decisions* of a case, per iteration: the scheme's task log (every task's id, worker,
stage, partitions, coefficients, dispatch and end times, duration, state, use in the decode),
its log notes; for ``sim`` the iteration's row (every column, the scheme's summary fields
among them) and a digest of every per-task and per-worker column the run log would get; for
``replay`` the order of arrivals, the ticks and the summary; and the scheme's
``state_dict()`` after the last iteration.

Record (never in CI: only when a change is *meant* to change decisions, in a commit of its
own that says why)::

    .venv/bin/python tests/unit/decision_corpus.py            # every file
    .venv/bin/python tests/unit/decision_corpus.py two-stage  # one file
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

DATA = Path(__file__).resolve().parent.parent / "data" / "decisions"

# the straggler scenarios of the corpus (the study's, studies.study.SCENARIOS,
# written out: the corpus must not move when the study's scenarios do)
SCENARIOS = {
    "shifted-exp": {"stragglers": "shifted-exp", "shift": 1.0, "mu": 1.0},
    "bimodal": {"stragglers": "bimodal", "slow_fraction": 0.25, "slowdown": 5.0},
    "exp-per-iteration": {"stragglers": "exp-per-iteration", "delay_mean": 2.0},
    "pareto": {"stragglers": "pareto", "pareto_shape": 2.5},
}
MODEL_DEFAULTS = {"delay_unit": 0.02, "task_overhead": 0.0, "delay_form": "worker",
                  "shift": 1.0, "mu": 1.0, "delay_mean": 1.0, "slow_fraction": 0.1,
                  "slowdown": 5.0, "pareto_shape": 2.0, "ge_p_bad": 0.05, "ge_p_good": 0.5}
FEATURES = 50


# ---- inputs ------------------------------------------------------------------------------
def scheme_options(name: str, **given) -> dict:
    """Every option of scheme ``name``: its class defaults, overridden by ``given``."""
    from mpicode import registry
    cls = registry.scheme(name)
    opts = {o.name: o.default for o in cls.options}
    unknown = set(given) - set(opts)
    if unknown:
        raise ValueError(f"{name}: unknown options {sorted(unknown)}")
    opts.update(given)
    return opts


def sim_case(scheme: str, N: int, scenario: str, *, K: int | None = None, s: int = 1,
             seed: int | None = None, iterations: int = 5, **options) -> dict:
    from mpicode.simulator import model_partition_cost
    K = 4 * N if K is None else K
    seed = N if seed is None else seed
    model = {**MODEL_DEFAULTS, **SCENARIOS[scenario], "seed": seed}
    return {"kind": "sim", "scheme": scheme, "N": N, "K": K, "tolerance": s, "seed": seed,
            "options": scheme_options(scheme, **options), "scenario": scenario,
            "model": model, "iterations": iterations,
            "partition_cost": model_partition_cost(64 * N / K, FEATURES)}


def replay_case(scheme: str, rng: np.random.Generator, N: int, K: int, s: int, options: dict,
                seed: int = 1) -> dict:
    """Timings drawn as the former equivalence tests' hypothesis strategy drew them."""
    iters = int(rng.integers(1, 4))

    def per():
        u = rng.random()
        if u < 0.45:
            return int(rng.integers(1, 7))
        if u < 0.9:
            return float(rng.uniform(0.5, 6.0))
        return 1e6

    speeds = [[per() for _ in range(N)] for _ in range(iters)]
    jitter = [[0, 0, 1, 0.25, 3][int(rng.integers(5))] for _ in range(7)]
    return {"kind": "replay", "scheme": scheme, "N": N, "K": K, "tolerance": s, "seed": seed,
            "options": scheme_options(scheme, **options), "speeds": speeds, "jitter": jitter,
            "deliver_cancelled": bool(rng.integers(2))}


def two_stage_cases() -> list[dict]:
    out = []
    for N, its in ((8, 5), (64, 5), (256, 4)):
        for pl in ("shared", "replicated:2"):
            for scen in SCENARIOS:
                out.append(sim_case("two-stage", N, scen, iterations=its, placement=pl))
    variants = [dict(replan=0), dict(replan=3), dict(replan=None), dict(stage1_chunks=1),
                dict(stage1_chunks=2), dict(trigger="count"), dict(trigger="deadline"),
                dict(rho=0.75, stage2_tolerance=1),
                dict(rho=0.75, stage2_tolerance=1, replan=0, stage1_chunks=1),
                dict(replan=0, stage1_chunks=1), dict(replan_load=1.0, replan_messages=0.5),
                dict(max_wait=0.06), dict(max_wait=0.04, replan=0, stage1_chunks=1)]
    for N, scens in ((24, ("exp-per-iteration", "shifted-exp")), (64, ("exp-per-iteration",))):
        for v in variants:
            for pl in ("shared", "replicated:2"):
                for scen in scens:
                    out.append(sim_case("two-stage", N, scen, iterations=4, placement=pl, **v))
    for N, K, s, pl, scen in ((5, 23, 0, "shared", "pareto"), (7, 7, 2, "replicated:3", "bimodal"),
                              (13, 40, 1, "replicated:4", "shifted-exp"),
                              (33, 100, 3, "replicated:2", "exp-per-iteration"),
                              (48, 192, 1, "replicated:47", "pareto")):
        out.append(sim_case("two-stage", N, scen, K=K, s=s, placement=pl))
    rng = np.random.default_rng(2023)  # random combinations of every option, small N
    for _ in range(40):
        N = int(rng.integers(2, 41))
        R = int(rng.integers(1, N + 1))
        pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
        out.append(sim_case(
            "two-stage", N, pick(list(SCENARIOS)), K=pick([N, 2 * N, 4 * N, 3 * N + 1]),
            s=int(rng.integers(0, min(3, N))), iterations=4,
            placement=pick(["shared", f"replicated:{R}"]), replan=pick([0, 1, 3, 64, None,
                                                                       "auto"]),
            stage1_chunks=pick([1, 2, 3]), rho=pick([1.0, 0.75]),
            trigger=pick(["both", "count", "deadline"]), stage2_tolerance=pick([0, 1]),
            trigger_k=pick([None, None, 1, N]), beta=pick([1.0, 1.5, 3.0]),
            replan_load=pick([0.3, 1.0, 0.0]), replan_messages=pick([3.0, 0.5, 0.0]),
            speed_alpha=pick([0.2, 0.5, 1.0])))
    return out


def self_scheduling_cases() -> list[dict]:
    out = []
    for N, its in ((8, 5), (64, 5), (256, 4)):
        for pl in ("shared", "replicated:2"):
            for scen in SCENARIOS:
                out.append(sim_case("self-scheduling", N, scen, iterations=its, placement=pl))
    for N in (24, 96):
        for pl in ("shared", "replicated:2", "replicated:3"):
            for chunk in ("weighted", "fixed:2", "guided"):
                for backup in (True, False):
                    if chunk == "guided" and backup:
                        continue  # the grid above
                    out.append(sim_case("self-scheduling", N, "exp-per-iteration" if backup
                                        else "bimodal", iterations=4, placement=pl,
                                        chunk=chunk, backup=backup))
    for N, K, pl, chunk, scen in ((16, 16, "replicated:5", "guided", "pareto"),
                                  (33, 70, "replicated:2", "fixed:2", "exp-per-iteration"),
                                  (48, 192, "replicated:40", "guided", "shifted-exp"),
                                  (48, 192, "replicated:47", "weighted", "bimodal")):
        out.append(sim_case("self-scheduling", N, scen, K=K, placement=pl, chunk=chunk))
    return out


def other_cases() -> list[dict]:
    out = []
    for N in (8, 64):
        for scen in ("shifted-exp", "bimodal"):
            out.append(sim_case("uncoded", N, scen, s=0))
            out.append(sim_case("ignore-stragglers", N, scen, s=1))
            out.append(sim_case("ignore-stragglers", N, scen, s=3))
            out.append(sim_case("frc", N, scen, s=1))
            out.append(sim_case("cyclic", N, scen, s=1))
            for pl in ("shared", "replicated:2"):
                out.append(sim_case("speed-aware", N, scen, K=5 * N + 3, s=0, placement=pl))
    out.append(sim_case("cyclic", 6, "pareto", s=2))  # Algorithm 2 (tandon)
    out.append(sim_case("cyclic", 9, "exp-per-iteration", s=1))
    out.append(sim_case("frc", 12, "pareto", s=2))
    return out


def replay_two_stage_cases() -> list[dict]:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(150):
        N = int(rng.integers(1, 15))
        K = [N, 2 * N, 4 * N, 3 * N + int(rng.integers(1, N + 1))][int(rng.integers(4))]
        R = int(rng.integers(1, N + 1))
        pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
        opts = dict(placement=pick(["shared", f"replicated:{R}"]),
                    replan=pick([0, 1, 2, 5, 64, N]), stage1_chunks=pick([1, 2, 3]),
                    rho=pick([1.0, 0.75]), trigger=pick(["both", "count", "deadline"]),
                    stage2_tolerance=pick([0, 1]), replan_load=pick([0.3, 1.0]),
                    replan_messages=pick([3.0, 0.5]), speed_alpha=0.2)
        s = min(pick([0, 1]), N - 1)
        out.append(replay_case("two-stage", rng, N, K, s, opts))
    return out


def replay_self_scheduling_cases() -> list[dict]:
    rng = np.random.default_rng(11)
    out = []
    for _ in range(150):
        N = int(rng.integers(1, 13))
        K = [N, 2 * N, 4 * N, 3 * N + int(rng.integers(1, N + 1))][int(rng.integers(4))]
        R = int(rng.integers(1, N + 1))
        pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
        opts = dict(chunk=pick(["guided", "weighted", "fixed:1", "fixed:3"]),
                    backup=bool(rng.integers(2)),
                    placement=pick(["shared", f"replicated:{R}"]),
                    speed_alpha=pick([0.5, 1.0]))
        out.append(replay_case("self-scheduling", rng, N, K, 0, opts))
    return out


FILES = {
    "two-stage": two_stage_cases,
    "self-scheduling": self_scheduling_cases,
    "others": other_cases,
    "replay-two-stage": replay_two_stage_cases,
    "replay-self-scheduling": replay_self_scheduling_cases,
}


# ---- the decisions -----------------------------------------------------------------------
def _py(v):
    """A JSON-able value of the same meaning (numpy scalars to Python, bytes to str)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray):
        return [_py(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_py(x) for x in v]
    return v


def _runs(parts: np.ndarray) -> list[int]:
    """Partitions as runs of consecutive indices: [start, length, start, length, ...]."""
    p = parts.tolist()
    out: list[int] = []
    for k in p:
        if out and out[-2] + out[-1] == k:
            out[-1] += 1
        else:
            out += [k, 1]
    return out


STATES = {"pending": "p", "done": "d", "cancelled": "c"}


def task_log(scheme) -> dict:
    """The scheme's tasks of the iteration, as columns."""
    ts = list(scheme.tasks.values())
    return {"id": [t.task_id for t in ts], "worker": [t.worker for t in ts],
            "stage": [t.stage for t in ts], "parts": [_runs(t.partitions) for t in ts],
            "coeffs": [None if t.coeffs is None else t.coeffs.tolist() for t in ts],
            "t_dispatch": [float(t.t_dispatch) for t in ts],
            "t_done": [float(t.t_done) for t in ts],
            "duration": [float(t.duration) for t in ts],
            "state": "".join(STATES[t.state] for t in ts), "used": [int(t.used) for t in ts]}


def digest(a) -> str:
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def make(case: dict):
    from mpicode import registry
    cls = registry.scheme(case["scheme"])
    return cls(case["N"], case["K"], tolerance=case["tolerance"], seed=case["seed"],
               **case["options"])


RECORDED_MSG_BYTES = 40  # bytes of a message when the corpus was recorded (8 x 5 header)


def run_case(case: dict, costs=None) -> dict:
    """The decisions of ``case`` made by the live code (``costs``: the simulator's cost model,
    None for the zero model)."""
    scheme = make(case)
    its = []
    if case["kind"] == "sim":
        from mpicode.models.stragglers import make_straggler_model
        from mpicode.simulator import Simulator
        model = make_straggler_model(SimpleNamespace(**case["model"]), case["N"], case["K"])
        kw = {} if costs is None else {"costs": costs}
        # the message size is an input of the case, pinned: the corpus was recorded with a
        # RESULT header of 5 float64 (no problem, no gradient), and a wire change (issue 25
        # added METRIC) is not a decision change
        sim = Simulator(scheme, model, n_workers=case["N"],
                        partition_cost=case["partition_cost"],
                        msg_bytes=case.get("msg_bytes", RECORDED_MSG_BYTES), **kw)
        for it in range(case["iterations"]):
            out = sim.iteration(it)
            its.append({"tasks": task_log(scheme), "notes": list(scheme.log_notes),
                        "row": {k: _py(v) for k, v in out["row"].items()},
                        "digests": {f"{part}/{k}": digest(v) for part in ("tasks", "workers")
                                    for k, v in out[part].items()}})
    else:
        from mpicode.schemes.replay import run_iteration
        jitter = case["jitter"]
        for it, sp in enumerate(case["speeds"]):
            out = run_iteration(scheme, it, lambda t, sp=sp: sp[t.worker] * t.n
                                + jitter[t.task_id % len(jitter)],
                                deliver_cancelled=case["deliver_cancelled"])
            its.append({"tasks": task_log(scheme), "notes": list(scheme.log_notes),
                        "arrivals": list(out.arrivals), "ticks": list(out.ticks),
                        "t_end": out.t_end,
                        "summary": {k: _py(v) for k, v in out.summary.items()}})
    return {"iterations": its, "state": {k: _py(v) for k, v in scheme.state_dict().items()}}


# ---- comparison --------------------------------------------------------------------------
def _same(u, v) -> bool:
    if isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v):
        return True
    if isinstance(u, list) and isinstance(v, list):
        return len(u) == len(v) and all(_same(a, b) for a, b in zip(u, v, strict=True))
    if isinstance(u, dict) and isinstance(v, dict):
        return u.keys() == v.keys() and all(_same(u[k], v[k]) for k in u)
    return type(u) is type(v) and u == v or (
        isinstance(u, (int, float)) and isinstance(v, (int, float))
        and not isinstance(u, bool) and u == v and float(u) == float(v))


def differences(recorded: dict, live: dict, limit: int = 5) -> list[str]:
    """What differs between a recorded result and the live one (empty: identical). Keys the
    live code has and the recording has not (columns added since) are not compared."""
    out: list[str] = []
    rec, now = recorded["iterations"], live["iterations"]
    if len(rec) != len(now):
        return [f"{len(now)} iterations, recorded {len(rec)}"]
    for it, (a, b) in enumerate(zip(rec, now, strict=True)):
        for key in a:
            if key == "tasks":
                ta, tb = a["tasks"], b["tasks"]
                if len(ta["id"]) != len(tb["id"]):
                    out.append(f"iteration {it}: {len(tb['id'])} tasks, recorded "
                               f"{len(ta['id'])}")
                for i in range(min(len(ta["id"]), len(tb["id"]))):
                    bad = [c for c in ta if not _same(ta[c][i], tb[c][i])]
                    if bad:
                        out.append(f"iteration {it}, task #{i}: "
                                   + ", ".join(f"{c} {tb[c][i]!r} (recorded {ta[c][i]!r})"
                                               for c in bad))
                        break
            elif isinstance(a[key], dict):
                for k in a[key]:
                    if k not in b[key] or not _same(a[key][k], b[key][k]):
                        out.append(f"iteration {it}: {key}[{k}] {b[key].get(k)!r} "
                                   f"(recorded {a[key][k]!r})")
            elif not _same(a[key], b[key]):
                out.append(f"iteration {it}: {key} {b[key]!r} (recorded {a[key]!r})")
            if len(out) >= limit:
                return out
    for k in recorded["state"]:
        if not _same(recorded["state"][k], live["state"].get(k)):
            out.append(f"state_dict()[{k}] differs")
    return out[:limit]


# ---- files -------------------------------------------------------------------------------
def name_of(case: dict) -> str:
    o = case["options"]
    short = {k: v for k, v in o.items() if v != scheme_options(case["scheme"])[k]}
    where = case.get("scenario", "replay")
    return (f"{case['scheme']} N={case['N']} K={case['K']} s={case['tolerance']} {where} "
            + " ".join(f"{k}={v}" for k, v in sorted(short.items())))


def load(name: str) -> list[dict]:
    with gzip.open(DATA / f"{name}.json.gz", "rt") as f:
        return json.load(f)["cases"]


def record(names=None, log=print) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    import subprocess
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=DATA).stdout.strip()
    except OSError:
        commit = "?"
    for name in names or FILES:
        cases = FILES[name]()
        for i, case in enumerate(cases):
            case["result"] = run_case(case)
            if i % 20 == 0:
                log(f"{name}: {i + 1}/{len(cases)} {name_of(case)}")
        doc = {"about": "mpicode decision corpus (tests/unit/decision_corpus.py)",
               "recorded_at": commit, "cases": cases}
        tmp = DATA / f".{name}.json.gz.part"
        with gzip.GzipFile(tmp, "wb", mtime=0) as f:  # byte-identical when nothing changed
            f.write(json.dumps(doc, separators=(",", ":")).encode())
        tmp.replace(DATA / f"{name}.json.gz")
        log(f"wrote {DATA / name}.json.gz: {len(cases)} cases, "
            f"{(DATA / f'{name}.json.gz').stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    record(sys.argv[1:] or None)
